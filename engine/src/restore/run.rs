//! One restore (or drill) going through its stages, one function each: verify (pass one over the
//! archive, nothing written), pre-flight (target, size, consumers, scale plan), scale-down,
//! create (new PVC, helper), schedule, exec (wipe, tar), stream (pass two into tar's stdin),
//! finalize (tar's status, spot check, helper gone), scale-up, record; then [`Job::conclude`]
//! cleans up on every path — helper removed, workloads scaled back, a failed new PVC removed or
//! kept as asked — and reports.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Api;
use tokio_util::sync::CancellationToken;

use super::check::{Decoded, PassProgress};
use super::engine::Inner;
use super::error::RestoreError;
use super::scale::{self, ScaledDown};
use super::{RestoreEvent, RestoreRequest, RestoreResult, RestoreTarget};
use crate::backup::PvcRef;
use crate::backup::cleanup::HelperGuard;
use crate::backup::helper::RetryPolicy;
use crate::backup::progress::RateWindow;
use crate::domain::format::format_bytes;
use crate::domain::{
    JobKind, Progress, RestoreMode, RestoreStage, ResultStatus, RunStatus, escape_control,
};
use crate::store::{NewRestore, RestoreUpdate, RunRecord};
use crate::timestamp::rfc3339;

/// Where a job's progress events go.
pub(super) trait Publish: Send + Sync {
    fn publish(&self, event: &RestoreEvent);
}

/// Progress nobody follows (the CLI's verification).
pub(super) struct NoPublish;

impl Publish for NoPublish {
    fn publish(&self, _event: &RestoreEvent) {}
}

/// Publishes one job's progress.
pub(super) struct Tracker<'a> {
    sink: &'a dyn Publish,
    pub(super) event: RestoreEvent,
    started: Instant,
    rate: RateWindow,
}

impl<'a> Tracker<'a> {
    pub(super) fn new(
        sink: &'a dyn Publish,
        id: &str,
        kind: JobKind,
        run_id: &str,
        target: &PvcRef,
    ) -> Self {
        Self {
            sink,
            event: RestoreEvent {
                id: id.to_owned(),
                kind,
                run_id: run_id.to_owned(),
                namespace: target.namespace.clone(),
                pvc: target.name.clone(),
                stage: RestoreStage::Verify,
                status: RunStatus::Running,
                progress: Progress::default(),
                message: None,
            },
            started: Instant::now(),
            rate: RateWindow::default(),
        }
    }

    pub(super) fn emit(&mut self) {
        self.event.progress.elapsed_secs = self.started.elapsed().as_secs_f64();
        self.sink.publish(&self.event);
    }

    pub(super) fn stage(&mut self, stage: RestoreStage) {
        self.event.stage = stage;
        self.emit();
    }

    /// Publishes a pass's counters with the rate over the last seconds.
    pub(super) fn update(&mut self, progress: &PassProgress) {
        use std::sync::atomic::Ordering::Relaxed;
        let bytes = progress.file_bytes.load(Relaxed);
        if let Some(rate) = self.rate.update(bytes) {
            self.event.progress.rate_bytes_per_sec = rate;
        }
        self.event.progress.bytes = bytes;
        self.event.progress.files = progress.files.load(Relaxed);
        self.emit();
    }

    /// Publishes the last event.
    pub(super) fn finish(&mut self, status: RunStatus, message: &str) {
        self.event.status = status;
        self.event.message = Some(message.to_owned());
        self.emit();
    }
}

/// One restore's state while it goes through the stages.
pub(super) struct Job<'a> {
    pub(super) inner: &'a Inner,
    pub(super) id: String,
    pub(super) mode: RestoreMode,
    pub(super) request: RestoreRequest,
    pub(super) source: RunRecord,
    pub(super) target: PvcRef,
    pub(super) cancel: CancellationToken,
    pub(super) started_by: String,
    pub(super) started_at: jiff::Timestamp,
    pub(super) clock: Instant,
    pub(super) row: Option<i64>,
    pub(super) tracker: Tracker<'a>,
    pub(super) helper: Option<HelperGuard>,
    pub(super) helper_name: Option<String>,
    pub(super) pvc_created: bool,
    /// The UID of the PVC this restore created, once the create answered.
    pub(super) pvc_uid: Option<String>,
    pub(super) scaled: Vec<ScaledDown>,
    pub(super) scale_guard: Option<scale::ScaleGuard>,
    pub(super) warnings: Vec<String>,
    pub(super) spot_check: Option<String>,
    pub(super) written: Option<Decoded>,
    /// Extra check of a drill, run before the helper is removed.
    pub(super) content_check: bool,
}

