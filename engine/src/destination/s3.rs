//! S3-compatible object storage: requests signed by `rusty-s3` (presigned, so no secret ever goes
//! on the wire) and sent with hyper + rustls; streamed multipart uploads with bounded part
//! buffers (at most [`PARTS_IN_FLIGHT`] parts uploading while the next one fills), completed only
//! by `commit` and aborted otherwise, so no object appears under the final key before.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::TryStreamExt as _;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyDataStream, BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use tokio::io::AsyncWrite;
use tokio::task::JoinSet;

use super::config::{MAX_PART_SIZE, S3Config};
use super::error::{Origin, Step, chain};
use super::retry::{
    Attempt, DEFAULT_RETRY, RetryPolicy, after_attempts, http_status_is_transient, with_retries,
};
use super::secret::SecretRef;
use super::{DestinationError, ObjectInfo, ObjectReader, tls};

/// Parts uploading at the same time, besides the one being filled.
pub const PARTS_IN_FLIGHT: usize = 2;
/// S3's limit on parts per upload.
const MAX_PARTS: u64 = 10_000;
/// Deadline of one small request (create, complete, abort, list, delete, response headers).
const REQUEST_TIMEOUT: Duration = Duration::from_mins(1);
/// Deadline of one part upload.
const PART_TIMEOUT: Duration = Duration::from_mins(15);
/// Validity of a presigned request; it only has to be valid when the request starts.
const SIGNATURE_VALIDITY: Duration = Duration::from_hours(1);
/// Largest error or listing body read.
const MAX_SMALL_BODY: usize = 4 << 20;

/// The part size for an upload: the configured size, grown (in whole MiB) when `size_hint`
/// bytes would need more than 9,000 parts (10% headroom below S3's 10,000), at most 5 GiB.
#[must_use]
pub fn part_size_for(configured: u64, size_hint: Option<u64>) -> u64 {
    let needed = size_hint.map_or(0, |size| size.div_ceil(9_000).div_ceil(1 << 20) << 20);
    configured.max(needed).min(MAX_PART_SIZE)
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

#[derive(Clone)]
pub struct S3Destination {
    inner: Arc<Inner>,
}

struct Inner {
    origin: Origin,
    bucket: Bucket,
    prefix: String,
    access_key_id: SecretRef,
    secret_access_key: SecretRef,
    ca_file: Option<PathBuf>,
    part_size: u64,
    client: HttpClient,
    retry: RetryPolicy,
}

impl std::fmt::Debug for S3Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Destination")
            .field("name", &self.inner.origin.destination)
            .field("endpoint", &self.inner.origin.server)
            .field("bucket", &self.inner.bucket.name())
            .field("prefix", &self.inner.prefix)
            .field("access_key_id", &self.inner.access_key_id)
            .field("secret_access_key", &self.inner.secret_access_key)
            .field("part_size", &self.inner.part_size)
            .finish_non_exhaustive()
    }
}

/// A failed request, before it becomes a [`DestinationError`].
#[derive(Debug)]
enum Failure {
    /// The server answered with an error status (and S3 error code, when the body had one).
    Status {
        status: StatusCode,
        code: String,
        message: String,
    },
    /// No answer: connection, TLS or timeout.
    Transport { message: String, certificate: bool },
}

