//! `list_inventory`: one inventory scan of the session's cluster (shared with the other viewers of
//! that connection asking at the same time), with each PVC's last successful backup from the
//! history, for the inventory page.

use leptos::prelude::*;

use crate::model::InventoryView;

/// Scans the cluster with the server's inventory options and returns every readable PVC plus the
/// namespaces that were refused. Engine errors are operator-facing (operation, namespace, HTTP status,
/// what to do) and carry no credentials, so their text is passed on.
#[server(endpoint = "inventory")]
pub async fn list_inventory() -> Result<InventoryView, ServerFnError> {
    crate::ssr::require(nkvm_engine::auth::Role::Viewer, "the inventory").await?;
    let (ctx, _, connection) = crate::ssr::session_connection()?;
    // Joins the scan of this connection already running, if any (one cluster-wide scan at a time
    // however many pages ask).
    let inventory = connection
        .scans
        .scan(
            &connection.cluster.client,
            &ctx.inventory,
            ctx.workspace.store(),
            ctx.stale_after,
        )
        .await
        .map_err(crate::ssr::AppError::from)?;
    let inventory = std::sync::Arc::unwrap_or_clone(inventory);
    Ok(crate::ssr::inventory_view(
        inventory,
        crate::ssr::unix_now(),
    ))
}
