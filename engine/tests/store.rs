//! History store against real SQLite databases: files in a temporary directory (WAL, reopening,
//! concurrent writers, a lock held by another connection) and private in-memory databases.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use nkvm_engine::domain::{RunStatus, Stage};
use nkvm_engine::store::{self, NewRun, RunFilter, RunRecord, RunUpdate, Store, StoreError};
use sqlx::Connection as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tempfile::TempDir;

fn t(text: &str) -> Timestamp {
    text.parse().expect(text)
}

fn new_run(run_id: &str, uid: &str, ns: &str, pvc: &str, started_at: &str) -> NewRun {
    NewRun {
        run_id: run_id.to_owned(),
        pvc_uid: uid.to_owned(),
        namespace: ns.to_owned(),
        pvc: pvc.to_owned(),
        started_by: "cli:tester".to_owned(),
        started_at: t(started_at),
        cluster: None,
    }
}

/// Inserts a run and, unless `status` is running, finishes it at `finished_at`.
async fn run(
    store: &Store,
    run_id: &str,
    uid: &str,
    started_at: &str,
    status: RunStatus,
    finished_at: Option<&str>,
) -> i64 {
    let id = store
        .insert_run(&new_run(run_id, uid, "shop", "data", started_at))
        .await
        .unwrap();
    if status != RunStatus::Running || finished_at.is_some() {
        store
            .update_run(
                id,
                &RunUpdate {
                    status: Some(status),
                    stage: (status == RunStatus::Failed).then_some(Stage::Stream),
                    finished_at: finished_at.map(t),
                    ..RunUpdate::default()
                },
            )
            .await
            .unwrap();
    }
    id
}

fn ids(records: &[RunRecord]) -> Vec<i64> {
    records.iter().map(|r| r.id).collect()
}

fn all() -> RunFilter {
    RunFilter::default()
}

/// A file store in a fresh directory (the directory must outlive the store).
async fn file_store() -> (Store, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&store::database_path(dir.path()))
        .await
        .unwrap();
    (store, dir)
}

/// Both backends, each scenario runs on both.
async fn stores() -> Vec<(&'static str, Store, Option<TempDir>)> {
    let (file, dir) = file_store().await;
    vec![
        ("memory", Store::open_in_memory().await.unwrap(), None),
        ("file", file, Some(dir)),
    ]
}

async fn raw_connection(path: &Path) -> SqliteConnection {
    SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path))
        .await
        .unwrap()
}

#[tokio::test]
async fn empty_history_answers_every_query_with_nothing() {
    for (name, store, _dir) in stores().await {
        assert!(
            store.recent_runs(&all()).await.unwrap().is_empty(),
            "{name}"
        );
        assert!(
            store.last_success_by_uid().await.unwrap().is_empty(),
            "{name}"
        );
        assert_eq!(store.last_success("u1").await.unwrap(), None, "{name}");
        assert!(
            store.retention_candidates(0).await.unwrap().is_empty(),
            "{name}"
        );
        assert!(
            store.mark_interrupted("x").await.unwrap().is_empty(),
            "{name}"
        );
        assert_eq!(store.get_run(1).await.unwrap(), None, "{name}");
        assert!(!store.delete_run(1).await.unwrap(), "{name}");
    }
}

