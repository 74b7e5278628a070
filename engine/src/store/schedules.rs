//! Schedules in the history database (migration `0005_schedules.sql`): stored schedules and their
//! pause switch, the firing state of every schedule (stored or declared by annotations, with the
//! declared ones' last seen definition), and retention's queries on `runs` (successful runs not yet
//! pruned, the mark of a pruned run, the newest verified run of each PVC). Types live in
//! [`crate::schedule`].

use std::collections::{BTreeSet, HashMap};

use jiff::Timestamp;

use super::row::{RunRow, into_records, run_columns, store_time};
use super::{RunRecord, Store, StoreError, query_error, timestamp};
use crate::schedule::{Definition, Retention};

/// A stored schedule with its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSchedule {
    pub definition: Definition,
    pub paused: bool,
    pub created_by: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// When it began to exist (its creation).
    pub since: Timestamp,
    /// The scheduled time of the latest firing handled.
    pub last_scheduled_at: Option<Timestamp>,
}

/// A schedule declared by annotations, as last seen, with its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredState {
    pub definition: Definition,
    /// When nkvm first saw it.
    pub since: Timestamp,
    pub last_scheduled_at: Option<Timestamp>,
}

#[derive(Debug, sqlx::FromRow)]
struct ScheduleRow {
    name: String,
    cron: String,
    timezone: String,
    pvcs: Option<String>,
    namespaces: String,
    selector: String,
    owner_kind: Option<String>,
    destination: Option<String>,
    concurrency: i64,
    keep_last: Option<i64>,
    keep_daily: Option<i64>,
    keep_weekly: Option<i64>,
    keep_monthly: Option<i64>,
    rpo_seconds: Option<i64>,
    paused: i64,
    created_by: String,
    created_at: String,
    since: Option<String>,
    last_scheduled_at: Option<String>,
}

fn corrupt(name: &str, column: &'static str, value: &dyn ToString) -> StoreError {
    StoreError::CorruptSchedule {
        name: name.to_owned(),
        column,
        value: value.to_string(),
    }
}

fn time_of(name: &str, column: &'static str, text: &str) -> Result<Timestamp, StoreError> {
    timestamp::parse(text).ok_or_else(|| corrupt(name, column, &text))
}

impl ScheduleRow {
    fn into_stored(self) -> Result<StoredSchedule, StoreError> {
        let name = self.name;
        let list = |column: &'static str, text: &str| -> Result<Vec<String>, StoreError> {
            serde_json::from_str(text).map_err(|_| corrupt(&name, column, &text))
        };
        let count = |column: &'static str, value: Option<i64>| -> Result<Option<u32>, StoreError> {
            value
                .map(|v| u32::try_from(v).map_err(|_| corrupt(&name, column, &v)))
                .transpose()
        };
        let definition = Definition {
            cron: self.cron,
            timezone: self.timezone,
            pvcs: match &self.pvcs {
                Some(text) => list("pvcs", text)?,
                None => Vec::new(),
            },
            namespaces: list("namespaces", &self.namespaces)?,
            selector: self.selector,
            owner_kind: self.owner_kind,
            destination: self.destination,
            concurrency: u16::try_from(self.concurrency)
                .map_err(|_| corrupt(&name, "concurrency", &self.concurrency))?,
            retention: Retention {
                keep_last: count("keep_last", self.keep_last)?,
                keep_daily: count("keep_daily", self.keep_daily)?,
                keep_weekly: count("keep_weekly", self.keep_weekly)?,
                keep_monthly: count("keep_monthly", self.keep_monthly)?,
            },
            rpo_seconds: self
                .rpo_seconds
                .map(|v| u64::try_from(v).map_err(|_| corrupt(&name, "rpo_seconds", &v)))
                .transpose()?,
            name: name.clone(),
        };
        let since = match &self.since {
            Some(text) => time_of(&name, "since", text)?,
            None => time_of(&name, "created_at", &self.created_at)?,
        };
        let last_scheduled_at = self
            .last_scheduled_at
            .as_deref()
            .map(|t| time_of(&name, "last_scheduled_at", t))
            .transpose()?;
        Ok(StoredSchedule {
            definition,
            paused: self.paused != 0,
            created_by: self.created_by,
            created_at: self.created_at,
            since,
            last_scheduled_at,
        })
    }
}

