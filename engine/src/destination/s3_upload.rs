//! One S3 multipart upload as an `AsyncWrite`: fills a part buffer, uploads full parts in the
//! background (at most `PARTS_IN_FLIGHT` at once, each retried on transient failures), completes
//! on `commit`, aborts on `abort`, on any failure and — in the background — on drop; and the
//! unfinished multipart uploads of a bucket (listed and aborted by start-up recovery).

use super::*;

/// What the part tasks and the background abort need.
pub(super) struct UploadShared {
    pub destination: S3Destination,
    pub key: String,
    pub object: String,
    pub upload_id: String,
    pub credentials: Credentials,
}

type PartResult = Result<(u16, String), DestinationError>;

pub struct S3Upload {
    pub(super) shared: Arc<UploadShared>,
    pub(super) part_size: usize,
    /// The part being filled.
    pub(super) buffer: BytesMut,
    pub(super) next_part: u16,
    pub(super) in_flight: JoinSet<PartResult>,
    /// ETags of the finished parts, by part number.
    pub(super) etags: BTreeMap<u16, String>,
    /// The first failure; every later write reports it.
    pub(super) failed: Option<String>,
    /// The error of the first failed part, returned by `commit` as it is.
    pub(super) part_error: Option<DestinationError>,
    /// Completed or aborted: nothing to clean up on drop.
    pub(super) finished: bool,
}

impl std::fmt::Debug for S3Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Upload")
            .field("key", &self.shared.key)
            .field("part_size", &self.part_size)
            .field("next_part", &self.next_part)
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

impl UploadShared {
    fn inner(&self) -> &Inner {
        &self.destination.inner
    }

    async fn upload_part(self: Arc<Self>, number: u16, body: Bytes) -> PartResult {
        let inner = self.inner();
        let response = with_retries(inner.retry, || {
            let url = inner
                .bucket
                .upload_part(
                    Some(&self.credentials),
                    &self.object,
                    number,
                    &self.upload_id,
                )
                .sign(SIGNATURE_VALIDITY);
            inner.send(Method::PUT, url, body.clone(), PART_TIMEOUT)
        })
        .await
        .map_err(|(f, attempts)| inner.error_after(Step::Upload, &self.key, f, attempts, false))?;
        let etag = response
            .headers()
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| {
                inner.origin.on(
                    Step::Upload,
                    &self.key,
                    format!("the server sent no ETag for part {number}"),
                )
            })?;
        Ok((number, etag))
    }

    async fn complete(&self, etags: &BTreeMap<u16, String>) -> Result<(), DestinationError> {
        let inner = self.inner();
        let body = {
            let action = inner.bucket.complete_multipart_upload(
                Some(&self.credentials),
                &self.object,
                &self.upload_id,
                etags.values().map(String::as_str),
            );
            Bytes::from(action.body())
        };
        inner
            .call_for(Step::Commit, &self.key, false, || {
                let action = inner.bucket.complete_multipart_upload(
                    Some(&self.credentials),
                    &self.object,
                    &self.upload_id,
                    std::iter::empty(),
                );
                request(&action, body.clone())
            })
            .await?;
        Ok(())
    }

    async fn abort(&self) -> Result<(), DestinationError> {
        let inner = self.inner();
        let result = inner
            .call(|| {
                request(
                    &inner.bucket.abort_multipart_upload(
                        Some(&self.credentials),
                        &self.object,
                        &self.upload_id,
                    ),
                    Bytes::new(),
                )
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            // Already gone (aborted before, or expired by a lifecycle rule).
            Err((Failure::Status { status, .. }, _)) if status == StatusCode::NOT_FOUND => Ok(()),
            Err(failure) => Err(match inner.error(Step::Abort, &self.key, failure, false) {
                e @ DestinationError::Abort { .. } => e,
                other => inner.origin.on(
                    Step::Abort,
                    &self.key,
                    format!(
                        "{other}; the unfinished upload {} keeps its parts until it is aborted \
                         (or a lifecycle rule expires it)",
                        self.upload_id
                    ),
                ),
            }),
        }
    }
}

impl S3Upload {
    /// Starts uploading the filled buffer as the next part.
    fn send_part(&mut self) -> Result<(), String> {
        if u64::from(self.next_part) > MAX_PARTS {
            return Err(format!(
                "the object needs more than {MAX_PARTS} parts of {} bytes: raise part_size (or \
                 give a size hint)",
                self.part_size
            ));
        }
        let body = self.buffer.split().freeze();
        self.buffer = BytesMut::new();
        let number = self.next_part;
        self.next_part += 1;
        self.in_flight
            .spawn(Arc::clone(&self.shared).upload_part(number, body));
        Ok(())
    }

    /// Records a finished part task.
    fn reap(&mut self, joined: Result<PartResult, tokio::task::JoinError>) -> Result<(), String> {
        match joined {
            Ok(Ok((number, etag))) => {
                self.etags.insert(number, etag);
                Ok(())
            }
            Ok(Err(error)) => {
                let message = error.to_string();
                self.part_error.get_or_insert(error);
                Err(message)
            }
            Err(error) => Err(format!("a part upload task failed: {error}")),
        }
    }

    fn fail(&mut self, message: String) -> io::Error {
        self.in_flight.abort_all();
        self.failed.get_or_insert(message.clone());
        io::Error::other(message)
    }

