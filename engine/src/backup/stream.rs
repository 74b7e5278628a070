//! The data path of a backup: tar bytes from the helper's stdout → tar checker → block-parallel
//! gzip ([`super::pgzip`]) → sha256 → `<final>.partial` → fsync → rename → fsync of the directory.
//! Memory stays bounded (one read buffer, the encoder's blocks in flight and a write buffer)
//! whatever the size of the volume.
//!
//! The reader is any `AsyncRead`, so the pipeline is tested without a cluster. A read that returns no
//! byte for `stall_timeout` fails the stream as stalled; there is no wall-clock limit.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, BufWriter};
use tokio_util::sync::CancellationToken;

use super::pgzip::{ParallelGzipEncoder, PgzipConfig, PgzipError};
use super::tarcheck::{TarChecker, TarCounts, TarError};

/// Size of one read from the exec stream.
pub const READ_CHUNK: usize = 128 * 1024;
/// Write buffer in front of the archive file.
const WRITE_BUFFER: usize = 256 * 1024;

/// Settings of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    /// gzip level, 0 (store) to 9 (smallest).
    pub gzip_level: u32,
    /// Blocks compressed in parallel (at least 1); the archive does not depend on it.
    pub gzip_threads: usize,
    /// Fail when no byte arrives for this long.
    pub stall_timeout: Duration,
    /// Least time between two progress callbacks.
    pub progress_interval: Duration,
    /// After the producer is known to have exited, a read that returns nothing for this long ends
    /// the stream (the bytes still in flight have arrived by then, or never will).
    pub drain_grace: Duration,
}

/// Where a stream is, passed to the progress callback.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamProgress {
    /// Tar bytes read from the source.
    pub bytes_read: u64,
    /// Compressed bytes written so far.
    pub archive_bytes: u64,
    pub files: u64,
    /// File content bytes seen in the tar stream.
    pub source_bytes: u64,
}

/// A complete, checked archive in its `.partial` file, synced to disk. Dropping it without
/// [`PartialArchive::commit`] removes the file.
#[derive(Debug)]
pub struct PartialArchive {
    pub counts: TarCounts,
    /// Size of the compressed archive.
    pub archive_bytes: u64,
    /// Lowercase hex sha256 of the compressed archive.
    pub sha256: String,
    guard: PartialFile,
    final_path: PathBuf,
}

impl PartialArchive {
    /// The `.partial` path.
    pub fn partial_path(&self) -> &Path {
        &self.guard.path
    }

    /// Renames the `.partial` file to its final name (refusing to replace an existing file) and
    /// syncs the directory.
    pub async fn commit(mut self) -> Result<PathBuf, StreamError> {
        let final_path = self.final_path.clone();
        let write_err = |source| StreamError::Write {
            path: final_path.clone(),
            source,
        };
        if tokio::fs::try_exists(&final_path)
            .await
            .map_err(write_err)?
        {
            return Err(write_err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "an archive with this name already exists",
            )));
        }
        tokio::fs::rename(&self.guard.path, &final_path)
            .await
            .map_err(write_err)?;
        self.guard.disarm();
        sync_dir(&final_path).await.map_err(write_err)?;
        Ok(final_path)
    }
}

