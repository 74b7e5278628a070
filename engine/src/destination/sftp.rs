//! SFTP over SSH (russh + russh-sftp, pure Rust): key authentication, the server's host key must
//! match a pinned `known_hosts` entry (no trust on first use), uploads to `<file>.partial` then
//! renamed (SFTP rename never replaces an existing file).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client;
use russh::keys::{Algorithm, HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh_sftp::client::SftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::fs::File;
use russh_sftp::protocol::StatusCode;
use tokio::io::AsyncWriteExt as _;

use super::config::SftpConfig;
use super::error::{Origin, Step};
use super::known_hosts::{HostKeyVerdict, KnownHosts, fingerprint};
use super::retry::{Attempt, DEFAULT_RETRY, RetryPolicy, after_attempts, with_retries};
use super::{DestinationError, ObjectInfo, ObjectReader};

/// Deadline of TCP connect + SSH handshake + authentication.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline of one SFTP request.
const REQUEST_TIMEOUT_SECS: u64 = 60;

#[derive(Debug, Clone)]
pub struct SftpDestination {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    origin: Origin,
    host: String,
    port: u16,
    user: String,
    path: String,
    private_key_file: PathBuf,
    known_hosts_file: PathBuf,
    retry: RetryPolicy,
}

/// One authenticated SFTP session; the SSH connection lives as long as it.
struct Session {
    sftp: SftpSession,
    _ssh: client::Handle<HostKeyCheck>,
}

/// Accepts the server only when its key is pinned in `known_hosts`; records why not otherwise.
struct HostKeyCheck {
    known: KnownHosts,
    host: String,
    port: u16,
    refusal: Arc<Mutex<Option<String>>>,
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        presented: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = presented else {
            *self
                .refusal
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(
                "the server presented a host certificate; pin its plain host key in \
                 known_hosts_file instead"
                    .to_owned(),
            );
            return Ok(false);
        };
        let seen = fingerprint(key);
        let advice = format!(
            "if the key is right, add it to known_hosts_file after checking it out of band: \
             `ssh-keyscan -p {port} {host}` and compare with `ssh-keygen -lf` on the server",
            port = self.port,
            host = self.host
        );
        let refusal = match self.known.verify(&self.host, self.port, key) {
            HostKeyVerdict::Trusted => return Ok(true),
            HostKeyVerdict::Unknown => format!(
                "the server presented host key {seen}, and known_hosts_file has no entry for \
                 this host (no trust on first use): {advice}"
            ),
            HostKeyVerdict::Mismatch { known } => format!(
                "HOST KEY MISMATCH: the server presented {seen}, but known_hosts_file pins {}. \
                 Someone may be intercepting the connection, or the host key was changed: \
                 {advice}, then replace the old entry",
                known.join(", ")
            ),
            HostKeyVerdict::Revoked { line } => format!(
                "the server presented {seen}, which line {line} of known_hosts_file marks \
                 @revoked"
            ),
        };
        *self
            .refusal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(refusal);
        Ok(false)
    }
}

