//! Audit trail against a real SQLite file in a temporary directory: recording events, reading them
//! back filtered, ordered and paginated, the schema of migration 0002, and CSV export of stored rows.

use std::collections::HashSet;

use jiff::Timestamp;
use nkvm_engine::audit::{
    self, AuditAction, AuditEvent, AuditFilter, AuditOutcome, AuditRecord, MAX_ACTOR_LEN,
    MAX_DETAIL_LEN,
};
use nkvm_engine::store::{self, Store, StoreError};
use sqlx::Connection as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tempfile::TempDir;

fn t(text: &str) -> Timestamp {
    text.parse().expect(text)
}

/// A file store in a fresh directory (the directory must outlive the store).
async fn file_store() -> (Store, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&store::database_path(dir.path()))
        .await
        .unwrap();
    (store, dir)
}

fn event(actor: &str, action: AuditAction, outcome: AuditOutcome, at: &str) -> AuditEvent {
    AuditEvent::new(actor, action, outcome).with_time(t(at))
}

async fn record(store: &Store, event: AuditEvent) -> i64 {
    store.record_audit(&event).await.unwrap()
}

fn ids_of(records: &[AuditRecord]) -> Vec<i64> {
    records.iter().map(|r| r.id).collect()
}

/// Eight events over a day: logins, a failure, a backup, a download, a refusal, a logout.
async fn seeded() -> (Store, TempDir, Vec<i64>) {
    use AuditAction::*;
    use AuditOutcome::*;
    let (store, dir) = file_store().await;
    let mut ids = Vec::new();
    for e in [
        event("alice", Login, Success, "2026-11-28T08:00:00Z").with_source("192.0.2.1"),
        event("mallory", LoginFailed, Failure, "2026-11-28T08:05:00Z").with_source("203.0.113.9"),
        event("alice", BackupStarted, Success, "2026-11-28T09:00:00Z").with_target("shop/data"),
        event("bob", Login, Success, "2026-11-28T09:00:00Z"),
        event("bob", Download, Success, "2026-11-28T10:30:00.000001Z").with_target("shop/data"),
        event("bob", AccessDenied, Denied, "2026-11-28T11:00:00Z").with_target("connect"),
        event("alice", ConnectionChanged, Success, "2026-11-28T12:00:00Z").with_target("prod"),
        event("alice", Logout, Success, "2026-11-28T18:00:00Z"),
    ] {
        ids.push(record(&store, e).await);
    }
    (store, dir, ids)
}

