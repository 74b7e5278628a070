//! Retention against a real (in-memory) history and real files: which runs a plan deletes, that
//! execution deletes the three files and marks the rows, the PVC's newest success and newest
//! verified backup survive, unsafe rows are refused, and every deletion is audited.

use std::path::{Path, PathBuf};

use super::*;
use crate::audit::AuditFilter;
use crate::domain::RunStatus;
use crate::schedule::{Definition, Source};
use crate::store::{NewRun, RunUpdate};

struct Fixture {
    dir: tempfile::TempDir,
    store: Store,
}

impl Fixture {
    async fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            store: Store::open_in_memory().await.unwrap(),
        }
    }

    fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// A succeeded run of shop/`pvc` finished at `finished`, started by `by`, with its three files.
    async fn run(&self, pvc: &str, finished: &str, by: &str) -> (i64, PathBuf) {
        let at: Timestamp = finished.parse().unwrap();
        let stamp = crate::backup::artifact::timestamp_name(at);
        let dir = self.data_dir().join("artifacts/shop").join(pvc);
        std::fs::create_dir_all(&dir).unwrap();
        let archive = dir.join(format!("{stamp}.tar.gz"));
        for file in [
            archive.clone(),
            dir.join(format!("{stamp}.tar.gz.sha256")),
            dir.join(format!("{stamp}.manifest.json")),
        ] {
            std::fs::write(file, b"x").unwrap();
        }
        let id = self
            .store
            .insert_run(&NewRun {
                run_id: format!("r-{pvc}-{stamp}").to_lowercase(),
                pvc_uid: format!("uid-{pvc}"),
                namespace: "shop".into(),
                pvc: pvc.into(),
                started_by: by.into(),
                started_at: at,
                cluster: None,
            })
            .await
            .unwrap();
        self.store
            .update_run(
                id,
                &RunUpdate {
                    status: Some(RunStatus::Succeeded),
                    finished_at: Some(at),
                    artifact: Some(archive.display().to_string()),
                    ..RunUpdate::default()
                },
            )
            .await
            .unwrap();
        (id, archive)
    }
}

fn schedule(name: &str, retention: Retention) -> Schedule {
    let mut definition = Definition::new(name, "0 3 * * *");
    definition.pvcs = vec!["shop/data".into()];
    definition.retention = retention;
    Schedule::new(
        definition,
        Source::Stored {
            created_by: "test".into(),
        },
        false,
        Timestamp::UNIX_EPOCH,
        None,
    )
    .unwrap()
}

fn last(n: u32) -> Retention {
    Retention {
        keep_last: Some(n),
        ..Retention::default()
    }
}

fn decisions(items: &[PruneItem]) -> Vec<(i64, PruneAction)> {
    items.iter().map(|i| (i.id, i.action)).collect()
}

