//! Where archives are stored: the local directory (the default) and remote destinations (S3-compatible
//! object storage, SFTP, FTPS), each with streamed, atomic uploads (nothing is visible under the
//! final key before `commit`), streamed reads, listing, deletion and a `check`.
//!
//! Keys are relative to the destination's root (its `path` or `prefix`) and follow the local
//! layout: `<namespace>/<pvc>/<UTC timestamp>.tar.gz` plus `.tar.gz.sha256` and `.manifest.json`
//! ([`ArtifactKeys`]).

pub mod config;
mod error;
mod ftps;
mod known_hosts;
mod local;
mod registry;
mod retry;
mod s3;
pub mod secret;
mod sftp;
mod tls;

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};

pub use config::{DestinationConfig, DestinationsConfig, KindConfig};
pub use error::DestinationError;
pub use known_hosts::{HostKeyVerdict, KnownHosts};
pub use registry::{DestinationInfo, Destinations};
pub use retry::{DEFAULT_RETRY, RetryPolicy};
pub use s3::part_size_for;

/// Directives every tracing filter of a process using destinations must carry: suppaftp traces each
/// FTP command it sends — `PASS <password>` included — through the `log` crate at trace level, so
/// its output stays off whatever `RUST_LOG` says (append to the `EnvFilter`, after the user's).
pub const LOG_FILTER_DIRECTIVES: &str = "suppaftp=off";

/// The kinds of destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Local,
    S3,
    Sftp,
    Ftps,
}

impl Kind {
    /// `local`, `s3`, `sftp` or `ftps`, as in the destinations file.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::S3 => "s3",
            Self::Sftp => "sftp",
            Self::Ftps => "ftps",
        }
    }
}

/// The keys of one backup's files, in the local layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactKeys {
    /// `<namespace>/<pvc>/<stamp>.tar.gz`
    pub archive: String,
    /// `<archive>.sha256`, in `sha256sum -c` format.
    pub sidecar: String,
    /// `<namespace>/<pvc>/<stamp>.manifest.json`
    pub manifest: String,
}

impl ArtifactKeys {
    /// The keys of a backup of `namespace/pvc` started at `at` (the same names as under
    /// `<data-dir>/artifacts/`).
    #[must_use]
    pub fn new(namespace: &str, pvc: &str, at: jiff::Timestamp) -> Self {
        let stamp = crate::backup::artifact::timestamp_name(at);
        Self::for_archive(&format!("{namespace}/{pvc}/{stamp}.tar.gz"))
            .unwrap_or_else(|| unreachable!("the archive key ends with .tar.gz"))
    }

    /// The keys of the backup whose archive is `archive` (history's `object_key`); `None` when
    /// it does not end with `.tar.gz`.
    #[must_use]
    pub fn for_archive(archive: &str) -> Option<Self> {
        let stem = archive.strip_suffix(".tar.gz")?;
        Some(Self {
            archive: archive.to_owned(),
            sidecar: format!("{archive}.sha256"),
            manifest: format!("{stem}.manifest.json"),
        })
    }

    /// The archive key of any of a backup's keys (archive, sidecar or manifest).
    #[must_use]
    pub fn archive_of(key: &str) -> Option<String> {
        if key.ends_with(".tar.gz") {
            Some(key.to_owned())
        } else if let Some(archive) = key.strip_suffix(".sha256") {
            archive.ends_with(".tar.gz").then(|| archive.to_owned())
        } else {
            key.strip_suffix(".manifest.json")
                .map(|stem| format!("{stem}.tar.gz"))
        }
    }
}

/// An object made visible under its final key by [`Upload::commit`] or [`Destination::put`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedObject {
    /// The key, relative to the destination.
    pub key: String,
    /// Where it is: the local path, or `s3://…`, `sftp://…`, `ftps://…` (history's `artifact`).
    pub uri: String,
    /// Bytes stored.
    pub bytes: u64,
}

/// An object found by [`Destination::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The key, relative to the destination.
    pub key: String,
    /// Size in bytes, when the server says.
    pub size: Option<u64>,
}

/// What [`Destination::check`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// Where the probe object was written (and deleted again).
    pub probe_uri: String,
    /// Connect, write, read back and delete, in total.
    pub elapsed: Duration,
}

/// A configured destination. Cheap to clone (shares its connection settings).
#[derive(Debug, Clone)]
pub enum Destination {
    Local(local::LocalDestination),
    S3(s3::S3Destination),
    Sftp(sftp::SftpDestination),
    Ftps(ftps::FtpsDestination),
}

