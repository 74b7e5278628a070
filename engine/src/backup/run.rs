//! One backup run going through its stages, one function each: pre-flight (PVC, consumers, owners,
//! history row, artifact directory, free space), create the helper, wait for it to run, start tar
//! (after the optional pre-scan), stream into a checked `.partial` archive, write (rename),
//! finalize (sidecar and manifest), record; then [`Run::conclude`] cleans up and reports on every
//! path.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use tokio_util::sync::CancellationToken;

use super::artifact::{self, ArchiveInfo, ArtifactPaths, Manifest};
use super::cleanup::HelperGuard;
use super::engine::Inner;
use super::error::BackupError;
use super::exec::{self, TarSession};
use super::helper::{self, RetryPolicy};
use super::outcome::{self, success_message, with_warnings};
use super::pod::{self, HelperPodParams};
use super::preflight::{self, Plan};
use super::progress::Tracker;
use super::stream::{self, PartialArchive, StreamConfig, StreamError};
use super::{BackupResult, PvcRef, ResultStatus};
use crate::domain::{Owner, RunStatus, Stage, pvc};
use crate::store::{NewRun, RunUpdate};
use crate::timestamp::rfc3339;

/// Wait for tar's exit code after the archive's end.
const STATUS_WAIT: Duration = Duration::from_secs(30);
/// After tar reported its exit, how long a silent stdout still counts as in flight.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// What a successful run produced.
#[derive(Debug)]
pub(super) struct Success {
    archive: PathBuf,
    sha256: String,
    bytes: u64,
    files: u64,
    source_bytes: u64,
}

/// What pre-flight established for the later stages.
struct Prepared {
    plan: Plan,
    owners: Vec<Owner>,
    paths: ArtifactPaths,
}

/// One run's state while it goes through the stages.
pub(super) struct Run<'a> {
    inner: &'a Inner,
    target: PvcRef,
    run_id: String,
    cancel: CancellationToken,
    started_by: String,
    started_at: jiff::Timestamp,
    clock: Instant,
    row: Option<i64>,
    pvc_uid: Option<String>,
    helper: Option<HelperGuard>,
    helper_name: Option<String>,
    node: Option<String>,
    tracker: Tracker<'a>,
    warnings: Vec<String>,
}

impl<'a> Run<'a> {
    pub(super) fn new(
        inner: &'a Inner,
        target: &PvcRef,
        run_id: &str,
        cancel: CancellationToken,
        started_by: String,
    ) -> Self {
        let tracker = Tracker::new(inner, target, run_id, &started_by);
        Self {
            inner,
            target: target.clone(),
            run_id: run_id.to_owned(),
            cancel,
            started_by,
            started_at: jiff::Timestamp::now(),
            clock: Instant::now(),
            row: None,
            pvc_uid: None,
            helper: None,
            helper_name: None,
            node: None,
            tracker,
            warnings: Vec::new(),
        }
    }

    /// Publishes the run's first event (queued, waiting for a slot).
    pub(super) fn announce(&mut self) {
        self.tracker.emit();
    }

