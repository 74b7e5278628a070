//! FTPS (explicit TLS: AUTH TLS, PBSZ 0, PROT P, extended passive mode) with suppaftp over
//! tokio-rustls. Control and data connections share one rustls configuration, so data connections
//! resume the control connection's TLS session, as servers with `require_ssl_reuse` demand.
//! Uploads go to `<file>.partial`, renamed on commit after checking that the target is absent.
//! Plain FTP only with `insecure_plain_ftp: true`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use suppaftp::tokio::{AsyncRustlsConnector, AsyncRustlsFtpStream, AsyncRustlsStream};
use suppaftp::types::FileType;
use suppaftp::{FtpError, Mode, Status};

use super::config::FtpsConfig;
use super::error::{Origin, Step};
use super::retry::{
    Attempt, DEFAULT_RETRY, RetryPolicy, after_attempts, io_error_is_transient, with_retries,
};
use super::secret::SecretRef;
use super::{DestinationError, ObjectInfo, ObjectReader, tls};

/// Deadline of connect + TLS + login.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

type Transfer = suppaftp::tokio::TransferStream<AsyncRustlsStream>;

#[derive(Clone)]
pub struct FtpsDestination {
    inner: Arc<Inner>,
}

struct Inner {
    origin: Origin,
    host: String,
    port: u16,
    user: String,
    password: SecretRef,
    path: String,
    ca_file: Option<PathBuf>,
    /// `None` for plain FTP.
    tls: Option<Arc<rustls::ClientConfig>>,
    retry: RetryPolicy,
}

