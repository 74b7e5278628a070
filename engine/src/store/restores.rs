//! The restore history (`restores` table, migration `0004_restore.sql`): one row per restore or
//! drill, written when it starts and updated when it ends; recent restores for the CLI and the web
//! UI; restores still `running` at start-up become `interrupted`.

use serde::{Deserialize, Serialize};
use sqlx::{QueryBuilder, Sqlite};

use super::row::{Decode, store_time, store_u64};
use super::{Store, StoreError, query_error, timestamp};
use crate::domain::{RestoreMode, RestoreStage, RunStatus};

/// What is known when a restore starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRestore {
    pub restore_id: String,
    /// The backup restored.
    pub run_id: String,
    pub mode: RestoreMode,
    pub wipe: bool,
    pub source_namespace: String,
    pub source_pvc: String,
    pub target_namespace: String,
    pub target_pvc: String,
    pub started_by: String,
    pub started_at: jiff::Timestamp,
    pub cluster: Option<String>,
}

/// How a restore ended (or its latest state).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreUpdate {
    pub status: Option<RunStatus>,
    pub stage: Option<RestoreStage>,
    pub message: Option<String>,
    pub finished_at: Option<jiff::Timestamp>,
    pub bytes: Option<u64>,
    pub files: Option<u64>,
    pub pvc_created: Option<bool>,
    pub pvc_kept: Option<bool>,
    pub helper_pod: Option<String>,
}

/// One row of the restore history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreRecord {
    pub id: i64,
    pub restore_id: String,
    pub run_id: String,
    pub mode: RestoreMode,
    pub wipe: bool,
    pub source_namespace: String,
    pub source_pvc: String,
    pub target_namespace: String,
    pub target_pvc: String,
    pub status: RunStatus,
    pub stage: Option<RestoreStage>,
    pub message: Option<String>,
    pub started_by: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// File content bytes written into the volume.
    pub bytes: Option<u64>,
    pub files: Option<u64>,
    /// Whether nkvm created the target PVC.
    pub pvc_created: bool,
    /// Whether the target PVC still exists after the restore (`None` while running).
    pub pvc_kept: Option<bool>,
    pub helper_pod: Option<String>,
    pub cluster: Option<String>,
}

/// Filters of [`Store::recent_restores`]; `None` means any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreFilter {
    pub restore_id: Option<String>,
    pub run_id: Option<String>,
    /// Only restores from or into one of these namespaces (an allowlist).
    pub namespaces: Option<Vec<String>>,
    pub since: Option<jiff::Timestamp>,
    /// Most rows; `0` means no limit.
    pub limit: u32,
    /// Only restores made through this cluster connection (the web UI); `None`: every one.
    pub scope: Option<super::RunScope>,
}

/// The columns of `restores`, in [`RestoreRow`]'s order (a macro so that queries stay
/// `&'static str`).
macro_rules! restore_columns {
    () => {
        "id, restore_id, run_id, mode, wipe, source_namespace, source_pvc, target_namespace, \
         target_pvc, status, stage, message, started_by, started_at, finished_at, bytes, files, \
         pvc_created, pvc_kept, helper_pod, cluster"
    };
}

#[derive(Debug, sqlx::FromRow)]
struct RestoreRow {
    id: i64,
    restore_id: String,
    run_id: String,
    mode: String,
    wipe: i64,
    source_namespace: String,
    source_pvc: String,
    target_namespace: String,
    target_pvc: String,
    status: String,
    stage: Option<String>,
    message: Option<String>,
    started_by: String,
    started_at: String,
    finished_at: Option<String>,
    bytes: Option<i64>,
    files: Option<i64>,
    pvc_created: i64,
    pvc_kept: Option<i64>,
    helper_pod: Option<String>,
    cluster: Option<String>,
}

