//! The live inventory of one connection: watches (list, then watch) on PVCs, pods and the
//! controller kinds of the owner walk keep the [facts](super::facts) the join reads in memory
//! ([`cache`]), and a hub task joins them into records after every burst of changes and publishes
//! a [`LiveSnapshot`], so a page load reads memory instead of re-listing the cluster and open pages
//! learn of changes.
//!
//! Failures: a watch that fails is restarted with a fresh list after a backoff (1 s doubling to
//! 30 s), so a snapshot is current again once that list completes. Until then the snapshot keeps
//! the last state and names the watch in [`LiveSnapshot::stale`] with the time it failed. Before a
//! kind's first complete list, a failure of PVCs or pods is the snapshot's error (as a scan's would
//! be); a refused (403) namespace of a scoped inventory becomes a [`NamespaceRefusal`]; refused
//! controller kinds end the owner walk at their references (as for kinds a scan does not list) and
//! are reported stale.

pub(super) mod cache;

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::PartialObjectMeta;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use self::cache::{KindCache, to_facts};
use super::error::{InventoryError, Listing};
use super::facts::{ClaimFacts, ControllerFacts, PodFacts};
use super::join::{Sources, join};
use super::{Inventory, InventoryOptions, Scope};
use crate::domain::pvc::{NamespaceRefusal, PvcRecord};
use crate::kubeapi::{self, Call};

/// Changes arriving closer together than this are joined once.
const QUIET: Duration = Duration::from_millis(150);
/// A stream of changes is joined at least this often.
const MAX_DELAY: Duration = Duration::from_millis(750);
/// Read timeout of the watch client: longer than the watches' own 290 s server-side timeout.
const WATCH_READ_TIMEOUT: Duration = Duration::from_secs(330);
/// First and longest wait before a failed watch is started again.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// A watch that failed after its kind was read, and is being restarted: the snapshot still shows
/// what it knew at `since`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaleWatch {
    pub listing: Listing,
    /// `None`: all namespaces.
    pub namespace: Option<String>,
    /// When it failed (RFC 3339).
    pub since: String,
    pub status: Option<u16>,
    pub message: String,
}

/// The state of a live inventory at one moment. Records carry no history (see
/// [`super::add_history`]).
#[derive(Debug, Clone, Default)]
pub struct LiveSnapshot {
    /// Grows by one with every published change.
    pub revision: u64,
    pub pvcs: Vec<PvcRecord>,
    pub refused: Vec<NamespaceRefusal>,
    /// Every kind has been listed once (or refused): the records are complete.
    pub ready: bool,
    /// Watches failing now; the records are as of their `since`.
    pub stale: Vec<StaleWatch>,
    /// A failure that leaves nothing to show (PVCs or pods could not be listed at all).
    pub failure: Option<StaleWatch>,
}

impl LiveSnapshot {
    /// The snapshot as an [`Inventory`] (no API request is made to read it).
    #[must_use]
    pub fn inventory(&self) -> Inventory {
        Inventory {
            pvcs: self.pvcs.clone(),
            refused: self.refused.clone(),
            api_requests: 0,
        }
    }
}

/// The watches of one connection and their published snapshot. Dropping it stops the watches.
#[derive(Debug)]
pub struct LiveInventory {
    reader: LiveReader,
    tasks: Vec<tokio::task::AbortHandle>,
}

/// Reads the snapshots of a [`LiveInventory`] (cheap to clone; reads the last snapshot once the
/// inventory is dropped).
#[derive(Debug, Clone)]
pub struct LiveReader {
    snapshot: watch::Receiver<Arc<LiveSnapshot>>,
    ready_timeout: Duration,
}

