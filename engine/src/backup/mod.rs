//! Streamed helper-pod backups of PVCs into verifiable `.tar.gz` archives.
//!
//! A run goes through the stages of [`crate::domain::Stage`]: pre-flight checks ([`preflight`]),
//! creating the helper pod ([`pod`], `helper`), waiting for it to run, exec of `tar` in it (`exec`), the
//! checked, compressed and hashed stream into an upload to the run's destination (`stream`,
//! [`tarcheck`], [`crate::destination`]: `local` writes a `.partial` file), the commit under the
//! final name, the sidecar and manifest ([`artifact`]), the history row, and the deletion of the
//! helper (`cleanup`). [`BackupEngine`] (`engine`, stages in `run`) runs batches with bounded concurrency, one
//! run per PVC at a time, publishes [`ProgressEvent`]s and cancels runs by id. See `docs/backup.md`.

pub mod artifact;
pub(crate) mod cleanup;
mod engine;
pub(crate) mod error;
pub(crate) mod exec;
pub(crate) mod helper;
pub(crate) mod lookup;
mod outcome;
pub mod pgzip;
pub mod pod;
pub mod preflight;
pub(crate) mod progress;
mod run;
pub(crate) mod stream;
pub mod tarcheck;

#[cfg(test)]
mod mock_tests;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use cleanup::{RecoveryReport, Sweeper};
pub use engine::{ActiveRun, BackupEngine, StartedRun, is_run_id, new_run_id, stream_client};
pub use error::BackupError;
pub use exec::Compressor;
pub use stream::{Compression, StreamCap};

use crate::audit::{AuditAction, AuditEvent, AuditOutcome};
use crate::destination::Destinations;
use crate::domain::{Progress, RunStatus, Stage};
pub use crate::domain::{PvcRef, ResultStatus};
use crate::timestamp::rfc3339;

/// Helper image used when none is configured: Debian's slim image has GNU tar, `sh`, `du`, `find`
/// and `sleep`. Pin it by digest in production (`--helper-image` / `NKVM_HELPER_IMAGE`).
pub const DEFAULT_HELPER_IMAGE: &str = "docker.io/library/debian:12-slim";

/// Default of [`BackupOptions::stream_cap_factor`]: a backup may stream 4× its PVC's capacity.
pub const DEFAULT_STREAM_CAP_FACTOR: u32 = 4;
/// Default [`BackupOptions::stream_attempts`].
pub const DEFAULT_STREAM_ATTEMPTS: u32 = 3;

/// Settings of the backup engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupOptions {
    /// Data directory: the `local` destination defaults to `<data_dir>/artifacts/<ns>/<pvc>/`.
    pub data_dir: PathBuf,
    /// Where archives may go (`--destinations FILE`); `None`: only `local`, under `data_dir`.
    pub destinations: Option<Destinations>,
    /// Image of the helper pod (needs `tar`, `sleep`, and `sh`/`du`/`find` for the pre-scan).
    pub helper_image: String,
    /// Runs at the same time (at least 1).
    pub concurrency: usize,
    /// Where the archive is compressed: in the helper (`Source`, falling back to `Server` when the
    /// helper image has no usable `pigz`/`gzip`) or by nkvm (`Server`).
    pub compression: Compression,
    /// gzip level 0–9.
    pub gzip_level: u32,
    /// Blocks of a run's archive compressed in parallel (at least 1; default: the available
    /// parallelism). The archive's bytes do not depend on it. With source compression, `pigz` in
    /// the helper gets as many threads, but no more than its CPU limit allows.
    pub gzip_threads: usize,
    /// Fail a stream that delivers no byte for this long.
    pub stall_timeout: Duration,
    /// Fail a backup whose tar stream passes this many times its PVC's capacity (0: no cap).
    pub stream_cap_factor: u32,
    /// Streams a run may try: after a lost connection to the API server (nothing committed), tar
    /// runs again in the same helper until this many were tried (at least 1).
    pub stream_attempts: u32,
    /// Time the helper may take to start running.
    pub schedule_timeout: Duration,
    /// `activeDeadlineSeconds` of the helper (a safety net for leaked pods).
    pub active_deadline: Duration,
    /// Timeout of each ordinary API request.
    pub request_timeout: Duration,
    /// Attempts to create the helper / start the exec on transient failures.
    pub create_attempts: u32,
    /// Delay before the first retry (doubled each time).
    pub retry_base_delay: Duration,
    /// Run `du`/`find` in the helper first, for progress totals.
    pub prescan: bool,
    pub prescan_timeout: Duration,
    /// Refuse to start when the destination has less free space than the PVC's capacity.
    pub check_free_space: bool,
    /// Label value identifying this nkvm instance on its helpers (see [`pod::LABEL_INSTANCE`]).
    pub instance: Option<String>,
    /// Least time between two progress events of a run.
    pub progress_interval: Duration,
    /// How often the sweeper retries failed helper deletions.
    pub sweep_interval: Duration,
    /// Requests and limits of the helper.
    pub resources: pod::HelperResources,
    /// Only PVCs in these namespaces may be backed up (`None`: any).
    pub allowlist: Option<Vec<String>>,
    /// Identity of the cluster connection, recorded with each backup and restore run (`None`:
    /// unknown). [`crate::workspace::Connection::new`] sets it from the connection.
    pub cluster: Option<String>,
    /// Only runs of this scope may be restored or verified through this engine: the web server's
    /// connections (a run of another cluster is refused like an unknown run id). `None`: any run
    /// (the CLI, which owns the data directory).
    pub scope: Option<crate::store::RunScope>,
}