#[tokio::test]
async fn insert_update_and_get_round_trip() {
    for (name, store, _dir) in stores().await {
        let id = store
            .insert_run(&NewRun {
                started_at: t("2026-11-28T23:18:58.123456789Z"),
                ..new_run("r1", "u1", "shop", "web-data", "2026-01-01T00:00:00Z")
            })
            .await
            .unwrap();
        let fresh = store.get_run(id).await.unwrap().unwrap();
        assert_eq!(fresh.status, RunStatus::Running, "{name}");
        assert_eq!(fresh.started_at, "2026-11-28T23:18:58.123456Z", "{name}");
        assert_eq!(fresh.stage, None);
        assert_eq!(fresh.finished_at, None);
        assert_eq!(fresh.started_by, "cli:tester");

        let sha = "ab".repeat(32);
        store
            .update_run(
                id,
                &RunUpdate {
                    stage: Some(Stage::Stream),
                    helper_pod: Some("nkvm-backup-r1".to_owned()),
                    node: Some("node-1".to_owned()),
                    message: Some("streaming".to_owned()),
                    ..RunUpdate::default()
                },
            )
            .await
            .unwrap();
        store
            .update_run(
                id,
                &RunUpdate {
                    status: Some(RunStatus::Succeeded),
                    stage: Some(Stage::Cleanup),
                    finished_at: Some(t("2026-11-28T23:20:00.5Z")),
                    bytes: Some(u64::try_from(i64::MAX).unwrap()),
                    source_bytes: Some(5_000_000_000),
                    files: Some(0),
                    sha256: Some(sha.clone()),
                    artifact: Some("/data/artifacts/shop/web-data/x.tar.gz".to_owned()),
                    ..RunUpdate::default()
                },
            )
            .await
            .unwrap();
        let done = store.get_run(id).await.unwrap().unwrap();
        let expected = RunRecord {
            id,
            run_id: "r1".to_owned(),
            pvc_uid: "u1".to_owned(),
            namespace: "shop".to_owned(),
            pvc: "web-data".to_owned(),
            status: RunStatus::Succeeded,
            stage: Some(Stage::Cleanup),
            // Fields not in the second update keep their earlier values.
            message: Some("streaming".to_owned()),
            started_by: "cli:tester".to_owned(),
            started_at: "2026-11-28T23:18:58.123456Z".to_owned(),
            finished_at: Some("2026-11-28T23:20:00.500000Z".to_owned()),
            bytes: Some(u64::try_from(i64::MAX).unwrap()),
            source_bytes: Some(5_000_000_000),
            files: Some(0),
            sha256: Some(sha),
            artifact: Some("/data/artifacts/shop/web-data/x.tar.gz".to_owned()),
            helper_pod: Some("nkvm-backup-r1".to_owned()),
            node: Some("node-1".to_owned()),
            destination: None,
            object_key: None,
            helper_uid: None,
            cluster: None,
            pruned_at: None,
            pruned_by: None,
            verification: nkvm_engine::store::Verification::default(),
        };
        assert_eq!(done, expected, "{name}");
    }
}

#[tokio::test]
async fn refused_writes_change_nothing() {
    for (name, store, _dir) in stores().await {
        let id = run(
            &store,
            "r1",
            "u1",
            "2026-01-01T00:00:00Z",
            RunStatus::Running,
            None,
        )
        .await;
        let before = store.get_run(id).await.unwrap();

        let too_big = RunUpdate {
            status: Some(RunStatus::Succeeded),
            bytes: Some(u64::MAX),
            ..RunUpdate::default()
        };
        assert!(
            matches!(
                store.update_run(id, &too_big).await,
                Err(StoreError::Unstorable {
                    column: "bytes",
                    ..
                })
            ),
            "{name}"
        );
        let bad_sha = RunUpdate {
            sha256: Some("ABC".to_owned()),
            ..RunUpdate::default()
        };
        assert!(matches!(
            store.update_run(id, &bad_sha).await,
            Err(StoreError::Query {
                query: "update_run",
                ..
            })
        ));
        assert_eq!(store.get_run(id).await.unwrap(), before, "{name}");

        assert!(matches!(
            store.update_run(id + 100, &RunUpdate::default()).await,
            Err(StoreError::NoSuchRun { id: missing }) if missing == id + 100
        ));
        let duplicate = store
            .insert_run(&new_run(
                "r1",
                "u2",
                "shop",
                "other",
                "2026-01-02T00:00:00Z",
            ))
            .await;
        assert!(
            matches!(
                duplicate,
                Err(StoreError::Query {
                    query: "insert_run",
                    ..
                })
            ),
            "{name}: {duplicate:?}"
        );
        let ancient = NewRun {
            started_at: t("-000001-01-01T00:00:00Z"),
            ..new_run("r2", "u1", "shop", "data", "2026-01-01T00:00:00Z")
        };
        assert!(matches!(
            store.insert_run(&ancient).await,
            Err(StoreError::Unstorable {
                column: "started_at",
                ..
            })
        ));
        assert_eq!(store.recent_runs(&all()).await.unwrap().len(), 1, "{name}");
    }
}

