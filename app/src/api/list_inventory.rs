//! `list_inventory`: the inventory of the session's cluster from its connection's live (watch-based)
//! inventory, started by the first page that asks (or, with `--inventory-mode scan`, from a scan
//! shared with the other viewers asking at the same time), with each PVC's last successful backup
//! from the history, for the inventory page.

use leptos::prelude::*;

use crate::model::InventoryView;

/// Reads the connection's live inventory (no list call once it is running) with the server's
/// inventory options and returns every readable PVC, the namespaces that were refused and the watches
/// that are failing. Engine errors are operator-facing (operation, namespace, HTTP status, what to
/// do) and carry no credentials, so their text is passed on.
#[server(endpoint = "inventory")]
pub async fn list_inventory() -> Result<InventoryView, ServerFnError> {
    use nkvm_engine::inventory::{HistoryJoin, add_history};

    crate::ssr::require(nkvm_engine::auth::Role::Viewer, "the inventory").await?;
    let (ctx, _, connection) = crate::ssr::session_connection()?;
    if !ctx.live_inventory {
        // `--inventory-mode scan`: joins the scan of this connection already running, if any.
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
        return Ok(crate::ssr::inventory_view(
            inventory,
            crate::ssr::unix_now(),
        ));
    }
    let live = connection
        .live(&ctx.inventory)
        .map_err(crate::ssr::AppError::from)?;
    let snapshot = live.ready().await.map_err(crate::ssr::AppError::from)?;
    let mut inventory = snapshot.inventory();
    let history = HistoryJoin {
        store: Some(ctx.workspace.store()),
        stale_after: ctx.stale_after,
        now: jiff::Timestamp::now(),
    };
    add_history(
        &connection.cluster.client,
        &ctx.inventory,
        history,
        &mut inventory,
    )
    .await
    .map_err(crate::ssr::AppError::from)?;
    let mut view = crate::ssr::inventory_view(inventory, crate::ssr::unix_now());
    view.stale = snapshot
        .stale
        .iter()
        .map(|watch| {
            let scope = watch.namespace.as_deref().map_or_else(
                || "all namespaces".to_owned(),
                |ns| format!("namespace {ns}"),
            );
            format!(
                "{} in {scope}: not updated since {}: {}",
                watch.listing.plural(),
                watch.since,
                watch.message
            )
        })
        .collect();
    Ok(view)
}
