//! Server functions, one per file: thin wrappers that read [`crate::ssr::AppContext`] and call the
//! engine. Their URLs are fixed (`/api/<endpoint>`) so scripts and tests can rely on them.

mod cluster_info;
mod list_inventory;

pub use cluster_info::*;
pub use list_inventory::*;

use leptos::prelude::ServerFnError;

/// The message to show a user for a failed server function: the server's own text when it sent one,
/// else the transport error.
#[must_use]
pub fn user_message(error: &ServerFnError) -> String {
    match error {
        ServerFnError::ServerError(message) => message.clone(),
        other => other.to_string(),
    }
}