#[tokio::test]
async fn last_success_ignores_other_statuses() {
    for (name, store, _dir) in stores().await {
        let ok = run(
            &store,
            "ok",
            "u1",
            "2026-01-01T00:00:00Z",
            RunStatus::Succeeded,
            Some("2026-01-01T00:05:00Z"),
        )
        .await;
        // Everything below is newer than `ok`, but none of it succeeded.
        for (run_id, status) in [
            ("failed", RunStatus::Failed),
            ("interrupted", RunStatus::Interrupted),
            ("cancelled", RunStatus::Cancelled),
        ] {
            run(
                &store,
                run_id,
                "u1",
                "2026-01-02T00:00:00Z",
                status,
                Some("2026-01-02T00:05:00Z"),
            )
            .await;
        }
        run(
            &store,
            "running",
            "u1",
            "2026-01-03T00:00:00Z",
            RunStatus::Running,
            None,
        )
        .await;
        // Another PVC's newer success does not count for u1.
        let other = run(
            &store,
            "other",
            "u2",
            "2026-02-01T00:00:00Z",
            RunStatus::Succeeded,
            Some("2026-02-01T00:01:00Z"),
        )
        .await;

        assert_eq!(
            store.last_success("u1").await.unwrap().map(|r| r.id),
            Some(ok),
            "{name}"
        );
        assert_eq!(
            store.last_success("u2").await.unwrap().map(|r| r.id),
            Some(other)
        );
        assert_eq!(store.last_success("u3").await.unwrap(), None);
        let by_uid = store.last_success_by_uid().await.unwrap();
        assert_eq!(by_uid.len(), 2, "{name}");
        assert_eq!(by_uid["u1"], t("2026-01-01T00:05:00Z"));
        assert_eq!(by_uid["u2"], t("2026-02-01T00:01:00Z"));
    }
}

#[tokio::test]
async fn tie_on_finish_time_is_broken_by_the_newest_insert() {
    for (name, store, _dir) in stores().await {
        // The newest insert started earliest: only the row id can break the tie the right way.
        run(
            &store,
            "a",
            "u1",
            "2026-03-01T10:00:00Z",
            RunStatus::Succeeded,
            Some("2026-03-01T12:00:00.000001Z"),
        )
        .await;
        let newest = run(
            &store,
            "b",
            "u1",
            "2026-03-01T09:00:00Z",
            RunStatus::Succeeded,
            Some("2026-03-01T12:00:00.000001Z"),
        )
        .await;
        let last = store.last_success("u1").await.unwrap().unwrap();
        assert_eq!((last.id, last.run_id.as_str()), (newest, "b"), "{name}");
        assert_eq!(
            store.last_success_by_uid().await.unwrap()["u1"],
            t("2026-03-01T12:00:00.000001Z")
        );
        // The tie-break is consistent with retention: the newest insert is kept.
        let candidates = store.retention_candidates(1).await.unwrap();
        assert_eq!(
            candidates
                .iter()
                .map(|r| r.run_id.as_str())
                .collect::<Vec<_>>(),
            ["a"],
            "{name}"
        );
    }
}

#[tokio::test]
async fn latest_finish_wins_over_newest_insert() {
    for (name, store, _dir) in stores().await {
        let long = run(
            &store,
            "long",
            "u1",
            "2026-03-01T00:00:00Z",
            RunStatus::Succeeded,
            Some("2026-03-01T05:00:00Z"),
        )
        .await;
        // Inserted later, finished earlier (microseconds matter).
        run(
            &store,
            "short",
            "u1",
            "2026-03-01T01:00:00Z",
            RunStatus::Succeeded,
            Some("2026-03-01T04:59:59.999999Z"),
        )
        .await;
        assert_eq!(
            store.last_success("u1").await.unwrap().map(|r| r.id),
            Some(long),
            "{name}"
        );
        assert_eq!(
            store.last_success_by_uid().await.unwrap()["u1"],
            t("2026-03-01T05:00:00Z")
        );
    }
}

