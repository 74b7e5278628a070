//! Schedules against the real test cluster, with the scheduler's clock driven by the test (a cron
//! of every minute without waiting for minutes): a schedule over a label selector backs up the
//! matching PVCs and only those, a PVC created later that matches is picked up, retention prunes
//! the older archives (files gone, rows marked pruned, deletions audited); and the inventory flags a
//! PVC covered by a paused schedule `overdue` once its RPO has passed, and an uncovered one
//! `unscheduled`.
//!
//! Needs `NKVM_TEST_KUBECONFIG`, the images `nkvm.local/helper:1` and `nkvm.local/workload:1`, and
//! the default storage class of the test cluster. Each test works in its own namespace.

mod support;

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use nkvm_engine::audit::{AuditAction, AuditFilter, AuditOutcome};
use nkvm_engine::backup::{BackupOptions, Requester};
use nkvm_engine::connection::{self, ConnectOptions};
use nkvm_engine::destination::Destinations;
use nkvm_engine::domain::{Flag, RunStatus};
use nkvm_engine::inventory::{self, HistoryJoin, InventoryOptions};
use nkvm_engine::observe::{Metrics, Notifier};
use nkvm_engine::schedule::{
    ClusterBackend, Definition, Retention, Scheduler, SchedulerOptions, manage,
};
use nkvm_engine::store::{RunFilter, RunRecord, Store};
use nkvm_engine::workspace::Connection;
use support::TestNamespace;

struct Setup {
    _dir: tempfile::TempDir,
    data_dir: std::path::PathBuf,
    store: Store,
    connection: Arc<Connection>,
    inventory: InventoryOptions,
}

async fn setup(namespace: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_path_buf();
    let store = Store::open(&data_dir.join("nkvm.db")).await.unwrap();
    let cluster = connection::connect(&support::test_cluster_source(), &ConnectOptions::default())
        .await
        .expect("connect to the test cluster");
    let options = BackupOptions {
        data_dir: data_dir.clone(),
        helper_image: "nkvm.local/helper:1".into(),
        instance: Some(format!("sched-{}", std::process::id())),
        allowlist: Some(vec![namespace.to_owned()]),
        check_free_space: false,
        ..BackupOptions::default()
    };
    let connection = Arc::new(Connection::new(cluster, store.clone(), options).unwrap());
    let inventory = InventoryOptions {
        allowlist: Some(vec![namespace.to_owned()]),
        ..InventoryOptions::default()
    };
    Setup {
        _dir: dir,
        data_dir,
        store,
        connection,
        inventory,
    }
}

/// A scheduler of `namespace`; with `live`, reading the connection's live inventory (as the web
/// server's does) instead of scanning.
fn scheduler(setup: &Setup, namespace: &str, live: bool) -> Scheduler<ClusterBackend> {
    let mut backend = ClusterBackend::new(
        setup.connection.clone(),
        setup.store.clone(),
        setup.inventory.clone(),
    );
    if live {
        backend = backend.reading_live_inventory();
    }
    Scheduler::new(
        backend,
        setup.store.clone(),
        Destinations::load(None, &setup.data_dir).unwrap(),
        SchedulerOptions {
            refresh: Duration::from_secs(30),
            data_dir: setup.data_dir.clone(),
            allowlist: Some(vec![namespace.to_owned()]),
            ..SchedulerOptions::default()
        },
        Metrics::new(),
        Notifier::new(vec![]).unwrap(),
    )
}

async fn runs(store: &Store, namespace: &str) -> Vec<RunRecord> {
    store
        .recent_runs(&RunFilter {
            namespace: Some(namespace.to_owned()),
            ..RunFilter::default()
        })
        .await
        .unwrap()
}

fn of<'a>(runs: &'a [RunRecord], pvc: &str) -> Vec<&'a RunRecord> {
    runs.iter().filter(|r| r.pvc == pvc).collect()
}