impl Drop for LiveInventory {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl LiveInventory {
    /// Starts watching the scope `options` resolve to, with a client made from `config` whose read
    /// timeout outlasts a quiet watch (the API server ends each watch after about 5 minutes, so a
    /// connection that died silently is noticed then). Must be called within a tokio runtime.
    ///
    /// # Errors
    /// The scope's error (a namespace outside the allowlist, too many namespaces), or
    /// [`InventoryError::WatchClient`].
    pub fn start(
        config: &kube::Config,
        options: &InventoryOptions,
    ) -> Result<Self, InventoryError> {
        let mut config = config.clone();
        config.read_timeout = Some(WATCH_READ_TIMEOUT);
        let client = &Client::try_from(config).map_err(InventoryError::WatchClient)?;
        let targets: Vec<Option<String>> = match super::resolve_scope(options)? {
            Scope::AllNamespaces => vec![None],
            Scope::Namespaces(namespaces) => namespaces.into_iter().map(Some).collect(),
        };
        let (updates, inbox) = mpsc::channel(1024);
        let (publish, snapshot) = watch::channel(Arc::new(LiveSnapshot::default()));
        let page_size = options.page_size.max(1);
        let mut tasks = Vec::new();
        for (index, namespace) in targets.iter().enumerate() {
            let watch = Watch {
                client: client.clone(),
                namespace: namespace.clone(),
                page_size,
                target: index,
                updates: updates.clone(),
            };
            tasks.extend(watch.spawn_all());
        }
        let hub = Hub::new(targets);
        tasks.push(tokio::spawn(hub.run(inbox, publish)).abort_handle());
        Ok(Self {
            reader: LiveReader {
                snapshot,
                ready_timeout: options.request_timeout,
            },
            tasks,
        })
    }

    /// A reader of its snapshots.
    #[must_use]
    pub fn reader(&self) -> LiveReader {
        self.reader.clone()
    }

    /// The latest snapshot, whatever its state.
    #[must_use]
    pub fn latest(&self) -> Arc<LiveSnapshot> {
        self.reader.latest()
    }

    /// A receiver that sees every published snapshot (for pushing changes to open pages).
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<Arc<LiveSnapshot>> {
        self.reader.snapshot.clone()
    }

    /// See [`LiveReader::ready`].
    ///
    /// # Errors
    /// As [`LiveReader::ready`].
    pub async fn ready(&self) -> Result<Arc<LiveSnapshot>, InventoryError> {
        self.reader.ready().await
    }
}

impl LiveReader {
    /// The latest snapshot, whatever its state.
    #[must_use]
    pub fn latest(&self) -> Arc<LiveSnapshot> {
        self.snapshot.borrow().clone()
    }

    /// The snapshot once every kind has been listed, waiting for the first lists at most the
    /// request timeout.
    ///
    /// # Errors
    /// [`InventoryError::Watch`] when PVCs or pods cannot be listed at all;
    /// [`InventoryError::NotReady`] when the first lists take longer than the timeout.
    pub async fn ready(&self) -> Result<Arc<LiveSnapshot>, InventoryError> {
        let mut receiver = self.snapshot.clone();
        let waited = tokio::time::timeout(
            self.ready_timeout,
            receiver.wait_for(|s| s.ready || s.failure.is_some()),
        )
        .await;
        let snapshot = match waited {
            Ok(Ok(snapshot)) => snapshot.clone(),
            Ok(Err(_)) | Err(_) => {
                return Err(InventoryError::NotReady {
                    waited: self.ready_timeout,
                });
            }
        };
        match &snapshot.failure {
            Some(failure) => Err(InventoryError::Watch {
                listing: failure.listing,
                namespace: failure.namespace.clone(),
                status: failure.status,
                message: failure.message.clone(),
            }),
            None => Ok(snapshot),
        }
    }
}

/// One event of one watch reduced to facts, for the hub (boxed: a claim's facts are a few hundred
/// bytes, a failure is small).
enum Change {
    Pvc(Box<Event<ClaimFacts>>),
    Pod(Box<Event<PodFacts>>),
    ReplicaSet(Box<Event<ControllerFacts<ReplicaSet>>>),
    Job(Box<Event<ControllerFacts<Job>>>),
    Deployment(Box<Event<ControllerFacts<Deployment>>>),
    CronJob(Box<Event<ControllerFacts<CronJob>>>),
    Failed {
        listing: Listing,
        status: Option<u16>,
        message: String,
    },
}

impl Change {
    fn pvc(event: Event<PersistentVolumeClaim>) -> Self {
        Self::Pvc(Box::new(to_facts(event)))
    }
    fn pod(event: Event<Pod>) -> Self {
        Self::Pod(Box::new(to_facts(event)))
    }
    fn replica_set(event: Event<PartialObjectMeta<ReplicaSet>>) -> Self {
        Self::ReplicaSet(Box::new(to_facts(event)))
    }
    fn job(event: Event<PartialObjectMeta<Job>>) -> Self {
        Self::Job(Box::new(to_facts(event)))
    }
    fn deployment(event: Event<PartialObjectMeta<Deployment>>) -> Self {
        Self::Deployment(Box::new(to_facts(event)))
    }
    fn cron_job(event: Event<PartialObjectMeta<CronJob>>) -> Self {
        Self::CronJob(Box::new(to_facts(event)))
    }
}

struct Update {
    target: usize,
    change: Change,
}

/// The watches of one target (all namespaces, or one namespace).
struct Watch {
    client: Client,
    namespace: Option<String>,
    page_size: u32,
    target: usize,
    updates: mpsc::Sender<Update>,
}

impl Watch {
    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match &self.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }

