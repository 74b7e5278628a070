//! What the inventory page says around its table: the keyboard shortcuts' hint, backups the server
//! refused to start, namespaces it could not read, and live updates that stopped.

use leptos::prelude::*;

use crate::api::user_message;
use crate::format::refusal_status;
use crate::model::{NamespaceRefusal, StartOutcome};

/// Whether the keyboard shortcuts work yet (hydrated) and whether their hint is open.
#[derive(Debug, Clone, Copy)]
pub(super) struct KeysHint {
    pub ready: RwSignal<bool>,
    pub open: RwSignal<bool>,
}

/// The keyboard shortcuts, in one line that opens to the details; hidden until the page is
/// hydrated.
#[component]
pub(super) fn KeyboardHint(hint: KeysHint) -> impl IntoView {
    view! {
        <details
            class="shortcuts"
            data-testid="keyboard-hint"
            hidden=move || !hint.ready.get()
            prop:open=move || hint.open.get()
            on:toggle=move |ev| {
                hint.open.set(event_target::<leptos::web_sys::Element>(&ev).has_attribute("open"));
            }
        >
            <summary>
                "Keys: " <kbd>"/"</kbd> " filter · " <kbd>"↑"</kbd> <kbd>"↓"</kbd> " move · "
                <kbd>"Space"</kbd> " select · " <kbd>"b"</kbd> " back up selected"
            </summary>
            <ul>
                <li>
                    <kbd>"/"</kbd> " focuses the filter; " <kbd>"Esc"</kbd>
                    " goes back to the table (the filter stays)."
                </li>
                <li>
                    <kbd>"↑"</kbd> " " <kbd>"↓"</kbd> " " <kbd>"Home"</kbd> " " <kbd>"End"</kbd>
                    " move the current row through the rows shown; clicking a row makes it current."
                </li>
                <li><kbd>"Space"</kbd> " selects or unselects the current row."</li>
                <li>
                    <kbd>"b"</kbd>
                    " backs up the selected PVCs, as “Back up selected” does (nothing while none is selected)."
                </li>
                <li>"Keys typed in a field, or with Ctrl, Alt or ⌘ held, are never shortcuts."</li>
            </ul>
        </details>
    }
}

/// Targets the server refused to start, with the reason.
#[component]
pub(super) fn StartErrors(
    outcomes: Signal<Option<Result<Vec<StartOutcome>, leptos::prelude::ServerFnError>>>,
) -> impl IntoView {
    move || match outcomes.get() {
        None => ().into_any(),
        Some(Err(error)) => view! {
            <p class="error" role="alert">
                "No backup was started: "
                {user_message(&error)}
            </p>
        }
        .into_any(),
        Some(Ok(outcomes)) => {
            let refused: Vec<StartOutcome> =
                outcomes.into_iter().filter(|o| o.error.is_some()).collect();
            if refused.is_empty() {
                ().into_any()
            } else {
                let items = refused
                    .into_iter()
                    .map(|o| {
                        view! {
                            <li>
                                <strong>{o.target}</strong>
                                ": "
                                {o.error}
                            </li>
                        }
                    })
                    .collect_view();
                view! {
                    <div class="error" role="alert">
                        <p>"Not started:"</p>
                        <ul>{items}</ul>
                    </div>
                }
                .into_any()
            }
        }
    }
}

/// Warns which namespaces were refused and why, so a partial inventory is never mistaken for a full one.
#[component]
pub(super) fn RefusedWarning(refused: Vec<NamespaceRefusal>) -> impl IntoView {
    (!refused.is_empty()).then(|| {
        let items = refused
            .into_iter()
            .map(|refusal| {
                // One text node: an empty one would be rendered as a space by the server.
                let detail = match refusal_status(refusal.status, &refusal.message) {
                    Some(status) => format!(" ({status}): {}", refusal.message),
                    None => format!(": {}", refusal.message),
                };
                view! {
                    <li>
                        <strong>{refusal.namespace}</strong>
                        {detail}
                    </li>
                }
            })
            .collect_view();
        view! {
            <div class="warning" role="status">
                <h2>"Some namespaces could not be read"</h2>
                <p>"Their PVCs are missing from the table below."</p>
                <ul>{items}</ul>
            </div>
        }
    })
}

/// Warns that live updates of some kinds stopped (a failing watch being restarted), so rows that
/// may be out of date are never mistaken for the current state.
#[component]
pub(super) fn StaleWarning(stale: Vec<String>) -> impl IntoView {
    (!stale.is_empty()).then(|| {
        let items = stale
            .into_iter()
            .map(|line| view! { <li>{line}</li> })
            .collect_view();
        view! {
            <div class="warning" role="status" data-testid="stale-warning">
                <h2>"Live updates interrupted"</h2>
                <p>
                    "nkvm lost its watch on these resources and is reading them again; the table may be out of date until then."
                </p>
                <ul>{items}</ul>
            </div>
        }
    })
}
