//! The exec and stream stages of a run: the optional pre-scan, the compressor check and tar
//! started in the helper; its output streamed through the checks into an upload to the
//! destination and judged with tar's exit status; a lost connection to the API server streamed
//! again, up to the run's stream attempts.

use std::time::Duration;

use super::{DRAIN_GRACE, Prepared, Run, STATUS_WAIT};
use crate::backup::error::BackupError;
use crate::backup::exec::{self, TarSession};
use crate::backup::outcome;
use crate::backup::stream::{
    self, Compression, StreamCap, StreamConfig, StreamError, StreamedArchive,
};
use crate::destination::Upload;
use crate::domain::Stage;

impl Run<'_> {
    /// Runs the optional pre-scan (progress totals), looks for the compressor (source
    /// compression), then starts tar in the helper.
    async fn start_tar(&mut self, name: &str) -> Result<TarSession, BackupError> {
        let options = &self.inner.options;
        let api = self.stream_api();
        self.enter(Stage::Exec);
        if options.prescan {
            let totals = Self::cancellable(&self.cancel, Stage::Exec, async {
                Ok(exec::prescan(&api, name, options.prescan_timeout).await)
            })
            .await?;
            if let Some(totals) = totals {
                self.tracker.event.total_bytes = Some(totals.bytes);
                self.tracker.event.total_files = Some(totals.files);
            }
        }
        let command = match self.compression {
            Compression::Server => exec::tar_command(),
            Compression::Source => {
                // pigz gets the configured threads, but no more than the helper's CPU limit.
                let threads = options
                    .resources
                    .cpu_limit_cores()
                    .map_or(options.gzip_threads, |cores| {
                        cores.min(options.gzip_threads)
                    })
                    .max(1);
                let found = Self::cancellable(&self.cancel, Stage::Exec, async {
                    Ok(exec::find_compressor(
                        &api,
                        name,
                        options.gzip_level,
                        threads,
                        options.request_timeout,
                    )
                    .await)
                })
                .await?;
                if let Some(compressor) = found {
                    tracing::debug!(run_id = %self.run_id, compressor = %compressor.describe(options.gzip_level), "source compression");
                    exec::source_tar_command(compressor, options.gzip_level)
                } else {
                    let warning = format!(
                        "the helper image {} has no usable pigz or gzip (level {}), so nkvm \
                         compressed the archive itself (server compression)",
                        options.helper_image, options.gzip_level
                    );
                    tracing::warn!(run_id = %self.run_id, "{warning}");
                    self.warnings.push(warning);
                    self.compression = Compression::Server;
                    exec::tar_command()
                }
            }
        };
        Self::cancellable(
            &self.cancel,
            Stage::Exec,
            TarSession::start(&api, name, command, true, self.retry_policy()),
        )
        .await
    }

    /// Starts tar and streams its output; when the connection to the API server is lost (nothing
    /// committed: the upload was discarded), tries again in the same helper after a growing delay,
    /// up to the stream attempts, each attempt kept as a warning of the run.
    pub(super) async fn start_and_stream(
        &mut self,
        prepared: &Prepared,
        name: &str,
    ) -> Result<(Upload, StreamedArchive), BackupError> {
        let attempts = self.inner.options.stream_attempts.max(1);
        let mut attempt = 1;
        loop {
            let session = self.start_tar(name).await?;
            match self.stream(session, prepared, name).await {
                Err(BackupError::ConnectionLost { message, .. }) if attempt < attempts => {
                    let delay = self.retry_policy().delay(attempt);
                    let note = format!(
                        "stream {attempt} of {attempts} failed: {message}; streaming again in \
                         {}s",
                        delay.as_secs()
                    );
                    tracing::warn!(run_id = %self.run_id, "{note}");
                    self.warnings.push(note.clone());
                    self.tracker.restart(note);
                    Self::cancellable(&self.cancel, Stage::Stream, async {
                        tokio::time::sleep(delay).await;
                        Ok(())
                    })
                    .await?;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Opens the upload to the destination, streams tar's output through the checker, gzip and
    /// sha256 into it, then judges the stream together with tar's exit status. On any failure the
    /// upload is aborted.
    async fn stream(
        &mut self,
        mut session: TarSession,
        prepared: &Prepared,
        name: &str,
    ) -> Result<(Upload, StreamedArchive), BackupError> {
        let options = &self.inner.options;
        self.enter(Stage::Stream);
        let keys = &prepared.keys;
        let opened = Self::cancellable(&self.cancel, Stage::Stream, async {
            self.destination
                .begin_upload(&keys.archive, prepared.plan.pvc.capacity_bytes)
                .await
                .map_err(|error| self.write_error(&error, keys))
        })
        .await;
        let mut upload = match opened {
            Ok(upload) => upload,
            Err(error) => {
                drop(session.abort());
                return Err(error);
            }
        };
        let config = StreamConfig {
            compression: self.compression,
            gzip_level: options.gzip_level,
            gzip_threads: options.gzip_threads,
            stall_timeout: options.stall_timeout,
            progress_interval: options.progress_interval,
            drain_grace: DRAIN_GRACE,
            cap: StreamCap::of(prepared.plan.pvc.capacity_bytes, options.stream_cap_factor),
        };
        let target = self.destination.uri(&keys.archive);
        let tracker = &mut self.tracker;
        let exited = session.exited();
        let streamed = stream::write_archive(
            session.stdout(),
            &mut upload,
            &target,
            &config,
            &self.cancel,
            exited,
            |progress| tracker.update(progress),
        )
        .await;
        let status = match &streamed {
            Ok(_) => session.finish(STATUS_WAIT).await,
            // tar's exit code cannot change these outcomes: drop the connection at once.
            Err(
                StreamError::Cancelled
                | StreamError::Stalled(_)
                | StreamError::Write { .. }
                | StreamError::Compress(_)
                | StreamError::TooLarge(_),
            ) => session.abort(),
            // tar may have died: its exit code explains the broken stream.
            Err(_) => session.finish(Duration::from_secs(5)).await,
        };
        let judged = outcome::judge(
            &self.inner.client,
            &self.target.namespace,
            &options.helper_image,
            streamed,
            &status,
            name,
            &self.destination_advice(),
        )
        .await;
        match judged {
            Ok(archive) => Ok((upload, archive)),
            Err(error) => {
                self.discard(upload).await;
                Err(error)
            }
        }
    }
}