#[tokio::test]
async fn later_failure_does_not_hide_an_earlier_success() {
    for (name, store, _dir) in stores().await {
        let ok = run(
            &store,
            "ok",
            "u1",
            "2026-04-01T00:00:00Z",
            RunStatus::Succeeded,
            Some("2026-04-01T00:10:00Z"),
        )
        .await;
        let failed = run(
            &store,
            "failed",
            "u1",
            "2026-04-02T00:00:00Z",
            RunStatus::Failed,
            Some("2026-04-02T00:00:03Z"),
        )
        .await;
        assert_eq!(
            store.last_success("u1").await.unwrap().map(|r| r.id),
            Some(ok),
            "{name}"
        );
        assert_eq!(
            store.last_success_by_uid().await.unwrap().get("u1"),
            Some(&t("2026-04-01T00:10:00Z"))
        );
        let recent = store.recent_runs(&all()).await.unwrap();
        assert_eq!(ids(&recent), [failed, ok], "{name}");
        assert_eq!(recent[0].stage, Some(Stage::Stream));
    }
}

#[tokio::test]
async fn history_follows_the_uid_not_the_name() {
    for (name, store, _dir) in stores().await {
        // The PVC was deleted and re-created under the same name: a new UID, no backup yet.
        run(
            &store,
            "old",
            "uid-old",
            "2026-05-01T00:00:00Z",
            RunStatus::Succeeded,
            Some("2026-05-01T00:01:00Z"),
        )
        .await;
        assert_eq!(store.last_success("uid-new").await.unwrap(), None, "{name}");
        let by_uid = store.last_success_by_uid().await.unwrap();
        assert!(by_uid.contains_key("uid-old") && !by_uid.contains_key("uid-new"));
    }
}

