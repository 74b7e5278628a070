//! The backup engine: runs batches with bounded concurrency (a semaphore), one run per PVC at a time,
//! each PVC's result independent; publishes progress on a broadcast channel; cancels runs by id; and
//! drives one run through its stages, cleaning up on every path.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client};
use tokio::sync::{Semaphore, broadcast};
use tokio_util::sync::CancellationToken;

use super::artifact::{self, ArchiveInfo, ArtifactPaths, Manifest};
use super::cleanup::{self, HelperGuard, RecoveryReport, RecoveryScope, Sweeper};
use super::error::BackupError;
use super::helper::{self, ExecOutcome, RetryPolicy, TarSession, Totals};
use super::pod::{self, HelperPodParams};
use super::preflight::{self, short_bytes};
use super::stream::{self, PartialArchive, StreamConfig, StreamError, StreamProgress};
use super::{BackupOptions, BackupResult, ProgressEvent, PvcRef, ResultStatus, rfc3339};
use crate::owners;
use crate::store::{NewRun, RunStatus, RunUpdate, Stage, Store, StoreError};

/// Capacity of the progress channel; slow subscribers lose the oldest events (`Lagged`).
const EVENT_CAPACITY: usize = 1024;
/// Wait for tar's exit code after the archive's end.
const STATUS_WAIT: Duration = Duration::from_secs(30);
/// After tar reported its exit, how long a silent stdout still counts as in flight.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// A run in progress (or waiting for a slot).
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveRun {
    pub run_id: String,
    pub target: PvcRef,
    /// The latest progress event, if any.
    pub latest: Option<ProgressEvent>,
}

#[derive(Debug)]
struct Slot {
    run_id: String,
    cancel: CancellationToken,
    partial: Option<PathBuf>,
    latest: Option<ProgressEvent>,
}

struct Inner {
    client: Client,
    stream_client: Client,
    store: Store,
    options: BackupOptions,
    semaphore: Arc<Semaphore>,
    active: Mutex<HashMap<PvcRef, Slot>>,
    events: broadcast::Sender<ProgressEvent>,
    sweeper: Sweeper,
}

/// Runs backups. Cheap to clone; clones share runs, progress and the sweeper.
#[derive(Clone)]
pub struct BackupEngine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for BackupEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupEngine")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

/// A run that was admitted: its id and its task.
#[derive(Debug)]
pub struct StartedRun {
    pub run_id: String,
    pub handle: tokio::task::JoinHandle<BackupResult>,
}

/// A client like `config`'s without a read timeout, for exec streams and watches: a stream that is
/// quiet for a while is judged by the stall timeout, not by the HTTP read timeout.
pub fn stream_client(config: &kube::Config) -> Result<Client, kube::Error> {
    let mut config = config.clone();
    config.read_timeout = None;
    Client::try_from(config)
}

impl BackupEngine {
    /// An engine using `client` for every call. Exec streams then share its read timeout; prefer
    /// [`BackupEngine::with_clients`] with a [`stream_client`].
    pub fn new(client: Client, store: Store, options: BackupOptions) -> Self {
        Self::with_clients(client.clone(), client, store, options)
    }

    /// An engine with a separate client for exec streams and watches.
    pub fn with_clients(
        client: Client,
        stream_client: Client,
        store: Store,
        options: BackupOptions,
    ) -> Self {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let sweeper = Sweeper::new(
            client.clone(),
            options.sweep_interval,
            options.request_timeout,
        );
        Self {
            inner: Arc::new(Inner {
                client,
                stream_client,
                store,
                semaphore: Arc::new(Semaphore::new(options.concurrency.max(1))),
                options,
                active: Mutex::default(),
                events,
                sweeper,
            }),
        }
    }

    pub fn options(&self) -> &BackupOptions {
        &self.inner.options
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The sweeper retrying failed helper deletions.
    pub fn sweeper(&self) -> &Sweeper {
        &self.inner.sweeper
    }

    /// Progress events of every run from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ProgressEvent> {
        self.inner.events.subscribe()
    }

