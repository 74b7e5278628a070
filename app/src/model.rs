//! Wire types shared by the server functions and the browser: plain serde mirrors of the engine's
//! records, so the wasm build never depends on the engine (kube and tokio do not build for wasm).

use serde::{Deserialize, Serialize};

/// A workload owning a PVC through one of its consumer pods (mirror of `nkvm_engine::owners::Owner`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerRow {
    pub kind: String,
    pub name: String,
}

/// One PVC as the inventory table shows it. Same field names as `nkvm_engine::inventory::PvcRecord`
/// (and so as `nkvm inventory --output json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PvcRow {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub phase: String,
    /// Capacity as Kubernetes prints it (`1Gi`), or the requested size when not yet bound.
    pub capacity: Option<String>,
    pub capacity_bytes: Option<u64>,
    pub storage_class: Option<String>,
    pub access_modes: Vec<String>,
    pub volume_name: Option<String>,
    /// Display semantics of the predecessor (`Multiple[...]`, `Unknown`, `Pod/<name>`).
    pub owner_kind: String,
    pub owner_name: String,
    pub owners: Vec<OwnerRow>,
    pub consumers: Vec<String>,
    pub consumer_nodes: Vec<String>,
    /// RFC 3339 time of the last successful backup, if any.
    pub last_success_at: Option<String>,
    /// `unbound`, `no-consumer`, `rwop-in-use`, `never-backed-up`, `stale-backup`.
    pub flags: Vec<String>,
}

/// A namespace the server's credentials could not read; the rest of the inventory is still shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedNamespace {
    pub namespace: String,
    pub status: Option<u16>,
    pub message: String,
}

/// What the inventory page renders: the rows, the refused namespaces and when the scan ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InventoryView {
    pub rows: Vec<PvcRow>,
    pub refused: Vec<RefusedNamespace>,
    /// Unix time (seconds) of the scan; ages are computed against it so the server's HTML and the
    /// hydrated page agree.
    pub scanned_at_unix: i64,
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
