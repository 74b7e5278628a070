//! Audit rows in the history database (`audit` table, migration `0002_audit.sql`): recording
//! events, reading them back filtered, newest first, and streaming them all as CSV.

use sqlx::{QueryBuilder, Sqlite};

use super::row::{Decode, store_time};
use super::{Store, StoreError, query_error, timestamp};
use crate::audit::{
    AuditEvent, AuditFilter, AuditRecord, MAX_ACTOR_LEN, MAX_DETAIL_LEN, MAX_SOURCE_LEN,
    MAX_TARGET_LEN, clip,
};

/// One `audit` row as SQLite returns it.
#[derive(Debug, sqlx::FromRow)]
struct AuditRow {
    id: i64,
    at: String,
    actor: String,
    action: String,
    target: Option<String>,
    outcome: String,
    detail: Option<String>,
    source: Option<String>,
}

impl AuditRow {
    fn into_record(self) -> Result<AuditRecord, StoreError> {
        let id = self.id;
        let row = Decode { id };
        row.time("audit.at", Some(&self.at))?;
        let action = row.parse("audit.action", &self.action)?;
        let outcome = row.parse("audit.outcome", &self.outcome)?;
        Ok(AuditRecord {
            id,
            at: self.at,
            actor: self.actor,
            action,
            target: self.target,
            outcome,
            detail: self.detail,
            source: self.source,
        })
    }
}

impl Store {
    /// Records one audit event; returns its row id.
    ///
    /// `at` is stored truncated to the microsecond; texts longer than the `MAX_*_LEN` limits of
    /// [`crate::audit`] are cut (ending in `…`). [`StoreError::Unstorable`] for a time before
    /// year 0.
    pub async fn record_audit(&self, event: &AuditEvent) -> Result<i64, StoreError> {
        let at = store_time("audit.at", event.at)?;
        sqlx::query_scalar::<_, i64>(
            "INSERT INTO audit (at, actor, action, target, outcome, detail, source) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
        )
        .bind(at)
        .bind(clip(&event.actor, MAX_ACTOR_LEN))
        .bind(event.action.as_str())
        .bind(event.target.as_deref().map(|t| clip(t, MAX_TARGET_LEN)))
        .bind(event.outcome.as_str())
        .bind(event.detail.as_deref().map(|d| clip(d, MAX_DETAIL_LEN)))
        .bind(event.source.as_deref().map(|s| clip(s, MAX_SOURCE_LEN)))
        .fetch_one(&self.pool)
        .await
        .map_err(query_error("record_audit"))
    }

    /// Records `event`, logging a failure instead of returning it: an audit write never fails the
    /// action it records (use [`Store::record_audit`] where the caller must know).
    pub async fn audit(&self, event: &AuditEvent) {
        if let Err(error) = self.record_audit(event).await {
            tracing::error!(%error, action = event.action.as_str(), "could not write the audit trail");
        }
    }

    /// Audit events, newest first (`at` desc, then id desc), filtered, with limit/offset.
    ///
    /// Filters combine with AND; `limit == 0` returns every matching row.
    pub async fn audit_events(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        let mut query = QueryBuilder::<Sqlite>::new(
            "SELECT id, at, actor, action, target, outcome, detail, source FROM audit",
        );
        let mut glue = " WHERE ";
        let mut and = |query: &mut QueryBuilder<Sqlite>, condition: &str| {
            query.push(glue).push(condition);
            glue = " AND ";
        };
        if let Some(actor) = &filter.actor {
            and(&mut query, "actor = ");
            query.push_bind(actor.clone());
        }
        if let Some(action) = filter.action {
            and(&mut query, "action = ");
            query.push_bind(action.as_str());
        }
        if let Some(outcome) = filter.outcome {
            and(&mut query, "outcome = ");
            query.push_bind(outcome.as_str());
        }
        // As in `recent_runs`: stored times are whole microseconds, so both bounds round up; a
        // bound before year 0 excludes nothing (since) or everything (until).
        if let Some(since) = filter.since {
            match timestamp::ceil(since) {
                None => return Ok(Vec::new()),
                Some(bound) => {
                    if let Some(text) = timestamp::format(bound) {
                        and(&mut query, "at >= ");
                        query.push_bind(text);
                    }
                }
            }
        }
        if let Some(until) = filter.until {
            match timestamp::ceil(until).map(timestamp::format) {
                Some(Some(text)) => {
                    and(&mut query, "at < ");
                    query.push_bind(text);
                }
                Some(None) => return Ok(Vec::new()),
                None => {}
            }
        }
        query.push(" ORDER BY at DESC, id DESC LIMIT ");
        query.push_bind(if filter.limit == 0 {
            -1
        } else {
            i64::from(filter.limit)
        });
        query.push(" OFFSET ");
        query.push_bind(i64::from(filter.offset));
        query
            .build_query_as::<AuditRow>()
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("audit_events"))?
            .into_iter()
            .map(AuditRow::into_record)
            .collect()
    }
}

