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
    let history = nkvm_engine::inventory::HistoryJoin {
        store: Some(ctx.workspace.store()),
        stale_after: ctx.stale_after,
        now: jiff::Timestamp::now(),
    };
    let inventory = nkvm_engine::inventory::scan_with_history(
        &connection.cluster.client,
        &ctx.inventory,
        history,
    )
    .await
    .map_err(crate::ssr::AppError::from)?;
    Ok(crate::ssr::inventory_view(
        inventory,
        crate::ssr::unix_now(),
    ))
}