impl Destination {
    /// Builds a destination from its configuration: reads CA files, nothing contacted yet.
    pub fn from_config(config: &DestinationConfig) -> Result<Self, DestinationError> {
        let name = config.name.clone();
        Ok(match &config.kind {
            KindConfig::Local(c) => Self::Local(local::LocalDestination::new(name, c)),
            KindConfig::S3(c) => Self::S3(s3::S3Destination::new(name, c)?),
            KindConfig::Sftp(c) => Self::Sftp(sftp::SftpDestination::new(name, c)),
            KindConfig::Ftps(c) => Self::Ftps(ftps::FtpsDestination::new(name, c)?),
        })
    }

    /// The destination's name.
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            Self::Local(d) => d.name(),
            Self::S3(d) => d.name(),
            Self::Sftp(d) => d.name(),
            Self::Ftps(d) => d.name(),
        }
    }

    #[must_use]
    pub fn kind(&self) -> Kind {
        match self {
            Self::Local(_) => Kind::Local,
            Self::S3(_) => Kind::S3,
            Self::Sftp(_) => Kind::Sftp,
            Self::Ftps(_) => Kind::Ftps,
        }
    }

    /// Where `key` is stored: the local path, `s3://bucket/prefix/key`, `sftp://host/path/key`
    /// or `ftps://host/path/key` (with `:port` when not the default).
    #[must_use]
    pub fn uri(&self, key: &str) -> String {
        match self {
            Self::Local(d) => d.uri(key),
            Self::S3(d) => d.uri(key),
            Self::Sftp(d) => d.uri(key),
            Self::Ftps(d) => d.uri(key),
        }
    }

    /// The directory of a `local` destination (`None` for remote ones): free-space checks and
    /// start-up recovery look there.
    #[must_use]
    pub fn local_root(&self) -> Option<&Path> {
        match self {
            Self::Local(d) => Some(d.root()),
            _ => None,
        }
    }

    /// Connects and authenticates without writing anything (local: creates the directory), so a
    /// destination that is down, untrusted or refuses the credentials fails before a backup starts
    /// its helper pod. S3 lists at most one key under the prefix (a missing bucket fails too).
    pub async fn connect(&self) -> Result<(), DestinationError> {
        match self {
            Self::Local(d) => tokio::fs::create_dir_all(d.root()).await.map_err(|e| {
                self.origin_for_errors().connect(format!(
                    "cannot create {}: {e}; check the path and its permissions",
                    d.root().display()
                ))
            }),
            Self::S3(d) => d.connect().await,
            Self::Sftp(d) => d.connect().await,
            Self::Ftps(d) => d.connect().await,
        }
    }

    /// Removes what an unfinished upload of `key` left (listed by [`Destination::pending_uploads`]):
    /// S3 aborts its multipart uploads, others delete `<key>.partial`. Nothing left is fine. Never
    /// call it for an upload that is still running.
    pub async fn abort_pending(&self, key: &str) -> Result<(), DestinationError> {
        self.validate(key, error::Step::Abort)?;
        match self {
            Self::S3(d) => d.abort_pending(key).await,
            _ => match self.delete(&format!("{key}.partial")).await {
                Ok(()) | Err(DestinationError::NotFound { .. }) => Ok(()),
                Err(e) => Err(self
                    .origin_for_errors()
                    .on(error::Step::Abort, key, e.to_string())),
            },
        }
    }

    /// Starts a streamed upload of `key`. `size_hint` (an upper bound of the size, such as the
    /// volume's capacity) lets S3 pick parts large enough for 10,000 parts. Nothing is visible
    /// under `key` until [`Upload::commit`]; dropping the upload aborts it in the background.
    pub async fn begin_upload(
        &self,
        key: &str,
        size_hint: Option<u64>,
    ) -> Result<Upload, DestinationError> {
        self.validate(key, error::Step::Upload)?;
        let inner = match self {
            Self::Local(d) => UploadInner::Local(d.begin_upload(key).await?),
            Self::S3(d) => UploadInner::S3(d.begin_upload(key, size_hint).await?),
            Self::Sftp(d) => UploadInner::Sftp(d.begin_upload(key).await?),
            Self::Ftps(d) => UploadInner::Ftps(Box::new(d.begin_upload(key).await?)),
        };
        Ok(Upload {
            inner,
            bytes: 0,
            uri: self.uri(key),
        })
    }

    /// Stores a small object (sidecar, manifest) atomically under `key`.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<CommittedObject, DestinationError> {
        self.validate(key, error::Step::Upload)?;
        if let Self::S3(d) = self {
            let size = bytes.len() as u64;
            d.put(key, bytes).await?;
            return Ok(CommittedObject {
                key: key.to_owned(),
                uri: self.uri(key),
                bytes: size,
            });
        }
        let mut upload = self.begin_upload(key, Some(bytes.len() as u64)).await?;
        if let Err(error) = upload.write_all(&bytes).await {
            let message = error.to_string();
            let _ = upload.abort().await;
            return Err(self
                .origin_for_errors()
                .on(error::Step::Upload, key, message));
        }
        upload.commit().await
    }

    /// Opens `key` for a streamed read (no temporary copy).
    pub async fn open_read(&self, key: &str) -> Result<ObjectReader, DestinationError> {
        self.validate(key, error::Step::Read)?;
        match self {
            Self::Local(d) => d.open_read(key).await,
            Self::S3(d) => d.open_read(key).await,
            Self::Sftp(d) => d.open_read(key).await,
            Self::Ftps(d) => d.open_read(key).await,
        }
    }

    /// Deletes `key`. A key that does not exist is [`DestinationError::NotFound`].
    pub async fn delete(&self, key: &str) -> Result<(), DestinationError> {
        self.validate(key, error::Step::Delete)?;
        match self {
            Self::Local(d) => d.delete(key).await,
            Self::S3(d) => d.delete(key).await,
            Self::Sftp(d) => d.delete(key).await,
            Self::Ftps(d) => d.delete(key).await,
        }
    }

    /// Every object under `prefix` (`""` for all, else a key prefix ending at a `/` boundary:
    /// `ns/pvc` lists `ns/pvc/…`), sorted by key. Temporary `.partial` objects of running or
    /// interrupted uploads are listed too.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, DestinationError> {
        if !prefix.is_empty() {
            self.validate(prefix, error::Step::List)?;
        }
        let mut objects = match self {
            Self::Local(d) => d.list(prefix).await?,
            Self::S3(d) => d.list(prefix).await?,
            Self::Sftp(d) => d.list(prefix).await?,
            Self::Ftps(d) => d.list(prefix).await?,
        };
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    /// Uploads started and neither committed nor aborted, by final key: S3's unfinished multipart
    /// uploads (ListMultipartUploads), else the temporary `.partial` files. For tests and
    /// start-up recovery.
    pub async fn pending_uploads(&self) -> Result<Vec<String>, DestinationError> {
        if let Self::S3(d) = self {
            return d.pending_uploads().await;
        }
        Ok(self
            .list("")
            .await?
            .into_iter()
            .filter_map(|o| o.key.strip_suffix(".partial").map(str::to_owned))
            .collect())
    }

    /// Connects, writes a probe object through the same path as an archive (temporary name or
    /// multipart upload, then commit), reads it back, compares and deletes it.
    pub async fn check(&self) -> Result<CheckReport, DestinationError> {
        let started = Instant::now();
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|e| {
            self.origin_for_errors()
                .on(error::Step::Upload, ".nkvm-check", e.to_string())
        })?;
        let key = format!(".nkvm-check/{}.probe", hex::encode(random));
        let mut content = format!("nkvm destination check {}\n", hex::encode(random)).into_bytes();
        content.resize(64 << 10, b'.');
        let origin = self.origin_for_errors();
        let mut upload = self.begin_upload(&key, Some(content.len() as u64)).await?;
        if let Err(error) = upload.write_all(&content).await {
            let _ = upload.abort().await;
            return Err(origin.on(error::Step::Upload, &key, error.to_string()));
        }
        upload.commit().await?;
        let read_back = async {
            let mut reader = self.open_read(&key).await?;
            let mut back = Vec::with_capacity(content.len());
            reader
                .read_to_end(&mut back)
                .await
                .map_err(|e| origin.on(error::Step::Read, &key, e.to_string()))?;
            Ok::<_, DestinationError>(back)
        }
        .await;
        let deleted = self.delete(&key).await;
        let back = read_back?;
        if back != content {
            return Err(DestinationError::Probe {
                destination: self.name().to_owned(),
                key,
                message: format!(
                    "{} bytes written, {} read back: check the server's storage",
                    content.len(),
                    back.len()
                ),
            });
        }
        deleted?;
        Ok(CheckReport {
            probe_uri: self.uri(&key),
            elapsed: started.elapsed(),
        })
    }

    fn origin_for_errors(&self) -> error::Origin {
        error::Origin {
            destination: self.name().to_owned(),
            server: self.uri(""),
        }
    }

    fn validate(&self, key: &str, step: error::Step) -> Result<(), DestinationError> {
        config::validate_key(key).map_err(|message| self.origin_for_errors().on(step, key, message))
    }
}