impl SftpDestination {
    pub fn new(name: String, config: &SftpConfig) -> Self {
        let server = if config.port == 22 {
            config.host.clone()
        } else {
            format!("{}:{}", config.host, config.port)
        };
        Self {
            inner: Arc::new(Inner {
                origin: Origin {
                    destination: name,
                    server,
                },
                host: config.host.clone(),
                port: config.port,
                user: config.user.clone(),
                path: config.path.clone(),
                private_key_file: config.private_key_file.clone(),
                known_hosts_file: config.known_hosts_file.clone(),
                retry: DEFAULT_RETRY,
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.inner.origin.destination
    }

    pub fn uri(&self, key: &str) -> String {
        super::remote_uri("sftp", &self.inner.origin.server, &self.inner.remote(key))
    }

    /// Connects, checks the host key, authenticates and opens the SFTP subsystem, then closes.
    pub async fn connect(&self) -> Result<(), DestinationError> {
        self.inner.connect().await.map(drop)
    }

    pub async fn begin_upload(&self, key: &str) -> Result<SftpUpload, DestinationError> {
        let session = Arc::new(self.inner.connect().await?);
        let inner = &self.inner;
        let target = inner.remote(key);
        let temp = format!("{target}.partial");
        if let Some((dir, _)) = target.rsplit_once('/') {
            create_dirs(&session.sftp, dir)
                .await
                .map_err(|e| inner.origin.on(Step::Upload, key, e))?;
        }
        let file = session
            .sftp
            .create(temp.clone())
            .await
            .map_err(|e| inner.origin.on(Step::Upload, key, describe(&e, &temp)))?;
        Ok(SftpUpload {
            origin: inner.origin.clone(),
            key: key.to_owned(),
            temp,
            target,
            file: Some(file),
            session,
            finished: false,
        })
    }

    pub async fn open_read(&self, key: &str) -> Result<ObjectReader, DestinationError> {
        let session = Arc::new(self.inner.connect().await?);
        let path = self.inner.remote(key);
        let file = session.sftp.open(path.clone()).await.map_err(|e| {
            if is_missing(&e) {
                self.inner.origin.not_found(key)
            } else {
                self.inner.origin.on(Step::Read, key, describe(&e, &path))
            }
        })?;
        let size = file.metadata().await.ok().and_then(|m| m.size);
        Ok(ObjectReader::holding(size, file, session))
    }

    pub async fn delete(&self, key: &str) -> Result<(), DestinationError> {
        let session = self.inner.connect().await?;
        let path = self.inner.remote(key);
        session.sftp.remove_file(path.clone()).await.map_err(|e| {
            if is_missing(&e) {
                self.inner.origin.not_found(key)
            } else {
                self.inner.origin.on(Step::Delete, key, describe(&e, &path))
            }
        })
    }

    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, DestinationError> {
        let session = self.inner.connect().await?;
        let mut found = Vec::new();
        let mut pending = vec![prefix.to_owned()];
        while let Some(relative) = pending.pop() {
            let dir = self.inner.remote(&relative);
            let dir = if dir.is_empty() { ".".to_owned() } else { dir };
            let entries = match session.sftp.read_dir(dir.clone()).await {
                Ok(entries) => entries,
                Err(e) if is_missing(&e) => continue,
                Err(e) => return Err(self.inner.origin.on(Step::List, prefix, describe(&e, &dir))),
            };
            for entry in entries {
                let name = entry.file_name();
                if name == "." || name == ".." {
                    continue;
                }
                let key = if relative.is_empty() {
                    name
                } else {
                    format!("{relative}/{name}")
                };
                let metadata = entry.metadata();
                if metadata.is_dir() {
                    pending.push(key);
                } else if metadata.is_regular() {
                    found.push(ObjectInfo {
                        key,
                        size: metadata.size,
                    });
                }
            }
        }
        Ok(found)
    }
}

impl Inner {
    fn remote(&self, key: &str) -> String {
        super::remote_path(&self.path, key)
    }

    /// Connects (retrying transient network failures), checks the host key, authenticates and
    /// opens the SFTP subsystem.
    #[allow(
        clippy::too_many_lines,
        reason = "one linear handshake, each step with its own refusal"
    )]
    async fn connect(&self) -> Result<Session, DestinationError> {
        let origin = &self.origin;
        let known =
            KnownHosts::load(&self.known_hosts_file).map_err(|e| origin.verify_server(e))?;
        let key = russh::keys::load_secret_key(&self.private_key_file, None).map_err(|e| {
            origin.secret(format!(
                "cannot load private_key_file {}: {e}: it must be an unencrypted OpenSSH or PEM \
                 private key readable by nkvm",
                self.private_key_file.display()
            ))
        })?;
        let key = Arc::new(key);
        let mut preferred = russh::Preferred::default();
        let mut algorithms: Vec<Algorithm> = Vec::new();
        for algorithm in known.algorithms_for(&self.host, self.port) {
            if matches!(algorithm, Algorithm::Rsa { .. }) {
                algorithms.push(Algorithm::Rsa {
                    hash: Some(HashAlg::Sha512),
                });
                algorithms.push(Algorithm::Rsa {
                    hash: Some(HashAlg::Sha256),
                });
            } else {
                algorithms.push(algorithm);
            }
        }
        for algorithm in preferred.key.iter() {
            if !algorithms.contains(algorithm) {
                algorithms.push(algorithm.clone());
            }
        }
        preferred.key = algorithms.into();
        let config = Arc::new(client::Config {
            preferred,
            keepalive_interval: Some(Duration::from_secs(15)),
            keepalive_max: 3,
            nodelay: true,
            ..client::Config::default()
        });
        let refusal = Arc::new(Mutex::new(None::<String>));
        let address = (self.host.clone(), self.port);
        let handle = with_retries(self.retry, || {
            let check = HostKeyCheck {
                known: known.clone(),
                host: self.host.clone(),
                port: self.port,
                refusal: Arc::clone(&refusal),
            };
            let config = Arc::clone(&config);
            let address = address.clone();
            async move {
                match tokio::time::timeout(CONNECT_TIMEOUT, client::connect(config, address, check))
                    .await
                {
                    Err(_) => Err(Attempt::Transient(format!(
                        "no SSH handshake within {} s",
                        CONNECT_TIMEOUT.as_secs()
                    ))),
                    Ok(Ok(handle)) => Ok(handle),
                    Ok(Err(russh::Error::UnknownKey)) => Err(Attempt::Permanent(String::new())),
                    Ok(Err(russh::Error::IO(e))) if super::retry::io_error_is_transient(&e) => {
                        Err(Attempt::Transient(e.to_string()))
                    }
                    Ok(Err(russh::Error::Disconnect | russh::Error::ConnectionTimeout)) => Err(
                        Attempt::Transient("the server closed the connection".to_owned()),
                    ),
                    Ok(Err(e)) => Err(Attempt::Permanent(e.to_string())),
                }
            }
        })
        .await;
        let mut handle = match handle {
            Ok(handle) => handle,
            Err((message, attempts)) => {
                if let Some(refusal) = refusal
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take()
                {
                    return Err(origin.verify_server(refusal));
                }
                return Err(origin.connect(after_attempts(
                    format!("{message}: check host, port, the network and that sshd is running"),
                    attempts,
                )));
            }
        };
        let hash = if key.algorithm().is_rsa() {
            handle
                .best_supported_rsa_hash()
                .await
                .ok()
                .flatten()
                .flatten()
        } else {
            None
        };
        let auth = tokio::time::timeout(
            CONNECT_TIMEOUT,
            handle.authenticate_publickey(self.user.clone(), PrivateKeyWithHashAlg::new(key, hash)),
        )
        .await
        .map_err(|_| origin.authenticate("no answer to the authentication in time"))?
        .map_err(|e| origin.authenticate(e.to_string()))?;
        if !auth.success() {
            return Err(origin.authenticate(format!(
                "user {} was refused with private_key_file {}: add its public key to the user's \
                 authorized_keys on the server, and check the user name",
                self.user,
                self.private_key_file.display()
            )));
        }
        let channel = handle
            .channel_open_session()
            .await
            .map_err(|e| origin.connect(format!("cannot open an SSH session channel: {e}")))?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|e| origin.connect(format!("the server refused the sftp subsystem: {e}")))?;
        let sftp = SftpSession::new(channel.into_stream()).await.map_err(|e| {
            origin.connect(format!(
                "the SFTP subsystem did not start ({e}): enable `Subsystem sftp` in sshd_config"
            ))
        })?;
        sftp.set_timeout(REQUEST_TIMEOUT_SECS);
        Ok(Session { sftp, _ssh: handle })
    }
}