    /// Runs waiting or in progress, sorted by PVC.
    pub fn active_runs(&self) -> Vec<ActiveRun> {
        let Ok(active) = self.inner.active.lock() else {
            return Vec::new();
        };
        let mut runs: Vec<ActiveRun> = active
            .iter()
            .map(|(target, slot)| ActiveRun {
                run_id: slot.run_id.clone(),
                target: target.clone(),
                latest: slot.latest.clone(),
            })
            .collect();
        runs.sort_by(|a, b| a.target.cmp(&b.target));
        runs
    }

    /// Cancels a run by id; false when no such run is active.
    pub fn cancel(&self, run_id: &str) -> bool {
        let Ok(active) = self.inner.active.lock() else {
            return false;
        };
        match active.values().find(|s| s.run_id == run_id) {
            Some(slot) => {
                slot.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// Cancels every active run; returns how many.
    pub fn cancel_all(&self) -> usize {
        let Ok(active) = self.inner.active.lock() else {
            return 0;
        };
        for slot in active.values() {
            slot.cancel.cancel();
        }
        active.len()
    }

    /// Start-up recovery (see [`cleanup::recover`]) for this engine's instance, sparing its own
    /// active runs.
    pub async fn recover(
        &self,
        namespaces: Option<&[String]>,
    ) -> Result<RecoveryReport, StoreError> {
        let (run_ids, partials): (HashSet<String>, HashSet<PathBuf>) = self
            .inner
            .active
            .lock()
            .map(|a| {
                (
                    a.values().map(|s| s.run_id.clone()).collect(),
                    a.values().filter_map(|s| s.partial.clone()).collect(),
                )
            })
            .unwrap_or_default();
        let scope = RecoveryScope {
            instance: self.inner.options.instance.as_deref(),
            namespaces,
            active_run_ids: &run_ids,
            active_partials: &partials,
        };
        cleanup::recover(
            &self.inner.client,
            &self.inner.store,
            &self.inner.options.artifacts_dir(),
            &scope,
            self.inner.options.request_timeout,
        )
        .await
    }

    /// Admits a backup of `target` and starts it in a task (it waits for a concurrency slot there).
    /// Refused with a failed result when a backup of the same PVC is already active.
    pub fn start(&self, target: PvcRef, started_by: &str) -> Result<StartedRun, Box<BackupResult>> {
        let now = jiff::Timestamp::now();
        let run_id = new_run_id(now);
        let cancel = CancellationToken::new();
        {
            let Ok(mut active) = self.inner.active.lock() else {
                return Err(Box::new(refused(
                    &target,
                    now,
                    "the engine's run registry is unusable",
                )));
            };
            if let Some(slot) = active.get(&target) {
                return Err(Box::new(refused(
                    &target,
                    now,
                    &format!(
                        "a backup of {target} is already running (run {}); wait for it to finish \
                         or cancel it",
                        slot.run_id
                    ),
                )));
            }
            active.insert(
                target.clone(),
                Slot {
                    run_id: run_id.clone(),
                    cancel: cancel.clone(),
                    partial: None,
                    latest: None,
                },
            );
        }
        let ticket = Ticket {
            inner: self.inner.clone(),
            target,
            run_id: run_id.clone(),
        };
        let started_by = started_by.to_owned();
        let handle = tokio::spawn(async move {
            let inner = ticket.inner.clone();
            let result = run(&inner, &ticket, cancel, started_by).await;
            drop(ticket);
            result
        });
        Ok(StartedRun { run_id, handle })
    }

    /// Backs up every target (bounded by `concurrency`) and returns one result per target, in order.
    pub async fn run_batch(&self, targets: Vec<PvcRef>, started_by: &str) -> Vec<BackupResult> {
        let started: Vec<(PvcRef, Result<StartedRun, Box<BackupResult>>)> = targets
            .into_iter()
            .map(|t| (t.clone(), self.start(t, started_by)))
            .collect();
        let mut results = Vec::with_capacity(started.len());
        for (target, run) in started {
            results.push(match run {
                Err(result) => *result,
                Ok(run) => match run.handle.await {
                    Ok(result) => result,
                    Err(err) => {
                        let now = jiff::Timestamp::now();
                        let mut result = refused(
                            &target,
                            now,
                            &format!("the backup task ended abnormally ({err}); see the logs"),
                        );
                        result.run_id = Some(run.run_id);
                        result
                    }
                },
            });
        }
        results
    }
}

/// Removes its PVC from the active runs when dropped (also when the task is aborted).
struct Ticket {
    inner: Arc<Inner>,
    target: PvcRef,
    run_id: String,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Ok(mut active) = self.inner.active.lock()
            && active
                .get(&self.target)
                .is_some_and(|s| s.run_id == self.run_id)
        {
            active.remove(&self.target);
        }
    }
}

fn refused(target: &PvcRef, now: jiff::Timestamp, message: &str) -> BackupResult {
    BackupResult {
        namespace: target.namespace.clone(),
        pvc: target.name.clone(),
        status: ResultStatus::Failed,
        stage: Some(Stage::Preflight),
        message: message.to_owned(),
        artifact: None,
        sha256: None,
        bytes: None,
        files: None,
        started_at: rfc3339(now),
        finished_at: rfc3339(now),
        run_id: None,
        pvc_uid: None,
        source_bytes: None,
        node: None,
        helper_pod: None,
        cancelled: false,
        warnings: Vec::new(),
    }
}

/// `20261128t231858-3f9a1c`: UTC second plus 24 random bits (lowercase: valid in names and labels).
pub fn new_run_id(now: jiff::Timestamp) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_i128(now.as_nanosecond());
    let random = hasher.finish() & 0xff_ffff;
    format!("{}-{random:06x}", now.strftime("%Y%m%dt%H%M%S"))
}

async fn run(
    inner: &Inner,
    ticket: &Ticket,
    cancel: CancellationToken,
    started_by: String,
) -> BackupResult {
    let mut run = Run::new(inner, ticket, cancel, started_by);
    run.tracker.emit();
    let permit = tokio::select! {
        biased;
        () = run.cancel.cancelled() => None,
        permit = inner.semaphore.clone().acquire_owned() => permit.ok(),
    };
    let outcome = match &permit {
        Some(_) if run.cancel.is_cancelled() => Err(BackupError::Cancelled {
            stage: Stage::Preflight,
        }),
        Some(_) => run.execute().await,
        None => Err(BackupError::Cancelled {
            stage: Stage::Preflight,
        }),
    };
    // The slot is released only after the run's final state is recorded and published, so that
    // observers never see more than `concurrency` runs at once.
    let result = run.conclude(outcome).await;
    drop(permit);
    result
}

/// What a successful run produced.
#[derive(Debug)]
struct Success {
    archive: PathBuf,
    sha256: String,
    bytes: u64,
    files: u64,
    source_bytes: u64,
}

/// Publishes a run's progress.
struct Tracker<'a> {
    inner: &'a Inner,
    target: PvcRef,
    event: ProgressEvent,
    started: Instant,
    samples: VecDeque<(Instant, u64)>,
}

