//! Server-only glue: the context the server functions read, and conversions from engine records to
//! the wire types in [`crate::model`].

use std::sync::Arc;

use nkvm_engine::connection::Cluster;
use nkvm_engine::inventory::{Inventory, InventoryOptions, NamespaceRefusal, PvcRecord};
use nkvm_engine::owners::Owner;

use crate::model::{ClusterInfo, InventoryView, OwnerRow, PvcRow, RefusedNamespace};

/// What every request's server functions can use, provided by the web server through Leptos context.
#[derive(Clone)]
pub struct AppContext {
    /// The cluster connection the server was started with.
    pub cluster: Arc<Cluster>,
    /// Namespace scope, caps and timeouts for inventory scans.
    pub inventory: InventoryOptions,
}

impl From<Owner> for OwnerRow {
    fn from(owner: Owner) -> Self {
        Self {
            kind: owner.kind,
            name: owner.name,
        }
    }
}

impl From<PvcRecord> for PvcRow {
    fn from(record: PvcRecord) -> Self {
        // Destructured so that a field added to the engine's record is a compile error here.
        let PvcRecord {
            namespace,
            name,
            uid,
            phase,
            capacity,
            capacity_bytes,
            storage_class,
            access_modes,
            volume_name,
            owner_kind,
            owner_name,
            owners,
            consumers,
            consumer_nodes,
            last_success_at,
            flags,
        } = record;
        Self {
            namespace,
            name,
            uid,
            phase,
            capacity,
            capacity_bytes,
            storage_class,
            access_modes,
            volume_name,
            owner_kind,
            owner_name,
            owners: owners.into_iter().map(OwnerRow::from).collect(),
            consumers,
            consumer_nodes,
            last_success_at,
            flags,
        }
    }
}

impl From<NamespaceRefusal> for RefusedNamespace {
    fn from(refusal: NamespaceRefusal) -> Self {
        Self {
            namespace: refusal.namespace,
            status: refusal.status,
            message: refusal.message,
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
    InventoryView {
        rows: inventory.pvcs.into_iter().map(PvcRow::from).collect(),
        refused: inventory
            .refused
            .into_iter()
            .map(RefusedNamespace::from)
            .collect(),
        scanned_at_unix,
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
pub fn app_context() -> Result<AppContext, leptos::prelude::ServerFnError> {
    leptos::prelude::use_context::<AppContext>().ok_or_else(|| {
        tracing::error!(
            "AppContext missing from the Leptos context: the web server must provide it"
        );
        leptos::prelude::ServerFnError::new("the server is misconfigured (see its log)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> PvcRecord {
        PvcRecord {
            namespace: "shop".to_owned(),
            name: "data".to_owned(),
            uid: "u-1".to_owned(),
            phase: "Bound".to_owned(),
            capacity: Some("1Gi".to_owned()),
            capacity_bytes: Some(1 << 30),
            storage_class: None,
            access_modes: vec!["ReadWriteOnce".to_owned()],
            volume_name: Some("pv-1".to_owned()),
            owner_kind: "Multiple[Deployment, StatefulSet]".to_owned(),
            owner_name: "a, b".to_owned(),
            owners: vec![
                Owner {
                    kind: "Deployment".to_owned(),
                    name: "a".to_owned(),
                },
                Owner {
                    kind: "StatefulSet".to_owned(),
                    name: "b".to_owned(),
                },
            ],
            consumers: vec!["a-1".to_owned(), "b-0".to_owned()],
            consumer_nodes: vec!["node-1".to_owned()],
            last_success_at: Some("2025-01-01T00:00:00Z".to_owned()),
            flags: vec!["stale-backup".to_owned()],
        }
    }

    #[test]
    fn row_mirrors_the_engine_record_field_for_field() {
        // The JSON of the engine's record must read back as the same row the conversion builds:
        // same field names, same meaning (this is also the `nkvm inventory --output json` shape).
        let json = serde_json::to_value(record()).expect("record serialises");
        let from_json: PvcRow = serde_json::from_value(json.clone()).expect("row deserialises");
        assert_eq!(from_json, PvcRow::from(record()));
        assert_eq!(
            serde_json::to_value(PvcRow::from(record())).expect("row serialises"),
            json
        );
    }

    #[test]
    fn refusals_and_scan_time_reach_the_view() {
        let inventory = Inventory {
            pvcs: vec![record()],
            refused: vec![NamespaceRefusal {
                namespace: "secret".to_owned(),
                status: Some(403),
                message: "grant list on persistentvolumeclaims".to_owned(),
            }],
            api_requests: 6,
        };
        let view = inventory_view(inventory, 1_700_000_000);
        assert_eq!(view.rows.len(), 1);
        assert_eq!(
            view.refused,
            vec![RefusedNamespace {
                namespace: "secret".to_owned(),
                status: Some(403),
                message: "grant list on persistentvolumeclaims".to_owned(),
            }]
        );
        assert_eq!(view.scanned_at_unix, 1_700_000_000);
    }
}
