//! `list_inventory`: one inventory scan of the connected cluster, for the inventory page.

use leptos::prelude::*;

use crate::model::InventoryView;

/// Scans the cluster with the server's inventory options and returns every readable PVC plus the
/// namespaces that were refused. Engine errors are operator-facing (operation, namespace, HTTP status,
/// what to do) and carry no credentials, so their text is passed on.
#[server(endpoint = "inventory")]
pub async fn list_inventory() -> Result<InventoryView, ServerFnError> {
    let ctx = crate::ssr::app_context()?;
    let inventory = nkvm_engine::inventory::scan(&ctx.cluster.client, &ctx.inventory)
        .await
        .map_err(|error| {
            tracing::warn!(%error, "inventory scan failed");
            ServerFnError::new(format!("Inventory scan failed: {error}"))
        })?;
    Ok(crate::ssr::inventory_view(
        inventory,
        crate::ssr::unix_now(),
    ))
}