/// Why a stream failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("stalled: no data for {}s", .0.as_secs())]
    Stalled(Duration),
    #[error("reading the tar stream failed: {0}")]
    Read(#[source] io::Error),
    #[error("{0}")]
    Tar(#[from] TarError),
    #[error("writing {} failed: {source}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Compressing failed (not writing: that is [`StreamError::Write`]), e.g. a worker panicked.
    #[error("compressing the archive failed: {0}")]
    Compress(#[source] PgzipError),
    #[error("cancelled")]
    Cancelled,
}

impl StreamError {
    /// The error of a compression step writing to `path`: a failed write stays a write error.
    fn compress(path: &Path, err: PgzipError) -> Self {
        match err {
            PgzipError::Write(source) => Self::Write {
                path: path.to_owned(),
                source,
            },
            other => Self::Compress(other),
        }
    }
}

/// `<final>.partial`.
pub fn partial_path_of(final_path: &Path) -> PathBuf {
    let mut name = final_path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Streams `reader` into `<final_path>.partial`: every byte through the tar checker, gzip at the
/// configured level on `gzip_threads` workers (one gzip member), sha256 over the compressed
/// bytes; then flushes and `fsync`s the file. The archive must end with the end-of-archive
/// blocks; reading stops there (what follows is zero padding), at the reader's EOF, or when
/// `exited` has resolved and no byte came for `drain_grace`. On error (or when the future is
/// dropped) the `.partial` file is removed.
pub async fn write_partial<R, E, F>(
    mut reader: R,
    final_path: &Path,
    config: &StreamConfig,
    cancel: &CancellationToken,
    exited: E,
    mut on_progress: F,
) -> Result<PartialArchive, StreamError>
where
    R: AsyncRead + Unpin,
    E: Future<Output = ()>,
    F: FnMut(&StreamProgress),
{
    let partial = partial_path_of(final_path);
    let write_err = |source| StreamError::Write {
        path: partial.clone(),
        source,
    };
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&partial)
        .await
        .map_err(write_err)?;
    let guard = PartialFile {
        path: partial.clone(),
        armed: true,
    };
    let sink = HashingWriter::new(BufWriter::with_capacity(WRITE_BUFFER, file));
    let mut encoder = ParallelGzipEncoder::new(
        sink,
        PgzipConfig::new(config.gzip_level, config.gzip_threads),
    );
    let compress_err = |err| StreamError::compress(&partial, err);
    let mut checker = TarChecker::new();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut progress = StreamProgress::default();
    let mut last_report = Instant::now();
    let mut exited = std::pin::pin!(exited);
    let mut producer_done = false;

    loop {
        let limit = if producer_done {
            config.drain_grace
        } else {
            config.stall_timeout
        };
        let read = tokio::select! {
            biased;
            () = cancel.cancelled() => return Err(StreamError::Cancelled),
            () = &mut exited, if !producer_done => {
                producer_done = true;
                continue;
            }
            read = tokio::time::timeout(limit, reader.read(&mut buf)) => read,
        };
        let n = match read {
            Err(_elapsed) if producer_done => break,
            Err(_elapsed) => return Err(StreamError::Stalled(config.stall_timeout)),
            Ok(Err(err)) => return Err(StreamError::Read(err)),
            Ok(Ok(n)) => n,
        };
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        checker.feed(chunk)?;
        encoder.write_all(chunk).await.map_err(compress_err)?;
        let counts = checker.counts();
        progress = StreamProgress {
            bytes_read: counts.stream_bytes,
            archive_bytes: encoder.get_ref().written,
            files: counts.regular_files,
            source_bytes: counts.file_bytes,
        };
        if last_report.elapsed() >= config.progress_interval {
            last_report = Instant::now();
            on_progress(&progress);
        }
        if checker.is_complete() {
            break;
        }
    }
    let counts = checker.finish()?;
    let sink = encoder.finish().await.map_err(compress_err)?;
    let archive_bytes = sink.written;
    let sha256 = hex::encode(sink.hasher.finalize());
    let file = sink.inner.into_inner();
    file.sync_all().await.map_err(write_err)?;
    drop(file);
    progress.archive_bytes = archive_bytes;
    on_progress(&progress);
    Ok(PartialArchive {
        counts,
        archive_bytes,
        sha256,
        guard,
        final_path: final_path.to_owned(),
    })
}

/// `fsync` of the directory holding `path`, so that a rename survives a crash.
pub async fn sync_dir(path: &Path) -> io::Result<()> {
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
        .await
        .map_err(io::Error::other)?
}

/// Removes its file on drop unless disarmed.
#[derive(Debug)]
struct PartialFile {
    path: PathBuf,
    armed: bool,
}

impl PartialFile {
    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if self.armed {
            match std::fs::remove_file(&self.path) {
                Ok(()) => tracing::debug!(path = %self.path.display(), "removed partial archive"),
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => tracing::warn!(
                    path = %self.path.display(),
                    error = %err,
                    "could not remove partial archive (start-up recovery removes it)"
                ),
            }
        }
    }
}

/// Counts and hashes every byte written through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W> HashingWriter<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for HashingWriter<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            this.hasher.update(&buf[..n]);
            this.written += n as u64;
        }
        poll
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use tokio::io::AsyncWriteExt as _;

    fn config() -> StreamConfig {
        StreamConfig {
            gzip_level: 6,
            gzip_threads: 2,
            stall_timeout: Duration::from_secs(5),
            progress_interval: Duration::ZERO,
            drain_grace: Duration::from_secs(2),
        }
    }

    fn never() -> std::future::Pending<()> {
        std::future::pending()
    }

    fn tar_of(dir: &Path) -> Vec<u8> {
        let out = Command::new("tar")
            .args(["-cf", "-", "-C"])
            .arg(dir)
            .arg(".")
            .output()
            .unwrap();
        assert!(out.status.success());
        out.stdout
    }

    fn source() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let mut big = Vec::new();
        for i in 0..300_000u32 {
            big.extend_from_slice(&i.to_le_bytes());
        }
        std::fs::write(dir.path().join("sub/big"), &big).unwrap();
        std::fs::write(dir.path().join("small"), b"hello").unwrap();
        dir
    }

    fn sha256_file(path: &Path) -> String {
        hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
    }

    #[tokio::test]
    async fn writes_a_verified_archive_that_system_tar_extracts() {
        let src = source();
        let stream = tar_of(src.path());
        let out = tempfile::tempdir().unwrap();
        let final_path = out.path().join("a.tar.gz");
        let mut reports = Vec::new();
        let partial = write_partial(
            &stream[..],
            &final_path,
            &config(),
            &CancellationToken::new(),
            std::future::pending(),
            |p| reports.push(*p),
        )
        .await
        .unwrap();
        assert!(partial.partial_path().exists());
        assert_eq!(partial.counts.regular_files, 2);
        assert_eq!(partial.counts.file_bytes, 1_200_005);
        let (sha, bytes) = (partial.sha256.clone(), partial.archive_bytes);
        let committed = partial.commit().await.unwrap();
        assert_eq!(committed, final_path);
        assert!(!partial_path_of(&final_path).exists());
        assert_eq!(std::fs::metadata(&final_path).unwrap().len(), bytes);
        assert_eq!(sha256_file(&final_path), sha);
        let last = reports.last().unwrap();
        assert_eq!(last.bytes_read, stream.len() as u64);
        assert_eq!(last.archive_bytes, bytes);
        assert_eq!(last.files, 2);

        let extracted = tempfile::tempdir().unwrap();
        let status = Command::new("tar")
            .arg("-xzf")
            .arg(&final_path)
            .arg("-C")
            .arg(extracted.path())
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(
            std::fs::read(extracted.path().join("sub/big")).unwrap(),
            std::fs::read(src.path().join("sub/big")).unwrap()
        );
    }

    #[tokio::test]
    async fn gzip_level_is_applied() {
        let stream = tar_of(source().path());
        let out = tempfile::tempdir().unwrap();
        let mut sizes = Vec::new();
        for level in [0, 9] {
            let cfg = StreamConfig {
                gzip_level: level,
                ..config()
            };
            let path = out.path().join(format!("{level}.tar.gz"));
            let partial = write_partial(
                &stream[..],
                &path,
                &cfg,
                &CancellationToken::new(),
                never(),
                |_| {},
            )
            .await
            .unwrap();
            sizes.push(partial.archive_bytes);
        }
        assert!(sizes[0] > stream.len() as u64, "level 0 stores: {sizes:?}");
        assert!(sizes[1] < sizes[0] / 2, "level 9 compresses: {sizes:?}");
    }

    #[tokio::test]
    async fn truncated_stream_fails_and_removes_the_partial_file() {
        let stream = tar_of(source().path());
        let out = tempfile::tempdir().unwrap();
        let path = out.path().join("t.tar.gz");
        let err = write_partial(
            &stream[..700_000],
            &path,
            &config(),
            &CancellationToken::new(),
            never(),
            |_| {},
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, StreamError::Tar(TarError::Truncated(_))),
            "{err}"
        );
        assert!(err.to_string().starts_with("truncated: "), "{err}");
        assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn garbage_fails_fast() {
        let out = tempfile::tempdir().unwrap();
        let path = out.path().join("g.tar.gz");
        let garbage = vec![0x41u8; 100_000];
        let err = write_partial(
            &garbage[..],
            &path,
            &config(),
            &CancellationToken::new(),
            never(),
            |_| {},
        )
        .await
        .unwrap_err();
        assert!(matches!(err, StreamError::Tar(TarError::BadHeader { .. })));
        assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_source_stalls() {
        let out = tempfile::tempdir().unwrap();
        let path = out.path().join("s.tar.gz");
        let (_writer, reader) = tokio::io::duplex(1024);
        let cfg = StreamConfig {
            stall_timeout: Duration::from_mins(2),
            ..config()
        };
        let err = write_partial(
            reader,
            &path,
            &cfg,
            &CancellationToken::new(),
            never(),
            |_| {},
        )
        .await
        .unwrap_err();
        assert_eq!(err.to_string(), "stalled: no data for 120s");
        assert!(!partial_path_of(&path).exists());
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_but_moving_source_never_stalls() {
        let stream = tar_of(source().path());
        let out = tempfile::tempdir().unwrap();
        let path = out.path().join("slow.tar.gz");
        let (mut writer, reader) = tokio::io::duplex(64 * 1024);
        let feeder = tokio::spawn(async move {
            for piece in stream.chunks(100_000) {
                // Far longer in total than the stall timeout, but never silent that long.
                tokio::time::sleep(Duration::from_secs(3)).await;
                writer.write_all(piece).await.unwrap();
            }
        });
        let partial = write_partial(
            reader,
            &path,
            &config(),
            &CancellationToken::new(),
            never(),
            |_| {},
        )
        .await
        .unwrap();
        feeder.await.unwrap();
        assert_eq!(partial.counts.regular_files, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn stops_at_the_end_of_archive_without_waiting_for_eof() {
        let stream = tar_of(source().path());
        let out = tempfile::tempdir().unwrap();
        let path = out.path().join("eoa.tar.gz");
        let (mut writer, reader) = tokio::io::duplex(64 * 1024);
        let feeder = tokio::spawn(async move {
            writer.write_all(&stream).await.unwrap();
            // The producer stays alive (as the helper's shell does until told to exit).
            tokio::time::sleep(Duration::from_hours(1)).await;
            drop(writer);
        });
        let partial = write_partial(
            reader,
            &path,
            &config(),
            &CancellationToken::new(),
            never(),
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!(partial.counts.regular_files, 2);
        feeder.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_producer_that_exited_mid_archive_ends_the_stream_as_truncated() {
        let stream = tar_of(source().path());
        let out = tempfile::tempdir().unwrap();
        let path = out.path().join("x.tar.gz");
        let (mut writer, reader) = tokio::io::duplex(64 * 1024);
        let feeder = tokio::spawn(async move {
            writer.write_all(&stream[..300_000]).await.unwrap();
            tokio::time::sleep(Duration::from_hours(1)).await;
            drop(writer);
        });
        let exited = tokio::time::sleep(Duration::from_secs(1));
        let started = tokio::time::Instant::now();
        let err = write_partial(
            reader,
            &path,
            &config(),
            &CancellationToken::new(),
            exited,
            |_| {},
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, StreamError::Tar(TarError::Truncated(_))),
            "{err}"
        );
        // Ended by the drain grace, not by the 5 s stall timeout.
        assert!(started.elapsed() < Duration::from_secs(4));
        assert!(!partial_path_of(&path).exists());
        feeder.abort();
    }

    #[tokio::test]
    async fn compression_failures_name_their_step() {
        let path = Path::new("/d/a.tar.gz.partial");
        let panicked = tokio::task::spawn_blocking(|| panic!("boom"))
            .await
            .unwrap_err();
        let err = StreamError::compress(
            path,
            PgzipError::Worker {
                block: 3,
                source: panicked,
            },
        );
        assert!(matches!(err, StreamError::Compress(_)), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("compressing the archive failed: the compression worker of block 3"),
            "{err}"
        );
        let err = StreamError::compress(path, PgzipError::Write(io::Error::other("full")));
        assert_eq!(err.to_string(), "writing /d/a.tar.gz.partial failed: full");
    }

    #[tokio::test]
    async fn cancel_stops_and_cleans_up() {
        let out = tempfile::tempdir().unwrap();
        let path = out.path().join("c.tar.gz");
        let (_writer, reader) = tokio::io::duplex(1024);
        let cancel = CancellationToken::new();
        cancel.cancel();
        let err = write_partial(reader, &path, &config(), &cancel, never(), |_| {})
            .await
            .unwrap_err();
        assert!(matches!(err, StreamError::Cancelled));
        assert!(!partial_path_of(&path).exists());
    }

    #[tokio::test]
    async fn dropping_an_uncommitted_archive_removes_it() {
        let stream = tar_of(source().path());
        let out = tempfile::tempdir().unwrap();
        let path = out.path().join("d.tar.gz");
        let partial = write_partial(
            &stream[..],
            &path,
            &config(),
            &CancellationToken::new(),
            never(),
            |_| {},
        )
        .await
        .unwrap();
        let partial_path = partial.partial_path().to_owned();
        assert!(partial_path.exists());
        drop(partial);
        assert!(!partial_path.exists());
    }

    #[tokio::test]
    async fn commit_refuses_to_replace_an_archive() {
        let stream = tar_of(source().path());
        let out = tempfile::tempdir().unwrap();
        let path = out.path().join("e.tar.gz");
        std::fs::write(&path, b"existing").unwrap();
        let partial = write_partial(
            &stream[..],
            &path,
            &config(),
            &CancellationToken::new(),
            never(),
            |_| {},
        )
        .await
        .unwrap();
        let err = partial.commit().await.unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"existing");
        assert!(!partial_path_of(&path).exists());
    }
}
