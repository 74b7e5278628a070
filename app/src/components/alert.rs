//! Failures of server functions as every page shows them: the server's message in an alert.

use leptos::prelude::*;

use crate::api::user_message;

/// `<p class="error" role="alert">` with what the server said.
pub fn error_alert(error: &ServerFnError) -> AnyView {
    view! {
        <p class="error" role="alert">
            {user_message(error)}
        </p>
    }
    .into_any()
}

/// The alert of an action's last outcome, when it failed (nothing on success or before).
pub fn error_of<T: 'static>(
    value: impl Fn() -> Option<Result<T, ServerFnError>> + Send + Sync + 'static,
) -> impl Fn() -> Option<AnyView> + Send + Sync + 'static {
    move || match value() {
        Some(Err(error)) => Some(error_alert(&error)),
        _ => None,
    }
}