impl Default for BackupOptions {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./nkvm-data"),
            destinations: None,
            helper_image: DEFAULT_HELPER_IMAGE.to_owned(),
            concurrency: 2,
            compression: Compression::default(),
            gzip_level: 6,
            gzip_threads: pgzip::default_threads(),
            stall_timeout: Duration::from_mins(2),
            stream_cap_factor: DEFAULT_STREAM_CAP_FACTOR,
            stream_attempts: DEFAULT_STREAM_ATTEMPTS,
            schedule_timeout: Duration::from_mins(5),
            active_deadline: Duration::from_hours(6),
            request_timeout: Duration::from_secs(30),
            create_attempts: 3,
            retry_base_delay: Duration::from_secs(1),
            prescan: true,
            prescan_timeout: Duration::from_mins(1),
            check_free_space: true,
            instance: None,
            progress_interval: Duration::from_millis(250),
            sweep_interval: Duration::from_secs(15),
            resources: pod::HelperResources::default(),
            allowlist: None,
            cluster: None,
            scope: None,
        }
    }
}

impl BackupOptions {
    /// `<data_dir>/artifacts`: the default `local` destination, and where archives of runs
    /// recorded before destinations existed are.
    pub fn artifacts_dir(&self) -> PathBuf {
        artifact::artifacts_dir(&self.data_dir)
    }

    /// The configured destinations, or only `local` under `data_dir`.
    #[must_use]
    pub fn destinations(&self) -> Destinations {
        self.destinations
            .clone()
            .unwrap_or_else(|| Destinations::local_only(&self.data_dir))
    }

    /// Whether the allowlist lets PVCs of `namespace` be backed up.
    #[must_use]
    pub fn namespace_allowed(&self, namespace: &str) -> bool {
        self.allowlist
            .as_deref()
            .is_none_or(|allowed| allowed.iter().any(|n| n == namespace))
    }
}

/// Who asks for a run: recorded as the run's `started_by` and in the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester {
    /// The history's `started_by`: `web:<user>`, `cli:<user>`, `schedule:<name>`.
    pub started_by: String,
    /// The audit trail's actor (a user name, or the same as `started_by`).
    pub actor: String,
    /// The client address, when the request came over the network.
    pub source: Option<String>,
}

impl Requester {
    /// An audit event of this requester (its actor, and its source when it has one).
    pub(crate) fn audit_event(&self, action: AuditAction, outcome: AuditOutcome) -> AuditEvent {
        let event = AuditEvent::new(&self.actor, action, outcome);
        match &self.source {
            Some(source) => event.with_source(source.clone()),
            None => event,
        }
    }

    /// A web user at `source`.
    #[must_use]
    pub fn web(user: &str, source: &str) -> Self {
        Self {
            started_by: format!("web:{user}"),
            actor: user.to_owned(),
            source: Some(source.to_owned()),
        }
    }

    /// Schedule `name` (`schedule:<name>`, also its audit actor).
    #[must_use]
    pub fn schedule(name: &str) -> Self {
        let who = format!("schedule:{name}");
        Self {
            started_by: who.clone(),
            actor: who,
            source: None,
        }
    }

    /// The CLI, run by the local `user` (`cli` alone when unknown).
    #[must_use]
    pub fn cli(user: Option<&str>) -> Self {
        let who = match user {
            Some(user) if !user.is_empty() => format!("cli:{user}"),
            _ => "cli".to_owned(),
        };
        Self {
            started_by: who.clone(),
            actor: who,
            source: None,
        }
    }
}