impl<'a> Job<'a> {
    #[allow(
        clippy::too_many_arguments,
        reason = "the admitted request's parts, each checked by the engine"
    )]
    pub(super) fn new(
        inner: &'a Arc<Inner>,
        id: &str,
        mode: RestoreMode,
        request: RestoreRequest,
        source: RunRecord,
        target: PvcRef,
        cancel: CancellationToken,
        started_by: String,
    ) -> Self {
        let kind = if mode == RestoreMode::Drill {
            JobKind::Drill
        } else {
            JobKind::Restore
        };
        let tracker = Tracker::new(&**inner, id, kind, &source.run_id, &target);
        Self {
            inner,
            id: id.to_owned(),
            mode,
            request,
            source,
            target,
            cancel,
            started_by,
            started_at: jiff::Timestamp::now(),
            clock: Instant::now(),
            row: None,
            tracker,
            helper: None,
            helper_name: None,
            pvc_created: false,
            pvc_uid: None,
            scaled: Vec::new(),
            scale_guard: None,
            warnings: Vec::new(),
            spot_check: None,
            written: None,
            content_check: mode == RestoreMode::Drill,
        }
    }

    pub(super) fn wipe(&self) -> bool {
        matches!(self.request.target, RestoreTarget::InPlace { wipe: true })
    }

    /// Runs the job to its end: waits for a slot, goes through the stages, concludes.
    pub(super) async fn run(mut self) -> RestoreResult {
        self.tracker.emit();
        if let Err(err) = self.record_start().await {
            return self.conclude(Err(err)).await;
        }
        let permit = tokio::select! {
            biased;
            () = self.cancel.cancelled() => None,
            permit = self.inner_semaphore() => permit,
        };
        let Some(permit) = permit else {
            let cancelled = RestoreError::Cancelled {
                stage: RestoreStage::Verify,
            };
            return self.conclude(Err(cancelled)).await;
        };
        let outcome = self.execute().await;
        // The slot is released once the result is recorded and published.
        let result = self.conclude(outcome).await;
        drop(permit);
        result
    }

    async fn inner_semaphore(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.inner.acquire().await
    }

    async fn record_start(&mut self) -> Result<(), RestoreError> {
        let row = self
            .inner
            .store()
            .insert_restore(&NewRestore {
                restore_id: self.id.clone(),
                run_id: self.source.run_id.clone(),
                mode: self.mode,
                wipe: self.wipe(),
                source_namespace: self.source.namespace.clone(),
                source_pvc: self.source.pvc.clone(),
                target_namespace: self.target.namespace.clone(),
                target_pvc: self.target.name.clone(),
                started_by: self.started_by.clone(),
                started_at: self.started_at,
                cluster: self.inner.backup_options().cluster.clone(),
            })
            .await
            .map_err(|err| {
                RestoreError::Preflight(format!(
                    "could not record the restore in the history database ({err}); check that \
                     the data directory is writable; nothing was changed"
                ))
            })?;
        self.row = Some(row);
        Ok(())
    }

    pub(super) fn enter(&mut self, stage: RestoreStage) {
        self.tracker.stage(stage);
        tracing::debug!(restore = %self.id, target = %self.target, %stage, "stage");
    }

    /// Runs `future` unless the job is cancelled first.
    pub(super) async fn cancellable<T>(
        cancel: &CancellationToken,
        stage: RestoreStage,
        future: impl Future<Output = Result<T, RestoreError>>,
    ) -> Result<T, RestoreError> {
        tokio::select! {
            biased;
            () = cancel.cancelled() => Err(RestoreError::Cancelled { stage }),
            result = future => result,
        }
    }

    pub(super) fn retry_policy(&self) -> RetryPolicy {
        let options = self.inner.backup_options();
        RetryPolicy {
            attempts: options.create_attempts,
            base_delay: options.retry_base_delay,
        }
    }

    pub(super) fn stream_pods(&self) -> Api<Pod> {
        Api::namespaced(
            self.inner.backups.stream_client().clone(),
            &self.target.namespace,
        )
    }

    pub(super) fn pvcs(&self) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.inner.backups.client().clone(), &self.target.namespace)
    }

    /// Every stage in order.
    async fn execute(&mut self) -> Result<(), RestoreError> {
        let verified = self.verify().await?;
        let plan = self.preflight(&verified).await?;
        if self.mode == RestoreMode::InPlace {
            self.scale_down(&plan).await?;
        }
        let helper = self.create(&plan).await?;
        self.schedule(&helper).await?;
        let mut session = self.exec(&helper).await?;
        let streamed = self.stream(&mut session, &verified).await;
        self.finalize(session, streamed, &verified, &helper).await?;
        self.scale_up().await?;
        self.record().await
    }

    /// Cleanup: the helper deleted, workloads scaled back, a created PVC removed when the
    /// restore failed (unless it is to be kept) or was a drill. Returns what was done, for the
    /// message, and whether the target PVC exists.
    async fn clean_up(&mut self, failed: bool) -> (Vec<String>, Option<bool>) {
        let mut notes = Vec::new();
        if self.helper.is_some() || self.scale_guard.is_some() || self.pvc_created {
            self.tracker.stage(RestoreStage::Cleanup);
        }
        if let Some(helper) = self.helper.take()
            && let Err(err) = helper.delete().await
        {
            self.warnings.push(err);
        }
        if self.scale_guard.is_some() {
            let errors = self.give_back_replicas().await;
            if errors.is_empty() {
                let names: Vec<String> = self
                    .scaled
                    .iter()
                    .map(|s| format!("{} back to {}", s.workload, s.replicas))
                    .collect();
                if !names.is_empty() {
                    notes.push(format!("scaled {}", names.join(", ")));
                }
            } else {
                notes.push(format!("WORKLOADS LEFT SCALED DOWN: {}", errors.join("; ")));
            }
        }
        let mut pvc_kept = (self.mode == RestoreMode::InPlace || self.pvc_created).then_some(true);
        if self.pvc_created
            && (self.mode == RestoreMode::Drill || (failed && !self.request.keep_failed_pvc))
        {
            match self.remove_created_pvc().await {
                Ok(()) => {
                    pvc_kept = Some(false);
                    if failed {
                        notes.push(format!("the new PVC {} was removed", self.target));
                    }
                }
                Err(err) => notes.push(format!(
                    "the new PVC {} was KEPT: removing it failed ({err}); delete it with `kubectl \
                     delete pvc -n {} {}`",
                    self.target, self.target.namespace, self.target.name
                )),
            }
        } else if self.pvc_created && failed {
            notes.push(format!(
                "the new PVC {} was kept as asked; it may hold partial data",
                self.target
            ));
        } else if failed && self.mode != RestoreMode::InPlace {
            notes.push("no PVC was created".to_owned());
        }
        (notes, pvc_kept)
    }

    /// Cleanup, history and the result, on every path.
    pub(super) async fn conclude(mut self, outcome: Result<(), RestoreError>) -> RestoreResult {
        let (notes, pvc_kept) = self.clean_up(outcome.is_err()).await;
        let finished_at = jiff::Timestamp::now();
        let note = notes.join("; ");
        let (status, stage, message) = match outcome {
            Ok(()) => {
                let mut message = self.success_message();
                if !note.is_empty() {
                    message = format!("{message}; {note}");
                }
                (ResultStatus::Succeeded, None, message)
            }
            Err(err) => {
                let stage = err.stage();
                let status = if err.is_cancelled() {
                    ResultStatus::Cancelled
                } else {
                    ResultStatus::Failed
                };
                let message = if note.is_empty() {
                    err.to_string()
                } else {
                    format!("{err}; {note}")
                };
                (status, Some(stage), message)
            }
        };
        let message = if self.warnings.is_empty() {
            message
        } else {
            format!("{message}; warning: {}", self.warnings.join("; "))
        };
        // File names and tar's messages are the tenant's text: no control character may reach
        // the history, the logs or the page.
        let message = escape_control(&message).into_owned();
        let run_status = match status {
            ResultStatus::Succeeded => RunStatus::Succeeded,
            ResultStatus::Failed => RunStatus::Failed,
            ResultStatus::Cancelled => RunStatus::Cancelled,
        };
        let written = self.written.as_ref().map(|d| d.counts);
        if let Some(row) = self.row {
            let update = RestoreUpdate {
                status: Some(run_status),
                stage: Some(stage.unwrap_or(RestoreStage::Cleanup)),
                message: Some(message.clone()),
                finished_at: Some(finished_at),
                bytes: written.map(|c| c.file_bytes),
                files: written.map(|c| c.regular_files),
                pvc_created: Some(self.pvc_created),
                pvc_kept,
                helper_pod: self.helper_name.clone(),
            };
            if let Err(err) = self.inner.store().update_restore(row, &update).await {
                tracing::warn!(restore = %self.id, error = %err, "could not record the restore");
            }
        }
        if let Some(stage) = stage {
            self.tracker.event.stage = stage;
        }
        self.tracker.finish(run_status, &message);
        tracing::info!(restore = %self.id, target = %self.target, %status, "restore finished");
        RestoreResult {
            restore_id: self.id.clone(),
            run_id: self.source.run_id.clone(),
            namespace: self.target.namespace.clone(),
            pvc: self.target.name.clone(),
            status,
            stage,
            message,
            bytes: written.map(|c| c.file_bytes),
            files: written.map(|c| c.regular_files),
            started_at: rfc3339(self.started_at),
            finished_at: rfc3339(finished_at),
            mode: self.mode,
            wipe: self.wipe(),
            source_namespace: self.source.namespace.clone(),
            source_pvc: self.source.pvc.clone(),
            pvc_created: self.pvc_created,
            pvc_kept,
            helper_pod: self.helper_name.clone(),
            scaled: self.scaled.clone(),
            spot_check: self.spot_check.clone(),
            cancelled: status == ResultStatus::Cancelled,
            warnings: self.warnings.clone(),
        }
    }

    fn success_message(&self) -> String {
        let counts = self.written.as_ref().map(|d| d.counts).unwrap_or_default();
        let how = match self.mode {
            RestoreMode::NewPvc => format!("into the new PVC {}", self.target),
            RestoreMode::InPlace if self.wipe() => {
                format!("into {} (contents replaced)", self.target)
            }
            RestoreMode::InPlace => format!("into {} (merged)", self.target),
            RestoreMode::Drill => format!("into the throwaway PVC {}", self.target),
        };
        let mut message = format!(
            "restored {} files ({}) of backup {} {how} in {:.1}s",
            counts.regular_files,
            format_bytes(counts.file_bytes),
            self.source.run_id,
            self.clock.elapsed().as_secs_f64()
        );
        if let Some(check) = &self.spot_check {
            message.push_str(&format!("; {check}"));
        }
        if !self.scaled.is_empty() {
            let names: Vec<String> = self
                .scaled
                .iter()
                .map(|s| format!("{} back to {}", s.workload, s.replicas))
                .collect();
            message.push_str(&format!("; scaled {}", names.join(", ")));
        }
        message
    }

    pub(super) fn retry(&self) -> RetryPolicy {
        self.retry_policy()
    }

    pub(super) fn stall_timeout(&self) -> Duration {
        self.inner.backup_options().stall_timeout
    }
}