/// Window of the rate estimate.
const RATE_WINDOW: Duration = Duration::from_secs(5);

impl Tracker<'_> {
    fn emit(&mut self) {
        self.event.elapsed_secs = self.started.elapsed().as_secs_f64();
        if let Ok(mut active) = self.inner.active.lock()
            && let Some(slot) = active.get_mut(&self.target)
            && slot.run_id == self.event.run_id
        {
            slot.latest = Some(self.event.clone());
        }
        // No subscriber is fine.
        let _ = self.inner.events.send(self.event.clone());
    }

    fn stage(&mut self, stage: Stage) {
        self.event.stage = stage;
        self.emit();
    }

    fn update(&mut self, progress: &StreamProgress) {
        let now = Instant::now();
        self.samples.push_back((now, progress.bytes_read));
        while self.samples.len() > 2
            && self
                .samples
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
        {
            self.samples.pop_front();
        }
        if let (Some((t0, b0)), Some((t1, b1))) = (self.samples.front(), self.samples.back()) {
            let dt = t1.duration_since(*t0).as_secs_f64();
            if dt > 0.0 {
                self.event.rate_bytes_per_sec = (b1 - b0) as f64 / dt;
            }
        }
        self.event.bytes_read = progress.bytes_read;
        self.event.archive_bytes = progress.archive_bytes;
        self.event.files = progress.files;
        self.event.source_bytes = progress.source_bytes;
        self.emit();
    }
}

