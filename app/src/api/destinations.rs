//! `list_destinations`: the names of the destinations a backup may go to and the default one, for
//! the picker beside "Back up selected" (names only: settings and secrets never reach the
//! browser).

use leptos::prelude::*;

use crate::model::DestinationChoices;

/// The destinations of the session's backup engine, by name, and the default one.
#[server(endpoint = "destinations")]
pub async fn list_destinations() -> Result<DestinationChoices, ServerFnError> {
    crate::ssr::require(nkvm_engine::auth::Role::Viewer, "the destinations").await?;
    let (_, _, connection) = crate::ssr::session_connection()?;
    let destinations = connection.backups.destinations();
    Ok(DestinationChoices {
        names: destinations
            .names()
            .into_iter()
            .map(str::to_owned)
            .collect(),
        default: destinations.default_destination().name().to_owned(),
    })
}