impl std::fmt::Debug for FtpsDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FtpsDestination")
            .field("name", &self.inner.origin.destination)
            .field("server", &self.inner.origin.server)
            .field("user", &self.inner.user)
            .field("password", &self.inner.password)
            .field("path", &self.inner.path)
            .field("tls", &self.inner.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl FtpsDestination {
    pub fn new(name: String, config: &FtpsConfig) -> Result<Self, DestinationError> {
        let tls = if config.insecure_plain_ftp {
            tracing::warn!(
                destination = %name,
                "plain FTP: the password and the archives cross the network in clear text"
            );
            None
        } else {
            Some(
                tls::client_config(config.ca_file.as_deref()).map_err(|message| {
                    DestinationError::Config {
                        origin: format!("destination {name}"),
                        message,
                    }
                })?,
            )
        };
        let server = if config.port == 21 {
            config.host.clone()
        } else {
            format!("{}:{}", config.host, config.port)
        };
        Ok(Self {
            inner: Arc::new(Inner {
                origin: Origin {
                    destination: name,
                    server,
                },
                host: config.host.clone(),
                port: config.port,
                user: config.user.clone(),
                password: config.password.clone(),
                path: config.path.clone(),
                ca_file: config.ca_file.clone(),
                tls,
                retry: DEFAULT_RETRY,
            }),
        })
    }

    pub fn name(&self) -> &str {
        &self.inner.origin.destination
    }

    pub fn uri(&self, key: &str) -> String {
        let path = self.inner.remote(key);
        let separator = if path.starts_with('/') { "" } else { "/" };
        let scheme = if self.inner.tls.is_some() {
            "ftps"
        } else {
            "ftp"
        };
        format!("{scheme}://{}{separator}{path}", self.inner.origin.server)
    }

    /// Connects, secures the control connection and logs in, then quits.
    pub async fn connect(&self) -> Result<(), DestinationError> {
        let mut ftp = self.inner.connect().await?;
        let _ = ftp.quit().await;
        Ok(())
    }

    pub async fn begin_upload(&self, key: &str) -> Result<FtpsUpload, DestinationError> {
        let inner = &self.inner;
        let mut ftp = inner.connect().await?;
        let target = inner.remote(key);
        let temp = format!("{target}.partial");
        let upload_error = |e: FtpError| inner.origin.on(Step::Upload, key, describe(&e, &temp));
        if let Some((dir, _)) = target.rsplit_once('/') {
            create_dirs(&mut ftp, dir)
                .await
                .map_err(|e| inner.origin.on(Step::Upload, key, e))?;
        }
        let transfer = ftp.put_with_stream(&temp).await.map_err(upload_error)?;
        Ok(FtpsUpload {
            origin: inner.origin.clone(),
            key: key.to_owned(),
            temp,
            target,
            ftp: Some(ftp),
            transfer: Some(transfer),
        })
    }

    pub async fn open_read(&self, key: &str) -> Result<ObjectReader, DestinationError> {
        let inner = &self.inner;
        let mut ftp = inner.connect().await?;
        let path = inner.remote(key);
        let size = match ftp.size(&path).await {
            Ok(size) => Some(size as u64),
            Err(e) if is_missing(&e) => return Err(inner.origin.not_found(key)),
            Err(_) => None,
        };
        let transfer = ftp.retr_as_stream(&path).await.map_err(|e| {
            if is_missing(&e) {
                inner.origin.not_found(key)
            } else {
                inner.origin.on(Step::Read, key, describe(&e, &path))
            }
        })?;
        // The control connection stays open while the data connection is read.
        Ok(ObjectReader::holding(size, transfer, ftp))
    }

    pub async fn delete(&self, key: &str) -> Result<(), DestinationError> {
        let inner = &self.inner;
        let mut ftp = inner.connect().await?;
        let path = inner.remote(key);
        let result = ftp.rm(&path).await.map_err(|e| {
            if is_missing(&e) {
                inner.origin.not_found(key)
            } else {
                inner.origin.on(Step::Delete, key, describe(&e, &path))
            }
        });
        let _ = ftp.quit().await;
        result
    }

    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, DestinationError> {
        let inner = &self.inner;
        let mut ftp = inner.connect().await?;
        let mut found = Vec::new();
        let mut pending = vec![prefix.to_owned()];
        while let Some(relative) = pending.pop() {
            let dir = inner.remote(&relative);
            let dir = if dir.is_empty() { ".".to_owned() } else { dir };
            // NLST and SIZE, as every server has them (vsftpd has no MLSD): a name whose SIZE
            // fails is taken for a directory and listed in turn.
            let names = match ftp.nlst(Some(&dir)).await {
                Ok(names) => names,
                Err(e) if is_missing(&e) => continue,
                Err(e) => return Err(inner.origin.on(Step::List, prefix, describe(&e, &dir))),
            };
            for line in names {
                let name = line.trim_end_matches(['\r', '\n']);
                let name = name.rsplit('/').next().unwrap_or(name).to_owned();
                if name.is_empty() || name == "." || name == ".." {
                    continue;
                }
                let key = if relative.is_empty() {
                    name.clone()
                } else {
                    format!("{relative}/{name}")
                };
                match ftp.size(&inner.remote(&key)).await {
                    Ok(size) => found.push(ObjectInfo {
                        key,
                        size: Some(size as u64),
                    }),
                    Err(_) => pending.push(key),
                }
            }
        }
        let _ = ftp.quit().await;
        Ok(found)
    }
}

impl Inner {
    fn remote(&self, key: &str) -> String {
        super::remote_path(&self.path, key)
    }

    /// Connects (retrying transient network failures), secures the control connection, logs in
    /// and selects binary, extended passive transfers.
    async fn connect(&self) -> Result<AsyncRustlsFtpStream, DestinationError> {
        let origin = &self.origin;
        let password = self
            .password
            .resolve()
            .map_err(|e| origin.secret(format!("FTP password: {e}")))?;
        let result = with_retries(self.retry, || async {
            let attempt = async {
                let address = resolve(&self.host, self.port).await?;
                let mut ftp = AsyncRustlsFtpStream::connect_timeout(address, CONNECT_TIMEOUT)
                    .await
                    .map_err(classify)?;
                if let Some(config) = &self.tls {
                    let connector = AsyncRustlsConnector::from(tokio_rustls::TlsConnector::from(
                        Arc::clone(config),
                    ));
                    ftp = ftp
                        .into_secure(connector, &self.host)
                        .await
                        .map_err(|e| match e {
                            FtpError::SecureError(text)
                                if text.contains("invalid peer certificate") =>
                            {
                                Attempt::Permanent(Failure::Certificate(text))
                            }
                            FtpError::UnexpectedResponse(response) => {
                                Attempt::Permanent(Failure::Refused(format!(
                                    "the server refused AUTH TLS ({}): enable explicit TLS on the \
                                     server, or (on a trusted network only) set insecure_plain_ftp",
                                    response_text(&response)
                                )))
                            }
                            other => classify(other),
                        })?;
                }
                ftp.login(self.user.as_str(), password.expose())
                    .await
                    .map_err(|e| match e {
                        FtpError::UnexpectedResponse(response) => {
                            Attempt::Permanent(Failure::Login(response_text(&response)))
                        }
                        other => classify(other),
                    })?;
                ftp.transfer_type(FileType::Binary)
                    .await
                    .map_err(classify)?;
                ftp.set_mode(Mode::ExtendedPassive);
                Ok(ftp)
            };
            match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
                Ok(result) => result,
                Err(_) => Err(Attempt::Transient(Failure::Network(format!(
                    "no answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )))),
            }
        })
        .await;
        result.map_err(|(failure, attempts)| match failure {
            Failure::Certificate(text) => {
                let advice = match &self.ca_file {
                    Some(path) => format!(
                        "check that ca_file {} holds the CA that signed the server's certificate, \
                         and that the certificate names {}",
                        path.display(),
                        self.host
                    ),
                    None => "set ca_file to the CA bundle that signed the server's certificate"
                        .to_owned(),
                };
                origin.verify_server(format!("{text}: {advice}"))
            }
            Failure::Login(text) => origin.authenticate(format!(
                "login as {} refused ({text}): check the user and the password reference",
                self.user
            )),
            Failure::Refused(text) => origin.connect(text),
            Failure::Network(text) => origin.connect(after_attempts(
                format!("{text}: check host, port, the network and that the FTP server is running"),
                attempts,
            )),
        })
    }
}

/// Why a connection attempt failed.
#[derive(Debug)]
enum Failure {
    Network(String),
    Certificate(String),
    Login(String),
    Refused(String),
}

fn classify(error: FtpError) -> Attempt<Failure> {
    match error {
        FtpError::ConnectionError(io) if io_error_is_transient(&io) => {
            Attempt::Transient(Failure::Network(io.to_string()))
        }
        FtpError::ConnectionError(io) => Attempt::Permanent(Failure::Network(io.to_string())),
        FtpError::UnexpectedResponse(response)
            if matches!(response.status.code(), 421 | 425 | 426 | 450 | 451) =>
        {
            Attempt::Transient(Failure::Network(response_text(&response)))
        }
        other => Attempt::Permanent(Failure::Refused(other.to_string())),
    }
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, Attempt<Failure>> {
    let mut addresses = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| Attempt::Transient(Failure::Network(format!("cannot resolve {host}: {e}"))))?;
    addresses
        .next()
        .ok_or_else(|| Attempt::Permanent(Failure::Network(format!("{host} has no address"))))
}

fn response_text(response: &suppaftp::types::Response) -> String {
    format!(
        "{} {}",
        response.status.code(),
        String::from_utf8_lossy(&response.body).trim()
    )
}

fn is_missing(error: &FtpError) -> bool {
    matches!(error, FtpError::UnexpectedResponse(r) if r.status == Status::FileUnavailable)
}

fn describe(error: &FtpError, path: &str) -> String {
    match error {
        FtpError::UnexpectedResponse(response) => {
            format!("{path}: the server answered {}", response_text(response))
        }
        other => format!("{path}: {other}"),
    }
}

/// `mkdir -p` over FTP (MKD of each missing level).
async fn create_dirs(ftp: &mut AsyncRustlsFtpStream, dir: &str) -> Result<(), String> {
    let here = ftp.pwd().await.map_err(|e| describe(&e, "."))?;
    for path in super::dir_prefixes(dir) {
        if let Err(error) = ftp.mkdir(&path).await {
            // 550 when it exists already: fine if it is a directory we can enter.
            if ftp.cwd(&path).await.is_err() {
                return Err(describe(&error, &path));
            }
            ftp.cwd(&here).await.map_err(|e| describe(&e, &here))?;
        }
    }
    Ok(())
}

/// An upload to `<target>.partial`, renamed on commit, removed on abort or drop.
pub struct FtpsUpload {
    origin: Origin,
    key: String,
    temp: String,
    target: String,
    /// `None` once committed or aborted.
    ftp: Option<AsyncRustlsFtpStream>,
    transfer: Option<Transfer>,
}

impl std::fmt::Debug for FtpsUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FtpsUpload")
            .field("key", &self.key)
            .field("temp", &self.temp)
            .finish_non_exhaustive()
    }
}

impl FtpsUpload {
    pub async fn commit(mut self) -> Result<String, DestinationError> {
        let (Some(mut ftp), Some(transfer)) = (self.ftp.take(), self.transfer.take()) else {
            return Err(self
                .origin
                .on(Step::Commit, &self.key, "the upload was already finished"));
        };
        let result = async {
            transfer
                .finish()
                .await
                .map_err(|e| describe(&e, &self.temp))?;
            // RNTO replaces an existing file on most servers: refuse when the target exists.
            if ftp.size(&self.target).await.is_ok() {
                return Err(format!(
                    "{} already exists: it is never replaced",
                    self.target
                ));
            }
            ftp.rename(&self.temp, &self.target)
                .await
                .map_err(|e| describe(&e, &self.target))
        }
        .await;
        match result {
            Ok(()) => {
                let _ = ftp.quit().await;
                Ok(std::mem::take(&mut self.key))
            }
            Err(message) => {
                let _ = ftp.rm(&self.temp).await;
                let _ = ftp.quit().await;
                let message = super::nothing_stored(&message, &self.origin.server);
                Err(self.origin.on(Step::Commit, &self.key, message))
            }
        }
    }

    pub async fn abort(mut self) -> Result<(), DestinationError> {
        let (Some(ftp), transfer) = (self.ftp.take(), self.transfer.take()) else {
            return Ok(());
        };
        remove_temp(ftp, transfer, &self.temp)
            .await
            .map_err(|message| self.origin.on(Step::Abort, &self.key, message))
    }
}

/// Ends the transfer (without completing it) and removes the temporary file.
async fn remove_temp(
    mut ftp: AsyncRustlsFtpStream,
    transfer: Option<Transfer>,
    temp: &str,
) -> Result<(), String> {
    if let Some(transfer) = transfer {
        // Dropping the data connection ends the STOR; its reply is drained by the next command.
        drop(transfer);
    }
    let result = match ftp.rm(temp).await {
        Ok(()) => Ok(()),
        Err(e) if is_missing(&e) => Ok(()),
        Err(e) => Err(describe(&e, temp)),
    };
    let _ = ftp.quit().await;
    result
}

impl Drop for FtpsUpload {
    fn drop(&mut self) {
        let Some(ftp) = self.ftp.take() else {
            return;
        };
        let transfer = self.transfer.take();
        let temp = std::mem::take(&mut self.temp);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(error) = remove_temp(ftp, transfer, &temp).await {
                    tracing::warn!(path = %temp, %error, "removing a dropped FTPS upload failed");
                }
            });
        }
    }
}

super::write_into_open_writer!(FtpsUpload, transfer);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_and_debug_never_show_the_password() {
        let d = FtpsDestination::new(
            "ftp".into(),
            &FtpsConfig {
                host: "ftp.example".into(),
                port: 2121,
                user: "u".into(),
                password: SecretRef::Env("NKVM_FTP_PASSWORD".into()),
                path: "/archives".into(),
                ca_file: None,
                insecure_plain_ftp: false,
            },
        )
        .unwrap();
        assert_eq!(d.uri("ns/p/a"), "ftps://ftp.example:2121/archives/ns/p/a");
        let debug = format!("{d:?}");
        assert!(
            debug.contains("environment variable NKVM_FTP_PASSWORD"),
            "{debug}"
        );
    }
}
