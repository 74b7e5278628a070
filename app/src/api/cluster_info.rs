//! `cluster_info`: which cluster, context and credentials the server is using, for the page header.

use leptos::prelude::*;

use crate::model::ClusterInfo;

/// Describes the active cluster connection (no secrets: source, context name and API server URL).
/// (`name` avoids the macro's default struct name, which would clash with [`ClusterInfo`].)
#[server(name = ClusterInfoFn, endpoint = "cluster")]
pub async fn cluster_info() -> Result<ClusterInfo, ServerFnError> {
    let ctx = crate::ssr::app_context()?;
    Ok(crate::ssr::cluster_info(&ctx.cluster))
}
