//! Verification of stored archives in the history database (columns of `runs`, migration
//! `0004_restore.sql`): recording a verification's result, and the newest verified backup per PVC
//! for the inventory and retention.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::row::{RunRow, run_columns, store_time};
use super::{RunRecord, Store, StoreError, query_error, timestamp};
use crate::domain::VerifyStatus;

/// The last verification of a run's archive, as stored with its history row.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// When the archive was last verified (RFC 3339 UTC), whatever the result.
    pub verified_at: Option<String>,
    /// The result of that verification.
    pub verify_status: Option<VerifyStatus>,
    /// Who ran it (`cli:<user>`, `web:<user>`).
    pub verified_by: Option<String>,
    /// What it found.
    pub verify_message: Option<String>,
    /// When the archive last passed a verification; `None` when it never did or when a later
    /// verification failed.
    pub last_verified_at: Option<String>,
}

/// One verification to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationUpdate {
    pub at: jiff::Timestamp,
    pub status: VerifyStatus,
    pub by: String,
    pub message: String,
}

impl Store {
    /// Records a verification of run `id`'s archive: a pass sets `last_verified_at`, a failure
    /// clears it.
    pub async fn record_verification(
        &self,
        id: i64,
        update: &VerificationUpdate,
    ) -> Result<(), StoreError> {
        let at = store_time("verified_at", update.at)?;
        let passed = update.status == VerifyStatus::Verified;
        let result = sqlx::query(
            "UPDATE runs SET verified_at = ?1, verify_status = ?2, verified_by = ?3, \
                 verify_message = ?4, last_verified_at = CASE WHEN ?5 THEN ?1 ELSE NULL END \
             WHERE id = ?6",
        )
        .bind(&at)
        .bind(update.status.as_str())
        .bind(update.by.as_str())
        .bind(update.message.as_str())
        .bind(passed)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(query_error("record_verification"))?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NoSuchRun { id });
        }
        Ok(())
    }

    /// PVC UID → when its newest verified backup was last verified (the latest `last_verified_at`).
    pub async fn last_verified_by_uid(
        &self,
    ) -> Result<HashMap<String, jiff::Timestamp>, StoreError> {
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT id, pvc_uid, MAX(last_verified_at) FROM runs \
             WHERE status = 'succeeded' AND last_verified_at IS NOT NULL \
             GROUP BY pvc_uid",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("last_verified_by_uid"))?;
        rows.into_iter()
            .map(|(id, uid, at)| match timestamp::parse(&at) {
                Some(ts) => Ok((uid, ts)),
                None => Err(StoreError::Corrupt {
                    id,
                    column: "last_verified_at",
                    value: at,
                }),
            })
            .collect()
    }

    /// The newest succeeded run of a PVC whose latest verification passed (newest by
    /// `finished_at`, then row id): the backup retention must keep.
    pub async fn newest_verified(&self, pvc_uid: &str) -> Result<Option<RunRecord>, StoreError> {
        sqlx::query_as::<_, RunRow>(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE pvc_uid = ?1 AND status = 'succeeded' \
               AND last_verified_at IS NOT NULL \
             ORDER BY finished_at DESC, id DESC LIMIT 1"
        ))
        .bind(pvc_uid)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error("newest_verified"))?
        .map(RunRow::into_record)
        .transpose()
    }

    /// A run by its run id.
    pub async fn run_by_run_id(&self, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
        sqlx::query_as::<_, RunRow>(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE run_id = ?1"
        ))
        .bind(run_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error("run_by_run_id"))?
        .map(RunRow::into_record)
        .transpose()
    }

    /// The succeeded runs of a PVC (by namespace and name), newest first (`finished_at`, then id).
    pub async fn succeeded_runs_of(
        &self,
        namespace: &str,
        pvc: &str,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let rows = sqlx::query_as::<_, RunRow>(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE namespace = ?1 AND pvc = ?2 AND status = 'succeeded' \
               AND finished_at IS NOT NULL \
             ORDER BY finished_at DESC, id DESC"
        ))
        .bind(namespace)
        .bind(pvc)
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("succeeded_runs_of"))?;
        rows.into_iter().map(RunRow::into_record).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RunStatus;
    use crate::store::{NewRun, RunUpdate};

    async fn succeeded(store: &Store, run_id: &str, uid: &str, finished: &str) -> i64 {
        let id = store
            .insert_run(&NewRun {
                run_id: run_id.to_owned(),
                pvc_uid: uid.to_owned(),
                namespace: "shop".to_owned(),
                pvc: "data".to_owned(),
                started_by: "t".to_owned(),
                started_at: "2026-11-28T00:00:00Z".parse().unwrap(),
                cluster: None,
            })
            .await
            .unwrap();
        store
            .update_run(
                id,
                &RunUpdate {
                    status: Some(RunStatus::Succeeded),
                    finished_at: Some(finished.parse().unwrap()),
                    ..RunUpdate::default()
                },
            )
            .await
            .unwrap();
        id
    }

    fn verification(at: &str, status: VerifyStatus) -> VerificationUpdate {
        VerificationUpdate {
            at: at.parse().unwrap(),
            status,
            by: "cli:me".to_owned(),
            message: "m".to_owned(),
        }
    }

    #[tokio::test]
    async fn a_failed_verification_clears_last_verified_at() {
        let store = Store::open_in_memory().await.unwrap();
        let old = succeeded(&store, "a", "u1", "2026-11-28T01:00:00Z").await;
        let new = succeeded(&store, "b", "u1", "2026-11-28T02:00:00Z").await;
        assert!(store.newest_verified("u1").await.unwrap().is_none());
        store
            .record_verification(
                old,
                &verification("2026-11-29T00:00:00Z", VerifyStatus::Verified),
            )
            .await
            .unwrap();
        store
            .record_verification(
                new,
                &verification("2026-11-29T00:01:00Z", VerifyStatus::Verified),
            )
            .await
            .unwrap();
        assert_eq!(store.newest_verified("u1").await.unwrap().unwrap().id, new);
        store
            .record_verification(
                new,
                &verification("2026-11-29T00:02:00Z", VerifyStatus::Failed),
            )
            .await
            .unwrap();
        let row = store.get_run(new).await.unwrap().unwrap();
        assert_eq!(row.verification.verify_status, Some(VerifyStatus::Failed));
        assert_eq!(
            row.verification.verified_at.as_deref(),
            Some("2026-11-29T00:02:00.000000Z")
        );
        assert_eq!(row.verification.last_verified_at, None);
        assert_eq!(row.verification.verified_by.as_deref(), Some("cli:me"));
        // The older backup is now the newest verified one.
        assert_eq!(store.newest_verified("u1").await.unwrap().unwrap().id, old);
        let by_uid = store.last_verified_by_uid().await.unwrap();
        assert_eq!(
            by_uid["u1"],
            "2026-11-29T00:00:00Z".parse::<jiff::Timestamp>().unwrap()
        );
        assert!(matches!(
            store
                .record_verification(
                    999,
                    &verification("2026-11-29T00:00:00Z", VerifyStatus::Verified)
                )
                .await,
            Err(StoreError::NoSuchRun { id: 999 })
        ));
        assert_eq!(store.run_by_run_id("b").await.unwrap().unwrap().id, new);
        let runs = store.succeeded_runs_of("shop", "data").await.unwrap();
        assert_eq!(runs.iter().map(|r| r.id).collect::<Vec<_>>(), [new, old]);
    }
}