    /// Resolves when the run is cancelled.
    pub(super) async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }

    pub(super) fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    fn enter(&mut self, stage: Stage) {
        self.tracker.stage(stage);
        tracing::debug!(run_id = %self.run_id, pvc = %self.target, ?stage, "stage");
    }

    /// Runs `future` unless the run is cancelled first.
    async fn cancellable<T>(
        cancel: &CancellationToken,
        stage: Stage,
        future: impl Future<Output = Result<T, BackupError>>,
    ) -> Result<T, BackupError> {
        tokio::select! {
            biased;
            () = cancel.cancelled() => Err(BackupError::Cancelled { stage }),
            result = future => result,
        }
    }

    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            attempts: self.inner.options.create_attempts,
            base_delay: self.inner.options.retry_base_delay,
        }
    }

    fn stream_api(&self) -> Api<Pod> {
        Api::namespaced(self.inner.stream_client.clone(), &self.target.namespace)
    }

    /// Every stage of a run, in order.
    pub(super) async fn execute(&mut self) -> Result<Success, BackupError> {
        let prepared = self.preflight().await?;
        let name = self.create_helper(&prepared.plan).await?;
        self.wait_running(&name, &prepared.plan).await?;
        let session = self.start_tar(&name).await?;
        let partial = self.stream(session, &prepared.paths, &name).await?;
        let (counts, sha256, bytes) = (
            partial.counts,
            partial.sha256.clone(),
            partial.archive_bytes,
        );
        let archive = self.write(partial, &prepared.paths).await?;
        let finished_at = self
            .finalize(&prepared, &name, &sha256, bytes, counts)
            .await?;
        self.record(&archive, &name, &sha256, bytes, counts, finished_at)
            .await?;
        Ok(Success {
            archive,
            sha256,
            bytes,
            files: counts.regular_files,
            source_bytes: counts.file_bytes,
        })
    }

    /// Pre-flight: the PVC and its users, the history row, the owners, the artifact directory and
    /// its free space.
    async fn preflight(&mut self) -> Result<Prepared, BackupError> {
        let inner = self.inner;
        let options = &inner.options;
        let timeout = options.request_timeout;
        let cancel = self.cancel.clone();
        self.enter(Stage::Preflight);
        let (pvc, pods) = Self::cancellable(
            &cancel,
            Stage::Preflight,
            preflight::fetch(&inner.client, &self.target, timeout),
        )
        .await?;
        let plan = preflight::plan(&pvc, &pods)?;
        self.pvc_uid = Some(plan.pvc.uid.clone());
        let row = inner
            .store
            .insert_run(&NewRun {
                run_id: self.run_id.clone(),
                pvc_uid: plan.pvc.uid.clone(),
                namespace: self.target.namespace.clone(),
                pvc: self.target.name.clone(),
                started_by: self.started_by.clone(),
                started_at: self.started_at,
                cluster: options.cluster.clone(),
            })
            .await
            .map_err(|source| BackupError::Record {
                message: "could not record the start of the run in the history database; check \
                          that the data directory is writable and not used by another process"
                    .to_owned(),
                source,
            })?;
        self.row = Some(row);
        let owners = Self::cancellable(&cancel, Stage::Preflight, async {
            Ok(preflight::resolve_owners(
                &inner.client,
                &self.target.namespace,
                &pods,
                &plan.consumers,
                timeout,
            )
            .await)
        })
        .await?;
        drop(pods);
        let paths = ArtifactPaths::new(
            &options.artifacts_dir(),
            &self.target.namespace,
            &self.target.name,
            self.started_at,
        );
        tokio::fs::create_dir_all(&paths.dir).await.map_err(|err| {
            BackupError::preflight(format!(
                "cannot create the artifact directory {}: {err}; check the data directory's \
                 permissions",
                paths.dir.display()
            ))
        })?;
        if options.check_free_space
            && let Some(capacity) = plan.pvc.capacity_bytes
        {
            preflight::check_free_space(
                &paths.dir,
                capacity,
                &format!(
                    "the capacity of PVC {} ({})",
                    self.target,
                    plan.pvc.capacity.as_deref().unwrap_or("?")
                ),
            )?;
        }
        inner.set_partial(
            &self.target,
            &self.run_id,
            stream::partial_path_of(&paths.archive),
        );
        Ok(Prepared {
            plan,
            owners,
            paths,
        })
    }

    /// Creates the helper pod (retrying transient failures); from here on [`Run::conclude`]
    /// deletes it.
    async fn create_helper(&mut self, plan: &Plan) -> Result<String, BackupError> {
        let inner = self.inner;
        let options = &inner.options;
        self.enter(Stage::Create);
        let params = HelperPodParams {
            run_id: self.run_id.clone(),
            namespace: self.target.namespace.clone(),
            pvc_name: self.target.name.clone(),
            pvc_uid: plan.pvc.uid.clone(),
            image: options.helper_image.clone(),
            node: plan.node.clone(),
            run_as: plan.run_as,
            active_deadline: options.active_deadline,
            resources: options.resources.clone(),
            instance: options.instance.clone(),
        };
        let helper_pod = pod::helper_pod(&params);
        let name = pod::helper_pod_name(&self.run_id);
        self.helper_name = Some(name.clone());
        self.helper = Some(HelperGuard::new(
            inner.client.clone(),
            &self.target.namespace,
            &name,
            options.request_timeout,
            inner.sweeper.clone(),
        ));
        let api: Api<Pod> = Api::namespaced(inner.client.clone(), &self.target.namespace);
        Self::cancellable(
            &self.cancel,
            Stage::Create,
            helper::create_with_retry(
                &api,
                &helper_pod,
                self.retry_policy(),
                options.request_timeout,
            ),
        )
        .await?;
        Ok(name)
    }

    /// Waits for the helper to run; notes its node.
    async fn wait_running(&mut self, name: &str, plan: &Plan) -> Result<(), BackupError> {
        self.enter(Stage::Schedule);
        let running = Self::cancellable(
            &self.cancel,
            Stage::Schedule,
            helper::wait_running(
                &self.stream_api(),
                name,
                self.inner.options.schedule_timeout,
            ),
        )
        .await?;
        self.node = running
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .or(plan.node.clone());
        Ok(())
    }

    /// Runs the optional pre-scan (progress totals), then starts tar in the helper.
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
        Self::cancellable(
            &self.cancel,
            Stage::Exec,
            TarSession::start(&api, name, exec::tar_command(), true, self.retry_policy()),
        )
        .await
    }

    /// Streams tar's output through the checker, gzip and sha256 into the `.partial` file, then
    /// judges the stream together with tar's exit status.
    async fn stream(
        &mut self,
        mut session: TarSession,
        paths: &ArtifactPaths,
        name: &str,
    ) -> Result<PartialArchive, BackupError> {
        let options = &self.inner.options;
        self.enter(Stage::Stream);
        let config = StreamConfig {
            gzip_level: options.gzip_level,
            gzip_threads: options.gzip_threads,
            stall_timeout: options.stall_timeout,
            progress_interval: options.progress_interval,
            drain_grace: DRAIN_GRACE,
        };
        let tracker = &mut self.tracker;
        let exited = session.exited();
        let streamed = stream::write_partial(
            session.stdout(),
            &paths.archive,
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
                | StreamError::Compress(_),
            ) => session.abort(),
            // tar may have died: its exit code explains the broken stream.
            Err(_) => session.finish(Duration::from_secs(5)).await,
        };
        outcome::judge(
            &self.inner.client,
            &self.target.namespace,
            &options.helper_image,
            streamed,
            &status,
            name,
        )
        .await
    }

    /// Write: the verified archive gets its final name.
    async fn write(
        &mut self,
        partial: PartialArchive,
        paths: &ArtifactPaths,
    ) -> Result<PathBuf, BackupError> {
        self.enter(Stage::Write);
        partial.commit().await.map_err(|err| match err {
            StreamError::Write { path, source } => BackupError::Write {
                path,
                message: format!(
                    "{source}; check free space and permissions of the data directory"
                ),
            },
            other => BackupError::Write {
                path: paths.archive.clone(),
                message: other.to_string(),
            },
        })
    }

    /// Finalize: the sidecar and the manifest beside the archive (all three removed on failure).
    async fn finalize(
        &mut self,
        prepared: &Prepared,
        helper_pod: &str,
        sha256: &str,
        bytes: u64,
        counts: super::tarcheck::TarCounts,
    ) -> Result<jiff::Timestamp, BackupError> {
        let options = &self.inner.options;
        let paths = &prepared.paths;
        self.enter(Stage::Finalize);
        let finished_at = jiff::Timestamp::now();
        let (owner_kind, owner_name) = pvc::display_owners(&prepared.owners);
        let manifest = Manifest {
            format: artifact::MANIFEST_FORMAT.to_owned(),
            nkvm_version: env!("CARGO_PKG_VERSION").to_owned(),
            run_id: self.run_id.clone(),
            started_by: self.started_by.clone(),
            started_at: rfc3339(self.started_at),
            finished_at: rfc3339(finished_at),
            pvc: prepared.plan.pvc.clone(),
            owner_kind,
            owner_name,
            owners: prepared.owners.clone(),
            consumers: prepared.plan.consumers.clone(),
            node: self.node.clone(),
            helper_pod: helper_pod.to_owned(),
            helper_image: options.helper_image.clone(),
            archive: ArchiveInfo {
                file: paths.archive_file_name(),
                bytes,
                sha256: sha256.to_owned(),
                format: "tar+gzip".to_owned(),
                gzip_level: options.gzip_level.min(9),
                files: counts.regular_files,
                source_bytes: counts.file_bytes,
            },
            contents: counts,
        };
        if let Err(err) = outcome::write_finals(paths, sha256, &manifest).await {
            for path in [&paths.archive, &paths.sidecar, &paths.manifest] {
                let _ = tokio::fs::remove_file(path).await;
            }
            return Err(err);
        }
        Ok(finished_at)
    }

    /// Record: the history row says succeeded, with the archive's facts.
    async fn record(
        &mut self,
        archive: &std::path::Path,
        helper_pod: &str,
        sha256: &str,
        bytes: u64,
        counts: super::tarcheck::TarCounts,
        finished_at: jiff::Timestamp,
    ) -> Result<(), BackupError> {
        self.enter(Stage::Record);
        let Some(row) = self.row else {
            return Ok(());
        };
        let update = RunUpdate {
            status: Some(RunStatus::Succeeded),
            stage: None,
            message: Some(success_message(
                counts.regular_files,
                counts.file_bytes,
                bytes,
                self.clock.elapsed(),
            )),
            finished_at: Some(finished_at),
            bytes: Some(bytes),
            source_bytes: Some(counts.file_bytes),
            files: Some(counts.regular_files),
            sha256: Some(sha256.to_owned()),
            artifact: Some(archive.display().to_string()),
            helper_pod: Some(helper_pod.to_owned()),
            node: self.node.clone(),
            ..RunUpdate::default()
        };
        self.inner
            .store
            .update_run(row, &update)
            .await
            .map_err(|source| BackupError::Record {
                message: format!(
                    "the archive {} is complete and verified, but the history database could not \
                     record it; it is still usable (check it with its .sha256 file)",
                    archive.display()
                ),
                source,
            })
    }

    /// Cleanup, history and the result, on every path.
    pub(super) async fn conclude(mut self, outcome: Result<Success, BackupError>) -> BackupResult {
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
        result.artifact = Some(success.archive.display().to_string());
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
