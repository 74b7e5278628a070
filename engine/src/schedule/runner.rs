//! The scheduler inside `nkvm serve`: every tick it re-reads the schedules (so changes made with
//! the CLI or the web UI apply within a tick), rescans the cluster when its view is older than the
//! refresh interval or a firing is due (declared schedules, new PVCs matching a selector), starts the
//! due firings — each recorded as handled before its runs start, so a crash never repeats one; a
//! firing missed while nkvm was down runs once — keeps a schedule's runs within its concurrency,
//! skips a firing while the same schedule's previous runs still go, then applies retention;
//! overdue PVCs are notified once each time they become overdue. The clock is passed to
//! [`Scheduler::tick`], so tests drive it.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use jiff::Timestamp;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::declared::{self, Problem};
use super::freshness::assess;
use super::prune::{self, DEFAULT_POLICY, PruneAction, PruneStatus};
use super::retention::Retention;
use super::{Schedule, Target, catalog};
use crate::backup::{BackupResult, Requester, StartedRun};
use crate::destination::Destinations;
use crate::domain::{PvcRecord, PvcRef};
use crate::observe::notify::OverdueInfo;
use crate::observe::{Metrics, Notifier};
use crate::store::Store;

/// What the scheduler needs from the cluster: a scan of the PVCs it may back up and a way to start
/// a backup (the backup engine in production, a fake in tests).
pub trait Backend: Send + Sync + 'static {
    /// The PVCs nkvm may back up, with their last success joined from the history, and the
    /// namespaces' `nkvm.io/*` annotations.
    fn scan(&self) -> impl Future<Output = Result<Scan, String>> + Send;

    /// Starts one backup of `target` to `destination` (`None`: the default destination).
    fn start(
        &self,
        target: PvcRef,
        destination: Option<String>,
        requester: Requester,
    ) -> impl Future<Output = Result<StartedRun, Box<BackupResult>>> + Send;

    /// Runs waiting or running now.
    fn active_runs(&self) -> usize;
}

/// What a scan found.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    pub records: Vec<PvcRecord>,
    pub namespaces: Vec<(String, BTreeMap<String, String>)>,
    /// Why namespace annotations could not be read, when they could not.
    pub namespaces_unread: Option<String>,
}

/// Settings of the scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// How often it looks for due firings and schedule changes.
    pub tick: Duration,
    /// Rescan the cluster at least this often (annotations, new PVCs, overdue checks).
    pub refresh: Duration,
    /// Apply retention at least this often (also after each firing's runs).
    pub prune_every: Duration,
    /// Retention of backups no schedule's own retention covers.
    pub default_retention: Retention,
    /// The data directory (local archives recorded before destinations).
    pub data_dir: PathBuf,
    /// Only these namespaces are pruned (`None`: all).
    pub allowlist: Option<Vec<String>>,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(5),
            refresh: Duration::from_mins(1),
            prune_every: Duration::from_hours(1),
            default_retention: Retention::default(),
            data_dir: PathBuf::from("./nkvm-data"),
            allowlist: None,
        }
    }
}

/// A firing started by a tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    pub schedule: String,
    pub scheduled_at: Timestamp,
    /// Earlier scheduled times that were missed (not run).
    pub missed: u32,
    pub targets: Vec<PvcRef>,
}

/// What one tick did.
#[derive(Debug, Clone, Default)]
pub struct TickReport {
    /// Whether the cluster was scanned.
    pub scanned: bool,
    pub fired: Vec<Fired>,
    /// Schedules whose firing was skipped (previous runs still going).
    pub skipped: Vec<String>,
    /// Invalid annotations seen.
    pub problems: Vec<Problem>,
}

#[derive(Default)]
struct State {
    scan: Option<(Timestamp, Arc<Scan>)>,
    /// PVCs already notified as overdue.
    overdue: BTreeSet<(String, String)>,
    /// Problems already logged.
    logged: BTreeSet<(String, String)>,
    last_prune: Option<Timestamp>,
}

struct Inner<B> {
    backend: B,
    store: Store,
    destinations: Destinations,
    options: SchedulerOptions,
    metrics: Metrics,
    notifier: Notifier,
    state: tokio::sync::Mutex<State>,
    batches: tokio::sync::Mutex<JoinSet<()>>,
    /// Schedules whose runs are going.
    busy: std::sync::Mutex<BTreeSet<String>>,
    prune_lock: tokio::sync::Mutex<()>,
    stop: CancellationToken,
}

