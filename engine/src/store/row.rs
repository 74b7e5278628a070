//! Conversions between `runs` rows and the store's types, checked in both directions: a value that
//! cannot be stored is refused before writing, a row that does not decode is reported as corrupt.

use jiff::Timestamp;

use super::{RunRecord, RunStatus, Stage, StoreError, Verification, timestamp};

/// The columns of `runs`, in [`RunRow`]'s order (a macro so that queries stay `&'static str`).
macro_rules! run_columns {
    () => {
        "id, run_id, pvc_uid, namespace, pvc, status, stage, message, started_by, started_at, \
         finished_at, bytes, source_bytes, files, sha256, artifact, helper_pod, node, destination, \
         object_key, helper_uid, cluster, pruned_at, pruned_by, verified_at, verify_status, verified_by, verify_message, \
         last_verified_at"
    };
}
pub(super) use run_columns;

/// One `runs` row as SQLite returns it.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct RunRow {
    id: i64,
    run_id: String,
    pvc_uid: String,
    namespace: String,
    pvc: String,
    status: String,
    stage: Option<String>,
    message: Option<String>,
    started_by: String,
    started_at: String,
    finished_at: Option<String>,
    bytes: Option<i64>,
    source_bytes: Option<i64>,
    files: Option<i64>,
    sha256: Option<String>,
    artifact: Option<String>,
    helper_pod: Option<String>,
    node: Option<String>,
    destination: Option<String>,
    object_key: Option<String>,
    helper_uid: Option<String>,
    cluster: Option<String>,
    pruned_at: Option<String>,
    pruned_by: Option<String>,
    verified_at: Option<String>,
    verify_status: Option<String>,
    verified_by: Option<String>,
    verify_message: Option<String>,
    last_verified_at: Option<String>,
}

impl RunRow {
    pub(super) fn id(&self) -> i64 {
        self.id
    }

    /// Checks every value and builds the record.
    pub(super) fn into_record(self) -> Result<RunRecord, StoreError> {
        let id = self.id;
        let row = Decode { id };
        let status = row.parse::<RunStatus>("status", &self.status)?;
        let stage = row.parse_opt::<Stage>("stage", self.stage.as_deref())?;
        row.time("started_at", Some(&self.started_at))?;
        for (column, value) in [
            ("finished_at", &self.finished_at),
            ("verified_at", &self.verified_at),
            ("last_verified_at", &self.last_verified_at),
            ("pruned_at", &self.pruned_at),
        ] {
            row.time(column, value.as_deref())?;
        }
        let verify_status = row.parse_opt("verify_status", self.verify_status.as_deref())?;
        Ok(RunRecord {
            id,
            bytes: row.unsigned("bytes", self.bytes)?,
            source_bytes: row.unsigned("source_bytes", self.source_bytes)?,
            files: row.unsigned("files", self.files)?,
            run_id: self.run_id,
            pvc_uid: self.pvc_uid,
            namespace: self.namespace,
            pvc: self.pvc,
            status,
            stage,
            message: self.message,
            started_by: self.started_by,
            started_at: self.started_at,
            finished_at: self.finished_at,
            sha256: self.sha256,
            artifact: self.artifact,
            helper_pod: self.helper_pod,
            node: self.node,
            destination: self.destination,
            object_key: self.object_key,
            helper_uid: self.helper_uid,
            cluster: self.cluster,
            pruned_at: self.pruned_at,
            pruned_by: self.pruned_by,
            verification: Verification {
                verified_at: self.verified_at,
                verify_status,
                verified_by: self.verified_by,
                verify_message: self.verify_message,
                last_verified_at: self.last_verified_at,
            },
        })
    }
}

/// Checks the values of one row as they are decoded: each failure is [`StoreError::Corrupt`],
/// naming the row, the column and the value.
#[derive(Debug, Clone, Copy)]
pub(super) struct Decode {
    pub(super) id: i64,
}

impl Decode {
    pub(super) fn corrupt(self, column: &'static str, value: &str) -> StoreError {
        StoreError::Corrupt {
            id: self.id,
            column,
            value: value.to_owned(),
        }
    }

    /// A text column holding one of the words of `T` (a status, a stage, …).
    pub(super) fn parse<T: std::str::FromStr>(
        self,
        column: &'static str,
        text: &str,
    ) -> Result<T, StoreError> {
        text.parse().map_err(|_| self.corrupt(column, text))
    }

    /// A nullable [`Decode::parse`] column.
    pub(super) fn parse_opt<T: std::str::FromStr>(
        self,
        column: &'static str,
        text: Option<&str>,
    ) -> Result<Option<T>, StoreError> {
        text.map(|text| self.parse(column, text)).transpose()
    }

    /// A column holding a time as stored (RFC 3339 UTC), when set.
    pub(super) fn time(self, column: &'static str, text: Option<&str>) -> Result<(), StoreError> {
        match text {
            Some(text) if timestamp::parse(text).is_none() => Err(self.corrupt(column, text)),
            _ => Ok(()),
        }
    }

