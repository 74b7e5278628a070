//! Backup server functions: start a batch from the inventory selection, cancel a run, the current
//! runs (for the server-rendered panel) and the websocket that streams their progress — backups,
//! restores, verifications and drills alike. Runs belong to the server's engines, not to a
//! socket: a reload or a second tab reattaches to them.

use leptos::prelude::*;
use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::{BoxedStream, Websocket};

use crate::model::{RunView, RunsMessage, StartOutcome};

/// Most PVCs one request may start.
pub const MAX_BATCH: usize = 5_000;

/// Starts one backup per `namespace/pvc` target on the session's cluster, to `destination` (a
/// name; `None`: the default one; an unknown name refuses the whole batch). Each target is checked
/// (name syntax, namespace allowlist, not already running) and gets its own outcome; the runs go
/// on in the server whatever happens to the browser.
#[server(endpoint = "backups/start")]
pub async fn start_backups(
    targets: Vec<String>,
    destination: Option<String>,
) -> Result<Vec<StartOutcome>, ServerFnError> {
    use nkvm_engine::backup::{PvcRef, Requester};

    let caller = crate::ssr::require(nkvm_engine::auth::Role::Operator, "starting backups").await?;
    let (_, _, connection) = crate::ssr::session_connection()?;
    if targets.is_empty() {
        return Err(ServerFnError::new("select at least one PVC to back up"));
    }
    let destination = destination.filter(|name| !name.is_empty());
    if let Some(name) = &destination {
        connection
            .backups
            .destinations()
            .get(name)
            .map_err(|error| ServerFnError::new(error.to_string()))?;
    }
    if targets.len() > MAX_BATCH {
        return Err(ServerFnError::new(format!(
            "at most {MAX_BATCH} PVCs per batch; narrow the selection"
        )));
    }
    let requester = Requester::web(&caller.user, &caller.source);
    let mut outcomes = Vec::with_capacity(targets.len());
    for target in targets {
        let started = match target.parse::<PvcRef>() {
            Err(error) => Err(error.to_string()),
            Ok(pvc) => connection
                .backups
                .start_to(pvc, destination.as_deref(), &requester)
                .await
                .map_err(|refused| refused.message),
        };
        outcomes.push(match started {
            Ok(run) => StartOutcome {
                target,
                run_id: Some(run.run_id),
                error: None,
            },
            Err(error) => StartOutcome {
                target,
                run_id: None,
                error: Some(error),
            },
        });
    }
    Ok(outcomes)
}

/// Cancels a running backup of the session's cluster; false when no such run is active.
#[server(endpoint = "backups/cancel")]
pub async fn cancel_backup(run_id: String) -> Result<bool, ServerFnError> {
    use nkvm_engine::backup::Requester;

    let caller =
        crate::ssr::require(nkvm_engine::auth::Role::Operator, "cancelling backups").await?;
    let (_, _, connection) = crate::ssr::session_connection()?;
    if !nkvm_engine::backup::is_run_id(&run_id) {
        return Err(ServerFnError::new("not a run id"));
    }
    let requester = Requester::web(&caller.user, &caller.source);
    Ok(connection.backups.cancel_for(&run_id, &requester).await)
}

/// The session's runs: every active one of its connection, then those of its connection's cluster
/// ([`nkvm_engine::store::RunScope`]) finished in the last hour (newest first).
#[server(endpoint = "backups/runs")]
pub async fn list_runs() -> Result<Vec<RunView>, ServerFnError> {
    crate::ssr::require(nkvm_engine::auth::Role::Viewer, "the backups panel").await?;
    let (ctx, _, connection) = crate::ssr::session_connection()?;
    runs_snapshot(&ctx, &connection).await
}

#[cfg(feature = "ssr")]
async fn runs_snapshot(
    ctx: &crate::ssr::AppContext,
    connection: &nkvm_engine::workspace::Connection,
) -> Result<Vec<RunView>, ServerFnError> {
    use nkvm_engine::store::RunFilter;

    let mut views: Vec<RunView> = connection
        .backups
        .active_runs()
        .into_iter()
        .map(|run| match &run.latest {
            Some(event) => RunView::from(event),
            None => RunView::queued(run.run_id.clone(), &run.target.namespace, &run.target.name),
        })
        .collect();
    let hour_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
    let finished = ctx
        .workspace
        .store()
        .recent_runs(&RunFilter {
            since: Some(hour_ago),
            namespaces: ctx.allowlist().map(<[String]>::to_vec),
            limit: 100,
            scope: Some(connection.scope()),
            ..RunFilter::default()
        })
        .await
        .map_err(|error| crate::ssr::AppError::internal("reading the backup history", error))?;
    for record in finished {
        if record.status.is_finished() && !views.iter().any(|v| v.run_id == record.run_id) {
            views.push(RunView::from(record));
        }
    }
    views.extend(connection.restores.active().iter().map(RunView::from));
    let restores = ctx
        .workspace
        .store()
        .recent_restores(&nkvm_engine::store::RestoreFilter {
            since: Some(hour_ago),
            namespaces: ctx.allowlist().map(<[String]>::to_vec),
            limit: 100,
            scope: Some(connection.scope()),
            ..nkvm_engine::store::RestoreFilter::default()
        })
        .await
        .map_err(|error| crate::ssr::AppError::internal("reading the restore history", error))?;
    for record in restores {
        if record.status.is_finished() && !views.iter().any(|v| v.run_id == record.restore_id) {
            views.push(RunView::from(record));
        }
    }
    Ok(views)
}