#[tokio::test]
async fn records_and_reads_back_every_field() {
    let (store, _dir) = file_store().await;
    assert!(
        store
            .audit_events(&AuditFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    let event = AuditEvent::new("alice", AuditAction::Download, AuditOutcome::Success)
        .with_time(t("2026-11-28T23:18:58.123456789Z"))
        .with_target("shop/data")
        .with_detail("run 20261128t231858-3f9a1c, 1048576 bytes")
        .with_source("2001:db8::7");
    let id = store.record_audit(&event).await.unwrap();
    let minimal = AuditEvent::new("bob", AuditAction::Logout, AuditOutcome::Success)
        .with_time(t("2026-11-28T23:18:59Z"));
    let id2 = store.record_audit(&minimal).await.unwrap();
    assert!(id2 > id);

    let records = store.audit_events(&AuditFilter::default()).await.unwrap();
    assert_eq!(
        records,
        vec![
            AuditRecord {
                id: id2,
                at: "2026-11-28T23:18:59.000000Z".to_owned(),
                actor: "bob".to_owned(),
                action: AuditAction::Logout,
                target: None,
                outcome: AuditOutcome::Success,
                detail: None,
                source: None,
            },
            AuditRecord {
                id,
                // Truncated to the microsecond.
                at: "2026-11-28T23:18:58.123456Z".to_owned(),
                actor: "alice".to_owned(),
                action: AuditAction::Download,
                target: Some("shop/data".to_owned()),
                outcome: AuditOutcome::Success,
                detail: Some("run 20261128t231858-3f9a1c, 1048576 bytes".to_owned()),
                source: Some("2001:db8::7".to_owned()),
            },
        ]
    );
}

#[tokio::test]
async fn newest_first_with_ties_by_id() {
    let (store, _dir, ids) = seeded().await;
    let all = store.audit_events(&AuditFilter::default()).await.unwrap();
    // ids[2] and ids[3] share 09:00: the later row comes first.
    assert_eq!(
        ids_of(&all),
        [
            ids[7], ids[6], ids[5], ids[4], ids[3], ids[2], ids[1], ids[0]
        ]
    );
    // Insertion order does not decide: an event recorded late with an early time sorts early.
    let late = record(
        &store,
        event(
            "carol",
            AuditAction::Login,
            AuditOutcome::Success,
            "2026-11-28T07:00:00Z",
        ),
    )
    .await;
    let all = store.audit_events(&AuditFilter::default()).await.unwrap();
    assert_eq!(all.last().map(|r| r.id), Some(late));
    assert_eq!(all.first().map(|r| r.id), Some(ids[7]));
}

#[tokio::test]
async fn filters_by_actor_action_outcome_and_time() {
    let (store, _dir, ids) = seeded().await;
    let query = |filter: AuditFilter| {
        let store = store.clone();
        async move { ids_of(&store.audit_events(&filter).await.unwrap()) }
    };

    let alice = || AuditFilter {
        actor: Some("alice".to_owned()),
        ..AuditFilter::default()
    };
    assert_eq!(query(alice()).await, [ids[7], ids[6], ids[2], ids[0]]);
    assert_eq!(
        query(AuditFilter {
            actor: Some("nobody".to_owned()),
            ..AuditFilter::default()
        })
        .await,
        Vec::<i64>::new()
    );
    assert_eq!(
        query(AuditFilter {
            action: Some(AuditAction::Login),
            ..AuditFilter::default()
        })
        .await,
        [ids[3], ids[0]]
    );
    assert_eq!(
        query(AuditFilter {
            outcome: Some(AuditOutcome::Denied),
            ..AuditFilter::default()
        })
        .await,
        [ids[5]]
    );
    assert_eq!(
        query(AuditFilter {
            action: Some(AuditAction::Login),
            ..alice()
        })
        .await,
        [ids[0]]
    );

    // `since` is inclusive, `until` exclusive, both at microsecond precision.
    assert_eq!(
        query(AuditFilter {
            since: Some(t("2026-11-28T09:00:00Z")),
            until: Some(t("2026-11-28T12:00:00Z")),
            ..AuditFilter::default()
        })
        .await,
        [ids[5], ids[4], ids[3], ids[2]]
    );
    assert_eq!(
        query(AuditFilter {
            since: Some(t("2026-11-28T10:30:00.0000005Z")),
            until: Some(t("2026-11-28T11:00:00.000000001Z")),
            ..AuditFilter::default()
        })
        .await,
        [ids[5], ids[4]]
    );
    assert_eq!(
        query(AuditFilter {
            since: Some(t("2026-11-28T10:30:00.0000015Z")),
            ..AuditFilter::default()
        })
        .await,
        [ids[7], ids[6], ids[5]]
    );
    assert_eq!(
        query(AuditFilter {
            until: Some(t("2026-11-28T08:05:00Z")),
            ..alice()
        })
        .await,
        [ids[0]]
    );
    // Bounds outside the storable range.
    assert_eq!(
        query(AuditFilter {
            since: Some(t("-000001-01-01T00:00:00Z")),
            ..AuditFilter::default()
        })
        .await
        .len(),
        8
    );
    assert!(
        query(AuditFilter {
            until: Some(t("-000001-01-01T00:00:00Z")),
            ..AuditFilter::default()
        })
        .await
        .is_empty()
    );
    assert!(
        query(AuditFilter {
            since: Some(Timestamp::MAX),
            ..AuditFilter::default()
        })
        .await
        .is_empty()
    );
}

#[tokio::test]
async fn paginates_with_limit_and_offset() {
    let (store, _dir, ids) = seeded().await;
    let page = |limit, offset| {
        let store = store.clone();
        async move {
            let records = store
                .audit_events(&AuditFilter {
                    limit,
                    offset,
                    ..AuditFilter::default()
                })
                .await
                .unwrap();
            records.iter().map(|r| r.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(page(3, 0).await, [ids[7], ids[6], ids[5]]);
    assert_eq!(page(3, 3).await, [ids[4], ids[3], ids[2]]);
    assert_eq!(page(3, 6).await, [ids[1], ids[0]]);
    assert!(page(3, 9).await.is_empty());
    // No limit, with an offset.
    assert_eq!(page(0, 5).await, [ids[2], ids[1], ids[0]]);
    assert_eq!(page(0, 0).await.len(), 8);
    // Pages of a filtered query.
    let bob = store
        .audit_events(&AuditFilter {
            actor: Some("bob".to_owned()),
            limit: 2,
            offset: 1,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(ids_of(&bob), [ids[4], ids[3]]);
}

#[tokio::test]
async fn long_texts_are_cut_and_odd_ones_kept() {
    let (store, _dir) = file_store().await;
    let long_name = "x".repeat(10_000);
    let id = record(
        &store,
        AuditEvent::new(
            long_name.as_str(),
            AuditAction::LoginFailed,
            AuditOutcome::Failure,
        )
        .with_detail("é".repeat(5_000))
        .with_target("line one\nline two, \"quoted\"\r\n=1+1"),
    )
    .await;
    let records = store.audit_events(&AuditFilter::default()).await.unwrap();
    let r = &records[0];
    assert_eq!(r.id, id);
    assert!(
        r.actor.len() <= MAX_ACTOR_LEN && r.actor.ends_with('…'),
        "{}",
        r.actor.len()
    );
    assert!(r.actor.starts_with("xxxxxxxx"));
    let detail = r.detail.as_deref().unwrap();
    assert!(
        detail.len() <= MAX_DETAIL_LEN && detail.ends_with("é…"),
        "{}",
        detail.len()
    );
    assert_eq!(
        r.target.as_deref(),
        Some("line one\nline two, \"quoted\"\r\n=1+1")
    );
    // Filtering by the long name finds nothing (it was stored cut), by the stored name finds it.
    let by = |actor: String| AuditFilter {
        actor: Some(actor),
        ..AuditFilter::default()
    };
    assert!(store.audit_events(&by(long_name)).await.unwrap().is_empty());
    assert_eq!(
        ids_of(&store.audit_events(&by(r.actor.clone())).await.unwrap()),
        [id]
    );
}

#[tokio::test]
async fn refuses_times_before_year_zero() {
    let (store, _dir) = file_store().await;
    let err = store
        .record_audit(&event(
            "alice",
            AuditAction::Login,
            AuditOutcome::Success,
            "-000001-06-01T00:00:00Z",
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Unstorable {
                column: "audit.at",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        store
            .audit_events(&AuditFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn concurrent_writers_get_distinct_rows() {
    let (store, _dir) = file_store().await;
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .record_audit(&AuditEvent::new(
                        format!("user{i}"),
                        AuditAction::Download,
                        AuditOutcome::Success,
                    ))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut written = HashSet::new();
    for task in tasks {
        assert!(written.insert(task.await.unwrap()));
    }
    let records = store.audit_events(&AuditFilter::default()).await.unwrap();
    assert_eq!(records.len(), 40);
    assert_eq!(
        records.iter().map(|r| r.id).collect::<HashSet<_>>(),
        written
    );
}

#[tokio::test]
async fn the_schema_is_migration_0002_and_survives_reopening() {
    let (store, dir) = file_store().await;
    let id = record(
        &store,
        event(
            "alice",
            AuditAction::Login,
            AuditOutcome::Success,
            "2026-11-28T08:00:00Z",
        ),
    )
    .await;
    store.close().await;

    let path = store::database_path(dir.path());
    let reopened = Store::open(&path).await.unwrap();
    let records = reopened
        .audit_events(&AuditFilter::default())
        .await
        .unwrap();
    assert_eq!(ids_of(&records), [id]);
    reopened.close().await;

    let mut conn = SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(&path))
        .await
        .unwrap();
    let versions: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, description FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    // Later migrations (0003, …) follow; this test is about the first two.
    assert_eq!(
        versions[..2],
        [(1, "runs".to_owned()), (2, "audit".to_owned())]
    );
    let indexes: HashSet<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit' \
         AND sql IS NOT NULL",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(
        indexes,
        ["audit_at", "audit_actor_at"].map(str::to_owned).into()
    );
    // The table refuses malformed times and empty actions (a bug would show here, not later).
    for (at, action) in [
        ("2026-11-28T08:00:00Z", "login"),
        ("2026-11-28T08:00:00.000000Z", ""),
    ] {
        let result = sqlx::query(
            "INSERT INTO audit (at, actor, action, outcome) VALUES (?1, 'x', ?2, 'success')",
        )
        .bind(at)
        .bind(action)
        .execute(&mut conn)
        .await;
        assert!(result.is_err(), "{at} {action:?}");
    }
    // A row written by a newer version with an unknown action is reported, not skipped.
    sqlx::query(
        "INSERT INTO audit (at, actor, action, outcome) \
         VALUES ('2026-11-29T00:00:00.000000Z', 'x', 'teleport_started', 'success')",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let reopened = Store::open(&path).await.unwrap();
    let err = reopened
        .audit_events(&AuditFilter::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { column: "audit.action", value, .. } if value == "teleport_started"),
        "{err}"
    );
}

#[tokio::test]
async fn exports_stored_rows_as_csv() {
    let (store, _dir) = file_store().await;
    let id1 = record(
        &store,
        event(
            "=cmd|' /C calc'!A0",
            AuditAction::LoginFailed,
            AuditOutcome::Failure,
            "2026-11-28T08:00:00Z",
        )
        .with_source("203.0.113.9"),
    )
    .await;
    let id2 = record(
        &store,
        event(
            "alice",
            AuditAction::Download,
            AuditOutcome::Success,
            "2026-11-28T09:00:00Z",
        )
        .with_target("shop/data")
        .with_detail("sha256 ab12, \"verified\""),
    )
    .await;
    let records = store.audit_events(&AuditFilter::default()).await.unwrap();
    assert_eq!(
        audit::to_csv(&records),
        format!(
            "id,at,actor,action,target,outcome,detail,source\r\n\
             {id2},2026-11-28T09:00:00.000000Z,alice,download,shop/data,success,\
             \"sha256 ab12, \"\"verified\"\"\",\r\n\
             {id1},2026-11-28T08:00:00.000000Z,'=cmd|' /C calc'!A0,login_failed,,failure,,\
             203.0.113.9\r\n"
        )
    );
}