impl RestoreRow {
    fn into_record(self) -> Result<RestoreRecord, StoreError> {
        let id = self.id;
        let row = Decode { id };
        let mode = row.parse("restores.mode", &self.mode)?;
        let status = row.parse("restores.status", &self.status)?;
        let stage = row.parse_opt("restores.stage", self.stage.as_deref())?;
        row.time("restores.started_at", Some(&self.started_at))?;
        Ok(RestoreRecord {
            id,
            bytes: row.unsigned("restores.bytes", self.bytes)?,
            files: row.unsigned("restores.files", self.files)?,
            restore_id: self.restore_id,
            run_id: self.run_id,
            mode,
            wipe: self.wipe != 0,
            source_namespace: self.source_namespace,
            source_pvc: self.source_pvc,
            target_namespace: self.target_namespace,
            target_pvc: self.target_pvc,
            status,
            stage,
            message: self.message,
            started_by: self.started_by,
            started_at: self.started_at,
            finished_at: self.finished_at,
            pvc_created: self.pvc_created != 0,
            pvc_kept: self.pvc_kept.map(|k| k != 0),
            helper_pod: self.helper_pod,
            cluster: self.cluster,
        })
    }
}

impl Store {
    /// Inserts a `running` restore; returns its row id.
    pub async fn insert_restore(&self, restore: &NewRestore) -> Result<i64, StoreError> {
        let started_at = store_time("restores.started_at", restore.started_at)?;
        sqlx::query_scalar::<_, i64>(
            "INSERT INTO restores (restore_id, run_id, mode, wipe, source_namespace, source_pvc, \
                 target_namespace, target_pvc, status, started_by, started_at, cluster) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'running', ?9, ?10, ?11) RETURNING id",
        )
        .bind(&restore.restore_id)
        .bind(&restore.run_id)
        .bind(restore.mode.as_str())
        .bind(restore.wipe)
        .bind(&restore.source_namespace)
        .bind(&restore.source_pvc)
        .bind(&restore.target_namespace)
        .bind(&restore.target_pvc)
        .bind(&restore.started_by)
        .bind(started_at)
        .bind(restore.cluster.as_deref())
        .fetch_one(&self.pool)
        .await
        .map_err(query_error("insert_restore"))
    }