/// The history row of a run that just finished, so the panel can offer its downloads.
#[cfg(feature = "ssr")]
async fn finished_view(
    store: &nkvm_engine::store::Store,
    scope: nkvm_engine::store::RunScope,
    view: &mut RunView,
) {
    use nkvm_engine::store::RunFilter;

    if matches!(view.status.as_str(), "running" | "queued") {
        return;
    }
    if let Ok(rows) = store
        .recent_runs(&RunFilter {
            run_id: Some(view.run_id.clone()),
            limit: 1,
            scope: Some(scope),
            ..RunFilter::default()
        })
        .await
        && let Some(row) = rows.into_iter().next()
    {
        view.history_id = Some(row.id);
        view.sha256 = row.sha256;
    }
}

/// The longest a change of the live inventory waits before it is pushed to the page (changes in
/// between are pushed once).
#[cfg(feature = "ssr")]
const INVENTORY_PUSH: std::time::Duration = std::time::Duration::from_millis(700);

/// Waits for the next published snapshot of the live inventory; true when it is complete (a
/// snapshot still being listed is not worth a reload). Never returns once the inventory is gone.
#[cfg(feature = "ssr")]
async fn inventory_change(
    receiver: &mut Option<
        tokio::sync::watch::Receiver<std::sync::Arc<nkvm_engine::inventory::LiveSnapshot>>,
    >,
) -> bool {
    let Some(live) = receiver.as_mut() else {
        return std::future::pending().await;
    };
    if live.changed().await.is_err() {
        *receiver = None;
        return false;
    }
    live.borrow_and_update().ready
}

/// How often the live socket checks that its login is still valid.
#[cfg(feature = "ssr")]
const SESSION_RECHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// Streams the session's runs: a snapshot, then every progress event (a new snapshot after the
/// socket fell behind). Ends when the browser closes the socket, or within two seconds after its
/// login ended (logout, expiry, a new login); the runs go on.
#[server(protocol = Websocket<JsonEncoding, JsonEncoding>, endpoint = "backups/updates")]
pub async fn run_updates(
    input: BoxedStream<String, ServerFnError>,
) -> Result<BoxedStream<RunsMessage, ServerFnError>, ServerFnError> {
    use futures::{SinkExt, StreamExt};
    use tokio::sync::broadcast::error::RecvError;

    crate::ssr::require(nkvm_engine::auth::Role::Viewer, "the backups panel").await?;
    let (ctx, _, connection) = crate::ssr::session_connection()?;
    let alive = crate::ssr::session_alive();
    // Subscribe before the snapshot so that no event falls between the two.
    let mut events = connection.backups.subscribe();
    let mut restore_events = connection.restores.subscribe();
    // The live inventory's changes, pushed at most once per INVENTORY_PUSH (the page then reads
    // the inventory again). Without it (a scope error) the page still works by reloading.
    let mut inventory = ctx
        .live_inventory
        .then(|| connection.live(&ctx.inventory).ok())
        .flatten()
        .map(nkvm_engine::inventory::LiveInventory::subscribe);
    let mut inventory_changed = false;
    let mut push = tokio::time::interval(INVENTORY_PUSH);
    let snapshot = runs_snapshot(&ctx, &connection).await?;
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<RunsMessage, ServerFnError>>(64);
    tokio::spawn(async move {
        let mut input = input;
        if tx.send(Ok(RunsMessage::Snapshot(snapshot))).await.is_err() {
            return;
        }
        let mut recheck = tokio::time::interval(SESSION_RECHECK);
        loop {
            let message = tokio::select! {
                // The login this socket was opened with: after a logout or expiry, it ends.
                _ = recheck.tick() => {
                    if alive.check() {
                        continue;
                    }
                    return;
                },
                changed = inventory_change(&mut inventory) => {
                    inventory_changed |= changed;
                    continue;
                },
                _ = push.tick() => match inventory.as_ref() {
                    Some(receiver) if inventory_changed => {
                        inventory_changed = false;
                        RunsMessage::Inventory(receiver.borrow().revision)
                    }
                    _ => continue,
                },
                incoming = input.next() => match incoming {
                    // The browser sends nothing but keeps its side open; anything else ends it.
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => return,
                },
                event = events.recv() => match event {
                    Ok(event) => {
                        let mut view = RunView::from(&event);
                        if !ctx.namespace_allowed(&view.namespace) {
                            continue;
                        }
                        finished_view(ctx.workspace.store(), connection.scope(), &mut view).await;
                        RunsMessage::Update(Box::new(view))
                    }
                    Err(RecvError::Lagged(_)) => match runs_snapshot(&ctx, &connection).await {
                        Ok(views) => RunsMessage::Snapshot(views),
                        Err(_) => continue,
                    },
                    Err(RecvError::Closed) => return,
                },
                event = restore_events.recv() => match event {
                    Ok(event) => {
                        let view = RunView::from(&event);
                        if !ctx.namespace_allowed(&view.namespace) {
                            continue;
                        }
                        RunsMessage::Update(Box::new(view))
                    }
                    Err(RecvError::Lagged(_)) => match runs_snapshot(&ctx, &connection).await {
                        Ok(views) => RunsMessage::Snapshot(views),
                        Err(_) => continue,
                    },
                    Err(RecvError::Closed) => return,
                },
            };
            if tx.send(Ok(message)).await.is_err() {
                return;
            }
        }
    });
    Ok(rx.into())
}