fn json(value: &impl serde::Serialize) -> String {
    // Serialising strings, numbers and lists cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

impl Store {
    /// Stores a new schedule created by `created_by` at `now`; false when the name is taken. The
    /// definition is stored as given: validate it first ([`Definition::compile`]).
    pub async fn insert_schedule(
        &self,
        definition: &Definition,
        created_by: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let now = store_time("created_at", now)?;
        let d = definition;
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(query_error("insert_schedule"))?;
        let inserted = sqlx::query(
            "INSERT INTO schedules (name, cron, timezone, pvcs, namespaces, selector, owner_kind, \
                 destination, concurrency, keep_last, keep_daily, keep_weekly, keep_monthly, \
                 rpo_seconds, paused, created_by, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, 0, ?15, ?16, ?16) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&d.name)
        .bind(&d.cron)
        .bind(&d.timezone)
        .bind((!d.pvcs.is_empty()).then(|| json(&d.pvcs)))
        .bind(json(&d.namespaces))
        .bind(&d.selector)
        .bind(d.owner_kind.as_deref())
        .bind(d.destination.as_deref())
        .bind(i64::from(d.concurrency))
        .bind(d.retention.keep_last.map(i64::from))
        .bind(d.retention.keep_daily.map(i64::from))
        .bind(d.retention.keep_weekly.map(i64::from))
        .bind(d.retention.keep_monthly.map(i64::from))
        .bind(d.rpo_seconds.and_then(|s| i64::try_from(s).ok()))
        .bind(created_by)
        .bind(&now)
        .execute(&mut *tx)
        .await
        .map_err(query_error("insert_schedule"))?
        .rows_affected()
            > 0;
        if inserted {
            sqlx::query(
                "INSERT OR REPLACE INTO schedule_state (name, since, last_scheduled_at, declared) \
                 VALUES (?1, ?2, NULL, NULL)",
            )
            .bind(&d.name)
            .bind(&now)
            .execute(&mut *tx)
            .await
            .map_err(query_error("insert_schedule"))?;
        }
        tx.commit().await.map_err(query_error("insert_schedule"))?;
        Ok(inserted)
    }

    /// Every stored schedule with its state, by name.
    pub async fn stored_schedules(&self) -> Result<Vec<StoredSchedule>, StoreError> {
        let rows = sqlx::query_as::<_, ScheduleRow>(
            "SELECT s.name, cron, timezone, pvcs, namespaces, selector, owner_kind, destination, \
                    concurrency, keep_last, keep_daily, keep_weekly, keep_monthly, rpo_seconds, \
                    paused, created_by, created_at, st.since, st.last_scheduled_at \
             FROM schedules s LEFT JOIN schedule_state st ON st.name = s.name ORDER BY s.name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("stored_schedules"))?;
        rows.into_iter().map(ScheduleRow::into_stored).collect()
    }

    /// Pauses or resumes a stored schedule; false when there is none of that name.
    pub async fn set_schedule_paused(
        &self,
        name: &str,
        paused: bool,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let now = store_time("updated_at", now)?;
        let result =
            sqlx::query("UPDATE schedules SET paused = ?1, updated_at = ?2 WHERE name = ?3")
                .bind(i64::from(paused))
                .bind(now)
                .bind(name)
                .execute(&self.pool)
                .await
                .map_err(query_error("set_schedule_paused"))?;
        Ok(result.rows_affected() > 0)
    }

    /// Removes a stored schedule and its state; false when there is none of that name. Its runs
    /// stay in the history.
    pub async fn delete_schedule(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(query_error("delete_schedule"))?;
        let deleted = sqlx::query("DELETE FROM schedules WHERE name = ?1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(query_error("delete_schedule"))?
            .rows_affected()
            > 0;
        sqlx::query("DELETE FROM schedule_state WHERE name = ?1 AND declared IS NULL")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(query_error("delete_schedule"))?;
        tx.commit().await.map_err(query_error("delete_schedule"))?;
        Ok(deleted)
    }

    /// Records that the firing of schedule `name` scheduled at `scheduled_at` was handled.
    pub async fn record_firing(
        &self,
        name: &str,
        scheduled_at: Timestamp,
    ) -> Result<(), StoreError> {
        let at = store_time("last_scheduled_at", scheduled_at)?;
        sqlx::query("UPDATE schedule_state SET last_scheduled_at = ?1 WHERE name = ?2")
            .bind(at)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(query_error("record_firing"))?;
        Ok(())
    }

    /// Makes the declared schedules' state match `definitions` (the complete set seen now): new
    /// ones start at `now`, known ones keep their state and get the definition as seen, vanished
    /// ones are forgotten.
    pub async fn sync_declared(
        &self,
        definitions: &[Definition],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let now = store_time("since", now)?;
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(query_error("sync_declared"))?;
        for definition in definitions {
            sqlx::query(
                "INSERT INTO schedule_state (name, since, declared) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (name) DO UPDATE SET declared = excluded.declared",
            )
            .bind(&definition.name)
            .bind(&now)
            .bind(json(definition))
            .execute(&mut *tx)
            .await
            .map_err(query_error("sync_declared"))?;
        }
        let seen: BTreeSet<&str> = definitions.iter().map(|d| d.name.as_str()).collect();
        let known: Vec<String> =
            sqlx::query_scalar("SELECT name FROM schedule_state WHERE declared IS NOT NULL")
                .fetch_all(&mut *tx)
                .await
                .map_err(query_error("sync_declared"))?;
        for name in known.iter().filter(|n| !seen.contains(n.as_str())) {
            sqlx::query("DELETE FROM schedule_state WHERE name = ?1")
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(query_error("sync_declared"))?;
        }
        tx.commit().await.map_err(query_error("sync_declared"))?;
        Ok(())
    }

    /// The declared schedules as last seen, by name.
    pub async fn declared_schedules(&self) -> Result<Vec<DeclaredState>, StoreError> {
        let rows: Vec<(String, String, Option<String>, String)> = sqlx::query_as(
            "SELECT name, since, last_scheduled_at, declared FROM schedule_state \
             WHERE declared IS NOT NULL ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("declared_schedules"))?;
        rows.into_iter()
            .map(|(name, since, last, declared)| {
                Ok(DeclaredState {
                    definition: serde_json::from_str(&declared)
                        .map_err(|_| corrupt(&name, "declared", &declared))?,
                    since: time_of(&name, "since", &since)?,
                    last_scheduled_at: last
                        .as_deref()
                        .map(|t| time_of(&name, "last_scheduled_at", t))
                        .transpose()?,
                })
            })
            .collect()
    }

    /// Succeeded runs whose files retention has not deleted, by PVC UID, newest first.
    pub async fn unpruned_successes(&self) -> Result<Vec<RunRecord>, StoreError> {
        let rows = sqlx::query_as::<_, RunRow>(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE status = 'succeeded' AND pruned_at IS NULL \
              AND finished_at IS NOT NULL ORDER BY pvc_uid, finished_at DESC, id DESC"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("unpruned_successes"))?;
        into_records(rows)
    }

    /// Marks run `id` as pruned at `at` by `by` (its files were deleted); false when the row does
    /// not exist or was already pruned.
    pub async fn mark_pruned(&self, id: i64, at: Timestamp, by: &str) -> Result<bool, StoreError> {
        let at = store_time("pruned_at", at)?;
        let result = sqlx::query(
            "UPDATE runs SET pruned_at = ?1, pruned_by = ?2 WHERE id = ?3 AND pruned_at IS NULL",
        )
        .bind(at)
        .bind(by)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(query_error("mark_pruned"))?;
        Ok(result.rows_affected() > 0)
    }

    /// PVC UID → row id of its newest verified, not pruned, successful run ("newest" by finish
    /// time, ties to the newest row): a run whose archive last passed a verification
    /// (`runs.last_verified_at`).
    pub async fn newest_verified_by_uid(&self) -> Result<HashMap<String, i64>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT pvc_uid, id FROM (SELECT pvc_uid, id, ROW_NUMBER() OVER \
                 (PARTITION BY pvc_uid ORDER BY finished_at DESC, id DESC) AS newest \
                 FROM runs WHERE status = 'succeeded' AND pruned_at IS NULL \
                 AND finished_at IS NOT NULL AND last_verified_at IS NOT NULL) WHERE newest = 1",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("newest_verified_by_uid"))?;
        Ok(rows.into_iter().collect())
    }
}