#[tokio::test]
#[ignore = "needs the test cluster"]
async fn a_selector_schedule_backs_up_matching_pvcs_and_retention_prunes() {
    let ns = TestNamespace::create("sched-sel");
    ns.claims_with_consumer(
        "app",
        &[
            ("db-a", "tier: db"),
            ("db-b", "tier: db"),
            ("cache", "tier: cache"),
        ],
    );
    let setup = setup(&ns.0).await;
    let mut definition = Definition::new("dbs", "* * * * *");
    definition.namespaces = vec![ns.0.clone()];
    definition.selector = "tier=db".into();
    definition.concurrency = 2;
    definition.retention = Retention {
        keep_last: Some(1),
        ..Retention::default()
    };
    manage::create(
        &setup.store,
        &definition,
        &["local".to_owned()],
        &Requester::cli(Some("test")),
    )
    .await
    .unwrap();
    let created = Timestamp::now();
    // From the live inventory: the PVC created later must reach it through its watches.
    let s = scheduler(&setup, &ns.0, true);

    // The first minute after its creation: the two matching PVCs, not the cache.
    let first = (created + SignedDuration::from_secs(61))
        .round(jiff::Unit::Minute)
        .unwrap();
    let report = s.tick(first + SignedDuration::from_secs(1)).await;
    let targets: Vec<String> = report
        .fired
        .iter()
        .flat_map(|f| f.targets.iter().map(ToString::to_string))
        .collect();
    assert_eq!(
        targets,
        [format!("{}/db-a", ns.0), format!("{}/db-b", ns.0)]
    );
    s.settle().await;
    let after_first = runs(&setup.store, &ns.0).await;
    assert_eq!(after_first.len(), 2, "{after_first:?}");
    for run in &after_first {
        assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
        assert_eq!(run.started_by, "schedule:dbs");
    }
    assert!(of(&after_first, "cache").is_empty());

    // A PVC created later that matches is picked up by the next firing, once the live inventory's
    // watches have seen it (this test's runtime is idle only while it waits here).
    ns.claims_with_consumer("later", &[("db-c", "tier: db")]);
    let mut snapshots = setup.connection.live(&setup.inventory).unwrap().subscribe();
    tokio::time::timeout(
        Duration::from_secs(30),
        snapshots.wait_for(|s| s.pvcs.iter().any(|r| r.pvc.name == "db-c")),
    )
    .await
    .expect("the live inventory lists db-c within 30 s")
    .unwrap();
    let second = first + SignedDuration::from_mins(1);
    let report = s.tick(second + SignedDuration::from_secs(1)).await;
    assert!(report.scanned);
    assert_eq!(report.fired[0].targets.len(), 3, "{:?}", report.fired);
    s.settle().await;
    let all = runs(&setup.store, &ns.0).await;
    assert_eq!(all.len(), 5);
    assert!(of(&all, "cache").is_empty());
    assert_eq!(of(&all, "db-c").len(), 1);

    // Retention (keep the last 1) ran after the firing: the older backups of db-a and db-b are
    // pruned — files deleted, rows kept and marked — and the newest of each stays.
    for pvc in ["db-a", "db-b"] {
        let mut rows = of(&all, pvc);
        rows.sort_by(|a, b| a.finished_at.cmp(&b.finished_at));
        let (old, new) = (rows[0], rows[1]);
        assert_eq!(old.pruned_by.as_deref(), Some("schedule:dbs"), "{old:?}");
        assert!(old.pruned_at.is_some());
        assert!(new.pruned_at.is_none());
        let old_archive = std::path::Path::new(old.artifact.as_deref().unwrap());
        let new_archive = std::path::Path::new(new.artifact.as_deref().unwrap());
        assert!(
            !old_archive.exists(),
            "{} still exists",
            old_archive.display()
        );
        let sidecar = format!("{}.sha256", old_archive.display());
        assert!(!std::path::Path::new(&sidecar).exists());
        assert!(new_archive.exists());
    }
    assert!(of(&all, "db-c")[0].pruned_at.is_none());
    let pruned = setup
        .store
        .audit_events(&AuditFilter {
            action: Some(AuditAction::BackupPruned),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(pruned.len(), 2);
    assert!(pruned.iter().all(|e| e.outcome == AuditOutcome::Success));
}

#[tokio::test]
#[ignore = "needs the test cluster"]
async fn a_paused_schedule_makes_its_pvcs_overdue_and_others_are_unscheduled() {
    let ns = TestNamespace::create("sched-due");
    ns.claims_with_consumer(
        "app",
        &[("covered", "backup: \"yes\""), ("loose", "backup: \"no\"")],
    );
    let setup = setup(&ns.0).await;
    let mut definition = Definition::new("minutely", "* * * * *");
    definition.namespaces = vec![ns.0.clone()];
    definition.selector = "backup=yes".into();
    let who = Requester::cli(Some("test"));
    manage::create(&setup.store, &definition, &["local".to_owned()], &who)
        .await
        .unwrap();
    manage::set_paused(&setup.store, "minutely", true, &who)
        .await
        .unwrap();
    let flags = |now: Timestamp| {
        let setup = &setup;
        async move {
            let history = HistoryJoin {
                store: Some(&setup.store),
                stale_after: None,
                now,
            };
            let found = inventory::scan_with_history(
                &setup.connection.cluster.client,
                &setup.inventory,
                history,
            )
            .await
            .unwrap();
            let get = |name: &str| {
                found
                    .pvcs
                    .iter()
                    .find(|r| r.pvc.name == name)
                    .unwrap()
                    .flags
                    .clone()
            };
            (get("covered"), get("loose"))
        }
    };
    // Just created: covered but not overdue yet (RPO: twice the minute).
    let (covered, loose) = flags(Timestamp::now()).await;
    assert!(!covered.contains(&Flag::Overdue), "{covered:?}");
    assert!(!covered.contains(&Flag::Unscheduled));
    assert!(loose.contains(&Flag::Unscheduled), "{loose:?}");
    // Three minutes on, nothing ran (paused): overdue.
    let (covered, loose) = flags(Timestamp::now() + SignedDuration::from_mins(3)).await;
    assert!(covered.contains(&Flag::Overdue), "{covered:?}");
    assert!(!loose.contains(&Flag::Overdue));
    // The scheduler starts nothing for a paused schedule.
    let s = scheduler(&setup, &ns.0, false);
    let report = s
        .tick(Timestamp::now() + SignedDuration::from_mins(3))
        .await;
    assert!(report.fired.is_empty());
    assert!(runs(&setup.store, &ns.0).await.is_empty());
}
