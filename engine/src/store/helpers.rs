//! The helper pods nkvm created, by UID (table `helper_pods`, migration `0006_helper_pods.sql`), so
//! that start-up recovery deletes only pods nkvm made — never one that only carries its labels —
//! and the runs and restores recorded before UIDs were, whose helpers recovery still recognises by
//! run id, namespace and name; and the PVCs restores created, by UID (`restores.pvc_uid`, migration
//! `0007_restore_pvc_uid.sql`), so that recovery deletes only those of its incomplete PVCs.

use super::row::store_time;
use super::{Store, StoreError, query_error};

/// A helper pod nkvm created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperPod {
    /// The pod's `metadata.uid`.
    pub uid: String,
    /// The backup's run id or the restore's id.
    pub job_id: String,
    pub namespace: String,
    pub name: String,
}

impl Store {
    /// Records a helper pod nkvm just created (recording it twice is harmless).
    pub async fn record_helper(&self, helper: &HelperPod) -> Result<(), StoreError> {
        let now = store_time("created_at", jiff::Timestamp::now())?;
        sqlx::query(
            "INSERT INTO helper_pods (uid, job_id, namespace, name, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (uid) DO NOTHING",
        )
        .bind(&helper.uid)
        .bind(&helper.job_id)
        .bind(&helper.namespace)
        .bind(&helper.name)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(query_error("record_helper"))?;
        Ok(())
    }

    /// Whether nkvm recorded creating the pod with this UID.
    pub async fn helper_recorded(&self, uid: &str) -> Result<bool, StoreError> {
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM helper_pods WHERE uid = ?1")
            .bind(uid)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error("helper_recorded"))?;
        Ok(found.is_some())
    }

    /// Whether `job_id` is a backup run (`namespace` = the PVC's) or a restore (`namespace` = the
    /// target's) recorded before helper UIDs were, so that its helper's UID is unknown.
    pub async fn job_before_helper_uids(
        &self,
        job_id: &str,
        namespace: &str,
    ) -> Result<bool, StoreError> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM runs WHERE run_id = ?1 AND namespace = ?2 AND before_helper_uids = 1 \
             UNION ALL SELECT 1 FROM restores WHERE restore_id = ?1 AND target_namespace = ?2 \
             AND before_helper_uids = 1 LIMIT 1",
        )
        .bind(job_id)
        .bind(namespace)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error("job_before_helper_uids"))?;
        Ok(found.is_some())
    }
}

/// A restore PVC nkvm created whose UID it recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorePvc {
    /// The restore that created it.
    pub restore_id: String,
    pub namespace: String,
    pub name: String,
    /// Whether it is the PVC of a new-PVC restore that succeeded (complete: never deleted by
    /// recovery, whatever labels it carries now).
    pub completed: bool,
}

impl Store {
    /// Records the UID of the PVC the restore `restore_id` just created.
    pub async fn record_restore_pvc(&self, restore_id: &str, uid: &str) -> Result<(), StoreError> {
        let result = sqlx::query("UPDATE restores SET pvc_uid = ?1 WHERE restore_id = ?2")
            .bind(uid)
            .bind(restore_id)
            .execute(&self.pool)
            .await
            .map_err(query_error("record_restore_pvc"))?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NoSuchRestore {
                restore_id: restore_id.to_owned(),
            });
        }
        Ok(())
    }

    /// The restore PVC nkvm recorded creating with this UID, if any.
    pub async fn restore_pvc(&self, uid: &str) -> Result<Option<RestorePvc>, StoreError> {
        let row: Option<(String, String, String, bool)> = sqlx::query_as(
            "SELECT restore_id, target_namespace, target_pvc, \
             (status = 'succeeded' AND mode = 'new-pvc') FROM restores WHERE pvc_uid = ?1",
        )
        .bind(uid)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error("restore_pvc"))?;
        Ok(
            row.map(|(restore_id, namespace, name, completed)| RestorePvc {
                restore_id,
                namespace,
                name,
                completed,
            }),
        )
    }
}

#[cfg(test)]
impl Store {
    /// Marks every row as recorded before helper UIDs were, as migration 0006 does.
    pub(crate) async fn mark_all_before_helper_uids(&self) {
        for query in [
            "UPDATE runs SET before_helper_uids = 1",
            "UPDATE restores SET before_helper_uids = 1",
        ] {
            sqlx::query(query).execute(&self.pool).await.unwrap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewRun;

    #[tokio::test]
    async fn recorded_helpers_are_known_by_uid_only() {
        let store = Store::open_in_memory().await.unwrap();
        let helper = HelperPod {
            uid: "u-1".into(),
            job_id: "r1".into(),
            namespace: "shop".into(),
            name: "nkvm-backup-r1".into(),
        };
        store.record_helper(&helper).await.unwrap();
        store.record_helper(&helper).await.unwrap();
        assert!(store.helper_recorded("u-1").await.unwrap());
        assert!(!store.helper_recorded("u-2").await.unwrap());
    }

    #[tokio::test]
    async fn runs_recorded_from_now_on_are_not_from_before_uids() {
        let store = Store::open_in_memory().await.unwrap();
        store
            .insert_run(&NewRun {
                run_id: "r1".into(),
                pvc_uid: "p".into(),
                namespace: "shop".into(),
                pvc: "data".into(),
                started_by: "test".into(),
                started_at: jiff::Timestamp::now(),
                cluster: None,
            })
            .await
            .unwrap();
        assert!(!store.job_before_helper_uids("r1", "shop").await.unwrap());
        // A row from before the migration (as the migration marks them).
        store.mark_all_before_helper_uids().await;
        assert!(store.job_before_helper_uids("r1", "shop").await.unwrap());
        assert!(!store.job_before_helper_uids("r1", "other").await.unwrap());
        assert!(!store.job_before_helper_uids("r2", "shop").await.unwrap());
    }
}