/// One run's state while it goes through the stages.
struct Run<'a> {
    inner: &'a Inner,
    target: PvcRef,
    run_id: String,
    cancel: CancellationToken,
    started_by: String,
    started_at: jiff::Timestamp,
    clock: Instant,
    stage: Stage,
    row: Option<i64>,
    pvc_uid: Option<String>,
    helper: Option<HelperGuard>,
    helper_name: Option<String>,
    node: Option<String>,
    tracker: Tracker<'a>,
    warnings: Vec<String>,
}

impl<'a> Run<'a> {
    fn new(
        inner: &'a Inner,
        ticket: &Ticket,
        cancel: CancellationToken,
        started_by: String,
    ) -> Self {
        let started_at = jiff::Timestamp::now();
        Self {
            inner,
            target: ticket.target.clone(),
            run_id: ticket.run_id.clone(),
            cancel,
            started_by,
            started_at,
            clock: Instant::now(),
            stage: Stage::Preflight,
            row: None,
            pvc_uid: None,
            helper: None,
            helper_name: None,
            node: None,
            tracker: Tracker {
                inner,
                target: ticket.target.clone(),
                event: ProgressEvent {
                    run_id: ticket.run_id.clone(),
                    namespace: ticket.target.namespace.clone(),
                    pvc: ticket.target.name.clone(),
                    stage: Stage::Preflight,
                    status: RunStatus::Running,
                    bytes_read: 0,
                    source_bytes: 0,
                    archive_bytes: 0,
                    files: 0,
                    rate_bytes_per_sec: 0.0,
                    total_bytes: None,
                    total_files: None,
                    elapsed_secs: 0.0,
                    message: None,
                },
                started: Instant::now(),
                samples: VecDeque::new(),
            },
            warnings: Vec::new(),
        }
    }

    fn enter(&mut self, stage: Stage) {
        self.stage = stage;
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

    fn set_partial(&self, path: PathBuf) {
        if let Ok(mut active) = self.inner.active.lock()
            && let Some(slot) = active.get_mut(&self.target)
            && slot.run_id == self.run_id
        {
            slot.partial = Some(path);
        }
    }

    async fn execute(&mut self) -> Result<Success, BackupError> {
        let inner = self.inner;
        let options = &inner.options;
        let cancel = self.cancel.clone();
        let timeout = options.request_timeout;

        // Pre-flight.
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
        self.set_partial(stream::partial_path_of(&paths.archive));

        // Create the helper.
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
            timeout,
            inner.sweeper.clone(),
        ));
        let api: Api<Pod> = Api::namespaced(inner.client.clone(), &self.target.namespace);
        let stream_api: Api<Pod> =
            Api::namespaced(inner.stream_client.clone(), &self.target.namespace);
        let retry = RetryPolicy {
            attempts: options.create_attempts,
            base_delay: options.retry_base_delay,
        };
        Self::cancellable(
            &cancel,
            Stage::Create,
            helper::create_with_retry(&api, &helper_pod, retry, timeout),
        )
        .await?;

        // Wait for it to run.
        self.enter(Stage::Schedule);
        let running = Self::cancellable(
            &cancel,
            Stage::Schedule,
            helper::wait_running(&stream_api, &name, options.schedule_timeout),
        )
        .await?;
        self.node = running
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .or(plan.node.clone());

        // Exec tar (after an optional pre-scan for totals).
        self.enter(Stage::Exec);
        if options.prescan {
            let totals: Option<Totals> = Self::cancellable(&cancel, Stage::Exec, async {
                Ok(helper::prescan(&stream_api, &name, options.prescan_timeout).await)
            })
            .await?;
            if let Some(totals) = totals {
                self.tracker.event.total_bytes = Some(totals.bytes);
                self.tracker.event.total_files = Some(totals.files);
            }
        }
        let mut session = Self::cancellable(
            &cancel,
            Stage::Exec,
            TarSession::start(&stream_api, &name, helper::tar_command(), true, retry),
        )
        .await?;