    /// Applies the `Some` fields of `update` to restore row `id`.
    pub async fn update_restore(&self, id: i64, update: &RestoreUpdate) -> Result<(), StoreError> {
        let finished_at = update
            .finished_at
            .map(|ts| store_time("restores.finished_at", ts))
            .transpose()?;
        let result = sqlx::query(
            "UPDATE restores SET \
                 status = COALESCE(?1, status), \
                 stage = COALESCE(?2, stage), \
                 message = COALESCE(?3, message), \
                 finished_at = COALESCE(?4, finished_at), \
                 bytes = COALESCE(?5, bytes), \
                 files = COALESCE(?6, files), \
                 pvc_created = COALESCE(?7, pvc_created), \
                 pvc_kept = COALESCE(?8, pvc_kept), \
                 helper_pod = COALESCE(?9, helper_pod) \
             WHERE id = ?10",
        )
        .bind(update.status.map(RunStatus::as_str))
        .bind(update.stage.map(RestoreStage::as_str))
        .bind(update.message.as_deref())
        .bind(finished_at)
        .bind(store_u64("restores.bytes", update.bytes)?)
        .bind(store_u64("restores.files", update.files)?)
        .bind(update.pvc_created)
        .bind(update.pvc_kept)
        .bind(update.helper_pod.as_deref())
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(query_error("update_restore"))?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NoSuchRun { id });
        }
        Ok(())
    }

    /// Restores, newest first (`started_at` desc, then id desc), filtered.
    pub async fn recent_restores(
        &self,
        filter: &RestoreFilter,
    ) -> Result<Vec<RestoreRecord>, StoreError> {
        let mut query =
            QueryBuilder::<Sqlite>::new(concat!("SELECT ", restore_columns!(), " FROM restores"));
        let mut glue = " WHERE ";
        let mut and = |query: &mut QueryBuilder<Sqlite>, condition: &str| {
            query.push(glue).push(condition);
            glue = " AND ";
        };
        if let Some(restore_id) = &filter.restore_id {
            and(&mut query, "restore_id = ");
            query.push_bind(restore_id.clone());
        }
        if let Some(run_id) = &filter.run_id {
            and(&mut query, "run_id = ");
            query.push_bind(run_id.clone());
        }
        if let Some(namespaces) = &filter.namespaces {
            if namespaces.is_empty() {
                return Ok(Vec::new());
            }
            for column in ["source_namespace", "target_namespace"] {
                and(&mut query, &format!("{column} IN ("));
                let mut list = query.separated(", ");
                for namespace in namespaces {
                    list.push_bind(namespace.clone());
                }
                list.push_unseparated(")");
            }
        }
        if let Some(since) = filter
            .since
            .and_then(timestamp::ceil)
            .and_then(timestamp::format)
        {
            and(&mut query, "started_at >= ");
            query.push_bind(since);
        }
        if let Some(scope) = &filter.scope {
            and(&mut query, "");
            scope.push_condition(&mut query);
        }
        query.push(" ORDER BY started_at DESC, id DESC LIMIT ");
        query.push_bind(if filter.limit == 0 {
            -1
        } else {
            i64::from(filter.limit)
        });
        let rows = query
            .build_query_as::<RestoreRow>()
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("recent_restores"))?;
        rows.into_iter().map(RestoreRow::into_record).collect()
    }

    /// Marks every `running` restore `interrupted` with `message` (at start-up); returns them.
    pub async fn mark_restores_interrupted(
        &self,
        message: &str,
    ) -> Result<Vec<RestoreRecord>, StoreError> {
        let now = store_time("restores.finished_at", jiff::Timestamp::now())?;
        let rows = sqlx::query_as::<_, RestoreRow>(concat!(
            "UPDATE restores SET status = 'interrupted', message = ?1, finished_at = ?2 \
             WHERE status = 'running' RETURNING ",
            restore_columns!()
        ))
        .bind(message)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("mark_restores_interrupted"))?;
        let mut records: Vec<RestoreRecord> = rows
            .into_iter()
            .map(RestoreRow::into_record)
            .collect::<Result<_, _>>()?;
        records.sort_by_key(|r| r.id);
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_restore(id: &str, target_ns: &str) -> NewRestore {
        NewRestore {
            restore_id: id.to_owned(),
            run_id: "run-1".to_owned(),
            mode: RestoreMode::NewPvc,
            wipe: false,
            source_namespace: "shop".to_owned(),
            source_pvc: "data".to_owned(),
            target_namespace: target_ns.to_owned(),
            target_pvc: "data-restored".to_owned(),
            started_by: "cli:me".to_owned(),
            started_at: jiff::Timestamp::now(),
            cluster: None,
        }
    }

    #[tokio::test]
    async fn restores_are_recorded_filtered_and_interrupted() {
        let store = Store::open_in_memory().await.unwrap();
        let a = store
            .insert_restore(&new_restore("a", "shop"))
            .await
            .unwrap();
        let b = store
            .insert_restore(&new_restore("b", "other"))
            .await
            .unwrap();
        store
            .update_restore(
                a,
                &RestoreUpdate {
                    status: Some(RunStatus::Failed),
                    stage: Some(RestoreStage::ScaleDown),
                    message: Some("refused".to_owned()),
                    finished_at: Some(jiff::Timestamp::now()),
                    pvc_created: Some(true),
                    pvc_kept: Some(false),
                    bytes: Some(10),
                    ..RestoreUpdate::default()
                },
            )
            .await
            .unwrap();
        let all = store
            .recent_restores(&RestoreFilter::default())
            .await
            .unwrap();
        assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), [b, a]);
        let first = &all[1];
        assert_eq!(first.stage, Some(RestoreStage::ScaleDown));
        assert!(first.pvc_created);
        assert_eq!(first.pvc_kept, Some(false));
        assert_eq!(first.bytes, Some(10));
        let allowed = store
            .recent_restores(&RestoreFilter {
                namespaces: Some(vec!["shop".to_owned()]),
                ..RestoreFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(allowed.iter().map(|r| r.id).collect::<Vec<_>>(), [a]);
        let interrupted = store.mark_restores_interrupted("stopped").await.unwrap();
        assert_eq!(interrupted.iter().map(|r| r.id).collect::<Vec<_>>(), [b]);
        assert_eq!(interrupted[0].status, RunStatus::Interrupted);
        assert!(matches!(
            store.update_restore(999, &RestoreUpdate::default()).await,
            Err(StoreError::NoSuchRun { id: 999 })
        ));
        let one = store
            .recent_restores(&RestoreFilter {
                restore_id: Some("b".to_owned()),
                ..RestoreFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(one.len(), 1);
    }
}
