//! Server functions, grouped by feature: thin wrappers that read [`crate::ssr::AppContext`] and the
//! request's session, then call the engine. Their URLs are fixed (`/api/<endpoint>`) so scripts and
//! tests can rely on them.

mod audit;
mod backups;
mod cluster_info;
mod connect;
mod destinations;
mod history;
mod list_inventory;
mod restores;
mod schedules;
mod session;

pub use audit::*;
pub use backups::*;
pub use cluster_info::*;
pub use connect::*;
pub use destinations::*;
pub use history::*;
pub use list_inventory::*;
pub use restores::*;
pub use schedules::*;
pub use session::*;

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