        // Stream.
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
            &cancel,
            exited,
            |progress| tracker.update(progress),
        )
        .await;
        let outcome = match &streamed {
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
        let partial = self.judge(streamed, &outcome, &name).await?;

        // Write: the verified archive gets its final name.
        self.enter(Stage::Write);
        let counts = partial.counts;
        let (sha256, bytes) = (partial.sha256.clone(), partial.archive_bytes);
        let archive = partial.commit().await.map_err(|err| match err {
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
        })?;

        // Finalize: sidecar and manifest.
        self.enter(Stage::Finalize);
        let finished_at = jiff::Timestamp::now();
        let (owner_kind, owner_name) = owners::display(&owners);
        let manifest = Manifest {
            format: artifact::MANIFEST_FORMAT.to_owned(),
            nkvm_version: env!("CARGO_PKG_VERSION").to_owned(),
            run_id: self.run_id.clone(),
            started_by: self.started_by.clone(),
            started_at: rfc3339(self.started_at),
            finished_at: rfc3339(finished_at),
            pvc: plan.pvc.clone(),
            owner_kind,
            owner_name,
            owners,
            consumers: plan.consumers.clone(),
            node: self.node.clone(),
            helper_pod: name.clone(),
            helper_image: options.helper_image.clone(),
            archive: ArchiveInfo {
                file: paths.archive_file_name(),
                bytes,
                sha256: sha256.clone(),
                format: "tar+gzip".to_owned(),
                gzip_level: options.gzip_level.min(9),
                files: counts.regular_files,
                source_bytes: counts.file_bytes,
            },
            contents: counts,
        };
        if let Err(err) = write_finals(&paths, &sha256, &manifest).await {
            for path in [&paths.archive, &paths.sidecar, &paths.manifest] {
                let _ = tokio::fs::remove_file(path).await;
            }
            return Err(err);
        }

        // Record.
        self.enter(Stage::Record);
        if let Some(row) = self.row {
            inner
                .store
                .update_run(
                    row,
                    &RunUpdate {
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
                        sha256: Some(sha256.clone()),
                        artifact: Some(archive.display().to_string()),
                        helper_pod: Some(name.clone()),
                        node: self.node.clone(),
                    },
                )
                .await
                .map_err(|source| BackupError::Record {
                    message: format!(
                        "the archive {} is complete and verified, but the history database could \
                         not record it; it is still usable (check it with its .sha256 file)",
                        archive.display()
                    ),
                    source,
                })?;
        }
        Ok(Success {
            archive,
            sha256,
            bytes,
            files: counts.regular_files,
            source_bytes: counts.file_bytes,
        })
    }

    /// Decides what the end of the stream means, given tar's exit status.
    async fn judge(
        &self,
        streamed: Result<PartialArchive, StreamError>,
        outcome: &ExecOutcome,
        pod: &str,
    ) -> Result<PartialArchive, BackupError> {
        let streamed = match streamed {
            Ok(partial) if outcome.succeeded() => return Ok(partial),
            Err(StreamError::Cancelled) => {
                return Err(BackupError::Cancelled {
                    stage: Stage::Stream,
                });
            }
            Err(StreamError::Write { path, source }) => {
                return Err(BackupError::Write {
                    path,
                    message: format!(
                        "{source}; check free space and permissions of the data directory"
                    ),
                });
            }
            Err(StreamError::Stalled(after)) => {
                return Err(BackupError::Stream {
                    message: format!(
                        "stalled: no data for {}s from tar in helper pod {pod}; the volume or its \
                         node may be hung (check `kubectl describe pod -n {} {pod}`), or raise the \
                         stall timeout for very slow storage",
                        after.as_secs(),
                        self.target.namespace
                    ),
                });
            }
            other => other,
        };
        let stderr = if outcome.stderr.is_empty() {
            String::new()
        } else {
            format!("; tar said: {}", last_lines(&outcome.stderr, 8))
        };
        // A deleted or evicted helper explains whatever else went wrong (tar killed, stream cut).
        if helper::helper_gone(&self.inner.client, &self.target.namespace, pod).await {
            let why = match (&streamed, outcome.exit_code()) {
                (Err(err), _) => err.to_string(),
                (Ok(_), Some(code)) => format!("tar exited with code {code}"),
                (Ok(_), None) => "tar's exit status is unknown".to_owned(),
            };
            return Err(BackupError::Stream {
                message: format!(
                    "helper pod {pod} was deleted or stopped while streaming ({why}); the \
                     incomplete archive was discarded; retry the backup"
                ),
            });
        }
        if let Some(code) = outcome.exit_code() {
            let note = match &streamed {
                Err(err) => format!(" (and the stream was {})", short(&err.to_string())),
                Ok(_) => String::new(),
            };
            return Err(BackupError::Exec {
                pod: pod.to_owned(),
                message: format!(
                    "tar exited with code {code} in helper pod {pod}{note}{stderr}; {}",
                    exit_advice(code, &self.inner.options.helper_image)
                ),
            });
        }
        match streamed {
            Err(err) => Err(BackupError::Stream {
                message: format!(
                    "{err}{stderr}; the archive was discarded; retry, and check the helper pod and \
                     the network to the apiserver if it happens again"
                ),
            }),
            Ok(_) => {
                let detail = match (&outcome.status, &outcome.transport_error) {
                    (Some(status), _) => format!(
                        "the exec failed: {} {}",
                        status.reason.as_deref().unwrap_or_default(),
                        status.message.as_deref().unwrap_or_default()
                    ),
                    (None, Some(err)) => format!("the exec connection failed ({err})"),
                    (None, None) => "the exec connection closed without an exit status".to_owned(),
                };
                Err(BackupError::Exec {
                    pod: pod.to_owned(),
                    message: format!(
                        "tar's exit status is unknown: {detail}{stderr}; the archive was \
                         discarded; retry"
                    ),
                })
            }
        }
    }

    /// Cleanup, history and the result, on every path.
    async fn conclude(mut self, outcome: Result<Success, BackupError>) -> BackupResult {
        let inner = self.inner;
        if let Some(helper) = self.helper.take() {
            self.stage_event_only(Stage::Cleanup);
            if let Err(err) = helper.delete().await {
                self.warnings.push(err);
            }
        }
        let finished_at = jiff::Timestamp::now();
        let mut result = BackupResult {
            namespace: self.target.namespace.clone(),
            pvc: self.target.name.clone(),
            status: ResultStatus::Succeeded,
            stage: None,
            message: String::new(),
            artifact: None,
            sha256: None,
            bytes: None,
            files: None,
            started_at: rfc3339(self.started_at),
            finished_at: rfc3339(finished_at),
            run_id: Some(self.run_id.clone()),
            pvc_uid: self.pvc_uid.clone(),
            source_bytes: None,
            node: self.node.clone(),
            helper_pod: self.helper_name.clone(),
            cancelled: false,
            warnings: Vec::new(),
        };
        match outcome {
            Ok(success) => {
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
                    if let Err(err) = inner.store.update_run(row, &update).await {
                        tracing::warn!(run_id = %self.run_id, error = %err, "could not record the cleanup warning");
                    }
                }
                self.tracker.event.status = RunStatus::Succeeded;
            }
            Err(err) => {
                let stage = err.stage();
                let status = if err.is_cancelled() {
                    RunStatus::Cancelled
                } else {
                    RunStatus::Failed
                };
                result.status = ResultStatus::Failed;
                result.stage = Some(stage);
                result.cancelled = err.is_cancelled();
                result.message = err.to_string();
                if !matches!(err, BackupError::Record { .. })
                    && let Some(row) = self.row
                {
                    let update = RunUpdate {
                        status: Some(status),
                        stage: Some(stage),
                        message: Some(with_warnings(&result.message, &self.warnings)),
                        finished_at: Some(finished_at),
                        helper_pod: self.helper_name.clone(),
                        node: self.node.clone(),
                        ..RunUpdate::default()
                    };
                    if let Err(err) = inner.store.update_run(row, &update).await {
                        self.warnings
                            .push(format!("the history database was not updated: {err}"));
                    }
                } else if let (BackupError::Record { .. }, Some(row)) = (&err, self.row) {
                    // Best effort: the database failed once already.
                    let update = RunUpdate {
                        status: Some(RunStatus::Failed),
                        stage: Some(Stage::Record),
                        message: Some(result.message.clone()),
                        finished_at: Some(finished_at),
                        ..RunUpdate::default()
                    };
                    let _ = inner.store.update_run(row, &update).await;
                }
                self.tracker.event.status = status;
                self.tracker.event.stage = stage;
                tracing::info!(run_id = %self.run_id, pvc = %self.target, ?stage, error = %result.message, "backup failed");
            }
        }
        // Observers (the web UI) see what the history row says, cleanup warnings included.
        self.tracker.event.message = Some(with_warnings(&result.message, &self.warnings));
        result.warnings = std::mem::take(&mut self.warnings);
        self.tracker.emit();
        result
    }

    fn stage_event_only(&mut self, stage: Stage) {
        self.tracker.stage(stage);
    }
}

