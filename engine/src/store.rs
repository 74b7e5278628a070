//! Backup history in SQLite (sqlx, embedded numbered migrations): one row per backup run keyed by the
//! PVC's UID, with the queries the inventory, the CLI and the UI need.
//!
//! CONTRACT: the types and signatures below are what the backup engine codes against; bodies are
//! implemented in this module (WAL mode, busy timeout, short transactions, never a transaction held
//! across network I/O). Timestamps are UTC with microsecond precision, stored as fixed-width RFC 3339
//! text (`2026-11-28T23:18:58.123456Z`) so that text order is time order; ties order by row id.
//!
//! Times are stored in the form of [`crate::timestamp`]. Submodules: the private row conversions,
//! the audit trail's queries ([`Store::record_audit`], [`Store::audit_events`]; types in
//! [`crate::audit`]), schedules with retention's queries (types in [`crate::schedule`]), the
//! verification of stored archives ([`Store::record_verification`]) and the
//! restore history ([`Store::insert_restore`], [`Store::recent_restores`]). Migrations live in
//! `engine/migrations/` (numbered, immutable, embedded at build time; touch this file after adding
//! one so that cargo re-embeds the directory).

mod audit;
mod helpers;
mod restores;
mod row;
mod schedules;
mod scope;
mod verify;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite};

use crate::domain::{RunStatus, Stage};
use crate::timestamp;
pub use helpers::{HelperPod, RestorePvc};
pub use restores::{NewRestore, RestoreFilter, RestoreRecord, RestoreUpdate};
use row::{RunRow, into_records, run_columns, store_time, store_u64};
pub use schedules::{DeclaredState, StoredSchedule};
pub use scope::RunScope;
pub use verify::{Verification, VerificationUpdate};

/// File name of the history database inside the data directory.
pub const DATABASE_FILE: &str = "nkvm.db";

/// Connections of a file database's pool: SQLite has one writer at a time, WAL lets readers run
/// beside it.
pub const MAX_CONNECTIONS: u32 = 4;

/// How long a statement waits for another connection's lock before failing with "database is
/// locked".
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The history database of a data directory: `<data-dir>/nkvm.db`.
pub fn database_path(data_dir: &Path) -> PathBuf {
    data_dir.join(DATABASE_FILE)
}

/// The embedded migrations of `engine/migrations/`.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// What is known when a run starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    /// Unique id of the run (also in the helper pod's name and labels), e.g. `20261128t231858-3f9a1c`.
    pub run_id: String,
    pub pvc_uid: String,
    pub namespace: String,
    pub pvc: String,
    /// Who started it (`cli:<user>`, a web user name, …).
    pub started_by: String,
    pub started_at: jiff::Timestamp,
    /// Identity of the cluster connection the run uses (`None`: unknown).
    pub cluster: Option<String>,
}

/// How a run ended (or its latest state while running).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunUpdate {
    pub status: Option<RunStatus>,
    pub stage: Option<Stage>,
    pub message: Option<String>,
    pub finished_at: Option<jiff::Timestamp>,
    /// Archive size in bytes (compressed).
    pub bytes: Option<u64>,
    /// Uncompressed bytes of file content read from the volume.
    pub source_bytes: Option<u64>,
    pub files: Option<u64>,
    pub sha256: Option<String>,
    pub artifact: Option<String>,
    pub helper_pod: Option<String>,
    pub node: Option<String>,
    /// The destination the archive was written to, and its key there.
    pub destination: Option<String>,
    pub object_key: Option<String>,
    /// UID of the helper pod nkvm created.
    pub helper_uid: Option<String>,
}