/// Runs schedules. Cheap to clone.
pub struct Scheduler<B> {
    inner: Arc<Inner<B>>,
}

impl<B> Clone for Scheduler<B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<B: Backend> Scheduler<B> {
    pub fn new(
        backend: B,
        store: Store,
        destinations: Destinations,
        options: SchedulerOptions,
        metrics: Metrics,
        notifier: Notifier,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                backend,
                store,
                destinations,
                options,
                metrics,
                notifier,
                state: tokio::sync::Mutex::default(),
                batches: tokio::sync::Mutex::new(JoinSet::new()),
                busy: std::sync::Mutex::default(),
                prune_lock: tokio::sync::Mutex::new(()),
                stop: CancellationToken::new(),
            }),
        }
    }

    fn destination_names(&self) -> Vec<String> {
        self.inner
            .destinations
            .iter()
            .map(|d| d.name().to_owned())
            .collect()
    }

    /// One pass at `now`: see the module documentation.
    pub async fn tick(&self, now: Timestamp) -> TickReport {
        let inner = &self.inner;
        let mut report = TickReport::default();
        let mut guard = inner.state.lock().await;
        let state = &mut *guard;
        let names = self.destination_names();
        let declared_of =
            |scan: &Scan| declared::collect(&scan.records, &scan.namespaces, Some(&names));
        let cached = state.scan.as_ref().map(|(_, scan)| declared_of(scan));
        let schedules = match catalog(
            &inner.store,
            cached.as_ref().map(|d| d.definitions.as_slice()),
            now,
        )
        .await
        {
            Ok((schedules, _)) => schedules,
            Err(error) => {
                tracing::error!(%error, "reading the schedules failed");
                return report;
            }
        };
        let scan_is_old = state
            .scan
            .as_ref()
            .is_none_or(|(at, _)| now.duration_since(*at) >= to_signed(inner.options.refresh));
        let any_due = schedules.iter().any(|s| s.due(now).is_some());
        let mut schedules = schedules;
        if scan_is_old || any_due {
            match inner.backend.scan().await {
                Ok(scan) => {
                    report.scanned = true;
                    let scan = Arc::new(scan);
                    let declared = declared_of(&scan);
                    Self::log_problems(
                        state,
                        &declared.problems,
                        scan.namespaces_unread.as_deref(),
                    );
                    report.problems.clone_from(&declared.problems);
                    let definitions: Vec<_> = declared
                        .definitions
                        .iter()
                        .map(|(d, _)| d.clone())
                        .collect();
                    if let Err(error) = inner.store.sync_declared(&definitions, now).await {
                        tracing::error!(%error, "recording the declared schedules failed");
                    }
                    match catalog(&inner.store, Some(&declared.definitions), now).await {
                        Ok((fresh, _)) => schedules = fresh,
                        Err(error) => tracing::error!(%error, "reading the schedules failed"),
                    }
                    state.scan = Some((now, scan));
                }
                Err(error) => {
                    tracing::warn!(%error, "the scheduler could not scan the cluster; due firings wait");
                    if state.scan.is_none() || any_due {
                        self.publish_schedules(&schedules, now, None);
                        return report;
                    }
                }
            }
        }
        let Some((_, scan)) = state.scan.clone() else {
            return report;
        };
        for schedule in &schedules {
            if let Some(due) = schedule.due(now) {
                self.fire(schedule, due, &scan.records, now, &mut report)
                    .await;
            }
        }
        // The firings above changed `last_scheduled_at`: show the next run from the new state.
        let seen = declared_of(&scan);
        let schedules = catalog(&inner.store, Some(&seen.definitions), now)
            .await
            .map_or(schedules, |(fresh, _)| fresh);
        self.publish_schedules(&schedules, now, Some(&scan));
        if report.scanned {
            self.check_freshness(state, &schedules, &scan, now);
        }
        let prune_due = state
            .last_prune
            .is_none_or(|at| now.duration_since(at) >= to_signed(inner.options.prune_every));
        if prune_due {
            state.last_prune = Some(now);
            self.spawn_prune().await;
        }
        report
    }

    fn log_problems(state: &mut State, problems: &[Problem], unread: Option<&str>) {
        for problem in problems {
            if state
                .logged
                .insert((problem.object.clone(), problem.message.clone()))
            {
                tracing::warn!(object = %problem.object, problem = %problem.message, "invalid schedule annotation");
            }
        }
        if let Some(reason) = unread
            && state
                .logged
                .insert(("namespaces".to_owned(), reason.to_owned()))
        {
            tracing::warn!(%reason, "namespace annotations unavailable");
        }
    }

    /// Metrics of every schedule; drops series of vanished schedules (and PVCs, after a scan).
    fn publish_schedules(&self, schedules: &[Schedule], now: Timestamp, scan: Option<&Scan>) {
        let metrics = &self.inner.metrics;
        for schedule in schedules {
            metrics.set_schedule(schedule.name(), schedule.next_run(now), schedule.paused);
        }
        let names: BTreeSet<String> = schedules.iter().map(|s| s.name().to_owned()).collect();
        let pvcs: Option<BTreeSet<(String, String)>> = scan.map(|scan| {
            scan.records
                .iter()
                .map(|r| (r.pvc.namespace.clone(), r.pvc.name.clone()))
                .collect()
        });
        metrics.retain(pvcs.as_ref(), Some(&names));
        metrics.set_in_progress(self.inner.backend.active_runs());
    }

    /// Overdue flags as metrics, and a notification for each PVC that became overdue.
    fn check_freshness(
        &self,
        state: &mut State,
        schedules: &[Schedule],
        scan: &Scan,
        now: Timestamp,
    ) {
        let mut overdue_now = BTreeSet::new();
        for record in &scan.records {
            let freshness = assess(record, schedules, now);
            let (namespace, pvc) = (&record.pvc.namespace, &record.pvc.name);
            let Some(rpo) = freshness.rpo else {
                self.inner.metrics.clear_freshness(namespace, pvc);
                continue;
            };
            self.inner
                .metrics
                .set_freshness(namespace, pvc, rpo.as_secs_f64(), freshness.overdue);
            if !freshness.overdue {
                continue;
            }
            let key = (namespace.clone(), pvc.clone());
            if !state.overdue.contains(&key) {
                tracing::warn!(pvc = %format!("{namespace}/{pvc}"), last_success = ?record.last_success_at, "PVC overdue");
                self.inner.notifier.overdue(&OverdueInfo {
                    namespace: namespace.clone(),
                    pvc: pvc.clone(),
                    last_success_at: record.last_success_at.clone(),
                    rpo_seconds: rpo.as_secs(),
                    schedules: freshness.schedules.clone(),
                });
            }
            overdue_now.insert(key);
        }
        state.overdue = overdue_now;
    }

    async fn fire(
        &self,
        schedule: &Schedule,
        due: super::Due,
        records: &[PvcRecord],
        now: Timestamp,
        report: &mut TickReport,
    ) {
        let inner = &self.inner;
        let name = schedule.name().to_owned();
        let targets: Vec<PvcRef> = match &schedule.target {
            Target::Pvcs(pvcs) => pvcs.clone(),
            Target::Selector { .. } => records
                .iter()
                .filter(|r| schedule.target.matches(r))
                .map(|r| PvcRef {
                    namespace: r.pvc.namespace.clone(),
                    name: r.pvc.name.clone(),
                })
                .collect(),
        };
        // Handled before anything starts: a crash from here on never repeats this firing.
        if let Err(error) = inner.store.record_firing(&name, due.scheduled_at).await {
            tracing::error!(schedule = %name, %error, "recording a firing failed; not starting it");
            return;
        }
        let busy = inner
            .busy
            .lock()
            .map_or(true, |mut b| !b.insert(name.clone()));
        if busy {
            tracing::warn!(schedule = %name, scheduled_at = %due.scheduled_at, "skipping a firing: the previous runs of this schedule still go");
            inner.metrics.count_skipped(&name);
            report.skipped.push(name);
            return;
        }
        let lag = now.duration_since(due.scheduled_at).as_secs_f64();
        inner.metrics.set_lag(&name, lag);
        tracing::info!(schedule = %name, scheduled_at = %due.scheduled_at, missed = due.missed, pvcs = targets.len(), "schedule firing");
        report.fired.push(Fired {
            schedule: name.clone(),
            scheduled_at: due.scheduled_at,
            missed: due.missed,
            targets: targets.clone(),
        });
        let scheduler = self.clone();
        let destination = schedule.definition.destination.clone();
        let concurrency = usize::from(schedule.definition.concurrency.max(1));
        let requester = Requester::schedule(&name);
        inner.batches.lock().await.spawn(async move {
            let backend = &scheduler.inner.backend;
            futures::stream::iter(targets)
                .map(|target| {
                    let (destination, requester) = (destination.clone(), requester.clone());
                    async move {
                        match backend.start(target.clone(), destination, requester).await {
                            Ok(run) => drop(run.handle.await),
                            Err(refused) => {
                                tracing::warn!(pvc = %target, reason = %refused.message, "a scheduled backup was not started");
                            }
                        }
                    }
                })
                .buffer_unordered(concurrency)
                .collect::<Vec<()>>()
                .await;
            if let Ok(mut busy) = scheduler.inner.busy.lock() {
                busy.remove(&name);
            }
            if !scheduler.inner.stop.is_cancelled() {
                scheduler.prune_now().await;
            }
        });
    }

    async fn spawn_prune(&self) {
        let scheduler = self.clone();
        self.inner
            .batches
            .lock()
            .await
            .spawn(async move { scheduler.prune_now().await });
    }

    /// One retention pass over every schedule's backups and the default policy.
    pub async fn prune_now(&self) {
        let inner = &self.inner;
        let _one_at_a_time = inner.prune_lock.lock().await;
        let (schedules, _) = match catalog(&inner.store, None, Timestamp::now()).await {
            Ok(found) => found,
            Err(error) => {
                tracing::error!(%error, "retention: reading the schedules failed");
                return;
            }
        };
        let default = inner.options.default_retention;
        if !default.is_set() && !schedules.iter().any(|s| s.definition.retention.is_set()) {
            return;
        }
        let items = match prune::plan(
            &inner.store,
            &schedules,
            &default,
            inner.options.allowlist.as_deref(),
        )
        .await
        {
            Ok(items) => items,
            Err(error) => {
                tracing::error!(%error, "retention: reading the history failed");
                return;
            }
        };
        let mut by_policy: BTreeMap<String, Vec<prune::PruneItem>> = BTreeMap::new();
        for item in items
            .into_iter()
            .filter(|i| i.action == PruneAction::Delete)
        {
            by_policy.entry(item.policy.clone()).or_default().push(item);
        }
        for (policy, items) in by_policy {
            let actor = if policy == DEFAULT_POLICY {
                "retention:default".to_owned()
            } else {
                format!("{}{policy}", super::STARTED_BY_PREFIX)
            };
            let done = prune::execute(
                &inner.store,
                &inner.destinations,
                &inner.options.data_dir,
                items,
                &actor,
            )
            .await;
            for item in done {
                inner
                    .metrics
                    .count_pruned(&policy, item.status == PruneStatus::Deleted);
            }
        }
    }

    /// Ticks at once (a firing missed while nkvm was down starts now), then every `tick`, until
    /// [`Scheduler::shutdown`].
    pub async fn run(&self) {
        tracing::info!(
            tick_seconds = self.inner.options.tick.as_secs_f64(),
            "scheduler started"
        );
        loop {
            self.tick(Timestamp::now()).await;
            // Reap finished batches so the set does not grow.
            {
                let mut batches = self.inner.batches.lock().await;
                while batches.try_join_next().is_some() {}
            }
            tokio::select! {
                () = self.inner.stop.cancelled() => break,
                () = tokio::time::sleep(self.inner.options.tick) => {}
            }
        }
    }

    /// Stops starting firings; waits up to `grace` for the firings' runs to end and be recorded
    /// (cancel the engine's runs first to make that quick). Returns false when time ran out.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.inner.stop.cancel();
        let mut batches = self.inner.batches.lock().await;
        let waited = tokio::time::timeout(grace, async {
            while batches.join_next().await.is_some() {}
        })
        .await;
        if waited.is_err() {
            batches.abort_all();
        }
        waited.is_ok()
    }

    /// Waits until every firing's runs and retention passes started so far have ended (tests).
    pub async fn settle(&self) {
        let mut batches = self.inner.batches.lock().await;
        while batches.join_next().await.is_some() {}
    }
}

fn to_signed(duration: Duration) -> jiff::SignedDuration {
    jiff::SignedDuration::try_from(duration).unwrap_or(jiff::SignedDuration::MAX)
}

#[cfg(test)]
mod tests;