/// `<base>/<key>` on an SFTP or FTP server (`base` absolute, relative or empty).
fn remote_path(base: &str, key: &str) -> String {
    let trimmed = base.trim_end_matches('/');
    match (trimmed.is_empty(), key.is_empty()) {
        (true, _) if base.starts_with('/') => format!("/{key}"),
        (true, _) => key.to_owned(),
        (false, true) => trimmed.to_owned(),
        (false, false) => format!("{trimmed}/{key}"),
    }
}

/// `scheme://server/path` (a relative path gets the `/` separator too).
fn remote_uri(scheme: &str, server: &str, path: &str) -> String {
    let separator = if path.starts_with('/') { "" } else { "/" };
    format!("{scheme}://{server}{separator}{path}")
}

/// Every directory from the top down to `dir`: `/a/b` → `/a`, `/a/b`; `a/b` → `a`, `a/b`.
fn dir_prefixes(dir: &str) -> Vec<String> {
    let mut prefixes = Vec::new();
    let mut path = if dir.starts_with('/') {
        "/".to_owned()
    } else {
        String::new()
    };
    for part in dir.split('/').filter(|p| !p.is_empty()) {
        if !path.is_empty() && !path.ends_with('/') {
            path.push('/');
        }
        path.push_str(part);
        prefixes.push(path.clone());
    }
    prefixes
}