/// One row of history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: i64,
    pub run_id: String,
    pub pvc_uid: String,
    pub namespace: String,
    pub pvc: String,
    pub status: RunStatus,
    /// Last stage reached; for a failed run, the stage that failed.
    pub stage: Option<Stage>,
    pub message: Option<String>,
    pub started_by: String,
    /// RFC 3339 UTC.
    pub started_at: String,
    pub finished_at: Option<String>,
    pub bytes: Option<u64>,
    pub source_bytes: Option<u64>,
    pub files: Option<u64>,
    pub sha256: Option<String>,
    pub artifact: Option<String>,
    pub helper_pod: Option<String>,
    pub node: Option<String>,
    /// Name of the destination holding the archive (`None`: recorded before destinations existed;
    /// `artifact` is then a local path).
    pub destination: Option<String>,
    /// The archive's key inside the destination (`<namespace>/<pvc>/<stamp>.tar.gz`).
    pub object_key: Option<String>,
    /// UID of the helper pod nkvm created for the run.
    pub helper_uid: Option<String>,
    /// Identity of the cluster connection the run used.
    pub cluster: Option<String>,
    /// The archive's last verification (migration 0004).
    #[serde(flatten)]
    pub verification: Verification,
    /// When retention deleted the run's archive, sidecar and manifest (RFC 3339 UTC); the row is
    /// kept for the record.
    #[serde(default)]
    pub pruned_at: Option<String>,
    /// Who pruned it: `schedule:NAME`, `default` (the server's default retention), `cli:USER`.
    #[serde(default)]
    pub pruned_by: Option<String>,
}

impl RunRecord {
    /// A run known only by what its progress events say (id 0, no UID, every detail unset): a run
    /// refused before it had a history row, or a record built by tests.
    #[must_use]
    pub fn unrecorded(
        run_id: &str,
        namespace: &str,
        pvc: &str,
        status: RunStatus,
        started_by: &str,
        started_at: String,
    ) -> Self {
        Self {
            id: 0,
            run_id: run_id.to_owned(),
            pvc_uid: String::new(),
            namespace: namespace.to_owned(),
            pvc: pvc.to_owned(),
            status,
            stage: None,
            message: None,
            started_by: started_by.to_owned(),
            started_at,
            finished_at: None,
            bytes: None,
            source_bytes: None,
            files: None,
            sha256: None,
            artifact: None,
            helper_pod: None,
            node: None,
            destination: None,
            object_key: None,
            helper_uid: None,
            cluster: None,
            pruned_at: None,
            pruned_by: None,
            verification: Verification::default(),
        }
    }
}

/// Filters of [`Store::recent_runs`]; `None` means any.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunFilter {
    pub namespace: Option<String>,
    /// Only runs in one of these namespaces (an allowlist); an empty list matches nothing.
    pub namespaces: Option<Vec<String>>,
    pub run_id: Option<String>,
    pub pvc: Option<String>,
    pub pvc_uid: Option<String>,
    pub status: Option<RunStatus>,
    /// Runs started at or after this time.
    pub since: Option<jiff::Timestamp>,
    /// Runs started before this time.
    pub until: Option<jiff::Timestamp>,
    /// Most rows returned; `0` means no limit.
    pub limit: u32,
    /// Rows skipped before the first one returned.
    pub offset: u32,
    /// Only runs of this cluster connection (the web UI); `None`: every run (the CLI).
    pub scope: Option<RunScope>,
}

/// Errors of the history store, named for the operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("failed to open the history database {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("failed to apply history database migrations: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("history query `{query}` failed: {source}")]
    Query {
        query: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("history row {id} holds an invalid value in {column}: {value:?}")]
    Corrupt {
        id: i64,
        column: &'static str,
        value: String,
    },
    #[error("cannot store {value} in the history column {column}: {reason}")]
    Unstorable {
        column: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error(
        "the history database {path} was written by an older nkvm; run a writing command once \
         (`nkvm serve` or `nkvm backup`) to upgrade it"
    )]
    Outdated { path: String },
    #[error("history row {id} does not exist")]
    NoSuchRun { id: i64 },
    #[error("restore {restore_id} is not in the history")]
    NoSuchRestore { restore_id: String },
    #[error("schedule {name:?} holds an invalid value in {column}: {value:?}")]
    CorruptSchedule {
        name: String,
        column: &'static str,
        value: String,
    },
}

/// Handle to the history database (cheap to clone: a connection pool).
#[derive(Debug, Clone)]
pub struct Store {
    pool: sqlx::SqlitePool,
}

/// Maps a failed statement to [`StoreError::Query`] named `query`.
fn query_error(query: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { query, source }
}

const SELECT_RUNS: &str = concat!("SELECT ", run_columns!(), " FROM runs");