/// One PVC's result. Serialises to the CLI contract (`namespace`, `pvc`, `status`, `stage`,
/// `message`, `artifact`, `sha256`, `bytes`, `files`, `started_at`, `finished_at`) plus details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupResult {
    pub namespace: String,
    pub pvc: String,
    pub status: ResultStatus,
    /// Null on success, else the stage that failed.
    pub stage: Option<Stage>,
    /// What happened; on failure also what to do.
    pub message: String,
    /// Where the archive is: a path for `local`, else the destination's URI (`s3://…`,
    /// `sftp://…`, `ftps://…`).
    pub artifact: Option<String>,
    pub sha256: Option<String>,
    /// Archive size in bytes.
    pub bytes: Option<u64>,
    /// Regular files in the archive.
    pub files: Option<u64>,
    /// RFC 3339 UTC.
    pub started_at: String,
    pub finished_at: String,
    pub run_id: Option<String>,
    pub pvc_uid: Option<String>,
    /// Bytes of file content read from the volume.
    pub source_bytes: Option<u64>,
    pub node: Option<String>,
    pub helper_pod: Option<String>,
    /// True when the run was cancelled (status is `cancelled`).
    pub cancelled: bool,
    /// Problems that did not fail the run (e.g. a helper deletion handed to the sweeper).
    pub warnings: Vec<String>,
    /// Name of the destination the archive was (or was to be) written to.
    pub destination: Option<String>,
}

impl BackupResult {
    /// The result of a run of `target` that has produced nothing yet (fill in the rest).
    #[must_use]
    pub fn new(target: &PvcRef, started_at: jiff::Timestamp, finished_at: jiff::Timestamp) -> Self {
        Self {
            namespace: target.namespace.clone(),
            pvc: target.name.clone(),
            status: ResultStatus::Succeeded,
            stage: None,
            message: String::new(),
            artifact: None,
            sha256: None,
            bytes: None,
            files: None,
            started_at: rfc3339(started_at),
            finished_at: rfc3339(finished_at),
            run_id: None,
            pvc_uid: None,
            source_bytes: None,
            node: None,
            helper_pod: None,
            cancelled: false,
            warnings: Vec::new(),
            destination: None,
        }
    }

    /// A run refused before it started (failed at pre-flight with `message`).
    #[must_use]
    pub fn refused(target: &PvcRef, now: jiff::Timestamp, message: &str) -> Self {
        Self {
            status: ResultStatus::Failed,
            stage: Some(Stage::Preflight),
            message: message.to_owned(),
            ..Self::new(target, now, now)
        }
    }
}

/// Live state of a run, published at most every `progress_interval` plus at every stage change and
/// at the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressEvent {
    pub run_id: String,
    pub namespace: String,
    pub pvc: String,
    pub stage: Stage,
    /// `running` until the last event of the run.
    pub status: RunStatus,
    /// Tar bytes read from the helper.
    pub bytes_read: u64,
    /// File content bytes seen so far.
    pub source_bytes: u64,
    /// Compressed bytes written so far.
    pub archive_bytes: u64,
    pub files: u64,
    /// Read rate over the last few seconds.
    pub rate_bytes_per_sec: f64,
    /// Apparent size of the volume from the pre-scan, when it ran.
    pub total_bytes: Option<u64>,
    /// Regular files of the volume from the pre-scan, when it ran.
    pub total_files: Option<u64>,
    pub elapsed_secs: f64,
    /// Set on the last event: the result message.
    pub message: Option<String>,
    /// Who started the run (`web:<user>`, `cli:<user>`, `schedule:<name>`).
    #[serde(default)]
    pub started_by: String,
}

impl ProgressEvent {
    /// The counters the live panel shows (file content bytes: `source_bytes`).
    #[must_use]
    pub fn progress(&self) -> Progress {
        Progress {
            bytes: self.source_bytes,
            total_bytes: self.total_bytes,
            files: self.files,
            total_files: self.total_files,
            rate_bytes_per_sec: self.rate_bytes_per_sec,
            elapsed_secs: self.elapsed_secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_serialises_to_the_contract() {
        let result = BackupResult {
            namespace: "shop".into(),
            pvc: "data".into(),
            status: ResultStatus::Failed,
            stage: Some(Stage::Preflight),
            message: "PVC not found".into(),
            artifact: None,
            sha256: None,
            bytes: None,
            files: None,
            started_at: "2026-11-28T23:18:58.123456Z".into(),
            finished_at: "2026-11-28T23:18:58.223456Z".into(),
            run_id: Some("r".into()),
            pvc_uid: None,
            source_bytes: None,
            node: None,
            helper_pod: None,
            cancelled: false,
            warnings: vec![],
            destination: None,
        };
        let value = serde_json::to_value(&result).unwrap();
        for key in [
            "namespace",
            "pvc",
            "status",
            "stage",
            "message",
            "artifact",
            "sha256",
            "bytes",
            "files",
            "started_at",
            "finished_at",
        ] {
            assert!(value.get(key).is_some(), "{key}");
        }
        assert_eq!(value["status"], "failed");
        assert_eq!(value["stage"], "preflight");
        assert_eq!(value["artifact"], serde_json::Value::Null);
    }
}
