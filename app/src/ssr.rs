//! Server-only glue: the context the server functions read, and conversions from engine records to
//! the wire types in [`crate::model`].

use std::sync::Arc;
use std::time::Duration;

use leptos::prelude::ServerFnError;
use nkvm_engine::backup::ProgressEvent;
use nkvm_engine::connection::Cluster;
use nkvm_engine::inventory::{Inventory, InventoryOptions};
use nkvm_engine::restore::RestoreEvent;
use nkvm_engine::store::{RestoreRecord, RunRecord};
use nkvm_engine::workspace::{Connection, Workspace};

use crate::model::{ClusterInfo, HistoryRow, InventoryView, Progress, RunView};

/// What every request's server functions can use, provided by the web server through Leptos context.
#[derive(Clone)]
pub struct AppContext {
    /// Every cluster connection of the server and which one each browser session uses.
    pub workspace: Workspace,
    /// Namespace scope, caps and timeouts for inventory scans.
    pub inventory: InventoryOptions,
    /// A last successful backup older than this flags the PVC `stale-backup` (`None`: never).
    pub stale_after: Option<Duration>,
    /// Whether the inventory page reads the connection's live (watch-based) inventory; otherwise
    /// each page load scans.
    pub live_inventory: bool,
    /// What the Schedules page needs beyond the database.
    pub schedules: ScheduleSettings,
}

/// Settings of the schedules the server runs.
#[derive(Debug, Clone, Default)]
pub struct ScheduleSettings {
    /// Retention of backups no schedule's own retention covers.
    pub default_retention: nkvm_engine::schedule::Retention,
    /// Names of the configured destinations (a new schedule must name one of them).
    pub destinations: Vec<String>,
}

impl AppContext {
    /// The namespaces this server may touch (`None`: all).
    #[must_use]
    pub fn allowlist(&self) -> Option<&[String]> {
        self.inventory.allowlist.as_deref()
    }

    /// True when `namespace` may be read and backed up.
    #[must_use]
    pub fn namespace_allowed(&self, namespace: &str) -> bool {
        self.allowlist()
            .is_none_or(|allowed| allowed.iter().any(|n| n == namespace))
    }
}

/// The browser session of a request, put into the request's extensions by the web server's
/// authentication layer (the login session's token, or the proxy user's key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionId(pub String);

/// Whether the login a request was made with is still valid, put into the request's extensions by
/// the authentication layer; long-lived streams (the live websocket) check it again while they
/// run, so that a logout or an expired session ends them.
#[derive(Clone)]
pub struct SessionAlive(pub Arc<dyn Fn() -> bool + Send + Sync>);

impl std::fmt::Debug for SessionAlive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionAlive").finish_non_exhaustive()
    }
}

impl SessionAlive {
    /// A login that stays valid for as long as the request runs (no session to end).
    #[must_use]
    pub fn always() -> Self {
        Self(Arc::new(|| true))
    }

    #[must_use]
    pub fn check(&self) -> bool {
        (self.0)()
    }
}

/// The current request's [`SessionAlive`] (always alive when the server gave none).
#[must_use]
pub fn session_alive() -> SessionAlive {
    leptos::prelude::use_context::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<SessionAlive>().cloned())
        .unwrap_or_else(SessionAlive::always)
}

/// Who is calling, put into the request's extensions by the authentication layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user: String,
    pub role: nkvm_engine::auth::Role,
    /// The client address, for the audit trail.
    pub source: String,
}

/// The caller of the current request (every non-public request passed authentication).
pub fn caller() -> Result<Caller, ServerFnError> {
    leptos::prelude::use_context::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Caller>().cloned())
        .ok_or_else(|| ServerFnError::new("not logged in: log in at /login"))
}

