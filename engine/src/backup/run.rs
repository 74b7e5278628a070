//! One backup run going through its stages, one function each: pre-flight (PVC, consumers, owners,
//! history row, the destination: local directory and free space, or a remote server that answers),
//! create the helper, wait for it to run, start tar (after the optional pre-scan), stream into an
//! upload to the destination, write (commit the upload under its final key, only once tar exited
//! 0), finalize (sidecar and manifest beside it), record; then [`Run::conclude`] cleans up and
//! reports on every path. An upload that is not committed is aborted: nothing incomplete is ever
//! visible under the archive's key. The exec and stream stages are in `run/streaming.rs`.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use tokio_util::sync::CancellationToken;

use super::artifact::{self, ArchiveInfo, Manifest};
use super::cleanup::{self, HelperGuard};
use super::engine::Inner;
use super::error::BackupError;
use super::helper::{self, RetryPolicy};
use super::outcome::{self, success_message};
use super::pod::{self, HelperPodParams};
use super::preflight::{self, Plan};
use super::progress::Tracker;
use super::stream::{Compression, StreamedArchive};
use super::{BackupResult, PvcRef, ResultStatus};
use crate::destination::{ArtifactKeys, CommittedObject, Destination, DestinationError, Upload};
use crate::domain::{Owner, RunStatus, Stage, pvc};
use crate::store::{NewRun, RunUpdate};
use crate::timestamp::rfc3339;

/// Wait for tar's exit code after the archive's end.
const STATUS_WAIT: Duration = Duration::from_secs(30);
/// After tar reported its exit, how long a silent stdout still counts as in flight.
const DRAIN_GRACE: Duration = Duration::from_secs(5);
/// Longest wait for an upload's abort (a remote server that is down); what is left then is removed
/// by start-up recovery.
const ABORT_WAIT: Duration = Duration::from_secs(30);

/// What a successful run produced.
#[derive(Debug)]
pub(super) struct Success {
    /// Path or URI of the committed archive.
    artifact: String,
    sha256: String,
    bytes: u64,
    files: u64,
    source_bytes: u64,
}

/// What pre-flight established for the later stages.
struct Prepared {
    plan: Plan,
    owners: Vec<Owner>,
    keys: ArtifactKeys,
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
    /// Where the archive goes.
    destination: Destination,
    /// Where this run's archive is compressed (the configured mode, until the helper turns out to
    /// lack a usable compressor).
    compression: Compression,
}

impl<'a> Run<'a> {
    pub(super) fn new(
        inner: &'a Inner,
        target: &PvcRef,
        run_id: &str,
        cancel: CancellationToken,
        started_by: String,
        destination: Destination,
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
            destination,
            compression: inner.options.compression,
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
        let (upload, archive) = self.start_and_stream(&prepared, &name).await?;
        let committed = self.write(upload, &prepared.keys).await?;
        let finished_at = self.finalize(&prepared, &name, &archive).await?;
        self.record(&committed, &name, &archive, finished_at)
            .await?;
        Ok(Success {
            artifact: committed.uri,
            sha256: archive.sha256,
            bytes: archive.archive_bytes,
            files: archive.counts.regular_files,
            source_bytes: archive.counts.file_bytes,
        })
    }

    /// What to do after the destination refused or lost the archive.
    fn destination_advice(&self) -> String {
        match self.destination.local_root() {
            Some(root) => format!(
                "nothing was kept under the final name; check free space and permissions of {}",
                root.display()
            ),
            None => format!(
                "nothing was stored under the final key; check the destination with `nkvm \
                 destinations check {}` and retry",
                self.destination.name()
            ),
        }
    }

    /// The run's error for a destination failure while writing the archive.
    fn write_error(&self, error: &DestinationError, keys: &ArtifactKeys) -> BackupError {
        BackupError::Write {
            artifact: self.destination.uri(&keys.archive),
            message: format!("{error}; {}", self.destination_advice()),
        }
    }

    /// Aborts an upload that must not be committed (bounded; what is left is recovered at the next
    /// start, and the run says so).
    async fn discard(&mut self, upload: Upload) {
        match tokio::time::timeout(ABORT_WAIT, upload.abort()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => self.warnings.push(format!(
                "{error}; the next start of nkvm removes the unfinished upload"
            )),
            Err(_) => self.warnings.push(format!(
                "aborting the upload to destination {} took longer than {} s; the next start of \
                 nkvm removes what is left",
                self.destination.name(),
                ABORT_WAIT.as_secs()
            )),
        }
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
        let keys = ArtifactKeys::new(&self.target.namespace, &self.target.name, self.started_at);
        self.record_destination(&keys).await?;
        self.check_destination(&plan, &keys).await?;
        inner.set_upload(
            &self.target,
            &self.run_id,
            self.destination.name(),
            &keys.archive,
        );
        Ok(Prepared { plan, owners, keys })
    }

    /// The history row names the destination and the archive's key from the start, so that
    /// recovery finds what an interrupted run left there.
    async fn record_destination(&mut self, keys: &ArtifactKeys) -> Result<(), BackupError> {
        let update = RunUpdate {
            destination: Some(self.destination.name().to_owned()),
            object_key: Some(keys.archive.clone()),
            ..RunUpdate::default()
        };
        self.update_row(&update, || {
            "could not record the run's destination in the history database; check that the \
             data directory is writable"
                .to_owned()
        })
        .await
    }

    /// Writes `update` to the run's history row (when it has one); a failure is a `record` error
    /// with `message`.
    async fn update_row(
        &self,
        update: &RunUpdate,
        message: impl FnOnce() -> String,
    ) -> Result<(), BackupError> {
        let Some(row) = self.row else {
            return Ok(());
        };
        self.inner
            .store
            .update_run(row, update)
            .await
            .map_err(|source| BackupError::Record {
                message: message(),
                source,
            })
    }