/// A result message followed by the run's warnings (as recorded in the history).
fn with_warnings(message: &str, warnings: &[String]) -> String {
    if warnings.is_empty() {
        message.to_owned()
    } else {
        format!("{message}; warning: {}", warnings.join("; "))
    }
}

async fn write_finals(
    paths: &ArtifactPaths,
    sha256: &str,
    manifest: &Manifest,
) -> Result<(), BackupError> {
    let finalize = |path: &PathBuf, message: String| BackupError::Finalize {
        path: path.clone(),
        message,
    };
    let line = artifact::sidecar_line(sha256, &paths.archive_file_name());
    artifact::write_file_atomic(&paths.sidecar, line.as_bytes())
        .await
        .map_err(|err| {
            finalize(
                &paths.sidecar,
                format!("{err}; the archive was removed; free space and retry"),
            )
        })?;
    let json = serde_json::to_vec_pretty(manifest).map_err(|err| {
        finalize(
            &paths.manifest,
            format!("cannot serialise the manifest: {err}"),
        )
    })?;
    artifact::write_file_atomic(&paths.manifest, &json)
        .await
        .map_err(|err| {
            finalize(
                &paths.manifest,
                format!("{err}; the archive was removed; free space and retry"),
            )
        })
}

fn success_message(files: u64, source_bytes: u64, archive_bytes: u64, took: Duration) -> String {
    let secs = took.as_secs_f64().max(0.001);
    format!(
        "backed up {files} files ({}) into a {} archive in {secs:.1}s",
        short_bytes(source_bytes),
        short_bytes(archive_bytes),
    )
}

