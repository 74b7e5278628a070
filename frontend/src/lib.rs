//! Browser entry point: hydrates the server-rendered nkvm app.
// The app's view types are deep; computing their layout needs more than the default 128 levels.
#![recursion_limit = "256"]

use wasm_bindgen::prelude::wasm_bindgen;

/// Called by Leptos' hydration script once `nkvm.js` and `nkvm_bg.wasm` are loaded.
#[wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(nkvm_app::App);
}