    /// Pre-flight of the destination: a local directory is created and must have room for the
    /// PVC's capacity; a remote server must answer, be trusted and accept the credentials (nothing
    /// is written yet).
    async fn check_destination(&self, plan: &Plan, keys: &ArtifactKeys) -> Result<(), BackupError> {
        let options = &self.inner.options;
        let Some(root) = self.destination.local_root() else {
            let connect = async {
                self.destination.connect().await.map_err(|error| {
                    BackupError::preflight(format!(
                        "{error}; no helper pod was started; check the destination with `nkvm \
                         destinations check {}`",
                        self.destination.name()
                    ))
                })
            };
            return Self::cancellable(&self.cancel, Stage::Preflight, connect).await;
        };
        let archive = root.join(&keys.archive);
        let dir = archive.parent().unwrap_or(root);
        tokio::fs::create_dir_all(dir).await.map_err(|err| {
            BackupError::preflight(format!(
                "cannot create the artifact directory {}: {err}; check the permissions of the \
                 data directory (or of the local destination's path)",
                dir.display()
            ))
        })?;
        if options.check_free_space
            && let Some(capacity) = plan.pvc.capacity_bytes
        {
            preflight::check_free_space(
                dir,
                capacity,
                &format!(
                    "the capacity of PVC {} ({})",
                    self.target,
                    plan.pvc.capacity.as_deref().unwrap_or("?")
                ),
            )?;
        }
        Ok(())
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
        let created = Self::cancellable(
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
        // Recovery and the sweeper delete only pods whose UID nkvm recorded.
        let recorded =
            cleanup::record_created(&inner.store, self.helper.as_mut(), &created, &self.run_id)
                .await;
        let update = RunUpdate {
            helper_uid: recorded.map_err(|source| BackupError::Record {
                message: format!("could not record helper pod {name} in the history database"),
                source,
            })?,
            ..RunUpdate::default()
        };
        self.update_row(&update, || {
            format!(
                "could not record helper pod {name} in the history database; check that the \
                 data directory is writable"
            )
        })
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

    /// Write: the verified archive becomes visible under its final key (local: fsync, link to
    /// the final name, never replacing one, directory fsync; S3: CompleteMultipartUpload; SFTP and
    /// FTPS: rename). Not cancellable: a cancel between the server's answer and ours could leave
    /// a committed archive behind a cancelled run.
    async fn write(
        &mut self,
        upload: Upload,
        keys: &ArtifactKeys,
    ) -> Result<CommittedObject, BackupError> {
        self.enter(Stage::Write);
        upload
            .commit()
            .await
            .map_err(|error| self.write_error(&error, keys))
    }

    /// Finalize: the sidecar and the manifest beside the archive (all three removed on failure).
    async fn finalize(
        &mut self,
        prepared: &Prepared,
        helper_pod: &str,
        archive: &StreamedArchive,
    ) -> Result<jiff::Timestamp, BackupError> {
        let options = &self.inner.options;
        let keys = &prepared.keys;
        self.enter(Stage::Finalize);
        let finished_at = jiff::Timestamp::now();
        let (owner_kind, owner_name) = pvc::display_owners(&prepared.owners);
        let counts = archive.counts;
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
                file: artifact::file_name(&keys.archive).to_owned(),
                bytes: archive.archive_bytes,
                sha256: archive.sha256.clone(),
                format: "tar+gzip".to_owned(),
                gzip_level: options.gzip_level.min(9),
                files: counts.regular_files,
                source_bytes: counts.file_bytes,
                compressed_by: Some(self.compression.as_str().to_owned()),
            },
            contents: counts,
        };
        if let Err(err) = outcome::write_finals(
            &self.destination,
            keys,
            &archive.sha256,
            &manifest,
            &self.destination_advice(),
        )
        .await
        {
            for key in [&keys.archive, &keys.sidecar, &keys.manifest] {
                match self.destination.delete(key).await {
                    Ok(()) | Err(DestinationError::NotFound { .. }) => {}
                    Err(error) => self.warnings.push(format!(
                        "{error}; delete it by hand: it is incomplete without its checksum"
                    )),
                }
            }
            return Err(err);
        }
        Ok(finished_at)
    }

    /// Record: the history row says succeeded, with the archive's facts and where it is.
    async fn record(
        &mut self,
        committed: &CommittedObject,
        helper_pod: &str,
        archive: &StreamedArchive,
        finished_at: jiff::Timestamp,
    ) -> Result<(), BackupError> {
        self.enter(Stage::Record);
        let counts = archive.counts;
        let update = RunUpdate {
            status: Some(RunStatus::Succeeded),
            stage: None,
            message: Some(success_message(
                counts.regular_files,
                counts.file_bytes,
                archive.archive_bytes,
                self.clock.elapsed(),
            )),
            finished_at: Some(finished_at),
            bytes: Some(archive.archive_bytes),
            source_bytes: Some(counts.file_bytes),
            files: Some(counts.regular_files),
            sha256: Some(archive.sha256.clone()),
            artifact: Some(committed.uri.clone()),
            helper_pod: Some(helper_pod.to_owned()),
            node: self.node.clone(),
            destination: Some(self.destination.name().to_owned()),
            object_key: Some(committed.key.clone()),
            ..RunUpdate::default()
        };
        self.update_row(&update, || {
            format!(
                "the archive {} is complete and verified, but the history database could not \
                 record it; it is still usable (check it with its .sha256 file)",
                committed.uri
            )
        })
        .await
    }
}

mod conclude;
mod streaming;
