//! `cluster_info`: which cluster, context and credentials this browser session is using, for the
//! page header.

use leptos::prelude::*;

use crate::model::ClusterInfo;

/// Describes the session's cluster connection (no secrets: source, context name and API server URL).
/// (`name` avoids the macro's default struct name, which would clash with [`ClusterInfo`].)
#[server(name = ClusterInfoFn, endpoint = "cluster")]
pub async fn cluster_info() -> Result<ClusterInfo, ServerFnError> {
    crate::ssr::caller()?;
    let (_, _, connection) = crate::ssr::session_connection()?;
    Ok(crate::ssr::cluster_info(&connection.cluster))
}