/// `mkdir -p` over SFTP.
async fn create_dirs(sftp: &SftpSession, dir: &str) -> Result<(), String> {
    for path in super::dir_prefixes(dir) {
        match sftp.metadata(path.clone()).await {
            Ok(meta) if meta.is_dir() => continue,
            Ok(_) => return Err(format!("{path} exists and is not a directory")),
            Err(e) if is_missing(&e) => {}
            Err(e) => return Err(describe(&e, &path)),
        }
        if let Err(e) = sftp.create_dir(path.clone()).await {
            // Another upload may have created it meanwhile.
            if !matches!(sftp.metadata(path.clone()).await, Ok(meta) if meta.is_dir()) {
                return Err(describe(&e, &path));
            }
        }
    }
    Ok(())
}

fn is_missing(error: &SftpError) -> bool {
    matches!(error, SftpError::Status(status) if status.status_code == StatusCode::NoSuchFile)
}

fn describe(error: &SftpError, path: &str) -> String {
    match error {
        SftpError::Status(status) if status.status_code == StatusCode::PermissionDenied => {
            format!("{path}: permission denied: let the SFTP user write there, or fix `path`")
        }
        SftpError::Status(status) if status.status_code == StatusCode::NoSuchFile => {
            format!("{path}: no such file or directory")
        }
        other => format!("{path}: {other}"),
    }
}

