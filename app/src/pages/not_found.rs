//! The page for unknown paths (the server's fallback handler sets the 404 status).

use leptos::prelude::*;

/// Tells the user the page does not exist and links back to the inventory.
#[component]
pub fn NotFound() -> impl IntoView {
    view! {
        <section class="not-found">
            <h1>"Page not found"</h1>
            <p>
                <a href="/">"Back to the inventory"</a>
            </p>
        </section>
    }
}