/// The caller, when their role allows `needed`; otherwise the refusal is audited and returned as
/// "needs the `<role>` role" (the server enforces roles on every call, whatever the page shows).
pub async fn require(needed: nkvm_engine::auth::Role, what: &str) -> Result<Caller, ServerFnError> {
    use nkvm_engine::audit::{AuditAction, AuditEvent, AuditOutcome};
    let caller = caller()?;
    if caller.role.allows(needed) {
        return Ok(caller);
    }
    let ctx = app_context()?;
    audit(
        &ctx,
        AuditEvent::new(
            &caller.user,
            AuditAction::AccessDenied,
            AuditOutcome::Denied,
        )
        .with_target(what)
        .with_detail(format!("role {} < {needed}", caller.role))
        .with_source(caller.source.clone()),
    )
    .await;
    Err(ServerFnError::new(format!(
        "{what} needs the {needed} role; you are {} ({}). Ask an administrator.",
        caller.user, caller.role
    )))
}

/// Writes an audit event; a failure to write is logged, not shown to the user.
pub async fn audit(ctx: &AppContext, event: nkvm_engine::audit::AuditEvent) {
    ctx.workspace.store().audit(&event).await;
}

/// The one error type of the server functions: what the browser may read ([`AppError::Shown`]:
/// refusals, invalid input, operator-facing engine errors that carry no secrets) and what only the
/// server's log gets ([`AppError::Internal`]: database and wiring failures, with their detail; the
/// browser learns only which step failed).
#[derive(Debug)]
pub enum AppError {
    Shown(String),
    Internal { what: &'static str, detail: String },
}

impl AppError {
    /// An internal failure of `what` (e.g. "reading the backup history"), logged with `error`.
    pub fn internal(what: &'static str, error: impl std::fmt::Display) -> Self {
        Self::Internal {
            what,
            detail: error.to_string(),
        }
    }
}

impl From<AppError> for ServerFnError {
    fn from(error: AppError) -> Self {
        match error {
            AppError::Shown(message) => ServerFnError::new(message),
            AppError::Internal { what, detail } => {
                tracing::error!(error = %detail, "{what} failed");
                ServerFnError::new(format!(
                    "{what} failed on the server; the server's log has the details"
                ))
            }
        }
    }
}

impl From<nkvm_engine::inventory::InventoryError> for AppError {
    fn from(error: nkvm_engine::inventory::InventoryError) -> Self {
        use nkvm_engine::inventory::InventoryError;
        match error {
            InventoryError::History(error) => Self::internal("reading the backup history", error),
            other => {
                tracing::warn!(error = %other, "inventory scan failed");
                Self::Shown(format!("Inventory scan failed: {other}"))
            }
        }
    }
}

impl From<Arc<nkvm_engine::inventory::InventoryError>> for AppError {
    fn from(error: Arc<nkvm_engine::inventory::InventoryError>) -> Self {
        use nkvm_engine::inventory::InventoryError;
        match &*error {
            InventoryError::History(error) => Self::internal("reading the backup history", error),
            other => {
                tracing::warn!(error = %other, "inventory scan failed");
                Self::Shown(format!("Inventory scan failed: {other}"))
            }
        }
    }
}

impl From<nkvm_engine::store::StoreError> for AppError {
    fn from(error: nkvm_engine::store::StoreError) -> Self {
        Self::internal("reading the history database", error)
    }
}

/// The session of the current request. Every request passes the session layer, so a missing one is
/// a wiring bug.
pub fn session_id() -> Result<String, ServerFnError> {
    leptos::prelude::use_context::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<SessionId>().map(|s| s.0.clone()))
        .ok_or_else(|| {
            tracing::error!("request without a session: the session layer must run first");
            ServerFnError::new("the server is misconfigured (see its log)")
        })
}

/// The app context and the current session's connection.
pub fn session_connection() -> Result<(AppContext, String, Arc<Connection>), ServerFnError> {
    let ctx = app_context()?;
    let session = session_id()?;
    let connection = ctx.workspace.connection(&session);
    Ok((ctx, session, connection))
}