/// An upload to `<target>.partial`, renamed on commit, removed on abort or drop.
pub struct SftpUpload {
    origin: Origin,
    key: String,
    temp: String,
    target: String,
    file: Option<File>,
    session: Arc<Session>,
    finished: bool,
}

impl std::fmt::Debug for SftpUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpUpload")
            .field("key", &self.key)
            .field("temp", &self.temp)
            .finish_non_exhaustive()
    }
}

impl SftpUpload {
    pub async fn commit(mut self) -> Result<String, DestinationError> {
        self.finished = true;
        let result = async {
            let mut file = self.file.take().ok_or("the upload was already finished")?;
            file.flush().await.map_err(|e| e.to_string())?;
            file.sync_all().await.map_err(|e| e.to_string())?;
            file.shutdown().await.map_err(|e| e.to_string())?;
            self.session
                .sftp
                .rename(self.temp.clone(), self.target.clone())
                .await
                .map_err(|e| {
                    if matches!(&e, SftpError::Status(s) if s.status_code == StatusCode::Failure) {
                        format!(
                            "renaming {} to {} failed ({e}): the target may already exist (it is \
                             never replaced)",
                            self.temp, self.target
                        )
                    } else {
                        describe(&e, &self.target)
                    }
                })
        }
        .await;
        match result {
            Ok(()) => Ok(std::mem::take(&mut self.key)),
            Err(message) => {
                let _ = self.session.sftp.remove_file(self.temp.clone()).await;
                let message = super::nothing_stored(&message, &self.origin.server);
                Err(self.origin.on(Step::Commit, &self.key, message))
            }
        }
    }

    pub async fn abort(mut self) -> Result<(), DestinationError> {
        self.finished = true;
        if let Some(mut file) = self.file.take() {
            let _ = file.shutdown().await;
        }
        match self.session.sftp.remove_file(self.temp.clone()).await {
            Ok(()) => Ok(()),
            Err(e) if is_missing(&e) => Ok(()),
            Err(e) => Err(self
                .origin
                .on(Step::Abort, &self.key, describe(&e, &self.temp))),
        }
    }
}

impl Drop for SftpUpload {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let file = self.file.take();
        let session = Arc::clone(&self.session);
        let temp = std::mem::take(&mut self.temp);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Some(mut file) = file {
                    let _ = file.shutdown().await;
                }
                if let Err(e) = session.sftp.remove_file(temp.clone()).await
                    && !is_missing(&e)
                {
                    tracing::warn!(path = %temp, error = %e, "removing a dropped SFTP upload failed");
                }
            });
        }
    }
}

super::write_into_open_writer!(SftpUpload, file);

#[cfg(test)]
mod tests {
    use super::*;

    fn destination(path: &str, port: u16) -> SftpDestination {
        SftpDestination::new(
            "nas".into(),
            &SftpConfig {
                host: "nas.example".into(),
                port,
                user: "u".into(),
                path: path.into(),
                private_key_file: "k".into(),
                known_hosts_file: "kh".into(),
            },
        )
    }

    #[test]
    fn remote_paths_and_uris() {
        let d = destination("/srv/backups/", 22);
        assert_eq!(
            d.inner.remote("ns/p/a.tar.gz"),
            "/srv/backups/ns/p/a.tar.gz"
        );
        assert_eq!(
            d.uri("ns/p/a.tar.gz"),
            "sftp://nas.example/srv/backups/ns/p/a.tar.gz"
        );
        let d = destination("archive", 2222);
        assert_eq!(d.inner.remote("a"), "archive/a");
        assert_eq!(d.uri("a"), "sftp://nas.example:2222/archive/a");
        let d = destination("", 22);
        assert_eq!(d.inner.remote("a"), "a");
        let d = destination("/", 22);
        assert_eq!(d.inner.remote("a"), "/a");
    }
}