/// Implements `AsyncWrite` for an upload that writes into its `$writer: Option<W>` field while it
/// is open (`None` once committed or aborted: writes then fail, flushes succeed). A shutdown only
/// flushes: the upload is finished by its `commit`.
macro_rules! write_into_open_writer {
    ($upload:ty, $writer:ident) => {
        impl tokio::io::AsyncWrite for $upload {
            fn poll_write(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                match self.$writer.as_mut() {
                    Some(writer) => std::pin::Pin::new(writer).poll_write(cx, buf),
                    None => {
                        std::task::Poll::Ready(Err(std::io::Error::other("the upload is finished")))
                    }
                }
            }

            fn poll_flush(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                match self.$writer.as_mut() {
                    Some(writer) => std::pin::Pin::new(writer).poll_flush(cx),
                    None => std::task::Poll::Ready(Ok(())),
                }
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                self.poll_flush(cx)
            }
        }
    };
}
use write_into_open_writer;

/// The message of an SFTP/FTPS upload that could not be committed.
fn nothing_stored(message: &str, server: &str) -> String {
    format!(
        "{message} (server {server}): nothing was stored under the final name; retry when the \
         server is reachable"
    )
}

/// A streamed read of one object.
pub struct ObjectReader {
    /// Size in bytes, when known before reading.
    pub size: Option<u64>,
    reader: Pin<Box<dyn AsyncRead + Send>>,
}

impl ObjectReader {
    pub(crate) fn new(size: Option<u64>, reader: impl AsyncRead + Send + 'static) -> Self {
        Self {
            size,
            reader: Box::pin(reader),
        }
    }
}

impl ObjectReader {
    /// A reader that keeps `held` (the connection it reads through) open for as long as it lives.
    pub(crate) fn holding(
        size: Option<u64>,
        reader: impl AsyncRead + Send + Unpin + 'static,
        held: impl Send + 'static,
    ) -> Self {
        Self::new(
            size,
            Holding {
                reader,
                _held: Box::new(held),
            },
        )
    }
}

/// See [`ObjectReader::holding`].
struct Holding<R> {
    reader: R,
    _held: Box<dyn Send>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Holding<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

impl std::fmt::Debug for ObjectReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectReader")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl AsyncRead for ObjectReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.reader.as_mut().poll_read(cx, buf)
    }
}

/// A streamed upload: write the bytes, then [`Upload::commit`] (or [`Upload::abort`]). Memory is
/// bounded whatever the size (S3: a few part buffers; others: a write buffer). Dropped without
/// commit, it is aborted in the background and nothing appears under the final key.
#[derive(Debug)]
pub struct Upload {
    inner: UploadInner,
    bytes: u64,
    uri: String,
}