#[tokio::test]
#[allow(
    clippy::too_many_lines,
    reason = "a table of filter cases over one fixture"
)]
async fn recent_runs_orders_filters_and_pages() {
    for (name, store, _dir) in stores().await {
        let insert = |run_id: &'static str,
                      uid: &'static str,
                      ns: &'static str,
                      pvc: &'static str,
                      at: &'static str| {
            let store = store.clone();
            async move {
                store
                    .insert_run(&new_run(run_id, uid, ns, pvc, at))
                    .await
                    .unwrap()
            }
        };
        let a1 = insert("a1", "ua", "shop", "data", "2026-06-01T00:00:00Z").await;
        let b1 = insert("b1", "ub", "shop", "logs", "2026-06-02T00:00:00Z").await;
        let c1 = insert("c1", "uc", "blog", "data", "2026-06-03T00:00:00Z").await;
        // Same start time as c1, inserted later: comes first.
        let a2 = insert("a2", "ua", "shop", "data", "2026-06-03T00:00:00Z").await;
        // Inserted last but started first: comes last.
        let a0 = insert("a0", "ua", "shop", "data", "2026-05-31T23:59:59.999999Z").await;
        for (id, status) in [
            (a1, RunStatus::Succeeded),
            (b1, RunStatus::Failed),
            (c1, RunStatus::Succeeded),
        ] {
            store
                .update_run(
                    id,
                    &RunUpdate {
                        status: Some(status),
                        finished_at: Some(t("2026-06-04T00:00:00Z")),
                        ..RunUpdate::default()
                    },
                )
                .await
                .unwrap();
        }
        let query = |filter: RunFilter| {
            let store = store.clone();
            async move { ids(&store.recent_runs(&filter).await.unwrap()) }
        };

        assert_eq!(query(all()).await, [a2, c1, b1, a1, a0], "{name}");
        assert_eq!(
            query(RunFilter {
                namespace: Some("shop".into()),
                ..all()
            })
            .await,
            [a2, b1, a1, a0]
        );
        assert_eq!(
            query(RunFilter {
                namespace: Some("shop".into()),
                pvc: Some("data".into()),
                ..all()
            })
            .await,
            [a2, a1, a0]
        );
        assert_eq!(
            query(RunFilter {
                namespaces: Some(vec!["blog".into(), "elsewhere".into()]),
                ..all()
            })
            .await,
            [c1]
        );
        assert_eq!(
            query(RunFilter {
                namespaces: Some(vec!["shop".into(), "blog".into()]),
                status: Some(RunStatus::Succeeded),
                ..all()
            })
            .await,
            [c1, a1]
        );
        assert!(
            query(RunFilter {
                namespaces: Some(Vec::new()),
                ..all()
            })
            .await
            .is_empty(),
            "an empty allowlist allows nothing"
        );
        assert_eq!(
            query(RunFilter {
                run_id: Some("b1".into()),
                ..all()
            })
            .await,
            [b1]
        );
        // A name alone matches it in every namespace.
        assert_eq!(
            query(RunFilter {
                pvc: Some("data".into()),
                ..all()
            })
            .await,
            [a2, c1, a1, a0]
        );
        assert_eq!(
            query(RunFilter {
                pvc_uid: Some("ub".into()),
                ..all()
            })
            .await,
            [b1]
        );
        assert_eq!(
            query(RunFilter {
                status: Some(RunStatus::Succeeded),
                ..all()
            })
            .await,
            [c1, a1]
        );
        assert_eq!(
            query(RunFilter {
                status: Some(RunStatus::Running),
                ..all()
            })
            .await,
            [a2, a0]
        );
        assert!(
            query(RunFilter {
                status: Some(RunStatus::Cancelled),
                ..all()
            })
            .await
            .is_empty()
        );
        assert!(
            query(RunFilter {
                namespace: Some("nope".into()),
                ..all()
            })
            .await
            .is_empty()
        );
        // since is inclusive, until exclusive; sub-microsecond bounds behave like exact ones.
        assert_eq!(
            query(RunFilter {
                since: Some(t("2026-06-02T00:00:00Z")),
                ..all()
            })
            .await,
            [a2, c1, b1]
        );
        assert_eq!(
            query(RunFilter {
                since: Some(t("2026-06-01T23:59:59.9999999Z")),
                ..all()
            })
            .await,
            [a2, c1, b1]
        );
        assert_eq!(
            query(RunFilter {
                since: Some(t("2026-06-02T00:00:00.0000001Z")),
                ..all()
            })
            .await,
            [a2, c1]
        );
        assert_eq!(
            query(RunFilter {
                until: Some(t("2026-06-02T00:00:00Z")),
                ..all()
            })
            .await,
            [a1, a0]
        );
        assert_eq!(
            query(RunFilter {
                until: Some(t("2026-06-02T00:00:00.0000001Z")),
                ..all()
            })
            .await,
            [b1, a1, a0]
        );
        assert_eq!(
            query(RunFilter {
                since: Some(t("2026-06-01T00:00:00Z")),
                until: Some(t("2026-06-03T00:00:00Z")),
                namespace: Some("shop".into()),
                ..all()
            })
            .await,
            [b1, a1]
        );
        assert!(
            query(RunFilter {
                until: Some(t("-000001-01-01T00:00:00Z")),
                ..all()
            })
            .await
            .is_empty()
        );
        assert_eq!(
            query(RunFilter {
                since: Some(t("-000001-01-01T00:00:00Z")),
                ..all()
            })
            .await
            .len(),
            5
        );
        assert!(
            query(RunFilter {
                since: Some(Timestamp::MAX),
                ..all()
            })
            .await
            .is_empty()
        );
        assert_eq!(
            query(RunFilter {
                until: Some(Timestamp::MAX),
                ..all()
            })
            .await
            .len(),
            5
        );
        // Limit and offset; a limit of 0 means no limit.
        assert_eq!(query(RunFilter { limit: 2, ..all() }).await, [a2, c1]);
        assert_eq!(
            query(RunFilter {
                limit: 2,
                offset: 2,
                ..all()
            })
            .await,
            [b1, a1]
        );
        assert_eq!(
            query(RunFilter {
                limit: 2,
                offset: 4,
                ..all()
            })
            .await,
            [a0]
        );
        assert!(
            query(RunFilter {
                limit: 2,
                offset: 5,
                ..all()
            })
            .await
            .is_empty()
        );
        assert_eq!(query(RunFilter { offset: 3, ..all() }).await, [a1, a0]);
        assert_eq!(
            query(RunFilter {
                namespace: Some("shop".into()),
                limit: 1,
                offset: 1,
                ..all()
            })
            .await,
            [b1]
        );
    }
}

