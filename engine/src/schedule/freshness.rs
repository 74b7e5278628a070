//! Freshness of PVCs against the schedules that cover them: each covered PVC gets the smallest RPO
//! of its schedules (paused ones included: a paused schedule still promises backups); it is
//! `overdue` when its last successful backup (or, never backed up, the start of its oldest
//! schedule) is older than that, and `unscheduled` when no schedule covers it. [`join`] adds both
//! flags to an inventory, reading the schedules from the database and the annotations.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::{Schedule, catalog, declared};
use crate::domain::{Flag, PvcRecord};
use crate::store::{Store, StoreError};

/// How one PVC stands against its schedules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freshness {
    /// Names of the schedules covering it, sorted.
    pub schedules: Vec<String>,
    /// The smallest RPO among them.
    pub rpo: Option<SignedDuration>,
    /// Whether its last success (or its coverage, when never backed up) is older than the RPO.
    pub overdue: bool,
}

/// Assesses one record (its `last_success_at` filled from history) against `schedules` at `now`.
#[must_use]
pub fn assess(record: &PvcRecord, schedules: &[Schedule], now: Timestamp) -> Freshness {
    let covering: Vec<&Schedule> = schedules
        .iter()
        .filter(|s| s.target.matches(record))
        .collect();
    let rpo = covering.iter().filter_map(|s| s.rpo(now)).min();
    let reference = record
        .last_success_at
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .or_else(|| covering.iter().map(|s| s.since).min());
    let overdue = match (rpo, reference) {
        (Some(rpo), Some(reference)) => now.duration_since(reference) > rpo,
        _ => false,
    };
    let mut names: Vec<String> = covering.iter().map(|s| s.name().to_owned()).collect();
    names.sort();
    Freshness {
        schedules: names,
        rpo,
        overdue,
    }
}

/// Sets the `overdue` and `unscheduled` flags of every record.
pub fn apply(records: &mut [PvcRecord], schedules: &[Schedule], now: Timestamp) {
    for record in records {
        record
            .flags
            .retain(|f| !matches!(f, Flag::Overdue | Flag::Unscheduled));
        let freshness = assess(record, schedules, now);
        if freshness.schedules.is_empty() {
            record.flags.push(Flag::Unscheduled);
        } else if freshness.overdue {
            record.flags.push(Flag::Overdue);
        }
    }
}

/// Whether a refused namespace list was already logged (once per process).
static NAMESPACES_WARNED: AtomicBool = AtomicBool::new(false);

/// Reads the namespaces' `nkvm.io/*` annotations when allowed; a refusal is logged once and the
/// namespaces then declare nothing.
pub async fn namespaces_or_warn(
    client: &kube::Client,
    scope: Option<&[String]>,
    timeout: Duration,
) -> (Vec<(String, BTreeMap<String, String>)>, Option<String>) {
    match declared::namespace_annotations(client, scope, timeout).await {
        Ok(namespaces) => (namespaces, None),
        Err(reason) => {
            if !NAMESPACES_WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(%reason, "namespace annotations unavailable");
            }
            (Vec::new(), Some(reason))
        }
    }
}

/// Flags `records` (history already joined) against every schedule: stored ones from `store`,
/// declared ones from the records' and namespaces' annotations.
pub async fn join(
    client: &kube::Client,
    scope: Option<&[String]>,
    timeout: Duration,
    store: &Store,
    records: &mut [PvcRecord],
    now: Timestamp,
) -> Result<(), StoreError> {
    let (namespaces, _) = namespaces_or_warn(client, scope, timeout).await;
    let declared = declared::collect(records, &namespaces, None);
    let (schedules, _) = catalog(store, Some(&declared.definitions), now).await?;
    apply(records, &schedules, now);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{Definition, Source};

    fn record(ns: &str, name: &str, last: Option<&str>, labels: &[(&str, &str)]) -> PvcRecord {
        let mut record = crate::schedule::test_record(ns, name, labels, &[]);
        record.last_success_at = last.map(str::to_owned);
        record.flags = vec![Flag::StaleBackup];
        record
    }

    fn schedule(name: &str, cron: &str, selector: &str, paused: bool, since: &str) -> Schedule {
        let mut definition = Definition::new(name, cron);
        definition.namespaces = vec!["shop".into()];
        definition.selector = selector.into();
        Schedule::new(
            definition,
            Source::Stored {
                created_by: "test".into(),
            },
            paused,
            since.parse().unwrap(),
            None,
        )
        .unwrap()
    }

    #[test]
    fn overdue_and_unscheduled_flags() {
        let now: Timestamp = "2026-11-29T12:00:00Z".parse().unwrap();
        let hourly = schedule(
            "hourly",
            "0 * * * *",
            "app=db",
            false,
            "2026-11-01T00:00:00Z",
        );
        // Paused schedules still cover their PVCs (and so make them overdue when nothing runs).
        let daily = schedule(
            "daily",
            "0 3 * * *",
            "app=web",
            true,
            "2026-11-01T00:00:00Z",
        );
        let schedules = [hourly, daily];
        let mut records = vec![
            // Hourly: RPO 2 h; last success 1 h ago: fresh.
            record(
                "shop",
                "db-fresh",
                Some("2026-11-29T11:00:00Z"),
                &[("app", "db")],
            ),
            // Last success 3 h ago: overdue.
            record(
                "shop",
                "db-late",
                Some("2026-11-29T09:00:00Z"),
                &[("app", "db")],
            ),
            // Never backed up, covered since November: overdue.
            record("shop", "db-never", None, &[("app", "db")]),
            // Daily (paused): RPO 48 h; last success 30 h ago: fresh.
            record(
                "shop",
                "web",
                Some("2026-11-28T06:00:00Z"),
                &[("app", "web")],
            ),
            record("shop", "other", None, &[("app", "cache")]),
            record("elsewhere", "db", None, &[("app", "db")]),
        ];
        apply(&mut records, &schedules, now);
        let flags: Vec<(&str, Vec<Flag>)> = records
            .iter()
            .map(|r| (r.pvc.name.as_str(), r.flags.clone()))
            .collect();
        assert_eq!(
            flags,
            [
                ("db-fresh", vec![Flag::StaleBackup]),
                ("db-late", vec![Flag::StaleBackup, Flag::Overdue]),
                ("db-never", vec![Flag::StaleBackup, Flag::Overdue]),
                ("web", vec![Flag::StaleBackup]),
                ("other", vec![Flag::StaleBackup, Flag::Unscheduled]),
                ("db", vec![Flag::StaleBackup, Flag::Unscheduled]),
            ]
        );
        // Applying twice does not duplicate flags.
        apply(&mut records, &schedules, now);
        assert_eq!(records[1].flags, [Flag::StaleBackup, Flag::Overdue]);
        let freshness = assess(&records[3], &schedules, now);
        assert_eq!(freshness.schedules, ["daily"]);
        assert_eq!(freshness.rpo, Some(SignedDuration::from_hours(48)));
        // A newly created schedule does not make a never-backed-up PVC overdue at once.
        let new = schedule("new", "0 * * * *", "app=db", false, "2026-11-29T11:30:00Z");
        let never = record("shop", "db-never", None, &[("app", "db")]);
        assert!(!assess(&never, &[new], now).overdue);
    }
}