/// Bytes of CSV collected before a chunk is handed on.
const CSV_CHUNK: usize = 64 << 10;

impl Store {
    /// Every audit event as CSV ([`crate::audit::to_csv`]'s format, newest first) in chunks of
    /// about 64 KiB, read from the database row by row while the receiver takes them: memory stays
    /// at a few chunks however long the trail is. The stream ends early with an error when the
    /// database fails; the reader stops when the stream is dropped.
    #[must_use]
    pub fn audit_csv_stream(
        &self,
    ) -> futures::stream::BoxStream<'static, Result<String, StoreError>> {
        use futures::{StreamExt as _, TryStreamExt as _};
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, StoreError>>(2);
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let mut rows = sqlx::query_as::<_, AuditRow>(
                "SELECT id, at, actor, action, target, outcome, detail, source FROM audit \
                 ORDER BY at DESC, id DESC",
            )
            .fetch(&pool)
            .map_err(|source| StoreError::Query {
                query: "audit_csv_stream",
                source,
            });
            let mut chunk = String::with_capacity(CSV_CHUNK + 1024);
            chunk.push_str(crate::audit::CSV_HEADER);
            chunk.push_str("\r\n");
            loop {
                let row = match rows.try_next().await {
                    Ok(Some(row)) => row.into_record(),
                    Ok(None) => break,
                    Err(error) => Err(error),
                };
                match row {
                    Ok(record) => crate::audit::push_csv_record(&mut chunk, &record),
                    Err(error) => {
                        let _ = tx.send(Err(error)).await;
                        return;
                    }
                }
                if chunk.len() >= CSV_CHUNK {
                    let full =
                        std::mem::replace(&mut chunk, String::with_capacity(CSV_CHUNK + 1024));
                    if tx.send(Ok(full)).await.is_err() {
                        return;
                    }
                }
            }
            let _ = tx.send(Ok(chunk)).await;
        });
        // Fused: a consumer may poll again after the end (the response compression does).
        futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .fuse()
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> AuditRow {
        AuditRow {
            id: 3,
            at: "2026-11-28T23:18:58.123456Z".to_owned(),
            actor: "alice".to_owned(),
            action: "login".to_owned(),
            target: None,
            outcome: "success".to_owned(),
            detail: None,
            source: Some("192.0.2.1".to_owned()),
        }
    }

    fn corrupt_column(row: AuditRow) -> (i64, &'static str, String) {
        match row.into_record() {
            Err(StoreError::Corrupt { id, column, value }) => (id, column, value),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn decodes_rows_and_reports_corrupt_values() {
        let record = row().into_record().unwrap();
        assert_eq!(record.action, crate::audit::AuditAction::Login);
        assert_eq!(record.outcome, crate::audit::AuditOutcome::Success);
        let mut r = row();
        r.action = "reboot".to_owned();
        assert_eq!(corrupt_column(r), (3, "audit.action", "reboot".to_owned()));
        let mut r = row();
        r.outcome = "ok".to_owned();
        assert_eq!(corrupt_column(r).1, "audit.outcome");
        let mut r = row();
        r.at = "yesterday".to_owned();
        assert_eq!(corrupt_column(r).1, "audit.at");
    }
}