    fn config(&self) -> watcher::Config {
        watcher::Config::default().page_size(self.page_size)
    }

    fn spawn_all(&self) -> Vec<tokio::task::AbortHandle> {
        let (api, config) = (self.api::<PersistentVolumeClaim>(), self.config());
        let pvcs = self.spawn(Listing::Pvcs, Change::pvc, move || {
            watcher::watcher(api.clone(), config.clone())
        });
        let (api, config) = (self.api::<Pod>(), self.config());
        let pods = self.spawn(Listing::Pods, Change::pod, move || {
            watcher::watcher(api.clone(), config.clone())
        });
        let (api, config) = (self.api::<PartialObjectMeta<ReplicaSet>>(), self.config());
        let replica_sets = self.spawn(Listing::ReplicaSets, Change::replica_set, move || {
            watcher::watcher(api.clone(), config.clone())
        });
        let (api, config) = (self.api::<PartialObjectMeta<Job>>(), self.config());
        let jobs = self.spawn(Listing::Jobs, Change::job, move || {
            watcher::watcher(api.clone(), config.clone())
        });
        let (api, config) = (self.api::<PartialObjectMeta<Deployment>>(), self.config());
        let deployments = self.spawn(Listing::Deployments, Change::deployment, move || {
            watcher::watcher(api.clone(), config.clone())
        });
        let (api, config) = (self.api::<PartialObjectMeta<CronJob>>(), self.config());
        let cron_jobs = self.spawn(Listing::CronJobs, Change::cron_job, move || {
            watcher::watcher(api.clone(), config.clone())
        });
        vec![pvcs, pods, replica_sets, jobs, deployments, cron_jobs]
    }