impl RestoreResult {
    /// A restore refused before it started (failed at pre-flight with `message`).
    pub fn refused(
        id: &str,
        request: &RestoreRequest,
        target: Option<&PvcRef>,
        now: jiff::Timestamp,
        message: &str,
    ) -> Self {
        let (mode, wipe) = match request.target {
            RestoreTarget::InPlace { wipe } => (RestoreMode::InPlace, wipe),
            RestoreTarget::NewPvc { .. } => (RestoreMode::NewPvc, false),
        };
        Self {
            restore_id: id.to_owned(),
            run_id: request.run_id.clone(),
            namespace: target.map(|t| t.namespace.clone()).unwrap_or_default(),
            pvc: target.map(|t| t.name.clone()).unwrap_or_default(),
            status: ResultStatus::Failed,
            stage: Some(RestoreStage::Preflight),
            message: message.to_owned(),
            bytes: None,
            files: None,
            started_at: rfc3339(now),
            finished_at: rfc3339(now),
            mode,
            wipe,
            source_namespace: String::new(),
            source_pvc: String::new(),
            pvc_created: false,
            pvc_kept: None,
            helper_pod: None,
            scaled: Vec::new(),
            spot_check: None,
            cancelled: false,
            warnings: Vec::new(),
        }
    }
}
