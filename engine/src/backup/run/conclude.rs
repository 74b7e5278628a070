//! How a run ends, on every path: the helper deleted, the history row and the progress event
//! updated, the result reported.

use super::outcome::{success_message, with_warnings};
use super::{BackupError, BackupResult, ResultStatus, Run, RunStatus, RunUpdate, Stage, Success};

impl Run<'_> {
    /// Cleanup, history and the result, on every path.
    pub(in crate::backup) async fn conclude(
        mut self,
        outcome: Result<Success, BackupError>,
    ) -> BackupResult {
        if let Some(helper) = self.helper.take() {
            self.tracker.stage(Stage::Cleanup);
            if let Err(err) = helper.delete().await {
                self.warnings.push(err);
            }
        }
        let finished_at = jiff::Timestamp::now();
        let mut result = BackupResult::new(&self.target, self.started_at, finished_at);
        result.run_id = Some(self.run_id.clone());
        result.pvc_uid = self.pvc_uid.clone();
        result.node = self.node.clone();
        result.helper_pod = self.helper_name.clone();
        result.destination = Some(self.destination.name().to_owned());
        match outcome {
            Ok(success) => self.succeeded(&mut result, success).await,
            Err(err) => self.failed(&mut result, &err, finished_at).await,
        }
        // Observers (the web UI) see what the history row says, cleanup warnings included.
        self.tracker.event.message = Some(with_warnings(&result.message, &self.warnings));
        result.warnings = std::mem::take(&mut self.warnings);
        self.tracker.emit();
        result
    }

    async fn succeeded(&mut self, result: &mut BackupResult, success: Success) {
        result.message = success_message(
            success.files,
            success.source_bytes,
            success.bytes,
            self.clock.elapsed(),
        );
        result.artifact = Some(success.artifact);
        result.sha256 = Some(success.sha256);
        result.bytes = Some(success.bytes);
        result.files = Some(success.files);
        result.source_bytes = Some(success.source_bytes);
        if !self.warnings.is_empty()
            && let Some(row) = self.row
        {
            let update = RunUpdate {
                message: Some(with_warnings(&result.message, &self.warnings)),
                ..RunUpdate::default()
            };
            if let Err(err) = self.inner.store.update_run(row, &update).await {
                tracing::warn!(run_id = %self.run_id, error = %err, "could not record the cleanup warning");
            }
        }
        self.tracker.event.status = RunStatus::Succeeded;
    }

    async fn failed(
        &mut self,
        result: &mut BackupResult,
        err: &BackupError,
        finished_at: jiff::Timestamp,
    ) {
        let stage = err.stage();
        let status = if err.is_cancelled() {
            RunStatus::Cancelled
        } else {
            RunStatus::Failed
        };
        result.status = if err.is_cancelled() {
            ResultStatus::Cancelled
        } else {
            ResultStatus::Failed
        };
        result.stage = Some(stage);
        result.cancelled = err.is_cancelled();
        result.message = err.to_string();
        if let Some(row) = self.row {
            // After a failed record the database failed once already: best effort, no warning.
            let record_failed = matches!(err, BackupError::Record { .. });
            let update = RunUpdate {
                status: Some(status),
                stage: Some(stage),
                message: Some(if record_failed {
                    result.message.clone()
                } else {
                    with_warnings(&result.message, &self.warnings)
                }),
                finished_at: Some(finished_at),
                helper_pod: self.helper_name.clone(),
                node: self.node.clone(),
                ..RunUpdate::default()
            };
            if let Err(err) = self.inner.store.update_run(row, &update).await
                && !record_failed
            {
                self.warnings
                    .push(format!("the history database was not updated: {err}"));
            }
        }
        self.tracker.event.status = status;
        self.tracker.event.stage = stage;
        tracing::info!(run_id = %self.run_id, pvc = %self.target, ?stage, error = %result.message, "backup failed");
    }
}