#[tokio::test]
async fn a_schedule_keeps_its_last_n_and_the_rest_is_deleted_and_marked() {
    let fx = Fixture::new().await;
    let (first, first_path) = fx
        .run("data", "2026-11-25T03:00:00Z", "schedule:nightly")
        .await;
    let (second, second_path) = fx
        .run("data", "2026-11-26T03:00:00Z", "schedule:nightly")
        .await;
    let (third, _) = fx
        .run("data", "2026-11-27T03:00:00Z", "schedule:nightly")
        .await;
    let (fourth, _) = fx
        .run("data", "2026-11-28T03:00:00Z", "schedule:nightly")
        .await;
    // A manual backup: no default retention, so no policy applies to it.
    let (_, manual_path) = fx.run("data", "2026-11-24T10:00:00Z", "cli:me").await;
    let schedules = [schedule("nightly", last(2))];
    let planned = plan(&fx.store, &schedules, &Retention::default(), None)
        .await
        .unwrap();
    assert_eq!(
        decisions(&planned),
        [
            (fourth, PruneAction::Keep),
            (third, PruneAction::Keep),
            (second, PruneAction::Delete),
            (first, PruneAction::Delete),
        ]
    );
    assert_eq!(
        planned[0].reasons,
        ["last #1", "newest successful backup of the PVC"]
    );
    assert_eq!(planned[2].status, PruneStatus::Planned);
    assert_eq!(planned[2].policy, "nightly");
    assert_eq!(planned[2].retention, "last 2");
    // A dry run changes nothing.
    assert!(first_path.exists());

    let done = execute(
        &fx.store,
        &Destinations::load(None, fx.data_dir()).unwrap(),
        fx.data_dir(),
        planned,
        "schedule:nightly",
    )
    .await;
    let statuses: Vec<PruneStatus> = done.iter().map(|i| i.status).collect();
    assert_eq!(
        statuses,
        [
            PruneStatus::Kept,
            PruneStatus::Kept,
            PruneStatus::Deleted,
            PruneStatus::Deleted
        ]
    );
    for path in [&first_path, &second_path] {
        let stem = path.to_str().unwrap().strip_suffix(".tar.gz").unwrap();
        for file in [
            path.to_str().unwrap().to_owned(),
            format!("{stem}.tar.gz.sha256"),
            format!("{stem}.manifest.json"),
        ] {
            assert!(!Path::new(&file).exists(), "{file} still exists");
        }
    }
    assert!(manual_path.exists());
    let row = fx.store.get_run(first).await.unwrap().unwrap();
    assert!(row.pruned_at.is_some());
    assert_eq!(row.pruned_by.as_deref(), Some("schedule:nightly"));
    assert_eq!(
        row.status,
        RunStatus::Succeeded,
        "the row is kept for the record"
    );
    let audit = fx
        .store
        .audit_events(&AuditFilter {
            action: Some(AuditAction::BackupPruned),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 2);
    assert!(
        audit
            .iter()
            .all(|e| e.outcome == AuditOutcome::Success && e.actor == "schedule:nightly")
    );
    // The next pass finds nothing more to delete.
    let again = plan(&fx.store, &schedules, &Retention::default(), None)
        .await
        .unwrap();
    assert!(
        again.iter().all(|i| i.action == PruneAction::Keep),
        "{again:?}"
    );
    assert_eq!(again.len(), 2);
}

#[tokio::test]
async fn the_default_covers_other_backups_and_the_newest_success_always_stays() {
    let fx = Fixture::new().await;
    let (old, _) = fx.run("data", "2026-11-20T03:00:00Z", "cli:me").await;
    let (newest, _) = fx.run("data", "2026-11-28T03:00:00Z", "web:ada").await;
    // Keep nothing by rule: only the protection remains.
    let items = plan(&fx.store, &[], &last(0), None).await.unwrap();
    assert_eq!(
        decisions(&items),
        [(newest, PruneAction::Keep), (old, PruneAction::Delete)]
    );
    assert_eq!(items[0].reasons, ["newest successful backup of the PVC"]);
    assert_eq!(items[1].policy, DEFAULT_POLICY);
    // A schedule without retention rules falls back to the default too.
    let (by_schedule, _) = fx
        .run("data", "2026-11-21T03:00:00Z", "schedule:bare")
        .await;
    let items = plan(
        &fx.store,
        &[schedule("bare", Retention::default())],
        &last(0),
        None,
    )
    .await
    .unwrap();
    assert!(items.iter().any(|i| i.id == by_schedule
        && i.action == PruneAction::Delete
        && i.policy == DEFAULT_POLICY));
    // Outside the allowlist nothing is considered.
    let none = plan(&fx.store, &[], &last(0), Some(&["other".to_owned()]))
        .await
        .unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn the_newest_verified_backup_is_kept_once_verification_is_recorded() {
    let fx = Fixture::new().await;
    let (oldest, _) = fx.run("data", "2026-11-20T03:00:00Z", "cli:me").await;
    let (middle, _) = fx.run("data", "2026-11-21T03:00:00Z", "cli:me").await;
    let (newest, _) = fx.run("data", "2026-11-22T03:00:00Z", "cli:me").await;
    // Before verification exists, nothing is known verified.
    assert!(fx.store.newest_verified_by_uid().await.unwrap().is_empty());
    let items = plan(&fx.store, &[], &last(1), None).await.unwrap();
    assert_eq!(
        decisions(&items),
        [
            (newest, PruneAction::Keep),
            (middle, PruneAction::Delete),
            (oldest, PruneAction::Delete)
        ]
    );
    // The middle one and the oldest passed a verification, so the middle one (the newest
    // verified) stays.
    sqlx::query(
        "UPDATE runs SET last_verified_at = '2026-11-29T00:00:00.000000Z' WHERE id IN (?1, ?2)",
    )
    .bind(oldest)
    .bind(middle)
    .execute(fx.store.pool())
    .await
    .unwrap();
    let items = plan(&fx.store, &[], &last(1), None).await.unwrap();
    assert_eq!(
        decisions(&items),
        [
            (newest, PruneAction::Keep),
            (middle, PruneAction::Keep),
            (oldest, PruneAction::Delete)
        ]
    );
    assert_eq!(items[1].reasons, ["newest verified backup of the PVC"]);
}

#[tokio::test]
async fn rows_pointing_outside_the_artifacts_directory_are_refused() {
    let fx = Fixture::new().await;
    let (_, _) = fx.run("data", "2026-11-28T03:00:00Z", "cli:me").await;
    let (evil, _) = fx.run("data", "2026-11-20T03:00:00Z", "cli:me").await;
    let outside = fx.data_dir().join("precious.tar.gz");
    std::fs::write(&outside, b"keep me").unwrap();
    fx.store
        .update_run(
            evil,
            &RunUpdate {
                artifact: Some(format!(
                    "{}/artifacts/../precious.tar.gz",
                    fx.data_dir().display()
                )),
                ..RunUpdate::default()
            },
        )
        .await
        .unwrap();
    let items = plan(&fx.store, &[], &last(1), None).await.unwrap();
    let done = execute(
        &fx.store,
        &Destinations::load(None, fx.data_dir()).unwrap(),
        fx.data_dir(),
        items,
        "cli:me",
    )
    .await;
    let failed = done.iter().find(|i| i.id == evil).unwrap();
    assert_eq!(failed.status, PruneStatus::Failed);
    assert!(
        failed
            .message
            .as_deref()
            .unwrap()
            .contains("not inside the artifacts directory"),
        "{failed:?}"
    );
    assert!(outside.exists());
    assert!(
        fx.store
            .get_run(evil)
            .await
            .unwrap()
            .unwrap()
            .pruned_at
            .is_none()
    );
    let audit = fx
        .store
        .audit_events(&AuditFilter::default())
        .await
        .unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == AuditAction::BackupPruned && e.outcome == AuditOutcome::Failure)
    );
}

#[test]
fn keys_of_a_backup() {
    assert_eq!(
        keys_of("shop/data/20261128T030000.000Z.tar.gz").unwrap(),
        [
            "shop/data/20261128T030000.000Z.tar.gz".to_owned(),
            "shop/data/20261128T030000.000Z.tar.gz.sha256".to_owned(),
            "shop/data/20261128T030000.000Z.manifest.json".to_owned()
        ]
    );
    assert!(keys_of("x.zip").is_none());
    let root = Path::new("/d/artifacts");
    assert_eq!(
        legacy_key("/d/artifacts/shop/data/a.tar.gz", root).as_deref(),
        Some("shop/data/a.tar.gz")
    );
    assert_eq!(legacy_key("/d/artifacts/shop/../../x.tar.gz", root), None);
    assert_eq!(legacy_key("/elsewhere/a.tar.gz", root), None);
}