impl Store {
    /// Opens (creating if missing) the database file, enables WAL and a busy timeout, runs migrations.
    ///
    /// The parent directory must exist. Connections use `synchronous=NORMAL` (durable at each WAL
    /// checkpoint, never corrupt) and enforce foreign keys.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
        Self::migrated(pool).await
    }

    /// Opens an existing database for reading only (commands that only read: inventory, history),
    /// never creating or migrating anything; works on a read-only data directory. `None` when
    /// there is no database file. Refused when the database was written by an older nkvm and
    /// needs migrations a writing command applies.
    pub async fn open_read_only(path: &Path) -> Result<Option<Self>, StoreError> {
        if !path.exists() {
            return Ok(None);
        }
        let open = |immutable: bool| async move {
            let options = SqliteConnectOptions::new()
                .filename(path)
                .read_only(true)
                .immutable(immutable)
                .busy_timeout(BUSY_TIMEOUT);
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await?;
            let applied: i64 =
                sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations")
                    .fetch_one(&pool)
                    .await?;
            Ok::<_, sqlx::Error>((pool, applied))
        };
        // A read-only connection to a WAL database needs its shared-memory file, which only a
        // writer (or a writable directory) creates. Without one, nothing is writing: read the file
        // as immutable.
        let opened = match open(false).await {
            Ok(opened) => Ok(opened),
            Err(_) => open(true).await,
        };
        let (pool, applied) = opened.map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        let known = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        if applied < known {
            return Err(StoreError::Outdated {
                path: path.display().to_string(),
            });
        }
        Ok(Some(Self { pool }))
    }

    /// A private in-memory database (tests).
    ///
    /// Every SQLite connection to `:memory:` is its own database, so the pool holds exactly one
    /// connection that is never closed for idleness or age.
    pub async fn open_in_memory() -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .in_memory(true)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                path: ":memory:".to_owned(),
                source,
            })?;
        Self::migrated(pool).await
    }

    async fn migrated(pool: sqlx::SqlitePool) -> Result<Self, StoreError> {
        MIGRATOR.run(&pool).await.map_err(StoreError::Migrate)?;
        Ok(Self { pool })
    }

    /// The connection pool, for tests that change the schema as a later migration would.
    #[cfg(test)]
    pub(crate) fn pool(&self) -> &sqlx::SqlitePool {
        &self.pool
    }

    /// Whether the database answers a trivial query (readiness checks).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(query_error("ping"))
    }

    /// Closes every connection (waiting for those in use to be returned); later calls fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Inserts a `running` row; returns its row id.
    ///
    /// `started_at` is stored truncated to the microsecond. A `run_id` already present is refused
    /// (UNIQUE constraint).
    pub async fn insert_run(&self, run: &NewRun) -> Result<i64, StoreError> {
        let started_at = store_time("started_at", run.started_at)?;
        sqlx::query_scalar::<_, i64>(
            "INSERT INTO runs (run_id, pvc_uid, namespace, pvc, status, started_by, started_at, \
                               cluster) \
             VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6, ?7) RETURNING id",
        )
        .bind(run.run_id.as_str())
        .bind(run.pvc_uid.as_str())
        .bind(run.namespace.as_str())
        .bind(run.pvc.as_str())
        .bind(run.started_by.as_str())
        .bind(started_at)
        .bind(run.cluster.as_deref())
        .fetch_one(&self.pool)
        .await
        .map_err(query_error("insert_run"))
    }

    /// Applies the `Some` fields of `update` to the row.
    ///
    /// [`StoreError::NoSuchRun`] when no row has this id; [`StoreError::Unstorable`] (nothing
    /// written) for a count above `i64::MAX` or a time before year 0.
    pub async fn update_run(&self, id: i64, update: &RunUpdate) -> Result<(), StoreError> {
        let finished_at = update
            .finished_at
            .map(|ts| store_time("finished_at", ts))
            .transpose()?;
        let bytes = store_u64("bytes", update.bytes)?;
        let source_bytes = store_u64("source_bytes", update.source_bytes)?;
        let files = store_u64("files", update.files)?;
        let result = sqlx::query(
            "UPDATE runs SET \
                 status = COALESCE(?1, status), \
                 stage = COALESCE(?2, stage), \
                 message = COALESCE(?3, message), \
                 finished_at = COALESCE(?4, finished_at), \
                 bytes = COALESCE(?5, bytes), \
                 source_bytes = COALESCE(?6, source_bytes), \
                 files = COALESCE(?7, files), \
                 sha256 = COALESCE(?8, sha256), \
                 artifact = COALESCE(?9, artifact), \
                 helper_pod = COALESCE(?10, helper_pod), \
                 node = COALESCE(?11, node), \
                 destination = COALESCE(?12, destination), \
                 object_key = COALESCE(?13, object_key), \
                 helper_uid = COALESCE(?14, helper_uid) \
             WHERE id = ?15",
        )
        .bind(update.status.map(RunStatus::as_str))
        .bind(update.stage.map(Stage::as_str))
        .bind(update.message.as_deref())
        .bind(finished_at)
        .bind(bytes)
        .bind(source_bytes)
        .bind(files)
        .bind(update.sha256.as_deref())
        .bind(update.artifact.as_deref())
        .bind(update.helper_pod.as_deref())
        .bind(update.node.as_deref())
        .bind(update.destination.as_deref())
        .bind(update.object_key.as_deref())
        .bind(update.helper_uid.as_deref())
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(query_error("update_run"))?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NoSuchRun { id });
        }
        Ok(())
    }

    pub async fn get_run(&self, id: i64) -> Result<Option<RunRecord>, StoreError> {
        sqlx::query_as::<_, RunRow>(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE id = ?1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error("get_run"))?
        .map(RunRow::into_record)
        .transpose()
    }

    /// PVC UID → time of its last `succeeded` run (latest `finished_at`, ties broken by newest row).
    ///
    /// Succeeded rows without a `finished_at` are ignored.
    pub async fn last_success_by_uid(
        &self,
    ) -> Result<HashMap<String, jiff::Timestamp>, StoreError> {
        // SQLite takes the bare columns (id) from the row that holds the MAX.
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT id, pvc_uid, MAX(finished_at) FROM runs \
             WHERE status = 'succeeded' AND finished_at IS NOT NULL \
             GROUP BY pvc_uid",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("last_success_by_uid"))?;
        rows.into_iter()
            .map(
                |(id, uid, finished_at)| match timestamp::parse(&finished_at) {
                    Some(ts) => Ok((uid, ts)),
                    None => Err(StoreError::Corrupt {
                        id,
                        column: "finished_at",
                        value: finished_at,
                    }),
                },
            )
            .collect()
    }

    /// The last succeeded run of one PVC (ties broken by newest row).
    pub async fn last_success(&self, pvc_uid: &str) -> Result<Option<RunRecord>, StoreError> {
        sqlx::query_as::<_, RunRow>(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs \
              WHERE pvc_uid = ?1 AND status = 'succeeded' AND finished_at IS NOT NULL \
              ORDER BY finished_at DESC, id DESC LIMIT 1"
        ))
        .bind(pvc_uid)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error("last_success"))?
        .map(RunRow::into_record)
        .transpose()
    }

    /// Runs, newest first (`started_at` desc, then id desc), filtered, with limit/offset.
    ///
    /// Filters combine with AND; `limit == 0` returns every matching row.
    pub async fn recent_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        let mut query = QueryBuilder::<Sqlite>::new(SELECT_RUNS);
        let mut glue = " WHERE ";
        let mut and = |query: &mut QueryBuilder<Sqlite>, condition: &str| {
            query.push(glue).push(condition);
            glue = " AND ";
        };
        if let Some(namespace) = &filter.namespace {
            and(&mut query, "namespace = ");
            query.push_bind(namespace.clone());
        }
        if let Some(namespaces) = &filter.namespaces {
            if namespaces.is_empty() {
                return Ok(Vec::new());
            }
            and(&mut query, "namespace IN (");
            let mut list = query.separated(", ");
            for namespace in namespaces {
                list.push_bind(namespace.clone());
            }
            list.push_unseparated(")");
        }
        if let Some(run_id) = &filter.run_id {
            and(&mut query, "run_id = ");
            query.push_bind(run_id.clone());
        }
        if let Some(pvc) = &filter.pvc {
            and(&mut query, "pvc = ");
            query.push_bind(pvc.clone());
        }
        if let Some(uid) = &filter.pvc_uid {
            and(&mut query, "pvc_uid = ");
            query.push_bind(uid.clone());
        }
        if let Some(status) = filter.status {
            and(&mut query, "status = ");
            query.push_bind(status.as_str());
        }
        if let Some(scope) = &filter.scope {
            and(&mut query, "");
            scope.push_condition(&mut query);
        }
        // Stored times are whole microseconds: `t >= x` ⇔ `t >= ceil(x)` and `t < x` ⇔
        // `t < ceil(x)`. A bound before year 0 excludes nothing (since) or everything (until).
        if let Some(since) = filter.since {
            match timestamp::ceil(since) {
                None => return Ok(Vec::new()),
                Some(bound) => {
                    if let Some(text) = timestamp::format(bound) {
                        and(&mut query, "started_at >= ");
                        query.push_bind(text);
                    }
                }
            }
        }
        if let Some(until) = filter.until {
            match timestamp::ceil(until).map(timestamp::format) {
                Some(Some(text)) => {
                    and(&mut query, "started_at < ");
                    query.push_bind(text);
                }
                Some(None) => return Ok(Vec::new()),
                None => {}
            }
        }
        query.push(" ORDER BY started_at DESC, id DESC LIMIT ");
        query.push_bind(if filter.limit == 0 {
            -1
        } else {
            i64::from(filter.limit)
        });
        query.push(" OFFSET ");
        query.push_bind(i64::from(filter.offset));
        let rows = query
            .build_query_as::<RunRow>()
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("recent_runs"))?;
        into_records(rows)
    }

    /// Succeeded runs beyond the `keep` newest of each PVC: what a retention pass may delete.
    ///
    /// "Newest" is the order of [`Store::last_success`] (`finished_at` desc, then id desc), so any
    /// `keep >= 1` keeps the last success. Ordered by PVC UID, then newest first. Runs in other
    /// statuses are never candidates.
    pub async fn retention_candidates(&self, keep: u32) -> Result<Vec<RunRecord>, StoreError> {
        let rows = sqlx::query_as::<_, RunRow>(concat!(
            "SELECT ",
            run_columns!(),
            " FROM (SELECT *, ROW_NUMBER() OVER \
                  (PARTITION BY pvc_uid ORDER BY finished_at DESC, id DESC) AS newest \
                  FROM runs WHERE status = 'succeeded') \
              WHERE newest > ?1 ORDER BY pvc_uid, newest"
        ))
        .bind(i64::from(keep))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("retention_candidates"))?;
        into_records(rows)
    }

    /// Marks every `running` row as `interrupted` (at start-up); returns the rows changed.
    ///
    /// One short transaction sets status `interrupted`, `message` and `finished_at` = now (the
    /// stage stays: the last stage reached). Rows are returned by id.
    pub async fn mark_interrupted(&self, message: &str) -> Result<Vec<RunRecord>, StoreError> {
        let now = store_time("finished_at", jiff::Timestamp::now())?;
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(query_error("mark_interrupted"))?;
        let mut rows = sqlx::query_as::<_, RunRow>(concat!(
            "UPDATE runs SET status = 'interrupted', message = ?1, finished_at = ?2 \
             WHERE status = 'running' RETURNING ",
            run_columns!()
        ))
        .bind(message)
        .bind(now)
        .fetch_all(&mut *tx)
        .await
        .map_err(query_error("mark_interrupted"))?;
        tx.commit().await.map_err(query_error("mark_interrupted"))?;
        rows.sort_by_key(row::RunRow::id);
        into_records(rows)
    }

    /// Deletes one row (after a retention pass removed its artifact); false when it did not exist.
    pub async fn delete_run(&self, id: i64) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM runs WHERE id = ?1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(query_error("delete_run"))?;
        Ok(result.rows_affected() > 0)
    }

    /// The newest run whose archive is `object_key` at `destination` (start-up recovery: which
    /// unfinished uploads are this instance's own).
    pub async fn run_for_object(
        &self,
        destination: &str,
        object_key: &str,
    ) -> Result<Option<RunRecord>, StoreError> {
        sqlx::query_as::<_, RunRow>(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE destination = ?1 AND object_key = ?2 ORDER BY id DESC LIMIT 1"
        ))
        .bind(destination)
        .bind(object_key)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error("run_for_object"))?
        .map(RunRow::into_record)
        .transpose()
    }
}
