//! Wire types shared by the server functions and the browser: the views the pages render. Records
//! the engine defines in its wasm-safe `domain` (PVC records, owners, refusals, progress counters)
//! are used as they are; the rest are shaped for the pages. [`RunView`] is one shape for the live
//! panel's rows of every kind: the engine's backup and restore events (`ProgressEvent`,
//! `RestoreEvent`) carry runtime-only types and differ by kind, so they are converted (in `ssr`),
//! sharing only their [`Progress`].

use serde::{Deserialize, Serialize};

pub use nkvm_engine::domain::{NamespaceRefusal, Owner, Progress, PvcRecord};

/// What the inventory page renders: the rows, the refused namespaces and when the scan ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InventoryView {
    pub rows: Vec<PvcRecord>,
    pub refused: Vec<NamespaceRefusal>,
    /// Unix time (seconds) of the scan; ages are computed against it so the server's HTML and the
    /// hydrated page agree.
    pub scanned_at_unix: i64,
    /// Watches of the live inventory that are failing and being restarted: the rows are as of when
    /// each failed ("resource in namespace: since …: what happened").
    #[serde(default)]
    pub stale: Vec<String>,
    /// Set when `rows` is only the first screen of a page load (what the server renders and the
    /// page hydrates from): the rows the URL's view shows, filtered, sorted and cut at its limit,
    /// with what the table needs from the whole inventory. The hydrated page then reads the whole
    /// inventory once, and filters and sorts it itself.
    #[serde(default)]
    pub first_screen: Option<FirstScreen>,
}

/// What the table shows of the whole inventory while its rows are only the first screen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirstScreen {
    /// Every PVC listed.
    pub total: usize,
    /// The PVCs that pass the view's filters (the rows are the first of them).
    pub matched: usize,
    /// The filter menus: every namespace and owner-kind group of the whole inventory.
    pub namespaces: Vec<String>,
    pub kinds: Vec<String>,
    /// The coverage summary of the whole inventory.
    pub coverage: Vec<crate::components::coverage::FlagCount>,
}

/// The cluster the server is connected to, always visible in the page header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// How the server authenticates: `kubeconfig`, `pasted kubeconfig` or `in-cluster`.
    pub source: String,
    /// The kubeconfig context in use, if any.
    pub context: Option<String>,
    /// The API server URL.
    pub server: String,
}

/// One kubeconfig context the server can switch a session to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextRow {
    pub name: String,
    pub cluster: String,
    pub namespace: Option<String>,
}

/// What the connect page shows: the session's connection and the other choices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectView {
    pub active: ClusterInfo,
    /// Contexts of the server's kubeconfig (empty in-cluster).
    pub contexts: Vec<ContextRow>,
    /// Why the contexts could not be listed, if they could not.
    pub contexts_error: Option<String>,
    pub allow_pasted: bool,
    pub in_cluster_available: bool,
}

/// One run as the live panel shows it (a running backup's, restore's, verification's or drill's
/// latest progress, or a finished one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunView {
    /// `backup`, `restore`, `verify` or `drill`.
    pub kind: String,
    /// The run's id (a backup run id, or the id of the restore, verification or drill).
    pub run_id: String,
    pub namespace: String,
    pub pvc: String,
    /// A backup's or a restore's stage (`preflight`, …, `stream`, …, `cleanup`).
    pub stage: String,
    /// `running`, `succeeded`, `failed`, `interrupted`.
    pub status: String,
    /// File content bytes and files done, and their totals when known (a backup's pre-scan, a
    /// restore's archive).
    #[serde(flatten)]
    pub progress: Progress,
    /// Compressed bytes written.
    pub archive_bytes: u64,
    /// The result, or for a failure what happened and what to do.
    pub message: Option<String>,
    /// History row id of a finished run (for its downloads).
    pub history_id: Option<i64>,
    pub sha256: Option<String>,
}

impl RunView {
    /// A run the server accepted that waits for a free slot (no progress event yet).
    #[must_use]
    pub fn queued(run_id: String, namespace: &str, pvc: &str) -> Self {
        Self {
            kind: "backup".to_owned(),
            run_id,
            namespace: namespace.to_owned(),
            pvc: pvc.to_owned(),
            stage: "preflight".to_owned(),
            status: "queued".to_owned(),
            progress: Progress::default(),
            archive_bytes: 0,
            message: Some("waiting for a free backup slot".to_owned()),
            history_id: None,
            sha256: None,
        }
    }
}

/// Messages of the runs websocket: first a snapshot of every run (running and recently finished),
/// then one update per progress event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RunsMessage {
    Snapshot(Vec<RunView>),
    Update(Box<RunView>),
    /// The connection's live inventory changed: its new revision.
    Inventory(u64),
}

/// What starting one backup of a batch gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartOutcome {
    /// `namespace/pvc` as requested.
    pub target: String,
    pub run_id: Option<String>,
    /// Why it was not started.
    pub error: Option<String>,
}

/// The destinations a backup may go to, by name (the picker beside "Back up selected").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationChoices {
    pub names: Vec<String>,
    /// Preselected: the server's default destination.
    pub default: String,
}

/// Filters of the history page (all optional; dates are `YYYY-MM-DD`, UTC, inclusive).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryQuery {
    pub namespace: Option<String>,
    pub pvc: Option<String>,
    pub status: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// 1-based.
    pub page: Option<u32>,
}

