//! Prometheus metrics of backups, schedules and retention ([`Metrics`]), rendered in the
//! OpenMetrics text format by the official `prometheus-client` crate. Counters start at zero when
//! nkvm starts (Prometheus handles the reset); the last-success gauges are loaded from the history.
//! Series of PVCs that no longer exist and of removed schedules are dropped ([`Metrics::retain`]).

use std::collections::BTreeSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::domain::RunStatus;
use crate::schedule::STARTED_BY_PREFIX;
use crate::store::RunRecord;

/// Content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of a run's series: the PVC and the schedule that started it (`""`: started by hand).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, EncodeLabelSet)]
pub struct RunLabels {
    pub namespace: String,
    pub pvc: String,
    pub schedule: String,
}

/// Labels of a PVC's series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, EncodeLabelSet)]
pub struct PvcLabels {
    pub namespace: String,
    pub pvc: String,
}

/// Labels of a schedule's series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, EncodeLabelSet)]
pub struct ScheduleLabels {
    pub schedule: String,
}

/// Labels of retention's series: the policy (schedule name or `default`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, EncodeLabelSet)]
pub struct PolicyLabels {
    pub policy: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

fn duration_histogram() -> Histogram {
    // 1 s to about 9 h.
    Histogram::new(exponential_buckets(1.0, 3.0, 10))
}

/// Every series nkvm exports. Cheap to clone (shared).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    attempts: Family<RunLabels, Counter>,
    succeeded: Family<RunLabels, Counter>,
    failed: Family<RunLabels, Counter>,
    duration: Family<RunLabels, Histogram, fn() -> Histogram>,
    read_bytes: Family<RunLabels, Counter>,
    archive_bytes: Family<PvcLabels, Gauge>,
    last_success: Family<PvcLabels, FloatGauge>,
    overdue: Family<PvcLabels, Gauge>,
    rpo: Family<PvcLabels, FloatGauge>,
    in_progress: Gauge,
    lag: Family<ScheduleLabels, FloatGauge>,
    next_run: Family<ScheduleLabels, FloatGauge>,
    paused: Family<ScheduleLabels, Gauge>,
    skipped: Family<ScheduleLabels, Counter>,
    pruned: Family<PolicyLabels, Counter>,
    prune_failures: Family<PolicyLabels, Counter>,
    /// Every run label set in use, to drop the series of removed PVCs and schedules.
    run_series: Mutex<BTreeSet<RunLabels>>,
    pvc_series: Mutex<BTreeSet<PvcLabels>>,
    schedule_series: Mutex<BTreeSet<String>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// An empty set of series, registered.
    #[must_use]
    #[allow(
        clippy::too_many_lines,
        reason = "one registration per series, with its help text: splitting hides the list"
    )]
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let attempts = Family::<RunLabels, Counter>::default();
        let succeeded = Family::<RunLabels, Counter>::default();
        let failed = Family::<RunLabels, Counter>::default();
        let duration = Family::<RunLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram,
        );
        let read_bytes = Family::<RunLabels, Counter>::default();
        let archive_bytes = Family::<PvcLabels, Gauge>::default();
        let last_success = Family::<PvcLabels, FloatGauge>::default();
        let overdue = Family::<PvcLabels, Gauge>::default();
        let rpo = Family::<PvcLabels, FloatGauge>::default();
        let in_progress = Gauge::default();
        let lag = Family::<ScheduleLabels, FloatGauge>::default();
        let next_run = Family::<ScheduleLabels, FloatGauge>::default();
        let paused = Family::<ScheduleLabels, Gauge>::default();
        let skipped = Family::<ScheduleLabels, Counter>::default();
        let pruned = Family::<PolicyLabels, Counter>::default();
        let prune_failures = Family::<PolicyLabels, Counter>::default();
        registry.register(
            "nkvm_backup_attempts",
            "Backup runs that ended (any outcome), by PVC and schedule",
            attempts.clone(),
        );
        registry.register(
            "nkvm_backup_succeeded",
            "Backup runs that succeeded",
            succeeded.clone(),
        );
        registry.register(
            "nkvm_backup_failed",
            "Backup runs that failed, were cancelled or interrupted",
            failed.clone(),
        );
        registry.register(
            "nkvm_backup_duration_seconds",
            "Duration of finished backup runs",
            duration.clone(),
        );
        registry.register(
            "nkvm_backup_read_bytes",
            "Bytes of file content read from volumes by successful backups",
            read_bytes.clone(),
        );
        registry.register(
            "nkvm_backup_archive_bytes",
            "Size of the newest successful archive of the PVC",
            archive_bytes.clone(),
        );
        registry.register(
            "nkvm_backup_last_success_timestamp_seconds",
            "Unix time of the PVC's last successful backup",
            last_success.clone(),
        );
        registry.register(
            "nkvm_backup_overdue",
            "1 when a schedule covers the PVC and its last success is older than the RPO",
            overdue.clone(),
        );
        registry.register(
            "nkvm_backup_rpo_seconds",
            "Recovery point objective of the PVC (smallest of the schedules covering it)",
            rpo.clone(),
        );
        registry.register(
            "nkvm_backup_runs_in_progress",
            "Backup runs waiting or running now",
            in_progress.clone(),
        );
        registry.register(
            "nkvm_schedule_lag_seconds",
            "How late the schedule's latest firing started after its scheduled time",
            lag.clone(),
        );
        registry.register(
            "nkvm_schedule_next_run_timestamp_seconds",
            "Unix time of the schedule's next firing (absent while paused)",
            next_run.clone(),
        );
        registry.register(
            "nkvm_schedule_paused",
            "1 while the schedule is paused",
            paused.clone(),
        );
        registry.register(
            "nkvm_schedule_skipped",
            "Firings skipped because the schedule's previous runs were still going",
            skipped.clone(),
        );
        registry.register(
            "nkvm_retention_deleted",
            "Backups whose files retention deleted, by policy",
            pruned.clone(),
        );
        registry.register(
            "nkvm_retention_failures",
            "Retention deletions that failed, by policy",
            prune_failures.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                attempts,
                succeeded,
                failed,
                duration,
                read_bytes,
                archive_bytes,
                last_success,
                overdue,
                rpo,
                in_progress,
                lag,
                next_run,
                paused,
                skipped,
                pruned,
                prune_failures,
                run_series: Mutex::default(),
                pvc_series: Mutex::default(),
                schedule_series: Mutex::default(),
            }),
        }
    }

    fn pvc(&self, namespace: &str, pvc: &str) -> PvcLabels {
        let labels = PvcLabels {
            namespace: namespace.to_owned(),
            pvc: pvc.to_owned(),
        };
        if let Ok(mut series) = self.inner.pvc_series.lock() {
            series.insert(labels.clone());
        }
        labels
    }

    fn schedule(&self, name: &str) -> ScheduleLabels {
        if let Ok(mut series) = self.inner.schedule_series.lock() {
            series.insert(name.to_owned());
        }
        ScheduleLabels {
            schedule: name.to_owned(),
        }
    }

    /// Counts a finished run from its history row (attempt, outcome, duration, bytes, last
    /// success). Rows still running are ignored.
    pub fn observe_run(&self, run: &RunRecord) {
        if !run.status.is_finished() {
            return;
        }
        let labels = RunLabels {
            namespace: run.namespace.clone(),
            pvc: run.pvc.clone(),
            schedule: run
                .started_by
                .strip_prefix(STARTED_BY_PREFIX)
                .unwrap_or_default()
                .to_owned(),
        };
        if let Ok(mut series) = self.inner.run_series.lock() {
            series.insert(labels.clone());
        }
        self.pvc(&run.namespace, &run.pvc);
        self.inner.attempts.get_or_create(&labels).inc();
        let finished = run.finished_at.as_deref().and_then(crate::timestamp::parse);
        if let (Some(start), Some(end)) = (crate::timestamp::parse(&run.started_at), finished) {
            let seconds = end.duration_since(start).as_secs_f64().max(0.0);
            self.inner.duration.get_or_create(&labels).observe(seconds);
        }
        if run.status == RunStatus::Succeeded {
            self.inner.succeeded.get_or_create(&labels).inc();
            if let Some(bytes) = run.source_bytes {
                self.inner.read_bytes.get_or_create(&labels).inc_by(bytes);
            }
            let pvc = self.pvc(&run.namespace, &run.pvc);
            if let Some(bytes) = run.bytes {
                self.inner
                    .archive_bytes
                    .get_or_create(&pvc)
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
            if let Some(at) = finished {
                self.set_last_success(&run.namespace, &run.pvc, at);
            }
        } else {
            self.inner.failed.get_or_create(&labels).inc();
        }
    }

    /// Sets a PVC's last success (from the history at start-up, then from each success).
    pub fn set_last_success(&self, namespace: &str, pvc: &str, at: jiff::Timestamp) {
        let labels = self.pvc(namespace, pvc);
        let gauge = self.inner.last_success.get_or_create(&labels);
        let seconds = at.as_millisecond() as f64 / 1000.0;
        if seconds > gauge.get() {
            gauge.set(seconds);
        }
    }

    /// Sets a covered PVC's RPO and whether it is overdue.
    pub fn set_freshness(&self, namespace: &str, pvc: &str, rpo_seconds: f64, overdue: bool) {
        let labels = self.pvc(namespace, pvc);
        self.inner.rpo.get_or_create(&labels).set(rpo_seconds);
        self.inner
            .overdue
            .get_or_create(&labels)
            .set(i64::from(overdue));
    }

    /// Runs waiting or running now.
    pub fn set_in_progress(&self, runs: usize) {
        self.inner
            .in_progress
            .set(i64::try_from(runs).unwrap_or(i64::MAX));
    }

    /// A schedule's state: next firing (none while paused) and pause switch.
    pub fn set_schedule(&self, name: &str, next_run: Option<jiff::Timestamp>, paused: bool) {
        let labels = self.schedule(name);
        match next_run {
            Some(at) => {
                self.inner
                    .next_run
                    .get_or_create(&labels)
                    .set(at.as_millisecond() as f64 / 1000.0);
            }
            None => {
                self.inner.next_run.remove(&labels);
            }
        }
        self.inner
            .paused
            .get_or_create(&labels)
            .set(i64::from(paused));
    }

    /// How late a firing started after its scheduled time.
    pub fn set_lag(&self, name: &str, seconds: f64) {
        let labels = self.schedule(name);
        self.inner.lag.get_or_create(&labels).set(seconds.max(0.0));
    }

    /// A firing skipped because the schedule's previous runs were still going.
    pub fn count_skipped(&self, name: &str) {
        let labels = self.schedule(name);
        self.inner.skipped.get_or_create(&labels).inc();
    }

    /// A retention deletion (or its failure) under `policy`.
    pub fn count_pruned(&self, policy: &str, ok: bool) {
        let labels = PolicyLabels {
            policy: policy.to_owned(),
        };
        if ok {
            self.inner.pruned.get_or_create(&labels).inc();
        } else {
            self.inner.prune_failures.get_or_create(&labels).inc();
        }
    }

    /// Drops every series of a PVC not in `pvcs` and of a schedule not in `schedules` (`None`:
    /// leave that kind alone).
    pub fn retain(
        &self,
        pvcs: Option<&BTreeSet<(String, String)>>,
        schedules: Option<&BTreeSet<String>>,
    ) {
        let inner = &self.inner;
        let pvc_gone = |namespace: &str, pvc: &str| {
            pvcs.is_some_and(|keep| !keep.contains(&(namespace.to_owned(), pvc.to_owned())))
        };
        let schedule_gone = |name: &str| schedules.is_some_and(|keep| !keep.contains(name));
        if let Ok(mut series) = inner.run_series.lock() {
            series.retain(|labels| {
                let gone = pvc_gone(&labels.namespace, &labels.pvc)
                    || (!labels.schedule.is_empty() && schedule_gone(&labels.schedule));
                if gone {
                    inner.attempts.remove(labels);
                    inner.succeeded.remove(labels);
                    inner.failed.remove(labels);
                    inner.duration.remove(labels);
                    inner.read_bytes.remove(labels);
                }
                !gone
            });
        }
        if let Ok(mut series) = inner.pvc_series.lock() {
            series.retain(|labels| {
                let gone = pvc_gone(&labels.namespace, &labels.pvc);
                if gone {
                    inner.archive_bytes.remove(labels);
                    inner.last_success.remove(labels);
                    inner.overdue.remove(labels);
                    inner.rpo.remove(labels);
                }
                !gone
            });
        }
        if let Ok(mut series) = inner.schedule_series.lock() {
            series.retain(|name| {
                let gone = schedule_gone(name);
                if gone {
                    let labels = ScheduleLabels {
                        schedule: name.clone(),
                    };
                    inner.lag.remove(&labels);
                    inner.next_run.remove(&labels);
                    inner.paused.remove(&labels);
                    inner.skipped.remove(&labels);
                    inner.pruned.remove(&PolicyLabels {
                        policy: name.clone(),
                    });
                    inner.prune_failures.remove(&PolicyLabels {
                        policy: name.clone(),
                    });
                }
                !gone
            });
        }
    }

    /// Forgets a PVC's freshness series (it is no longer covered by any schedule).
    pub fn clear_freshness(&self, namespace: &str, pvc: &str) {
        let labels = PvcLabels {
            namespace: namespace.to_owned(),
            pvc: pvc.to_owned(),
        };
        self.inner.overdue.remove(&labels);
        self.inner.rpo.remove(&labels);
    }

    /// Every series in the OpenMetrics text format (ends with `# EOF`).
    #[must_use]
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.inner.registry);
        text
    }
}

#[cfg(test)]
mod tests;