#[tokio::test]
async fn retention_keeps_the_newest_successes_of_each_pvc() {
    for (name, store, _dir) in stores().await {
        let mut u1 = Vec::new();
        for day in 1..=4 {
            u1.push(
                run(
                    &store,
                    &format!("u1-{day}"),
                    "u1",
                    &format!("2026-07-0{day}T00:00:00Z"),
                    RunStatus::Succeeded,
                    Some(&format!("2026-07-0{day}T01:00:00Z")),
                )
                .await,
            );
        }
        let u2 = run(
            &store,
            "u2-1",
            "u2",
            "2026-07-01T00:00:00Z",
            RunStatus::Succeeded,
            Some("2026-07-01T01:00:00Z"),
        )
        .await;
        // Never candidates, however old or many.
        for (run_id, status) in [("f1", RunStatus::Failed), ("f2", RunStatus::Interrupted)] {
            run(
                &store,
                run_id,
                "u1",
                "2026-06-01T00:00:00Z",
                status,
                Some("2026-06-01T00:00:01Z"),
            )
            .await;
        }
        run(
            &store,
            "r1",
            "u2",
            "2026-06-01T00:00:00Z",
            RunStatus::Running,
            None,
        )
        .await;

        let candidates = |keep: u32| {
            let store = store.clone();
            async move { ids(&store.retention_candidates(keep).await.unwrap()) }
        };
        // Ordered by PVC UID, then newest first.
        assert_eq!(
            candidates(0).await,
            [u1[3], u1[2], u1[1], u1[0], u2],
            "{name}"
        );
        assert_eq!(candidates(1).await, [u1[2], u1[1], u1[0]], "{name}");
        assert_eq!(candidates(3).await, [u1[0]], "{name}");
        assert!(candidates(4).await.is_empty(), "{name}");
        assert!(candidates(u32::MAX).await.is_empty(), "{name}");
        let records = store.retention_candidates(1).await.unwrap();
        assert!(records.iter().all(|r| r.status == RunStatus::Succeeded));

        // A retention pass deletes the rows; the last success stays.
        for id in candidates(1).await {
            assert!(store.delete_run(id).await.unwrap());
        }
        assert!(candidates(1).await.is_empty());
        assert_eq!(
            store.last_success("u1").await.unwrap().map(|r| r.id),
            Some(u1[3])
        );
    }
}

#[tokio::test]
async fn mark_interrupted_flips_only_running_rows() {
    for (name, store, _dir) in stores().await {
        let r1 = run(
            &store,
            "r1",
            "u1",
            "2026-08-01T00:00:00Z",
            RunStatus::Running,
            None,
        )
        .await;
        store
            .update_run(
                r1,
                &RunUpdate {
                    stage: Some(Stage::Stream),
                    message: Some("streaming".to_owned()),
                    ..RunUpdate::default()
                },
            )
            .await
            .unwrap();
        let ok = run(
            &store,
            "ok",
            "u1",
            "2026-07-01T00:00:00Z",
            RunStatus::Succeeded,
            Some("2026-07-01T00:01:00Z"),
        )
        .await;
        let r2 = run(
            &store,
            "r2",
            "u2",
            "2026-08-01T00:00:00Z",
            RunStatus::Running,
            None,
        )
        .await;
        let before_ok = store.get_run(ok).await.unwrap();

        let started = Timestamp::now();
        let changed = store
            .mark_interrupted("nkvm restarted during the backup")
            .await
            .unwrap();
        let ended = Timestamp::now();
        assert_eq!(ids(&changed), [r1, r2], "{name}");
        for record in &changed {
            assert_eq!(record.status, RunStatus::Interrupted);
            assert_eq!(
                record.message.as_deref(),
                Some("nkvm restarted during the backup")
            );
            let finished =
                nkvm_engine::timestamp::parse(record.finished_at.as_deref().unwrap()).unwrap();
            assert!(
                nkvm_engine::timestamp::truncate(started) <= finished && finished <= ended,
                "{finished} not within [{started}, {ended}]"
            );
            // What was returned is what is stored.
            assert_eq!(
                store.get_run(record.id).await.unwrap().as_ref(),
                Some(record)
            );
        }
        assert_eq!(
            changed[0].stage,
            Some(Stage::Stream),
            "the stage reached stays"
        );
        assert_eq!(changed[1].stage, None);
        assert_eq!(store.get_run(ok).await.unwrap(), before_ok);
        assert!(store.mark_interrupted("again").await.unwrap().is_empty());
        assert!(
            store
                .recent_runs(&RunFilter {
                    status: Some(RunStatus::Running),
                    ..all()
                })
                .await
                .unwrap()
                .is_empty()
        );
    }
}

