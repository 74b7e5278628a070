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

/// Switches this session to a context of the server's kubeconfig.
#[server(endpoint = "connect/context")]
pub async fn use_context_fn(context: String) -> Result<ClusterInfo, ServerFnError> {
    let (ctx, session, _) = crate::ssr::session_connection()?;
    if context.is_empty() || context.len() > 253 {
        return Err(ServerFnError::new("choose one of the listed contexts"));
    }
    let switched = ctx
        .workspace
        .use_context(&session, &context)
        .await
        .map_err(|e| switch_error(&e))?;
    Ok(info(&switched))
}

/// Connects this session with a pasted kubeconfig (optionally one of its contexts). Refused when
/// the server disables pasting or the kubeconfig could run a command or read a file.
#[server(endpoint = "connect/paste")]
pub async fn paste_kubeconfig(
    kubeconfig: String,
    context: Option<String>,
) -> Result<ClusterInfo, ServerFnError> {
    let (ctx, session, _) = crate::ssr::session_connection()?;
    let context = context.filter(|c| !c.trim().is_empty());
    let switched = ctx
        .workspace
        .use_pasted(&session, kubeconfig, context)
        .await
        .map_err(|e| switch_error(&e))?;
    Ok(info(&switched))
}

/// Switches this session to the server pod's service account.
#[server(endpoint = "connect/in-cluster")]
pub async fn use_in_cluster() -> Result<ClusterInfo, ServerFnError> {
    let (ctx, session, _) = crate::ssr::session_connection()?;
    let switched = ctx
        .workspace
        .use_in_cluster(&session)
        .await
        .map_err(|e| switch_error(&e))?;
    Ok(info(&switched))
}

/// Puts this session back on the connection the server started with.
#[server(endpoint = "connect/default")]
pub async fn use_server_default() -> Result<ClusterInfo, ServerFnError> {
    let (ctx, session, _) = crate::ssr::session_connection()?;
    Ok(info(&ctx.workspace.use_default(&session)))
}
