//! Rendering of the metrics: names and labels as Prometheus expects them, values derived from the
//! runs observed, and series that disappear with their PVC or schedule.

use std::collections::BTreeSet;

use super::*;

fn run(id: i64, pvc: &str, by: &str, status: RunStatus, start: &str, end: &str) -> RunRecord {
    RunRecord {
        id,
        pvc_uid: format!("uid-{pvc}"),
        finished_at: Some(end.into()),
        bytes: Some(2048),
        source_bytes: Some(10_000),
        files: Some(3),
        ..RunRecord::unrecorded(&format!("r{id}"), "shop", pvc, status, by, start.into())
    }
}

#[test]
fn runs_render_as_counters_histograms_and_gauges() {
    let metrics = Metrics::new();
    metrics.observe_run(&run(
        1,
        "data",
        "schedule:nightly",
        RunStatus::Succeeded,
        "2026-11-29T03:00:00.000000Z",
        "2026-11-29T03:00:05.000000Z",
    ));
    metrics.observe_run(&run(
        2,
        "data",
        "schedule:nightly",
        RunStatus::Failed,
        "2026-11-29T04:00:00.000000Z",
        "2026-11-29T04:00:01.500000Z",
    ));
    metrics.observe_run(&run(
        3,
        "data",
        "cli:me",
        RunStatus::Succeeded,
        "2026-11-29T05:00:00.000000Z",
        "2026-11-29T05:00:30.000000Z",
    ));
    let mut running = run(
        4,
        "data",
        "cli:me",
        RunStatus::Running,
        "2026-11-29T06:00:00.000000Z",
        "x",
    );
    running.finished_at = None;
    metrics.observe_run(&running);
    metrics.set_in_progress(1);
    metrics.set_schedule(
        "nightly",
        Some("2026-11-30T03:00:00Z".parse().unwrap()),
        false,
    );
    metrics.set_lag("nightly", 1.25);
    metrics.count_pruned("nightly", true);
    metrics.set_freshness("shop", "data", 7200.0, true);
    let text = metrics.render();
    let nightly = r#"{namespace="shop",pvc="data",schedule="nightly"}"#;
    let manual = r#"{namespace="shop",pvc="data",schedule=""}"#;
    for expected in [
        "# TYPE nkvm_backup_attempts counter".to_owned(),
        format!("nkvm_backup_attempts_total{nightly} 2"),
        format!("nkvm_backup_succeeded_total{nightly} 1"),
        format!("nkvm_backup_failed_total{nightly} 1"),
        format!("nkvm_backup_attempts_total{manual} 1"),
        format!("nkvm_backup_read_bytes_total{manual} 10000"),
        "# TYPE nkvm_backup_duration_seconds histogram".to_owned(),
        format!("nkvm_backup_duration_seconds_count{nightly} 2"),
        format!("nkvm_backup_duration_seconds_sum{nightly} 6.5"),
        format!("nkvm_backup_duration_seconds_sum{manual} 30.0"),
        // The newest success: 05:00:30Z on 29 November 2026.
        r#"nkvm_backup_last_success_timestamp_seconds{namespace="shop",pvc="data"} 1795928430.0"#
            .to_owned(),
        r#"nkvm_backup_archive_bytes{namespace="shop",pvc="data"} 2048"#.to_owned(),
        r#"nkvm_backup_overdue{namespace="shop",pvc="data"} 1"#.to_owned(),
        r#"nkvm_backup_rpo_seconds{namespace="shop",pvc="data"} 7200.0"#.to_owned(),
        "nkvm_backup_runs_in_progress 1".to_owned(),
        r#"nkvm_schedule_next_run_timestamp_seconds{schedule="nightly"} 1796007600.0"#.to_owned(),
        r#"nkvm_schedule_lag_seconds{schedule="nightly"} 1.25"#.to_owned(),
        r#"nkvm_schedule_paused{schedule="nightly"} 0"#.to_owned(),
        r#"nkvm_retention_deleted_total{policy="nightly"} 1"#.to_owned(),
    ] {
        assert!(
            text.lines().any(|l| l == expected),
            "missing {expected:?} in\n{text}"
        );
    }
    // 1.5 s and 5 s: one run up to 3 s, both up to 9 s (buckets are cumulative).
    for (le, count) in [("1.0", 0), ("3.0", 1), ("9.0", 2), ("+Inf", 2)] {
        let expected = format!(
            "nkvm_backup_duration_seconds_bucket{{le=\"{le}\",namespace=\"shop\",pvc=\"data\",schedule=\"nightly\"}} {count}"
        );
        assert!(
            text.lines().any(|l| l == expected),
            "missing {expected:?} in\n{text}"
        );
    }
    assert!(text.trim_end().ends_with("# EOF"));
}

#[test]
fn series_of_removed_pvcs_and_schedules_disappear() {
    let metrics = Metrics::new();
    for (id, pvc, by) in [
        (1, "data", "schedule:nightly"),
        (2, "logs", "schedule:hourly"),
        (3, "gone", "cli:me"),
    ] {
        metrics.observe_run(&run(
            id,
            pvc,
            by,
            RunStatus::Succeeded,
            "2026-11-29T03:00:00.000000Z",
            "2026-11-29T03:00:05.000000Z",
        ));
    }
    metrics.set_schedule("nightly", None, true);
    metrics.set_schedule("hourly", None, false);
    let pvcs: BTreeSet<(String, String)> = [("shop", "data"), ("shop", "logs")]
        .iter()
        .map(|(n, p)| ((*n).to_owned(), (*p).to_owned()))
        .collect();
    let schedules: BTreeSet<String> = ["nightly".to_owned()].into();
    metrics.retain(Some(&pvcs), Some(&schedules));
    let text = metrics.render();
    assert!(!text.contains(r#"pvc="gone""#), "{text}");
    assert!(!text.contains(r#"schedule="hourly""#), "{text}");
    assert!(text.contains(r#"schedule="nightly""#), "{text}");
    assert!(
        text.contains(r#"nkvm_backup_last_success_timestamp_seconds{namespace="shop",pvc="logs"}"#)
    );
    assert!(text.contains(r#"nkvm_schedule_paused{schedule="nightly"} 1"#));
    assert!(!text.contains("nkvm_schedule_next_run_timestamp_seconds{"));
}