#[tokio::test]
async fn reopening_keeps_data_and_migrations_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = store::database_path(dir.path());
    assert_eq!(path, dir.path().join("nkvm.db"));
    assert!(!path.exists());
    let store = Store::open(&path).await.unwrap();
    assert!(path.exists());
    let id = run(
        &store,
        "r1",
        "u1",
        "2026-09-01T00:00:00Z",
        RunStatus::Succeeded,
        Some("2026-09-01T00:00:01Z"),
    )
    .await;
    let before = store.get_run(id).await.unwrap().unwrap();
    store.close().await;

    let migrations = || async {
        let mut conn = raw_connection(&path).await;
        let rows: Vec<(i64, bool, Vec<u8>)> = sqlx::query_as(
            "SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
        rows
    };
    let first = migrations().await;
    // One applied row per file of engine/migrations (0001_runs.sql, 0002_audit.sql, …), by the
    // number its name starts with (numbers may have gaps while branches are merged).
    let mut numbers: Vec<i64> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
            .unwrap()
            .filter_map(|e| {
                let path = e.ok()?.path();
                (path.extension()? == "sql").then_some(())?;
                path.file_name()?.to_str()?.split('_').next()?.parse().ok()
            })
            .collect();
    numbers.sort_unstable();
    let expected: Vec<(i64, bool)> = numbers.into_iter().map(|v| (v, true)).collect();
    assert_eq!(
        first.iter().map(|m| (m.0, m.1)).collect::<Vec<_>>(),
        expected,
        "every migration applied once"
    );

    for _ in 0..2 {
        let again = Store::open(&path).await.unwrap();
        assert_eq!(again.get_run(id).await.unwrap().as_ref(), Some(&before));
        assert_eq!(again.recent_runs(&all()).await.unwrap().len(), 1);
        again.close().await;
        assert_eq!(
            migrations().await,
            first,
            "re-running migrations is a no-op"
        );
    }

    // The schema is what the documentation says.
    let mut conn = raw_connection(&path).await;
    let indexes: HashSet<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'runs' AND sql IS NOT NULL",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let expected: HashSet<String> = [
        "runs_pvc_uid_status_finished_at",
        "runs_started_at",
        "runs_namespace_pvc",
        "runs_destination",
        "runs_unpruned_successes",
        "runs_pvc_uid_last_verified_at",
        "runs_cluster_started_at",
    ]
    .map(str::to_owned)
    .into();
    assert_eq!(indexes, expected);
}

#[tokio::test]
async fn file_database_is_in_wal_mode() {
    let (store, dir) = file_store().await;
    run(
        &store,
        "r1",
        "u1",
        "2026-10-01T00:00:00Z",
        RunStatus::Running,
        None,
    )
    .await;
    let path = store::database_path(dir.path());
    // WAL is a property of the file: a connection that asks for nothing still sees it.
    let mut conn = raw_connection(&path).await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    assert!(dir.path().join("nkvm.db-wal").exists());
    conn.close().await.unwrap();
    store.close().await;
}

/// Inserts a row behind the store's back (only the schema's constraints apply).
async fn raw_insert(
    conn: &mut SqliteConnection,
    status: &str,
    stage: Option<&str>,
    at: &str,
    bytes: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO runs (run_id, pvc_uid, namespace, pvc, status, stage, started_by, started_at, \
         bytes) VALUES (?1, 'u', 'ns', 'p', ?2, ?3, 'x', ?4, ?5)",
    )
    .bind(format!("{status}-{at}-{bytes}-{stage:?}"))
    .bind(status)
    .bind(stage)
    .bind(at)
    .bind(bytes)
    .execute(conn)
    .await
    .map(|_| ())
}

#[tokio::test]
async fn schema_refuses_values_outside_the_contract() {
    let (store, dir) = file_store().await;
    let mut conn = raw_connection(&store::database_path(dir.path())).await;
    let good = "2026-11-28T23:18:58.123456Z";
    assert!(
        raw_insert(&mut conn, "running", None, good, 0)
            .await
            .is_ok()
    );
    assert!(raw_insert(&mut conn, "done", None, good, 0).await.is_err());
    assert!(
        raw_insert(&mut conn, "failed", Some("Stream"), good, 0)
            .await
            .is_err()
    );
    assert!(
        raw_insert(&mut conn, "running", None, "2026-11-28T23:18:58Z", 0)
            .await
            .is_err()
    );
    assert!(
        raw_insert(&mut conn, "running", None, "2026-11-28 23:18:58.123456Z", 0)
            .await
            .is_err()
    );
    assert!(
        raw_insert(&mut conn, "running", None, good, -1)
            .await
            .is_err()
    );
    conn.close().await.unwrap();
    store.close().await;
}

