//! The scheduler's [`Backend`] on a real cluster connection: scans with the inventory, or reads the
//! connection's live inventory when the web server keeps one (history joined, namespace
//! annotations when allowed), and starts runs through the connection's backup
//! engine, so scheduled runs share admission, history, audit and the live panel with the others.

use std::sync::Arc;

use super::freshness::namespaces_or_warn;
use super::runner::{Backend, Scan};
use crate::backup::{BackupResult, Requester, StartedRun};
use crate::domain::PvcRef;
use crate::inventory::{self, InventoryOptions, Scope};
use crate::store::Store;
use crate::workspace::Connection;

/// Scans and backs up through one cluster connection.
#[derive(Debug, Clone)]
pub struct ClusterBackend {
    connection: Arc<Connection>,
    store: Store,
    inventory: InventoryOptions,
    /// Read the connection's live inventory instead of listing the cluster at each refresh.
    live: bool,
}

impl ClusterBackend {
    /// A backend over `connection`, scanning with `inventory` (the server's allowlist and caps).
    #[must_use]
    pub fn new(connection: Arc<Connection>, store: Store, inventory: InventoryOptions) -> Self {
        Self {
            connection,
            store,
            inventory,
            live: false,
        }
    }

    /// Reads the connection's live inventory (started with the backend's inventory options if no
    /// page started it yet) instead of listing the cluster at each refresh: a server that keeps
    /// watches open lists nothing again for its schedules.
    #[must_use]
    pub fn reading_live_inventory(mut self) -> Self {
        self.live = true;
        self
    }
}

impl Backend for ClusterBackend {
    async fn scan(&self) -> Result<Scan, String> {
        let client = &self.connection.cluster.client;
        let mut found = if self.live {
            let live = self
                .connection
                .live(&self.inventory)
                .map_err(|e| e.to_string())?;
            live.ready().await.map_err(|e| e.to_string())?.inventory()
        } else {
            inventory::scan(client, &self.inventory)
                .await
                .map_err(|e| e.to_string())?
        };
        let last = self
            .store
            .last_success_by_uid()
            .await
            .map_err(|e| e.to_string())?;
        inventory::apply_history(&mut found.pvcs, &last, None, jiff::Timestamp::now());
        let scope = match inventory::resolve_scope(&self.inventory).map_err(|e| e.to_string())? {
            Scope::AllNamespaces => None,
            Scope::Namespaces(namespaces) => Some(namespaces),
        };
        let (namespaces, namespaces_unread) =
            namespaces_or_warn(client, scope.as_deref(), self.inventory.request_timeout).await;
        Ok(Scan {
            records: found.pvcs,
            namespaces,
            namespaces_unread,
        })
    }

    async fn start(
        &self,
        target: PvcRef,
        destination: Option<String>,
        requester: Requester,
    ) -> Result<StartedRun, Box<BackupResult>> {
        // `None`: the engine's default destination; an unknown name is refused (and audited)
        // by the engine like any other start.
        self.connection
            .backups
            .start_to(target, destination.as_deref(), &requester)
            .await
    }

    fn active_runs(&self) -> usize {
        self.connection.backups.active_runs().len()
    }
}
