//! `list_inventory`: the inventory of the session's cluster from its connection's live (watch-based)
//! inventory, started by the first page that asks (or, with `--inventory-mode scan`, from a scan
//! shared with the other viewers asking at the same time), with each PVC's last successful backup
//! from the history, for the inventory page. The server's render of the page asks for its first
//! screen only (the rows the URL's view shows, see [`crate::table::first_screen`]); the hydrated page
//! then asks for every row.

use leptos::prelude::*;

use crate::model::InventoryView;

/// Reads the connection's live inventory (no list call once it is running) with the server's
/// inventory options and returns every readable PVC, the namespaces that were refused and the watches
/// that are failing. With `first_screen` (the page's URL query, `q=…&ns=…&sort=…`), only the rows
/// that view shows, with the totals of the whole inventory. Engine errors are operator-facing
/// (operation, namespace, HTTP status, what to do) and carry no credentials, so their text is passed
/// on.
#[server(endpoint = "inventory")]
pub async fn list_inventory(first_screen: Option<String>) -> Result<InventoryView, ServerFnError> {
    let view = read_inventory().await?;
    Ok(match first_screen {
        Some(query) => {
            let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
            let state = crate::table::TableState::from_query(|key| {
                pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
            });
            crate::table::first_screen(view, &state)
        }
        None => view,
    })
}

/// The whole inventory view of the session's connection.
#[cfg(feature = "ssr")]
async fn read_inventory() -> Result<InventoryView, ServerFnError> {
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
