//! `whoami`: the logged-in user and role, for the page header.

use leptos::prelude::*;

use crate::model::UserInfo;

/// The caller's name and role.
#[server(endpoint = "whoami")]
pub async fn whoami() -> Result<UserInfo, ServerFnError> {
    let caller = crate::ssr::caller()?;
    Ok(UserInfo {
        name: caller.user,
        role: caller.role.as_str().to_owned(),
    })
}