impl From<&ProgressEvent> for RunView {
    fn from(event: &ProgressEvent) -> Self {
        Self {
            kind: "backup".to_owned(),
            run_id: event.run_id.clone(),
            namespace: event.namespace.clone(),
            pvc: event.pvc.clone(),
            stage: event.stage.as_str().to_owned(),
            status: event.status.as_str().to_owned(),
            progress: event.progress(),
            archive_bytes: event.archive_bytes,
            message: event.message.clone(),
            history_id: None,
            sha256: None,
        }
    }
}

/// The progress of a finished job as its history row records it (no totals, no rate).
fn finished(bytes: Option<u64>, files: Option<u64>, elapsed_secs: Option<f64>) -> Progress {
    Progress {
        bytes: bytes.unwrap_or(0),
        files: files.unwrap_or(0),
        elapsed_secs: elapsed_secs.unwrap_or(0.0),
        ..Progress::default()
    }
}

/// Seconds between two RFC 3339 times, when both parse.
fn seconds_between(start: &str, end: Option<&str>) -> Option<f64> {
    let start: jiff::Timestamp = start.parse().ok()?;
    let end: jiff::Timestamp = end?.parse().ok()?;
    Some(end.duration_since(start).as_secs_f64())
}

impl From<RunRecord> for RunView {
    fn from(record: RunRecord) -> Self {
        let elapsed = seconds_between(&record.started_at, record.finished_at.as_deref());
        Self {
            kind: "backup".to_owned(),
            run_id: record.run_id,
            namespace: record.namespace,
            pvc: record.pvc,
            stage: record
                .stage
                .map_or_else(|| "preflight".to_owned(), |s| s.as_str().to_owned()),
            status: record.status.as_str().to_owned(),
            progress: finished(record.source_bytes, record.files, elapsed),
            archive_bytes: record.bytes.unwrap_or(0),
            message: record.message,
            history_id: Some(record.id),
            sha256: record.sha256,
        }
    }
}

impl From<RunRecord> for HistoryRow {
    fn from(record: RunRecord) -> Self {
        let duration_secs = seconds_between(&record.started_at, record.finished_at.as_deref());
        let archive_name = record.artifact.as_deref().and_then(|path| {
            std::path::Path::new(path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        });
        Self {
            id: record.id,
            run_id: record.run_id,
            namespace: record.namespace,
            pvc: record.pvc,
            status: record.status.as_str().to_owned(),
            stage: record.stage.map(|s| s.as_str().to_owned()),
            message: record.message,
            started_by: record.started_by,
            started_at: record.started_at,
            finished_at: record.finished_at,
            duration_secs,
            bytes: record.bytes,
            source_bytes: record.source_bytes,
            files: record.files,
            sha256: record.sha256,
            archive_name,
            pruned_at: record.pruned_at,
            destination: record
                .destination
                .unwrap_or_else(|| nkvm_engine::destination::config::LOCAL.to_owned()),
            verify_status: record
                .verification
                .verify_status
                .map(|s| s.as_str().to_owned()),
            verified_at: record.verification.verified_at,
            verified_by: record.verification.verified_by,
            verify_message: record.verification.verify_message,
        }
    }
}

impl From<&RestoreEvent> for RunView {
    fn from(event: &RestoreEvent) -> Self {
        Self {
            kind: event.kind.as_str().to_owned(),
            run_id: event.id.clone(),
            namespace: event.namespace.clone(),
            pvc: event.pvc.clone(),
            stage: event.stage.as_str().to_owned(),
            status: event.status.as_str().to_owned(),
            progress: event.progress,
            archive_bytes: 0,
            message: event.message.clone(),
            history_id: None,
            sha256: None,
        }
    }
}

impl From<RestoreRecord> for RunView {
    fn from(record: RestoreRecord) -> Self {
        let elapsed = seconds_between(&record.started_at, record.finished_at.as_deref());
        Self {
            kind: if record.mode == nkvm_engine::domain::RestoreMode::Drill {
                "drill".to_owned()
            } else {
                "restore".to_owned()
            },
            run_id: record.restore_id,
            namespace: record.target_namespace,
            pvc: record.target_pvc,
            stage: record
                .stage
                .map_or_else(|| "verify".to_owned(), |s| s.as_str().to_owned()),
            status: record.status.as_str().to_owned(),
            progress: finished(record.bytes, record.files, elapsed),
            archive_bytes: 0,
            message: record.message,
            history_id: None,
            sha256: None,
        }
    }
}

/// What the header shows about the connection: source label, context and API server URL.
#[must_use]
pub fn cluster_info(cluster: &Cluster) -> ClusterInfo {
    let info = &cluster.info;
    ClusterInfo {
        source: info.source.clone(),
        context: info.context.clone(),
        server: info.server.clone(),
    }
}

/// Converts a finished scan into what the page shows, stamped with the time the scan ended.
#[must_use]
pub fn inventory_view(inventory: Inventory, scanned_at_unix: i64) -> InventoryView {
    let mut rows = inventory.pvcs;
    // The page neither shows nor searches labels and annotations: they stay on the server.
    for row in &mut rows {
        row.labels.clear();
        row.annotations.clear();
    }
    InventoryView {
        rows,
        refused: inventory.refused,
        scanned_at_unix,
        stale: Vec::new(),
        first_screen: None,
    }
}

/// Current Unix time in seconds (0 if the clock is before 1970).
#[must_use]
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The [`AppContext`] of the current request, or a server-side error when the server forgot to
/// provide it (a wiring bug, logged; the browser sees a generic message).
pub fn app_context() -> Result<AppContext, ServerFnError> {
    leptos::prelude::use_context::<AppContext>().ok_or_else(|| {
        tracing::error!(
            "AppContext missing from the Leptos context: the web server must provide it"
        );
        ServerFnError::new("the server is misconfigured (see its log)")
    })
}

#[cfg(test)]
mod tests {
    use nkvm_engine::domain::{Flag, NamespaceRefusal, PvcRecord, PvcSummary};