#[derive(Debug)]
enum UploadInner {
    Local(local::LocalUpload),
    S3(s3::S3Upload),
    Sftp(sftp::SftpUpload),
    Ftps(Box<ftps::FtpsUpload>),
}

impl Upload {
    /// Bytes written so far.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Finishes the upload and makes it visible under its final key (S3: completes the multipart
    /// upload; others: flush, close, rename the temporary name). On error nothing is under the key.
    pub async fn commit(self) -> Result<CommittedObject, DestinationError> {
        let Self { inner, bytes, uri } = self;
        let key = match inner {
            UploadInner::Local(u) => u.commit().await?,
            UploadInner::S3(u) => u.commit().await?,
            UploadInner::Sftp(u) => u.commit().await?,
            UploadInner::Ftps(u) => u.commit().await?,
        };
        Ok(CommittedObject { key, uri, bytes })
    }

    /// Abandons the upload: S3 aborts the multipart upload, others remove the temporary file.
    pub async fn abort(self) -> Result<(), DestinationError> {
        match self.inner {
            UploadInner::Local(u) => u.abort().await,
            UploadInner::S3(u) => u.abort().await,
            UploadInner::Sftp(u) => u.abort().await,
            UploadInner::Ftps(u) => u.abort().await,
        }
    }
}

impl AsyncWrite for Upload {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = match &mut self.inner {
            UploadInner::Local(u) => Pin::new(u).poll_write(cx, buf),
            UploadInner::S3(u) => Pin::new(u).poll_write(cx, buf),
            UploadInner::Sftp(u) => Pin::new(u).poll_write(cx, buf),
            UploadInner::Ftps(u) => Pin::new(u.as_mut()).poll_write(cx, buf),
        };
        if let Poll::Ready(Ok(n)) = &polled {
            self.bytes += *n as u64;
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            UploadInner::Local(u) => Pin::new(u).poll_flush(cx),
            UploadInner::S3(u) => Pin::new(u).poll_flush(cx),
            UploadInner::Sftp(u) => Pin::new(u).poll_flush(cx),
            UploadInner::Ftps(u) => Pin::new(u.as_mut()).poll_flush(cx),
        }
    }

    /// Flushes only: the upload is finished by [`Upload::commit`], never by a shutdown.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_paths_uris_and_directory_prefixes() {
        assert_eq!(remote_path("/srv/b/", "ns/p/a"), "/srv/b/ns/p/a");
        assert_eq!(remote_path("archive", "a"), "archive/a");
        assert_eq!(remote_path("", "a"), "a");
        assert_eq!(remote_path("/", "a"), "/a");
        assert_eq!(remote_path("/srv", ""), "/srv");
        assert_eq!(remote_uri("sftp", "h:2222", "/x/a"), "sftp://h:2222/x/a");
        assert_eq!(remote_uri("ftps", "h", "x/a"), "ftps://h/x/a");
        assert_eq!(dir_prefixes("/a/b"), ["/a", "/a/b"]);
        assert_eq!(dir_prefixes("a//b/"), ["a", "a/b"]);
        assert!(dir_prefixes("/").is_empty());
    }

    #[test]
    fn artifact_keys_follow_the_local_layout() {
        let at: jiff::Timestamp = "2026-11-28T23:18:58.123456Z".parse().unwrap();
        let keys = ArtifactKeys::new("shop", "data", at);
        assert_eq!(keys.archive, "shop/data/20261128T231858.123Z.tar.gz");
        assert_eq!(keys.sidecar, "shop/data/20261128T231858.123Z.tar.gz.sha256");
        assert_eq!(
            keys.manifest,
            "shop/data/20261128T231858.123Z.manifest.json"
        );
        assert_eq!(ArtifactKeys::for_archive(&keys.archive), Some(keys.clone()));
        assert_eq!(ArtifactKeys::for_archive("shop/data/x.zip"), None);
        for key in [&keys.archive, &keys.sidecar, &keys.manifest] {
            assert_eq!(ArtifactKeys::archive_of(key).as_ref(), Some(&keys.archive));
        }
        assert_eq!(ArtifactKeys::archive_of(".nkvm-check/x.probe"), None);
        assert_eq!(ArtifactKeys::archive_of("a/notes.sha256"), None);
    }
}
