//! The backup engine: admits runs (one per PVC at a time), bounds how many run at once (a
//! semaphore), cancels them by id, publishes their progress on a broadcast channel, and runs start-up
//! recovery sparing its own runs. Each admitted run goes through its stages in [`super::run`].

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use kube::Client;
use tokio::sync::{Semaphore, broadcast};
use tokio_util::sync::CancellationToken;

use super::cleanup::{self, RecoveryReport, RecoveryScope, Sweeper};
use super::error::BackupError;
use super::run::Run;
use super::{BackupOptions, BackupResult, ProgressEvent, PvcRef, Requester};
use crate::audit::{AuditAction, AuditOutcome};
use crate::cancel::{self, Cancellable};
use crate::destination::{Destination, Destinations};
use crate::domain::Stage;
use crate::store::{Store, StoreError};

/// Capacity of the progress channel; slow subscribers lose the oldest events (`Lagged`).
const EVENT_CAPACITY: usize = 1024;

/// A run in progress (or waiting for a slot).
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveRun {
    pub run_id: String,
    pub target: PvcRef,
    /// The latest progress event, if any.
    pub latest: Option<ProgressEvent>,
}

#[derive(Debug)]
pub(super) struct Slot {
    run_id: String,
    cancel: CancellationToken,
    /// The upload the run writes (destination name, key), so that recovery spares it.
    upload: Option<(String, String)>,
    latest: Option<ProgressEvent>,
}

impl Cancellable for Slot {
    fn id(&self) -> &str {
        &self.run_id
    }
    fn token(&self) -> &CancellationToken {
        &self.cancel
    }
}

pub(super) struct Inner {
    pub(super) client: Client,
    pub(super) stream_client: Client,
    pub(super) store: Store,
    pub(super) options: BackupOptions,
    /// Where archives may go: `options.destinations`, else only `local`.
    pub(super) destinations: Destinations,
    semaphore: Arc<Semaphore>,
    active: Mutex<HashMap<PvcRef, Slot>>,
    events: broadcast::Sender<ProgressEvent>,
    pub(super) sweeper: Sweeper,
}

impl Inner {
    /// Publishes a run's event and keeps it as the run's latest (for snapshots).
    pub(super) fn publish(&self, target: &PvcRef, event: &ProgressEvent) {
        if let Ok(mut active) = self.active.lock()
            && let Some(slot) = active.get_mut(target)
            && slot.run_id == event.run_id
        {
            slot.latest = Some(event.clone());
        }
        // No subscriber is fine.
        let _ = self.events.send(event.clone());
    }

    /// Records the upload a run writes (destination name, key), so that recovery spares it.
    pub(super) fn set_upload(&self, target: &PvcRef, run_id: &str, destination: &str, key: &str) {
        if let Ok(mut active) = self.active.lock()
            && let Some(slot) = active.get_mut(target)
            && slot.run_id == run_id
        {
            slot.upload = Some((destination.to_owned(), key.to_owned()));
        }
    }
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

/// A run that was admitted: its id, its destination's name and its task.
#[derive(Debug)]
pub struct StartedRun {
    pub run_id: String,
    pub destination: String,
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
                destinations: options.destinations(),
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

    /// Where archives may go (the default one is used when a run names none).
    pub fn destinations(&self) -> &Destinations {
        &self.inner.destinations
    }

    /// The client for ordinary API calls.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The client without a read timeout, for exec streams and watches.
    pub fn stream_client(&self) -> &Client {
        &self.inner.stream_client
    }