impl S3Destination {
    pub fn new(name: String, config: &S3Config) -> Result<Self, DestinationError> {
        let server = config.endpoint.as_str().trim_end_matches('/').to_owned();
        let origin = Origin {
            destination: name,
            server,
        };
        let config_error = |message: String| DestinationError::Config {
            origin: format!("destination {}", origin.destination),
            message,
        };
        let tls = tls::client_config(config.ca_file.as_deref()).map_err(config_error)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let style = if config.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(
            config.endpoint.clone(),
            style,
            config.bucket.clone(),
            config.region.clone(),
        )
        .map_err(|e| {
            config_error(format!(
                "bucket {:?} at {}: {e} (an IP address endpoint needs path_style: true)",
                config.bucket, config.endpoint
            ))
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                origin,
                bucket,
                prefix: config.prefix.clone(),
                access_key_id: config.access_key_id.clone(),
                secret_access_key: config.secret_access_key.clone(),
                ca_file: config.ca_file.clone(),
                part_size: config.part_size,
                client,
                retry: DEFAULT_RETRY,
            }),
        })
    }

    pub fn name(&self) -> &str {
        &self.inner.origin.destination
    }

    pub fn uri(&self, key: &str) -> String {
        format!(
            "s3://{}/{}",
            self.inner.bucket.name(),
            self.inner.object(key)
        )
    }

    pub async fn begin_upload(
        &self,
        key: &str,
        size_hint: Option<u64>,
    ) -> Result<S3Upload, DestinationError> {
        let inner = &self.inner;
        let credentials = inner.credentials()?;
        let object = inner.object(key);
        let response = inner
            .call_for(Step::Upload, key, true, || {
                request(
                    &inner
                        .bucket
                        .create_multipart_upload(Some(&credentials), &object),
                    Bytes::new(),
                )
            })
            .await?;
        let text = String::from_utf8_lossy(&response).into_owned();
        let created =
            rusty_s3::actions::CreateMultipartUpload::parse_response(&text).map_err(|e| {
                inner.origin.on(
                    Step::Upload,
                    key,
                    format!("unexpected answer to CreateMultipartUpload: {e}"),
                )
            })?;
        let part_size = part_size_for(inner.part_size, size_hint);
        Ok(S3Upload {
            shared: Arc::new(UploadShared {
                destination: self.clone(),
                key: key.to_owned(),
                object,
                upload_id: created.upload_id().to_owned(),
                credentials,
            }),
            part_size: usize::try_from(part_size).unwrap_or(usize::MAX),
            buffer: BytesMut::new(),
            next_part: 1,
            in_flight: JoinSet::new(),
            etags: BTreeMap::new(),
            failed: None,
            part_error: None,
            finished: false,
        })
    }

    /// One-request upload of a small object (atomic by S3's semantics).
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), DestinationError> {
        let inner = &self.inner;
        let credentials = inner.credentials()?;
        let object = inner.object(key);
        inner
            .call_for(Step::Upload, key, true, || {
                request(
                    &inner.bucket.put_object(Some(&credentials), &object),
                    bytes.clone(),
                )
            })
            .await?;
        Ok(())
    }

    pub async fn open_read(&self, key: &str) -> Result<ObjectReader, DestinationError> {
        let inner = &self.inner;
        let credentials = inner.credentials()?;
        let object = inner.object(key);
        let response = with_retries(inner.retry, || {
            let url = inner
                .bucket
                .get_object(Some(&credentials), &object)
                .sign(SIGNATURE_VALIDITY);
            inner.send(Method::GET, url, Bytes::new(), REQUEST_TIMEOUT)
        })
        .await
        .map_err(|(f, attempts)| inner.error_after(Step::Read, key, f, attempts, true))?;
        let size = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let stream = BodyDataStream::new(response.into_body()).map_err(io::Error::other);
        Ok(ObjectReader::new(
            size,
            tokio_util::io::StreamReader::new(stream),
        ))
    }

    pub async fn delete(&self, key: &str) -> Result<(), DestinationError> {
        let inner = &self.inner;
        let credentials = inner.credentials()?;
        let object = inner.object(key);
        // S3 answers 204 for a missing key too: look first, so retention learns what is gone.
        inner
            .call_for(Step::Delete, key, true, || {
                request(
                    &inner.bucket.head_object(Some(&credentials), &object),
                    Bytes::new(),
                )
            })
            .await?;
        inner
            .call_for(Step::Delete, key, true, || {
                request(
                    &inner.bucket.delete_object(Some(&credentials), &object),
                    Bytes::new(),
                )
            })
            .await?;
        Ok(())
    }

    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, DestinationError> {
        let inner = &self.inner;
        let credentials = inner.credentials()?;
        let full_prefix = inner.list_prefix(prefix);
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let body = inner
                .call_for(Step::List, prefix, true, || {
                    inner.list_objects(&credentials, &full_prefix, token.as_deref(), None)
                })
                .await?;
            let text = String::from_utf8_lossy(&body);
            let page = rusty_s3::actions::ListObjectsV2::parse_response(&text).map_err(|e| {
                inner.origin.on(
                    Step::List,
                    prefix,
                    format!("unexpected ListObjectsV2 answer: {e}"),
                )
            })?;
            for content in page.contents {
                if let Some(key) = inner.relative_key(&content.key) {
                    found.push(ObjectInfo {
                        key,
                        size: content.size,
                    });
                }
            }
            match page.next_continuation_token {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => break,
            }
        }
        Ok(found)
    }

    /// Connects and authenticates without writing: lists at most one key under the prefix, so a
    /// server that is down, untrusted, refuses the credentials or lacks the bucket fails here.
    pub async fn connect(&self) -> Result<(), DestinationError> {
        let inner = &self.inner;
        let credentials = inner.credentials()?;
        let full_prefix = inner.list_prefix("");
        inner
            .call_for(Step::List, "", true, || {
                inner.list_objects(&credentials, &full_prefix, None, Some(1))
            })
            .await?;
        Ok(())
    }
}

