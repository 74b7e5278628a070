//! `list_inventory`: one inventory scan of the session's cluster, with each PVC's last successful
//! backup from the history, for the inventory page.

use leptos::prelude::*;

use crate::model::InventoryView;

/// Scans the cluster with the server's inventory options and returns every readable PVC plus the
/// namespaces that were refused. Engine errors are operator-facing (operation, namespace, HTTP status,
/// what to do) and carry no credentials, so their text is passed on.
#[server(endpoint = "inventory")]
pub async fn list_inventory() -> Result<InventoryView, ServerFnError> {
    crate::ssr::require(nkvm_engine::auth::Role::Viewer, "the inventory").await?;
    let (ctx, _, connection) = crate::ssr::session_connection()?;
    let mut inventory = nkvm_engine::inventory::scan(&connection.cluster.client, &ctx.inventory)
        .await
        .map_err(|error| {
            tracing::warn!(%error, "inventory scan failed");
            ServerFnError::new(format!("Inventory scan failed: {error}"))
        })?;
    let last_success = ctx
        .workspace
        .store()
        .last_success_by_uid()
        .await
        .map_err(|error| {
            tracing::error!(%error, "reading the backup history failed");
            ServerFnError::new(format!("Reading the backup history failed: {error}"))
        })?;
    nkvm_engine::inventory::apply_history(
        &mut inventory.pvcs,
        &last_success,
        ctx.stale_after,
        jiff::Timestamp::now(),
    );
    Ok(crate::ssr::inventory_view(
        inventory,
        crate::ssr::unix_now(),
    ))
}