    /// Whether a backup of `target` is waiting or running.
    pub fn is_active(&self, target: &PvcRef) -> bool {
        self.inner
            .active
            .lock()
            .is_ok_and(|active| active.contains_key(target))
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

    /// Cancels a run by id for `requester` (audited); false when no such run is active.
    pub async fn cancel_for(&self, run_id: &str, requester: &Requester) -> bool {
        let cancelled = self.cancel(run_id);
        let target = format!("run {run_id}");
        cancel::audited(
            &self.inner.store,
            requester,
            AuditAction::BackupCancelled,
            target,
            cancelled,
        )
        .await
    }

    /// Cancels a run by id; false when no such run is active.
    pub fn cancel(&self, run_id: &str) -> bool {
        (self.inner.active.lock()).is_ok_and(|active| cancel::cancel_one(active.values(), run_id))
    }

    /// Cancels every active run; returns how many.
    pub fn cancel_all(&self) -> usize {
        (self.inner.active.lock()).map_or(0, |active| cancel::cancel_every(active.values()))
    }

    /// Start-up recovery (see `cleanup::recover`) for this engine's instance, sparing its own
    /// active runs.
    pub async fn recover(
        &self,
        namespaces: Option<&[String]>,
    ) -> Result<RecoveryReport, StoreError> {
        let (run_ids, uploads): (HashSet<String>, HashSet<(String, String)>) = self
            .inner
            .active
            .lock()
            .map(|a| {
                (
                    a.values().map(|s| s.run_id.clone()).collect(),
                    a.values().filter_map(|s| s.upload.clone()).collect(),
                )
            })
            .unwrap_or_default();
        let scope = RecoveryScope {
            instance: self.inner.options.instance.as_deref(),
            namespaces,
            active_run_ids: &run_ids,
            active_uploads: &uploads,
        };
        cleanup::recover(
            &self.inner.client,
            &self.inner.store,
            &self.inner.destinations,
            &self.inner.options.artifacts_dir(),
            &scope,
            self.inner.options.request_timeout,
        )
        .await
    }

    /// Admits a backup of `target` to the default destination for `requester` (see
    /// [`BackupEngine::start_to`]).
    pub async fn start(
        &self,
        target: PvcRef,
        requester: &Requester,
    ) -> Result<StartedRun, Box<BackupResult>> {
        self.start_to(target, None, requester).await
    }

    /// Admits a backup of `target` to `destination` (a name of [`BackupEngine::destinations`];
    /// `None`: the default one) for `requester` and starts it in a task (it waits for a concurrency
    /// slot there). Refused with a failed result when the namespace is outside the allowlist, the
    /// destination is unknown, or a backup of the same PVC is already active. Every start and
    /// refusal is audited, whoever asks (web or CLI).
    pub async fn start_to(
        &self,
        target: PvcRef,
        destination: Option<&str>,
        requester: &Requester,
    ) -> Result<StartedRun, Box<BackupResult>> {
        let admitted = self.admit(&target, destination, requester);
        let event = match &admitted {
            Ok(started) => requester
                .audit_event(AuditAction::BackupStarted, AuditOutcome::Success)
                .with_detail(format!(
                    "run {} to destination {}",
                    started.run_id, started.destination
                )),
            Err(refused) => requester
                .audit_event(AuditAction::BackupStarted, AuditOutcome::Failure)
                .with_detail(refused.message.clone()),
        };
        self.inner
            .store
            .audit(&event.with_target(target.to_string()))
            .await;
        admitted
    }

    /// The admission checks of [`BackupEngine::start`], then the run's task.
    fn admit(
        &self,
        target: &PvcRef,
        destination: Option<&str>,
        requester: &Requester,
    ) -> Result<StartedRun, Box<BackupResult>> {
        let now = jiff::Timestamp::now();
        let refuse = |message: &str| Box::new(BackupResult::refused(target, now, message));
        if !self.inner.options.namespace_allowed(&target.namespace) {
            return Err(refuse(&format!(
                "namespace {:?} is not in this server's namespace allowlist",
                target.namespace
            )));
        }
        let destination = match self.inner.destinations.get_or_default(destination) {
            Ok(destination) => destination.clone(),
            Err(error) => return Err(refuse(&error.to_string())),
        };
        let run_id = new_run_id(now);
        let cancel = CancellationToken::new();
        {
            let Ok(mut active) = self.inner.active.lock() else {
                return Err(refuse("the engine's run registry is unusable"));
            };
            if let Some(slot) = active.get(target) {
                return Err(refuse(&format!(
                    "a backup of {target} is already running (run {}); wait for it to finish or \
                     cancel it",
                    slot.run_id
                )));
            }
            active.insert(
                target.clone(),
                Slot {
                    run_id: run_id.clone(),
                    cancel: cancel.clone(),
                    upload: None,
                    latest: None,
                },
            );
        }
        let ticket = Ticket {
            inner: self.inner.clone(),
            target: target.clone(),
            run_id: run_id.clone(),
        };
        let started_by = requester.started_by.clone();
        let name = destination.name().to_owned();
        let handle = tokio::spawn(async move {
            let inner = ticket.inner.clone();
            let result = run(&inner, &ticket, cancel, started_by, destination).await;
            drop(ticket);
            result
        });
        Ok(StartedRun {
            run_id,
            destination: name,
            handle,
        })
    }

    /// Backs up every target to the default destination (see [`BackupEngine::run_batch_to`]).
    pub async fn run_batch(
        &self,
        targets: Vec<PvcRef>,
        requester: &Requester,
    ) -> Vec<BackupResult> {
        self.run_batch_to(targets, None, requester).await
    }

    /// Backs up every target to `destination` (`None`: the default one), bounded by
    /// `concurrency`, and returns one result per target, in order.
    pub async fn run_batch_to(
        &self,
        targets: Vec<PvcRef>,
        destination: Option<&str>,
        requester: &Requester,
    ) -> Vec<BackupResult> {
        let mut started = Vec::with_capacity(targets.len());
        for target in targets {
            let run = self.start_to(target.clone(), destination, requester).await;
            started.push((target, run));
        }
        let mut results = Vec::with_capacity(started.len());
        for (target, run) in started {
            results.push(match run {
                Err(result) => *result,
                Ok(run) => match run.handle.await {
                    Ok(result) => result,
                    Err(err) => {
                        let now = jiff::Timestamp::now();
                        let mut result = BackupResult::refused(
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
pub(super) struct Ticket {
    inner: Arc<Inner>,
    pub(super) target: PvcRef,
    pub(super) run_id: String,
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

/// Whether `text` has the shape of a run id (lowercase letters, digits and `-`, at most 64).
#[must_use]
pub fn is_run_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
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
    destination: Destination,
) -> BackupResult {
    let mut run = Run::new(
        inner,
        &ticket.target,
        &ticket.run_id,
        cancel,
        started_by,
        destination,
    );
    run.announce();
    let permit = tokio::select! {
        biased;
        () = run.cancelled() => None,
        permit = inner.semaphore.clone().acquire_owned() => permit.ok(),
    };
    let outcome = match &permit {
        Some(_) if run.is_cancelled() => Err(BackupError::Cancelled {
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
        assert!(super::super::pod::helper_pod_name(&a).len() <= 63);
        assert!(is_run_id(&a));
        for bad in ["", "A-1", "x/y", &"a".repeat(65)] {
            assert!(!is_run_id(bad), "{bad}");
        }
    }
}