    /// Runs the watches made by `start` one after the other: each forwards its events until it
    /// fails; the failure is reported, and after a backoff a new watch lists the kind again.
    fn spawn<K, S>(
        &self,
        listing: Listing,
        wrap: fn(Event<K>) -> Change,
        start: impl Fn() -> S + Send + 'static,
    ) -> tokio::task::AbortHandle
    where
        K: Send + 'static,
        S: Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
    {
        let (target, updates, namespace) =
            (self.target, self.updates.clone(), self.namespace.clone());
        let task = async move {
            let mut backoff = BACKOFF_MIN;
            loop {
                let mut events = std::pin::pin!(start());
                while let Some(item) = events.next().await {
                    let change = match item {
                        Ok(event) => {
                            if matches!(event, Event::InitDone) {
                                backoff = BACKOFF_MIN;
                            }
                            wrap(event)
                        }
                        Err(err) => {
                            let (status, message) = describe(&err, listing, namespace.as_deref());
                            tracing::warn!(resource = listing.as_str(), namespace = ?namespace, %message, "inventory watch failed; listing again after a pause");
                            let failed = Change::Failed {
                                listing,
                                status,
                                message,
                            };
                            if updates
                                .send(Update {
                                    target,
                                    change: failed,
                                })
                                .await
                                .is_err()
                            {
                                return;
                            }
                            break;
                        }
                    };
                    if updates.send(Update { target, change }).await.is_err() {
                        return;
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        };
        tokio::spawn(task).abort_handle()
    }
}

/// The HTTP status and an operator's wording of a failed watch.
fn describe(
    err: &watcher::Error,
    listing: Listing,
    namespace: Option<&str>,
) -> (Option<u16>, String) {
    let call = Call {
        verb: "watch",
        resource: listing.as_str(),
        namespace,
    };
    match err {
        watcher::Error::InitialListFailed(source)
        | watcher::Error::WatchStartFailed(source)
        | watcher::Error::WatchFailed(source) => {
            (kubeapi::http_status(source), kubeapi::advice(source, call))
        }
        watcher::Error::WatchError(status) => {
            let code = (status.code != 0).then_some(status.code);
            let hint = match code {
                Some(403) => format!("; {}", call.grant()),
                _ => String::new(),
            };
            (
                code,
                format!("the API server ended the watch: {}{hint}", status.message),
            )
        }
        watcher::Error::NoResourceVersion => (None, err.to_string()),
    }
}

/// Failure state of one kind of one target.
#[derive(Debug, Default)]
struct Health {
    failed: Option<StaleWatch>,
}

/// Everything watched for one target.
#[derive(Default)]
struct Target {
    pvcs: KindCache<ClaimFacts>,
    pods: KindCache<PodFacts>,
    replica_sets: KindCache<ControllerFacts<ReplicaSet>>,
    jobs: KindCache<ControllerFacts<Job>>,
    deployments: KindCache<ControllerFacts<Deployment>>,
    cron_jobs: KindCache<ControllerFacts<CronJob>>,
    /// By [`Listing`] in declaration order.
    health: [Health; 6],
}

const ORDER: [Listing; 6] = [
    Listing::Pvcs,
    Listing::Pods,
    Listing::ReplicaSets,
    Listing::Jobs,
    Listing::Deployments,
    Listing::CronJobs,
];

fn slot(listing: Listing) -> usize {
    ORDER.iter().position(|l| *l == listing).unwrap_or(0)
}

impl Target {
    /// Applies one change; whether the snapshot must be recomputed.
    fn apply(&mut self, change: Change, namespace: Option<&str>) -> bool {
        let (listing, changed) = match change {
            Change::Pvc(event) => (Listing::Pvcs, self.pvcs.apply(*event)),
            Change::Pod(event) => (Listing::Pods, self.pods.apply(*event)),
            Change::ReplicaSet(event) => (Listing::ReplicaSets, self.replica_sets.apply(*event)),
            Change::Job(event) => (Listing::Jobs, self.jobs.apply(*event)),
            Change::Deployment(event) => (Listing::Deployments, self.deployments.apply(*event)),
            Change::CronJob(event) => (Listing::CronJobs, self.cron_jobs.apply(*event)),
            Change::Failed {
                listing,
                status,
                message,
            } => {
                // A watch failing again keeps the time it first failed.
                let failed = &mut self.health[slot(listing)].failed;
                let since = failed
                    .take()
                    .map_or_else(|| jiff::Timestamp::now().to_string(), |f| f.since);
                *failed = Some(StaleWatch {
                    listing,
                    namespace: namespace.map(str::to_owned),
                    since,
                    status,
                    message,
                });
                return true;
            }
        };
        // A completed list clears the failure; so does any event of a watch that resumed.
        let health = &mut self.health[slot(listing)];
        let cleared = changed && health.failed.take().is_some();
        changed || cleared
    }

    fn synced(&self, listing: Listing) -> bool {
        match listing {
            Listing::Pvcs => self.pvcs.synced(),
            Listing::Pods => self.pods.synced(),
            Listing::ReplicaSets => self.replica_sets.synced(),
            Listing::Jobs => self.jobs.synced(),
            Listing::Deployments => self.deployments.synced(),
            Listing::CronJobs => self.cron_jobs.synced(),
        }
    }

    fn sources(&self) -> Sources<'_> {
        fn read<K: super::facts::Keyed>(cache: &KindCache<K>) -> Option<Vec<&K>> {
            cache.synced().then(|| cache.values().collect())
        }
        Sources {
            pvcs: self.pvcs.values().collect(),
            pods: self.pods.values().collect(),
            replica_sets: read(&self.replica_sets),
            jobs: read(&self.jobs),
            deployments: read(&self.deployments),
            cron_jobs: read(&self.cron_jobs),
        }
    }
}

/// Owns every cache, applies the watches' changes and publishes snapshots.
struct Hub {
    namespaces: Vec<Option<String>>,
    targets: Vec<Target>,
    revision: u64,
}

impl Hub {
    fn new(namespaces: Vec<Option<String>>) -> Self {
        let targets = namespaces.iter().map(|_| Target::default()).collect();
        Self {
            namespaces,
            targets,
            revision: 0,
        }
    }

    async fn run(
        mut self,
        mut inbox: mpsc::Receiver<Update>,
        publish: watch::Sender<Arc<LiveSnapshot>>,
    ) {
        let mut due: Option<(tokio::time::Instant, tokio::time::Instant)> = None;
        loop {
            let deadline = due.map(|(quiet, max)| quiet.min(max));
            let update = tokio::select! {
                update = inbox.recv() => match update {
                    Some(update) => Some(update),
                    None => return,
                },
                () = sleep_until(deadline) => None,
            };
            if let Some(Update { target, change }) = update {
                let namespace = self.namespaces.get(target).cloned().flatten();
                let Some(cache) = self.targets.get_mut(target) else {
                    continue;
                };
                if cache.apply(change, namespace.as_deref()) {
                    let now = tokio::time::Instant::now();
                    let max = due.map_or(now + MAX_DELAY, |(_, max)| max);
                    due = Some((now + QUIET, max));
                }
            } else {
                due = None;
                self.revision += 1;
                publish.send_replace(Arc::new(self.snapshot()));
            }
        }
    }

    /// Joins every target's objects into one snapshot.
    fn snapshot(&self) -> LiveSnapshot {
        let mut snapshot = LiveSnapshot {
            revision: self.revision,
            ready: true,
            ..LiveSnapshot::default()
        };
        for (namespace, target) in self.namespaces.iter().zip(&self.targets) {
            let forbidden: Vec<&StaleWatch> = target
                .health
                .iter()
                .filter_map(|h| h.failed.as_ref())
                .filter(|f| f.status == Some(403) && !target.synced(f.listing))
                .collect();
            if let (Some(ns), false) = (namespace, forbidden.is_empty()) {
                // Refused once every kind answered, so the refusal names all that is missing.
                let settled = ORDER
                    .iter()
                    .all(|l| target.synced(*l) || target.health[slot(*l)].failed.is_some());
                snapshot.ready &= settled;
                let resources: Vec<&str> = forbidden.iter().map(|f| f.listing.as_str()).collect();
                snapshot.refused.push(NamespaceRefusal {
                    namespace: ns.clone(),
                    status: Some(403),
                    message: format!(
                        "HTTP 403 Forbidden: {}",
                        Call::new("list and watch", &resources.join(", "), ns).grant()
                    ),
                });
                continue;
            }
            for listing in ORDER {
                let failed = target.health[slot(listing)].failed.as_ref();
                let synced = target.synced(listing);
                match (failed, synced) {
                    (Some(failure), false) if matches!(listing, Listing::Pvcs | Listing::Pods) => {
                        snapshot.failure.get_or_insert_with(|| failure.clone());
                    }
                    (Some(failure), _) => snapshot.stale.push(failure.clone()),
                    (None, false) => snapshot.ready = false,
                    (None, true) => {}
                }
            }
            snapshot.pvcs.extend(join(&target.sources()));
        }
        snapshot
            .pvcs
            .sort_by(|a, b| (&a.pvc.namespace, &a.pvc.name).cmp(&(&b.pvc.namespace, &b.pvc.name)));
        snapshot
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[path = "live/tests.rs"]
mod tests;