    pub async fn commit(mut self) -> Result<String, DestinationError> {
        let outcome = self.finish_parts().await;
        let shared = Arc::clone(&self.shared);
        let result = match outcome {
            Ok(()) => shared.complete(&self.etags).await,
            Err(message) => Err(self
                .part_error
                .take()
                .unwrap_or_else(|| shared.inner().origin.on(Step::Upload, &shared.key, message))),
        };
        match result {
            Ok(()) => {
                self.finished = true;
                Ok(shared.key.clone())
            }
            Err(error) => {
                self.finished = true;
                self.in_flight.abort_all();
                if let Err(abort) = shared.abort().await {
                    tracing::warn!(error = %abort, "aborting a failed multipart upload failed");
                }
                Err(error)
            }
        }
    }

    /// Uploads the last part and waits for every part.
    async fn finish_parts(&mut self) -> Result<(), String> {
        if let Some(message) = &self.failed {
            return Err(message.clone());
        }
        // S3 needs at least one part; an empty last part is allowed.
        if !self.buffer.is_empty() || self.next_part == 1 {
            self.send_part()?;
        }
        while let Some(joined) = self.in_flight.join_next().await {
            if let Err(message) = self.reap(joined) {
                self.in_flight.abort_all();
                return Err(message);
            }
        }
        Ok(())
    }

    pub async fn abort(mut self) -> Result<(), DestinationError> {
        self.finished = true;
        self.in_flight.abort_all();
        while self.in_flight.join_next().await.is_some() {}
        self.shared.abort().await
    }
}

impl Drop for S3Upload {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.in_flight.abort_all();
        let shared = Arc::clone(&self.shared);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(error) = shared.abort().await {
                    tracing::warn!(%error, "aborting a dropped multipart upload failed");
                }
            });
        } else {
            tracing::warn!(
                key = %shared.key,
                "a multipart upload was dropped outside a runtime and could not be aborted"
            );
        }
    }
}

impl AsyncWrite for S3Upload {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if let Some(message) = &this.failed {
            return Poll::Ready(Err(io::Error::other(message.clone())));
        }
        // Surface finished parts (and failures) early, without waiting.
        while let Some(joined) = this.in_flight.try_join_next() {
            if let Err(message) = this.reap(joined) {
                return Poll::Ready(Err(this.fail(message)));
            }
        }
        if this.buffer.len() >= this.part_size {
            while this.in_flight.len() >= PARTS_IN_FLIGHT {
                match this.in_flight.poll_join_next(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(None) => break,
                    Poll::Ready(Some(joined)) => {
                        if let Err(message) = this.reap(joined) {
                            return Poll::Ready(Err(this.fail(message)));
                        }
                    }
                }
            }
            if let Err(message) = this.send_part() {
                return Poll::Ready(Err(this.fail(message)));
            }
        }
        if this.buffer.capacity() == 0 {
            this.buffer.reserve(this.part_size);
        }
        let n = buf.len().min(this.part_size - this.buffer.len());
        this.buffer.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &self.failed {
            Some(message) => Poll::Ready(Err(io::Error::other(message.clone()))),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

impl S3Destination {
    /// Keys (relative to the destination) of multipart uploads started and neither completed nor
    /// aborted (ListMultipartUploads), for tests and start-up recovery.
    pub async fn pending_uploads(&self) -> Result<Vec<String>, DestinationError> {
        let mut keys: Vec<String> = self
            .unfinished_uploads("")
            .await?
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        keys.dedup();
        Ok(keys)
    }

    /// Aborts every unfinished multipart upload of `key` (none is fine).
    pub async fn abort_pending(&self, key: &str) -> Result<(), DestinationError> {
        let inner = &self.inner;
        let credentials = inner.credentials()?;
        let object = inner.object(key);
        for (found, upload_id) in self.unfinished_uploads(key).await? {
            if found != key {
                continue;
            }
            let shared = UploadShared {
                destination: self.clone(),
                key: key.to_owned(),
                object: object.clone(),
                upload_id,
                credentials: credentials.clone(),
            };
            shared.abort().await?;
        }
        Ok(())
    }

    /// `(key, upload id)` of the unfinished multipart uploads whose object starts with `prefix`
    /// (relative to the destination; `""` for all).
    async fn unfinished_uploads(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, String)>, DestinationError> {
        let inner = &self.inner;
        let credentials = inner.credentials()?;
        let full_prefix = if prefix.is_empty() {
            inner.list_prefix("")
        } else {
            inner.object(prefix)
        };
        let body = inner
            .call_for(Step::List, prefix, true, || {
                let url = rusty_s3::signing::sign(
                    &jiff::Timestamp::now(),
                    rusty_s3::Method::Get,
                    inner.bucket.base_url().clone(),
                    credentials.key(),
                    credentials.secret(),
                    None,
                    inner.bucket.region(),
                    SIGNATURE_VALIDITY.as_secs(),
                    [("prefix", full_prefix.as_str()), ("uploads", "")].into_iter(),
                    std::iter::empty(),
                );
                (Method::GET, url, Bytes::new())
            })
            .await?;
        let text = String::from_utf8_lossy(&body);
        Ok(xml_values(&text, "Upload")
            .iter()
            .filter_map(|upload| {
                let key = xml_values(upload, "Key").into_iter().next()?;
                let id = xml_values(upload, "UploadId").into_iter().next()?;
                Some((inner.relative_key(&xml_unescape(&key))?, xml_unescape(&id)))
            })
            .collect())
    }
}