/// One history row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryRow {
    pub id: i64,
    pub run_id: String,
    pub namespace: String,
    pub pvc: String,
    pub status: String,
    pub stage: Option<String>,
    pub message: Option<String>,
    pub started_by: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub duration_secs: Option<f64>,
    /// Archive size.
    pub bytes: Option<u64>,
    pub source_bytes: Option<u64>,
    pub files: Option<u64>,
    pub sha256: Option<String>,
    /// The archive's file name (never its server path).
    pub archive_name: Option<String>,
    /// When retention deleted the archive (the row stays for the record).
    #[serde(default)]
    pub pruned_at: Option<String>,
    /// Name of the destination holding the archive (`local` for runs recorded before
    /// destinations existed).
    pub destination: String,
    /// The last verification of the archive: `verified` or `failed`, when, by whom, what it found.
    pub verify_status: Option<String>,
    pub verified_at: Option<String>,
    pub verified_by: Option<String>,
    pub verify_message: Option<String>,
}

/// A backup run as the restore page shows it, with the defaults of a new PVC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreSourceView {
    pub run_id: String,
    pub namespace: String,
    pub pvc: String,
    pub finished_at: Option<String>,
    pub bytes: Option<u64>,
    pub source_bytes: Option<u64>,
    pub files: Option<u64>,
    pub sha256: Option<String>,
    /// From the manifest, when it can be read: the PVC's capacity and storage class.
    pub capacity: Option<String>,
    pub storage_class: Option<String>,
    pub verify_status: Option<String>,
    pub verified_at: Option<String>,
}

/// What an in-place restore would do, shown before it is confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InPlacePlanView {
    pub namespace: String,
    pub pvc: String,
    /// Pods mounting the PVC now.
    pub users: Vec<String>,
    /// `Kind/name` and the replicas it has now (scaled to 0, then back).
    pub workloads: Vec<(String, i32)>,
    /// Why an in-place restore is refused now, if it is.
    pub refusal: Option<String>,
}

/// A restore requested on the restore page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "the form's checkboxes, sent as they are"
)]
pub struct RestoreForm {
    pub run_id: String,
    /// Restore into the backup's own PVC (else into a new one).
    pub in_place: bool,
    /// New PVC: its name, namespace, storage class and size (empty: the defaults).
    pub to_pvc: String,
    pub to_namespace: String,
    pub storage_class: String,
    pub size: String,
    /// In place: replace the contents.
    pub wipe: bool,
    /// In place: the PVC's name, typed to confirm.
    pub confirm: String,
    /// Accept setuid/setgid files and symlinks leaving the volume (refused by default).
    pub allow_setuid: bool,
    pub allow_escaping_symlinks: bool,
}

/// A verification's result as the history page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyView {
    pub run_id: String,
    /// `verified` or `failed`.
    pub status: String,
    pub message: String,
    pub verified_at: String,
}

/// One page of history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryPage {
    pub rows: Vec<HistoryRow>,
    pub page: u32,
    pub per_page: u32,
    pub has_more: bool,
}

/// The logged-in user, for the header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub name: String,
    /// `viewer`, `operator` or `admin`.
    pub role: String,
}

/// Filters of the audit page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub action: Option<String>,
    /// 1-based.
    pub page: Option<u32>,
}

/// One audit event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRow {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
    pub detail: Option<String>,
    pub source: Option<String>,
}

/// One page of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    pub rows: Vec<AuditRow>,
    pub page: u32,
    pub has_more: bool,
}

/// One schedule as the Schedules page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleView {
    pub name: String,
    /// `stored` or `annotation` (read-only here).
    pub source: String,
    /// The annotated object of a declared schedule.
    pub declared_on: Option<String>,
    pub cron: String,
    pub timezone: String,
    pub cron_description: String,
    pub target: String,
    pub destination: Option<String>,
    pub concurrency: u16,
    /// `last 7, daily 14` or `keep everything` (then the server's default applies).
    pub retention: String,
    pub rpo_seconds: Option<i64>,
    pub paused: bool,
    /// RFC 3339 UTC; none while paused.
    pub next_run: Option<String>,
    pub last_scheduled_at: Option<String>,
    /// PVCs the schedule covers now, and how many of them are overdue.
    pub covered: usize,
    pub overdue: usize,
}

/// An annotation that declares nothing usable, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnotationProblem {
    pub object: String,
    pub message: String,
}

/// What the Schedules page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulesView {
    pub schedules: Vec<ScheduleView>,
    pub problems: Vec<AnnotationProblem>,
    /// Why schedules declared on namespaces could not be read, when they could not.
    pub namespaces_unread: Option<String>,
    /// Why the cluster could not be scanned (declared schedules and coverage unknown).
    pub scan_error: Option<String>,
    /// Destinations a new schedule may name.
    pub destinations: Vec<String>,
    /// The server's default retention (`keep everything` when unset).
    pub default_retention: String,
    /// Whether the caller may create, pause, resume and remove schedules (admins).
    pub can_edit: bool,
}

/// One backup in the retention preview (a dry run of `nkvm prune`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneView {
    pub run_id: String,
    pub namespace: String,
    pub pvc: String,
    pub finished_at: String,
    pub policy: String,
    /// `keep` or `delete`.
    pub action: String,
    pub reasons: Vec<String>,
}
