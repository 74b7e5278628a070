//! Backup server functions: start a batch from the inventory selection, cancel a run, the current
//! runs (for the server-rendered panel) and the websocket that streams their progress. Runs belong
//! to the server's engine, not to a socket: a reload or a second tab reattaches to them.

use leptos::prelude::*;
use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::{BoxedStream, Websocket};

use crate::model::{RunView, RunsMessage, StartOutcome};

/// Most PVCs one request may start.
pub const MAX_BATCH: usize = 5_000;

/// Starts one backup per `namespace/pvc` target on the session's cluster. Each target is checked
/// (name syntax, namespace allowlist, not already running) and gets its own outcome; the runs go
/// on in the server whatever happens to the browser.
#[server(endpoint = "backups/start")]
pub async fn start_backups(targets: Vec<String>) -> Result<Vec<StartOutcome>, ServerFnError> {
    use nkvm_engine::audit::{AuditAction, AuditEvent, AuditOutcome};
    use nkvm_engine::backup::PvcRef;

    let caller = crate::ssr::require(nkvm_engine::auth::Role::Operator, "starting backups").await?;
    let (ctx, _, connection) = crate::ssr::session_connection()?;
    if targets.is_empty() {
        return Err(ServerFnError::new("select at least one PVC to back up"));
    }
    if targets.len() > MAX_BATCH {
        return Err(ServerFnError::new(format!(
            "at most {MAX_BATCH} PVCs per batch; narrow the selection"
        )));
    }
    let mut outcomes = Vec::with_capacity(targets.len());
    for target in targets {
        let outcome = match target.parse::<PvcRef>() {
            Err(error) => StartOutcome {
                target,
                run_id: None,
                error: Some(error.to_string()),
            },
            Ok(pvc) if !ctx.namespace_allowed(&pvc.namespace) => StartOutcome {
                target,
                run_id: None,
                error: Some(format!(
                    "namespace {:?} is not in this server's namespace allowlist",
                    pvc.namespace
                )),
            },
            Ok(pvc) => match connection
                .backups
                .start(pvc, &format!("web:{}", caller.user))
            {
                Ok(started) => {
                    tracing::info!(run_id = %started.run_id, %target, "backup started from the web UI");
                    StartOutcome {
                        target,
                        run_id: Some(started.run_id),
                        error: None,
                    }
                }
                Err(refused) => StartOutcome {
                    target,
                    run_id: None,
                    error: Some(refused.message),
                },
            },
        };
        let event = match (&outcome.run_id, &outcome.error) {
            (Some(run_id), _) => AuditEvent::new(
                &caller.user,
                AuditAction::BackupStarted,
                AuditOutcome::Success,
            )
            .with_detail(format!("run {run_id}")),
            (None, error) => AuditEvent::new(
                &caller.user,
                AuditAction::BackupStarted,
                AuditOutcome::Failure,
            )
            .with_detail(error.clone().unwrap_or_default()),
        };
        crate::ssr::audit(
            &ctx,
            event
                .with_target(outcome.target.chars().take(300).collect::<String>())
                .with_source(caller.source.clone()),
        )
        .await;
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// Cancels a running backup of the session's cluster; false when no such run is active.
#[server(endpoint = "backups/cancel")]
pub async fn cancel_backup(run_id: String) -> Result<bool, ServerFnError> {
    use nkvm_engine::audit::{AuditAction, AuditEvent, AuditOutcome};

    let caller =
        crate::ssr::require(nkvm_engine::auth::Role::Operator, "cancelling backups").await?;
    let (ctx, _, connection) = crate::ssr::session_connection()?;
    if run_id.is_empty()
        || run_id.len() > 64
        || !run_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(ServerFnError::new("not a run id"));
    }
    let cancelled = connection.backups.cancel(&run_id);
    if cancelled {
        tracing::info!(%run_id, user = %caller.user, "backup cancelled from the web UI");
        crate::ssr::audit(
            &ctx,
            AuditEvent::new(
                &caller.user,
                AuditAction::BackupCancelled,
                AuditOutcome::Success,
            )
            .with_target(format!("run {run_id}"))
            .with_source(caller.source.clone()),
        )
        .await;
    }
    Ok(cancelled)
}

/// The session's runs: every active one, then those finished in the last hour (newest first).
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
            ..RunFilter::default()
        })
        .await
        .map_err(|error| {
            ServerFnError::new(format!("Reading the backup history failed: {error}"))
        })?;
    for record in finished {
        if record.status.is_finished() && !views.iter().any(|v| v.run_id == record.run_id) {
            views.push(RunView::from(record));
        }
    }
    Ok(views)
}

/// The history row of a run that just finished, so the panel can offer its downloads.
#[cfg(feature = "ssr")]
async fn finished_view(store: &nkvm_engine::store::Store, view: &mut RunView) {
    use nkvm_engine::store::RunFilter;

    if matches!(view.status.as_str(), "running" | "queued") {
        return;
    }
    if let Ok(rows) = store
        .recent_runs(&RunFilter {
            run_id: Some(view.run_id.clone()),
            limit: 1,
            ..RunFilter::default()
        })
        .await
        && let Some(row) = rows.into_iter().next()
    {
        view.history_id = Some(row.id);
        view.sha256 = row.sha256;
    }
}

/// Streams the session's runs: a snapshot, then every progress event (a new snapshot after the
/// socket fell behind). Ends when the browser closes the socket; the runs go on.
#[server(protocol = Websocket<JsonEncoding, JsonEncoding>, endpoint = "backups/updates")]
pub async fn run_updates(
    input: BoxedStream<String, ServerFnError>,
) -> Result<BoxedStream<RunsMessage, ServerFnError>, ServerFnError> {
    use futures::{SinkExt, StreamExt};
    use tokio::sync::broadcast::error::RecvError;

    crate::ssr::require(nkvm_engine::auth::Role::Viewer, "the backups panel").await?;
    let (ctx, _, connection) = crate::ssr::session_connection()?;
    // Subscribe before the snapshot so that no event falls between the two.
    let mut events = connection.backups.subscribe();
    let snapshot = runs_snapshot(&ctx, &connection).await?;
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<RunsMessage, ServerFnError>>(64);
    tokio::spawn(async move {
        let mut input = input;
        if tx.send(Ok(RunsMessage::Snapshot(snapshot))).await.is_err() {
            return;
        }
        loop {
            let message = tokio::select! {
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
                        finished_view(ctx.workspace.store(), &mut view).await;
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