#[tokio::test]
async fn corrupt_rows_are_reported_not_guessed() {
    let (store, dir) = file_store().await;
    let mut conn = raw_connection(&store::database_path(dir.path())).await;
    // Only a writer that turns the CHECK constraints off can store this.
    sqlx::query("PRAGMA ignore_check_constraints = ON")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO runs (run_id, pvc_uid, namespace, pvc, status, started_by, started_at, files) \
         VALUES ('bad', 'u', 'ns', 'p', 'succeeded', 'x', '2026-11-28T23:18:58.123456Z', -5)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    match store.recent_runs(&all()).await {
        Err(StoreError::Corrupt { column, value, .. }) => {
            assert_eq!((column, value.as_str()), ("files", "-5"));
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_all_succeed() {
    let (first, dir) = file_store().await;
    // A second pool on the same file, like a CLI beside the server: up to 8 writers compete.
    let second = Store::open(&store::database_path(dir.path()))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for task in 0..8 {
        let store = if task % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..25 {
                let id = store
                    .insert_run(&new_run(
                        &format!("t{task}-{i}"),
                        &format!("u{task}"),
                        "shop",
                        "data",
                        "2026-11-01T00:00:00Z",
                    ))
                    .await?;
                store
                    .update_run(
                        id,
                        &RunUpdate {
                            status: Some(RunStatus::Succeeded),
                            finished_at: Some(Timestamp::now()),
                            files: Some(i),
                            ..RunUpdate::default()
                        },
                    )
                    .await?;
                ids.push(id);
            }
            Ok::<_, StoreError>(ids)
        }));
    }
    let mut all_ids = HashSet::new();
    for task in tasks {
        for id in task.await.unwrap().unwrap() {
            assert!(all_ids.insert(id), "id {id} handed out twice");
        }
    }
    assert_eq!(all_ids.len(), 200);
    let rows = first.recent_runs(&all()).await.unwrap();
    assert_eq!(rows.len(), 200);
    assert!(rows.iter().all(|r| r.status == RunStatus::Succeeded));
    assert_eq!(first.last_success_by_uid().await.unwrap().len(), 8);
    first.close().await;
    second.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_waits_for_another_connections_lock() {
    let (store, dir) = file_store().await;
    let mut locker = raw_connection(&store::database_path(dir.path())).await;
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut locker)
        .await
        .unwrap();

    let writer = store.clone();
    let started = Instant::now();
    let insert = tokio::spawn(async move {
        writer
            .insert_run(&new_run("r1", "u1", "shop", "data", "2026-11-02T00:00:00Z"))
            .await
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!insert.is_finished(), "the insert should wait for the lock");
    sqlx::query("COMMIT").execute(&mut locker).await.unwrap();

    let id = insert
        .await
        .unwrap()
        .expect("the busy timeout lets the insert through");
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert_eq!(store.get_run(id).await.unwrap().unwrap().run_id, "r1");
    locker.close().await.unwrap();
    store.close().await;
}

#[tokio::test]
async fn records_serialize_with_snake_case_fields_and_lowercase_values() {
    let store = Store::open_in_memory().await.unwrap();
    let id = run(
        &store,
        "r1",
        "u1",
        "2026-11-28T23:18:58.123456Z",
        RunStatus::Failed,
        Some("2026-11-28T23:19:00Z"),
    )
    .await;
    let record = store.get_run(id).await.unwrap().unwrap();
    let json = serde_json::to_value(&record).unwrap();
    assert_eq!(json["status"], "failed");
    assert_eq!(json["stage"], "stream");
    assert_eq!(json["started_at"], "2026-11-28T23:18:58.123456Z");
    assert_eq!(json["finished_at"], "2026-11-28T23:19:00.000000Z");
    assert_eq!(json["pvc_uid"], "u1");
    assert!(json["bytes"].is_null() && json["source_bytes"].is_null());
    let back: RunRecord = serde_json::from_value(json).unwrap();
    assert_eq!(back, record);
}
