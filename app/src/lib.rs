//! nkvm's web UI: Leptos components and the server functions they call (thin wrappers over the engine).

pub mod api;
pub mod components;
pub mod filter;
pub mod keys;
pub mod model;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod ssr;
pub mod table;

pub use nkvm_engine::domain::format;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::{
    SsrMode,
    components::{Route, Router, Routes},
    path,
};

use crate::components::header::ClusterHeader;
use crate::pages::{
    audit::AuditPageView, connect::ConnectPage, history::HistoryPage, inventory::InventoryPage,
    not_found::NotFound, restore::RestorePage, schedules::SchedulesPage,
};

/// Name of the wasm-bindgen output (`pkg/nkvm.js`, `pkg/nkvm_bg.wasm`) and of the stylesheet
/// (`pkg/nkvm.css`). `scripts/build-web.sh` and the server use the same name.
pub const OUTPUT_NAME: &str = "nkvm";

/// The HTML document around the app, rendered on the server only.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                // No favicon yet: an empty data URL keeps browsers from requesting /favicon.ico.
                <link rel="icon" href="data:," />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

/// The application: page header with the active cluster, then the routed page.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // Effects run only in the browser, after hydration: `data-hydrated="true"` tells tests (and
    // curious operators) that the page is interactive.
    let (hydrated, set_hydrated) = signal(false);
    Effect::new(move |_| set_hydrated.set(true));
    view! {
        <Stylesheet id="nkvm-css" href=format!("/pkg/{OUTPUT_NAME}.css") />
        <Title text="nkvm" />
        <a class="skip-link" href="#main">
            "Skip to content"
        </a>
        <Router>
            <ClusterHeader />
            <main id="main" data-hydrated=move || hydrated.get().to_string()>
                <Routes fallback=NotFound>
                    // In-order streaming: the rows are in the HTML itself, so the page works without
                    // JavaScript (out-of-order streaming would need a script to place them).
                    <Route path=path!("/") view=InventoryPage ssr=SsrMode::InOrder />
                    <Route path=path!("/history") view=HistoryPage ssr=SsrMode::InOrder />
                    <Route path=path!("/restore/:run_id") view=RestorePage ssr=SsrMode::InOrder />
                    <Route path=path!("/connect") view=ConnectPage ssr=SsrMode::InOrder />
                    <Route path=path!("/audit") view=AuditPageView ssr=SsrMode::InOrder />
                    <Route path=path!("/schedules") view=SchedulesPage ssr=SsrMode::InOrder />
                </Routes>
            </main>
        </Router>
    }
}