impl Inner {
    fn credentials(&self) -> Result<Credentials, DestinationError> {
        let key = self
            .access_key_id
            .resolve()
            .map_err(|e| self.origin.secret(format!("access key id: {e}")))?;
        let secret = self
            .secret_access_key
            .resolve()
            .map_err(|e| self.origin.secret(format!("secret access key: {e}")))?;
        Ok(Credentials::new(key.expose(), secret.expose()))
    }

    fn object(&self, key: &str) -> String {
        match (self.prefix.is_empty(), key.is_empty()) {
            (true, _) => key.to_owned(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}/{key}", self.prefix),
        }
    }

    /// The S3 prefix listing `prefix` (a key prefix ending at a `/` boundary).
    fn list_prefix(&self, prefix: &str) -> String {
        let object = self.object(prefix);
        if object.is_empty() {
            object
        } else {
            format!("{object}/")
        }
    }

    fn relative_key(&self, object: &str) -> Option<String> {
        if self.prefix.is_empty() {
            return Some(object.to_owned());
        }
        object
            .strip_prefix(&self.prefix)
            .and_then(|rest| rest.strip_prefix('/'))
            .map(str::to_owned)
    }

    /// One request: status 2xx or a classified failure. The URL is never part of an error (a
    /// presigned URL is a bearer credential until it expires).
    async fn send(
        &self,
        method: Method,
        url: url::Url,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Response<Incoming>, Attempt<Failure>> {
        let request = Request::builder()
            .method(method)
            .uri(url.as_str())
            .body(Full::new(body))
            .map_err(|e| {
                Attempt::Permanent(Failure::Transport {
                    message: format!("cannot build the request: {e}"),
                    certificate: false,
                })
            })?;
        let response = match tokio::time::timeout(timeout, self.client.request(request)).await {
            Err(_) => {
                return Err(Attempt::Transient(Failure::Transport {
                    message: format!("no answer within {} s", timeout.as_secs()),
                    certificate: false,
                }));
            }
            Ok(Err(error)) => {
                if let Some(tls) = tls::find_tls_error(&error) {
                    let certificate = tls::is_certificate_error(tls);
                    let message = tls::certificate_advice(tls, self.ca_file.as_deref());
                    return Err(Attempt::Permanent(Failure::Transport {
                        message,
                        certificate,
                    }));
                }
                return Err(Attempt::Transient(Failure::Transport {
                    message: chain(&error),
                    certificate: false,
                }));
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = read_small(response.into_body()).await.unwrap_or_default();
        let text = String::from_utf8_lossy(&body);
        let failure = Failure::Status {
            status,
            code: xml_values(&text, "Code")
                .into_iter()
                .next()
                .unwrap_or_default(),
            message: xml_values(&text, "Message")
                .into_iter()
                .next()
                .unwrap_or_default(),
        };
        if http_status_is_transient(status.as_u16()) {
            Err(Attempt::Transient(failure))
        } else {
            Err(Attempt::Permanent(failure))
        }
    }

    /// A request with retries whose whole (small) answer body is wanted. `request` builds the
    /// request anew for each attempt (fresh signature).
    async fn call(
        &self,
        request: impl Fn() -> (Method, url::Url, Bytes),
    ) -> Result<Bytes, (Failure, u32)> {
        with_retries(self.retry, || async {
            let (method, url, body) = request();
            let response = self.send(method, url, body, REQUEST_TIMEOUT).await?;
            let body = tokio::time::timeout(REQUEST_TIMEOUT, read_small(response.into_body()))
                .await
                .map_err(|_| {
                    Attempt::Transient(Failure::Transport {
                        message: "the answer's body did not arrive in time".to_owned(),
                        certificate: false,
                    })
                })?
                .map_err(|message| {
                    Attempt::Transient(Failure::Transport {
                        message,
                        certificate: false,
                    })
                })?;
            // CompleteMultipartUpload may fail after a 200 status: the error is in the body.
            if body.starts_with(b"<?xml") && memchr_error(&body) {
                let text = String::from_utf8_lossy(&body);
                return Err(Attempt::Transient(Failure::Status {
                    status: StatusCode::OK,
                    code: xml_values(&text, "Code")
                        .into_iter()
                        .next()
                        .unwrap_or_default(),
                    message: xml_values(&text, "Message")
                        .into_iter()
                        .next()
                        .unwrap_or_default(),
                }));
            }
            Ok(body)
        })
        .await
    }

    /// [`Inner::call`], its failure turned into the error of `step` on `key` (see
    /// [`Inner::error_after`]).
    async fn call_for(
        &self,
        step: Step,
        key: &str,
        connecting: bool,
        request: impl Fn() -> (Method, url::Url, Bytes),
    ) -> Result<Bytes, DestinationError> {
        self.call(request)
            .await
            .map_err(|f| self.error(step, key, f, connecting))
    }

    /// The `ListObjectsV2` request for the objects under `full_prefix` (from
    /// [`Inner::list_prefix`]), from the continuation `token` on, at most `max_keys` of them.
    fn list_objects(
        &self,
        credentials: &Credentials,
        full_prefix: &str,
        token: Option<&str>,
        max_keys: Option<usize>,
    ) -> (Method, url::Url, Bytes) {
        let mut action = self.bucket.list_objects_v2(Some(credentials));
        if !full_prefix.is_empty() {
            action.with_prefix(full_prefix);
        }
        if let Some(token) = token {
            action.with_continuation_token(token);
        }
        if let Some(max_keys) = max_keys {
            action.with_max_keys(max_keys);
        }
        request(&action, Bytes::new())
    }

    fn error(
        &self,
        step: Step,
        key: &str,
        (failure, attempts): (Failure, u32),
        connecting: bool,
    ) -> DestinationError {
        self.error_after(step, key, failure, attempts, connecting)
    }

    /// The error of a failed request: certificates → `VerifyServer`, credentials → `Authenticate`,
    /// no answer while connecting → `Connect`, anything else → the step's variant.
    fn error_after(
        &self,
        step: Step,
        key: &str,
        failure: Failure,
        attempts: u32,
        connecting: bool,
    ) -> DestinationError {
        let bucket = self.bucket.name();
        match failure {
            Failure::Transport {
                message,
                certificate: true,
            } => self.origin.verify_server(message),
            Failure::Transport { message, .. } if connecting => {
                self.origin.connect(after_attempts(
                    format!(
                        "{message}: check the endpoint, the network and that the server is running"
                    ),
                    attempts,
                ))
            }
            Failure::Transport { message, .. } => self.origin.on(
                step,
                key,
                after_attempts(
                    format!("{message}: the connection to {} failed", self.origin.server),
                    attempts,
                ),
            ),
            Failure::Status {
                status,
                code,
                message,
            } => {
                let answer = format!("HTTP {} {code} {message}", status.as_u16())
                    .trim_end()
                    .to_owned();
                match (status.as_u16(), code.as_str()) {
                    (404, "NoSuchKey" | "") if step == Step::Read || step == Step::Delete => {
                        self.origin.not_found(key)
                    }
                    (404, "NoSuchBucket") => self.origin.on(
                        step,
                        key,
                        format!(
                            "{answer}: bucket {bucket} does not exist at {}: create it or fix `bucket`",
                            self.origin.server
                        ),
                    ),
                    (401 | 403, _)
                    | (400, "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AuthorizationHeaderMalformed") => {
                        self.origin.authenticate(format!(
                            "{answer}: check the access key id and secret access key, the region, \
                             and that the key may read and write bucket {bucket}"
                        ))
                    }
                    _ => self.origin.on(step, key, after_attempts(answer, attempts)),
                }
            }
        }
    }
}

/// Reads a body of at most [`MAX_SMALL_BODY`] bytes.
/// The request of a rusty-s3 `action` (its method, its URL signed for [`SIGNATURE_VALIDITY`]) with
/// `body`.
pub(super) fn request<'a, A: S3Action<'a>>(action: &A, body: Bytes) -> (Method, url::Url, Bytes) {
    let method = match A::METHOD {
        rusty_s3::Method::Head => Method::HEAD,
        rusty_s3::Method::Get => Method::GET,
        rusty_s3::Method::Post => Method::POST,
        rusty_s3::Method::Put => Method::PUT,
        rusty_s3::Method::Delete => Method::DELETE,
    };
    (method, action.sign(SIGNATURE_VALIDITY), body)
}

async fn read_small(body: Incoming) -> Result<Bytes, String> {
    http_body_util::Limited::new(body, MAX_SMALL_BODY)
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .map_err(|e| format!("reading the answer failed: {e}"))
}

fn memchr_error(body: &[u8]) -> bool {
    body.windows(7).take(512).any(|w| w == b"<Error>")
}

/// The text inside every `<tag>…</tag>` (no nesting of the same tag), for the few S3 answers
/// rusty-s3 does not parse (errors, ListMultipartUploads).
fn xml_values(text: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut values = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        values.push(after[..end].to_owned());
        rest = &after[end + close.len()..];
    }
    values
}

fn xml_unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[path = "s3_upload.rs"]
mod upload;
pub use upload::S3Upload;
use upload::UploadShared;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes_grow_to_fit_ten_thousand_parts() {
        let mib = 1u64 << 20;
        assert_eq!(part_size_for(64 * mib, None), 64 * mib);
        assert_eq!(part_size_for(64 * mib, Some(100 * mib)), 64 * mib);
        // 4 TiB needs ~466 MiB parts to stay below 9,000 parts.
        let four_tib = 4u64 << 40;
        let size = part_size_for(64 * mib, Some(four_tib));
        assert_eq!(size % mib, 0);
        assert!(four_tib.div_ceil(size) <= 9_000, "{size}");
        assert!(four_tib.div_ceil(size - mib) > 9_000, "{size}");
        assert_eq!(part_size_for(64 * mib, Some(u64::MAX)), MAX_PART_SIZE);
    }

    #[test]
    fn xml_answers_are_read() {
        let text = "<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>The specified \
                    bucket does not exist</Message></Error>";
        assert_eq!(xml_values(text, "Code"), ["NoSuchBucket"]);
        assert!(memchr_error(text.as_bytes()));
        let uploads = "<ListMultipartUploadsResult><Upload><Key>p/a&amp;b</Key><UploadId>1</UploadId>\
                       </Upload><Upload><Key>p/c</Key></Upload></ListMultipartUploadsResult>";
        let keys: Vec<_> = xml_values(uploads, "Upload")
            .iter()
            .map(|u| xml_unescape(&xml_values(u, "Key")[0]))
            .collect();
        assert_eq!(keys, ["p/a&b", "p/c"]);
    }
}