/// The last `n` lines of a text.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

fn short(text: &str) -> String {
    let mut out: String = text.chars().take(200).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// What to do about a tar exit code.
fn exit_advice(code: i64, image: &str) -> String {
    match code {
        1 => "some files changed while tar read them (GNU tar exit 1), so the archive may be \
              inconsistent; stop or quiesce the workload writing to the volume and retry"
            .to_owned(),
        2 => "tar hit a fatal error, usually a file or directory it may not read (the helper runs \
              as the consumer pod's user when that pod names one); fix the permissions or run the \
              backup when the volume is readable, then retry"
            .to_owned(),
        126 | 127 => format!(
            "tar is missing or not executable in the helper image {image}; use an image with GNU \
             tar (--helper-image / NKVM_HELPER_IMAGE)"
        ),
        137 => {
            "tar was killed (out of memory, or the helper pod was deleted); retry, and raise the \
                helper's memory limit if it happens again"
                .to_owned()
        }
        _ => "see tar's messages above; retry once the cause is fixed".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_dns_safe_and_unique() {
        let now: jiff::Timestamp = "2026-11-28T23:18:58.5Z".parse().unwrap();
        let a = new_run_id(now);
        let b = new_run_id(now);
        assert_ne!(a, b);
        assert!(a.starts_with("20261128t231858-"), "{a}");
        assert_eq!(a.len(), "20261128t231858-3f9a1c".len());
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        );
        assert!(pod::helper_pod_name(&a).len() <= 63);
    }

    #[test]
    fn exit_advice_covers_common_codes() {
        assert!(exit_advice(1, "i").contains("changed"));
        assert!(exit_advice(2, "i").contains("permissions"));
        assert!(exit_advice(127, "img").contains("img"));
        assert!(exit_advice(137, "i").contains("killed"));
    }

    #[test]
    fn last_lines_joins_the_tail() {
        assert_eq!(last_lines("a\nb\nc", 2), "b | c");
    }
}