    use super::*;

    fn record() -> PvcRecord {
        PvcRecord {
            pvc: PvcSummary {
                namespace: "shop".to_owned(),
                name: "data".to_owned(),
                uid: "u-1".to_owned(),
                phase: "Bound".to_owned(),
                capacity: Some("1Gi".to_owned()),
                capacity_bytes: Some(1 << 30),
                storage_class: None,
                access_modes: vec!["ReadWriteOnce".to_owned()],
                volume_name: Some("pv-1".to_owned()),
            },
            owner_kind: "Deployment".to_owned(),
            owner_name: "a".to_owned(),
            owners: vec![],
            consumers: vec!["a-1".to_owned()],
            consumer_nodes: vec!["node-1".to_owned()],
            last_success_at: Some("2025-01-01T00:00:00Z".to_owned()),
            last_verified_at: None,
            flags: vec![Flag::StaleBackup],
            labels: std::collections::BTreeMap::new(),
            annotations: std::collections::BTreeMap::new(),
        }
    }

    #[test]
    fn refusals_and_scan_time_reach_the_view() {
        let refusal = NamespaceRefusal {
            namespace: "secret".to_owned(),
            status: Some(403),
            message: "grant list on persistentvolumeclaims".to_owned(),
        };
        let mut labelled = record();
        labelled.labels.insert("app".to_owned(), "shop".to_owned());
        labelled
            .annotations
            .insert("nkvm.io/schedule".to_owned(), "@daily".to_owned());
        let inventory = Inventory {
            pvcs: vec![labelled],
            refused: vec![refusal.clone()],
            api_requests: 6,
        };
        let view = inventory_view(inventory, 1_700_000_000);
        // Labels and annotations stay on the server: the page neither shows nor searches them.
        assert_eq!(view.rows, vec![record()]);
        assert_eq!(view.first_screen, None);
        assert_eq!(view.refused, vec![refusal]);
        assert_eq!(view.scanned_at_unix, 1_700_000_000);
    }
}