    /// A nullable integer column holding a `u64`.
    pub(super) fn unsigned(
        self,
        column: &'static str,
        value: Option<i64>,
    ) -> Result<Option<u64>, StoreError> {
        value
            .map(|v| u64::try_from(v).map_err(|_| self.corrupt(column, &v.to_string())))
            .transpose()
    }
}

/// Decodes rows, stopping at the first corrupt one.
pub(super) fn into_records(rows: Vec<RunRow>) -> Result<Vec<RunRecord>, StoreError> {
    rows.into_iter().map(RunRow::into_record).collect()
}

/// A time as stored (`None` stays `None`); times before year 0 are refused.
pub(super) fn store_time(column: &'static str, ts: Timestamp) -> Result<String, StoreError> {
    timestamp::format(ts).ok_or_else(|| StoreError::Unstorable {
        column,
        value: ts.to_string(),
        reason: "times before year 0 cannot be stored",
    })
}

/// A `u64` as SQLite's signed 64-bit integer, refused when it does not fit.
pub(super) fn store_u64(
    column: &'static str,
    value: Option<u64>,
) -> Result<Option<i64>, StoreError> {
    value
        .map(|v| {
            i64::try_from(v).map_err(|_| StoreError::Unstorable {
                column,
                value: v.to_string(),
                reason: "values above 2^63-1 cannot be stored",
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> RunRow {
        RunRow {
            id: 7,
            run_id: "r".to_owned(),
            pvc_uid: "u".to_owned(),
            namespace: "ns".to_owned(),
            pvc: "data".to_owned(),
            status: "failed".to_owned(),
            stage: Some("stream".to_owned()),
            message: Some("stalled".to_owned()),
            started_by: "cli:me".to_owned(),
            started_at: "2026-11-28T23:18:58.123456Z".to_owned(),
            finished_at: Some("2026-11-28T23:19:00.000000Z".to_owned()),
            bytes: Some(0),
            source_bytes: Some(i64::MAX),
            files: None,
            sha256: None,
            artifact: None,
            helper_pod: Some("nkvm-backup-r".to_owned()),
            node: None,
            destination: Some("local".to_owned()),
            object_key: Some("ns/data/x.tar.gz".to_owned()),
            helper_uid: None,
            cluster: None,
            pruned_at: None,
            pruned_by: None,
            verified_at: None,
            verify_status: Some("verified".to_owned()),
            verified_by: None,
            verify_message: None,
            last_verified_at: None,
        }
    }

    fn corrupt_column(row: RunRow) -> (i64, &'static str, String) {
        match row.into_record() {
            Err(StoreError::Corrupt { id, column, value }) => (id, column, value),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn decodes_a_valid_row() {
        let record = row().into_record().unwrap();
        assert_eq!(record.id, 7);
        assert_eq!(record.status, RunStatus::Failed);
        assert_eq!(record.stage, Some(Stage::Stream));
        assert_eq!(record.bytes, Some(0));
        assert_eq!(record.source_bytes, Some(i64::MAX as u64));
        assert_eq!(record.files, None);
        assert_eq!(record.started_at, "2026-11-28T23:18:58.123456Z");
    }

    #[test]
    fn reports_corrupt_values_with_row_and_column() {
        let mut r = row();
        r.status = "done".to_owned();
        assert_eq!(corrupt_column(r), (7, "status", "done".to_owned()));
        let mut r = row();
        r.stage = Some("Stream".to_owned());
        assert_eq!(corrupt_column(r), (7, "stage", "Stream".to_owned()));
        let mut r = row();
        r.started_at = "2026-11-28T23:18:58Z".to_owned();
        assert_eq!(corrupt_column(r).1, "started_at");
        let mut r = row();
        r.finished_at = Some("yesterday".to_owned());
        assert_eq!(corrupt_column(r).1, "finished_at");
        let mut r = row();
        r.verify_status = Some("ok".to_owned());
        assert_eq!(corrupt_column(r), (7, "verify_status", "ok".to_owned()));
        let mut r = row();
        r.last_verified_at = Some("2026-11-28".to_owned());
        assert_eq!(corrupt_column(r).1, "last_verified_at");
        let mut r = row();
        r.files = Some(-1);
        assert_eq!(corrupt_column(r), (7, "files", "-1".to_owned()));
    }

    #[test]
    fn refuses_unstorable_values() {
        assert_eq!(store_u64("bytes", None).unwrap(), None);
        assert_eq!(
            store_u64("bytes", Some(i64::MAX as u64)).unwrap(),
            Some(i64::MAX)
        );
        assert!(matches!(
            store_u64("bytes", Some(u64::MAX)),
            Err(StoreError::Unstorable {
                column: "bytes",
                ..
            })
        ));
        let ancient: Timestamp = "-000001-06-01T00:00:00Z".parse().unwrap();
        assert!(matches!(
            store_time("started_at", ancient),
            Err(StoreError::Unstorable {
                column: "started_at",
                ..
            })
        ));
    }
}
