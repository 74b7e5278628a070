//! Connection server functions: what the connect page shows, and switching this browser session to
//! another context, a pasted kubeconfig, the in-cluster service account or back to the server's own
//! connection. A pasted kubeconfig stays in the server's memory, bound to this session only.

use leptos::prelude::*;

use crate::model::{ClusterInfo, ConnectView};

#[cfg(feature = "ssr")]
fn info(info: &nkvm_engine::connection::ClusterInfo) -> ClusterInfo {
    ClusterInfo {
        source: info.source.clone(),
        context: info.context.clone(),
        server: info.server.clone(),
    }
}

/// The session's connection, the server's kubeconfig contexts and which other choices exist.
#[server(name = ConnectViewFn, endpoint = "connect/view")]
pub async fn connect_view() -> Result<ConnectView, ServerFnError> {
    crate::ssr::require(nkvm_engine::auth::Role::Viewer, "the connection page").await?;
    let (ctx, _, connection) = crate::ssr::session_connection()?;
    let options = ctx.workspace.options();
    let (contexts, contexts_error) = match ctx.workspace.contexts() {
        Ok(found) => (
            found
                .contexts
                .into_iter()
                .map(|c| crate::model::ContextRow {
                    name: c.name,
                    cluster: c.cluster,
                    namespace: c.namespace,
                })
                .collect(),
            None,
        ),
        Err(error) => (Vec::new(), Some(error.to_string())),
    };
    Ok(ConnectView {
        active: info(connection.info()),
        contexts,
        contexts_error,
        allow_pasted: options.allow_pasted,
        in_cluster_available: options.in_cluster_available,
    })
}

#[cfg(feature = "ssr")]
fn switch_error(error: &nkvm_engine::workspace::WorkspaceError) -> ServerFnError {
    tracing::info!(%error, "connection switch refused");
    ServerFnError::new(error.to_string())
}

/// Admin only (a connection change is a setting: it decides which cluster this session acts on);
/// the change and its outcome go to the audit trail.
#[cfg(feature = "ssr")]
async fn switch<F>(what: &str, change: F) -> Result<ClusterInfo, ServerFnError>
where
    F: AsyncFnOnce(
        &nkvm_engine::workspace::Workspace,
        &str,
    ) -> Result<
        nkvm_engine::connection::ClusterInfo,
        nkvm_engine::workspace::WorkspaceError,
    >,
{
    use nkvm_engine::audit::{AuditAction, AuditEvent, AuditOutcome};
    let caller =
        crate::ssr::require(nkvm_engine::auth::Role::Admin, "changing the connection").await?;
    let (ctx, session, _) = crate::ssr::session_connection()?;
    let result = change(&ctx.workspace, &session).await;
    let event = AuditEvent::new(
        &caller.user,
        AuditAction::ConnectionChanged,
        if result.is_ok() {
            AuditOutcome::Success
        } else {
            AuditOutcome::Failure
        },
    )
    .with_source(caller.source.clone());
    let event = match &result {
        Ok(switched) => event.with_target(what).with_detail(format!(
            "{} context {} at {}",
            switched.source,
            switched.context.as_deref().unwrap_or("-"),
            switched.server
        )),
        Err(error) => event.with_target(what).with_detail(error.to_string()),
    };
    crate::ssr::audit(&ctx, event).await;
    result
        .map(|switched| info(&switched))
        .map_err(|e| switch_error(&e))
}

/// Switches this session to a context of the server's kubeconfig.
#[server(endpoint = "connect/context")]
pub async fn use_context_fn(context: String) -> Result<ClusterInfo, ServerFnError> {
    if context.is_empty() || context.len() > 253 {
        return Err(ServerFnError::new("choose one of the listed contexts"));
    }
    let what = format!("context {context}");
    switch(&what, async |workspace, session| {
        workspace.use_context(session, &context).await
    })
    .await
}

/// Connects this session with a pasted kubeconfig (optionally one of its contexts). Refused when
/// the server disables pasting or the kubeconfig could run a command or read a file.
#[server(endpoint = "connect/paste")]
pub async fn paste_kubeconfig(
    kubeconfig: String,
    context: Option<String>,
) -> Result<ClusterInfo, ServerFnError> {
    let context = context.filter(|c| !c.trim().is_empty());
    switch("pasted kubeconfig", async |workspace, session| {
        workspace.use_pasted(session, kubeconfig, context).await
    })
    .await
}

/// Switches this session to the server pod's service account.
#[server(endpoint = "connect/in-cluster")]
pub async fn use_in_cluster() -> Result<ClusterInfo, ServerFnError> {
    switch("in-cluster service account", async |workspace, session| {
        workspace.use_in_cluster(session).await
    })
    .await
}

/// Puts this session back on the connection the server started with.
#[server(endpoint = "connect/default")]
pub async fn use_server_default() -> Result<ClusterInfo, ServerFnError> {
    switch("the server's connection", async |workspace, session| {
        Ok(workspace.use_default(session))
    })
    .await
}
