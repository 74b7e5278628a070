//! Verification of stored backups, restores into a new PVC or in place, and restore drills.
//!
//! **Verify** ([`verify`]): one streamed pass over the archive ([`check`]) re-hashes it (sha256 vs
//! the history row and the sidecar), decodes the gzip member completely ([`gunzip`]: CRC32,
//! `ISIZE`, nothing after it) and walks every tar entry to the end-of-archive marker, comparing
//! counts and bytes with the manifest; the result, time and who ran it go into the history row.
//!
//! **Restore** ([`RestoreEngine`], stages in `run`): the archive is verified and pre-scanned
//! ([`prescan`]: no absolute paths, `..`, escaping links, devices, FIFOs, setuid/setgid unless
//! allowed) before anything is created; then the target is prepared — a new PVC ([`pod`]), or
//! for an in-place restore the workloads using the claim are scaled to 0 with their replica
//! counts recorded on them ([`scale`]) — a hardened helper pod mounts it, and a second pass
//! streams the checked tar stream into GNU tar's stdin in the helper ([`commands`]). tar's exit
//! status and an owner/mode spot check decide; the helper is removed, workloads are scaled back,
//! the restore is recorded. Failure, cancel or a crash of nkvm never leaves a helper behind or a
//! workload scaled down (start-up recovery, `recovery`).
//!
//! **Drill** (`drill`): the newest successful backup of a PVC restored into a throwaway PVC, its
//! content read back and compared with the manifest, the PVC removed, the result recorded.
//!
//! Archives are read through [`source::open_run_file`] only. See `docs/restore.md`.

mod apply;
pub mod check;
pub mod commands;
mod drill;
mod engine;
pub mod error;
pub mod gunzip;
pub mod pod;
mod prepare;
pub mod prescan;
mod recovery;
mod run;
pub mod scale;
pub mod source;
mod stream;
pub mod verify;
pub mod wsexec;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use engine::{RestoreEngine, StartedJob};
pub use error::RestoreError;
pub use prescan::Rules;
pub use recovery::RestoreRecovery;
pub use scale::{ScaledDown, Workload};
pub use verify::{VerifyResult, restorable_run, verify_stored};

use crate::audit::{AuditAction, AuditOutcome};
use crate::backup::Requester;
use crate::domain::{
    DrillStatus, JobKind, Progress, RestoreMode, RestoreStage, ResultStatus, RunStatus,
};
use crate::store::Store;

/// Records an audit event of `requester`.
pub(crate) async fn audit(
    store: &Store,
    requester: &Requester,
    action: AuditAction,
    outcome: AuditOutcome,
    target: &str,
    detail: Option<String>,
) {
    let mut event = requester
        .audit_event(action, outcome)
        .with_target(target.to_owned());
    if let Some(detail) = detail {
        event = event.with_detail(detail);
    }
    store.audit(&event).await;
}

/// Settings of restores beyond those shared with backups (helper image, timeouts, allowlist).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreOptions {
    /// How long an in-place restore waits for the pods of scaled-down workloads to stop.
    pub scale_down_timeout: Duration,
    /// How long the end of a restore waits for the helper pod to be gone (so that the workloads
    /// scaled back up can mount the claim).
    pub helper_gone_timeout: Duration,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        Self {
            scale_down_timeout: Duration::from_mins(5),
            helper_gone_timeout: Duration::from_mins(2),
        }
    }
}

/// Where a restore writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestoreTarget {
    /// Into a PVC nkvm creates; unset fields follow the backup's manifest (the namespace: the
    /// backup's own).
    NewPvc {
        name: String,
        namespace: Option<String>,
        storage_class: Option<String>,
        size: Option<String>,
    },
    /// Into the backup's own PVC; `wipe` replaces its contents, else the archive is merged in.
    InPlace { wipe: bool },
}

/// A restore to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreRequest {
    /// The backup run to restore.
    pub run_id: String,
    pub target: RestoreTarget,
    /// What the pre-scan may accept beyond the safe default.
    pub rules: Rules,
    /// Keep a new PVC whose restore failed (for inspection) instead of removing it.
    pub keep_failed_pvc: bool,
}

/// One restore's result. Serialises to the CLI contract (`restore_id`, `run_id`, `namespace`,
/// `pvc` — the target —, `status`, `stage`, `message`, `bytes`, `files`, `started_at`,
/// `finished_at`) plus details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreResult {
    pub restore_id: String,
    pub run_id: String,
    /// The target PVC.
    pub namespace: String,
    pub pvc: String,
    pub status: ResultStatus,
    /// Null on success, else the stage that failed.
    pub stage: Option<RestoreStage>,
    pub message: String,
    /// File content bytes written into the volume.
    pub bytes: Option<u64>,
    /// Regular files written.
    pub files: Option<u64>,
    pub started_at: String,
    pub finished_at: String,
    pub mode: RestoreMode,
    pub wipe: bool,
    pub source_namespace: String,
    pub source_pvc: String,
    /// Whether nkvm created the target PVC.
    pub pvc_created: bool,
    /// Whether the target PVC exists after the restore (null when unknown).
    pub pvc_kept: Option<bool>,
    pub helper_pod: Option<String>,
    /// Workloads scaled down (and back up) for an in-place restore.
    pub scaled: Vec<ScaledDown>,
    /// The owner/mode spot check after extraction.
    pub spot_check: Option<String>,
    pub cancelled: bool,
    pub warnings: Vec<String>,
}

/// A drill's result (`nkvm drill NS/PVC --output json`): `status` (`passed` | `failed`),
/// `run_id`, `message`, plus details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillResult {
    pub status: DrillStatus,
    /// The backup drilled (null when the PVC has no successful backup).
    pub run_id: Option<String>,
    pub message: String,
    pub namespace: String,
    pub pvc: String,
    pub restore_id: Option<String>,
    /// The throwaway PVC the backup was restored into (removed afterwards).
    pub throwaway_pvc: Option<String>,
    /// Whether the throwaway PVC is gone.
    pub removed: bool,
    pub files: Option<u64>,
    pub bytes: Option<u64>,
    pub started_at: String,
    pub finished_at: String,
    /// The stage a failed drill stopped at.
    pub stage: Option<RestoreStage>,
}

/// What an in-place restore of a backup would do, shown before it is confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InPlacePlan {
    pub run_id: String,
    /// The PVC that would be written (the backup's own).
    pub namespace: String,
    pub pvc: String,
    /// Pods mounting it now.
    pub users: Vec<String>,
    /// Workloads that would be scaled to 0 and back, with their replicas now.
    pub workloads: Vec<ScaledDown>,
    /// Why an in-place restore is refused now (unscalable consumers), if it is.
    pub refusal: Option<String>,
}

/// Live state of a restore, verification or drill, published like backup progress (at most every
/// `progress_interval`, at every stage change and at the end).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreEvent {
    /// Id of the restore (or verification, or drill).
    pub id: String,
    pub kind: JobKind,
    /// The backup run restored or verified.
    pub run_id: String,
    /// The PVC written (restores, drills) or whose backup is verified.
    pub namespace: String,
    pub pvc: String,
    pub stage: RestoreStage,
    pub status: RunStatus,
    /// File content bytes and files done; their totals: the archive's, once known.
    #[serde(flatten)]
    pub progress: Progress,
    /// Set on the last event: the result message.
    pub message: Option<String>,
}
