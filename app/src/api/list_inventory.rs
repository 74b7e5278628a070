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
    let (inventory, failing) = read_inventory().await?;
    let now = crate::ssr::unix_now();
    let view = match first_screen {
        Some(query) => {
            let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
            let state = crate::table::TableState::from_query(|key| {
                pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
            });
            // Only the rows shown are copied: page loads at the same time share the inventory.
            let (rows, screen) = crate::table::first_screen(&inventory.pvcs, &state);
            let mut view = crate::ssr::inventory_view(
                nkvm_engine::inventory::Inventory {
                    pvcs: rows,
                    refused: inventory.refused.clone(),
                    api_requests: inventory.api_requests,
                },
                now,
            );
            view.first_screen = Some(screen);
            view
        }
        None => crate::ssr::inventory_view(std::sync::Arc::unwrap_or_clone(inventory), now),
    };
    Ok(crate::model::InventoryView {
        stale: failing,
        ..view
    })
}

/// The whole inventory of the session's connection (shared with the other page loads reading it
/// at the same time) and the watches that are failing, as the page words them.
#[cfg(feature = "ssr")]
async fn read_inventory() -> Result<
    (
        std::sync::Arc<nkvm_engine::inventory::Inventory>,
        Vec<String>,
    ),
    ServerFnError,
> {
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
        return Ok((inventory, Vec::new()));
    }
    let live = connection
        .live(&ctx.inventory)
        .map_err(crate::ssr::AppError::from)?
        .reader();
    let (inventory, stale) = connection
        .scans
        .live(
            live,
            &connection.cluster.client,
            &ctx.inventory,
            ctx.workspace.store(),
            ctx.stale_after,
        )
        .await
        .map_err(crate::ssr::AppError::from)?;
    let stale = stale
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
    Ok((inventory, stale))
}
