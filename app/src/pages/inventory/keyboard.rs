//! Browser side of the inventory table's keyboard shortcuts (the decisions are pure, in
//! [`crate::keys`]): what a key press was aimed at, moving the focus to the filter or to a row
//! (scrolled into view), and keeping the focus where it was when a live update renders the table
//! again. The DOM is only touched in the browser (event handlers and effects).

use std::collections::BTreeSet;
use std::sync::Arc;

use leptos::prelude::*;
use leptos::wasm_bindgen::{JsCast, JsValue};
use leptos::web_sys::{self, js_sys};

use crate::keys::{KeyTarget, Shortcut, Step};

/// What the shortcuts act on.
pub struct Table {
    /// `namespace/name` of every row of the inventory, by index.
    pub keys: Arc<Vec<String>>,
    /// Indices of the displayed rows, in display order.
    pub page: Memo<Vec<usize>>,
    /// The current row.
    pub current: RwSignal<Option<String>>,
    /// The selected rows.
    pub selected: RwSignal<BTreeSet<String>>,
}

/// Listens for the shortcuts on the window for as long as the calling component lives (nothing
/// happens on the server); `back_up` is what "Back up selected" does.
pub fn listen(table: Table, back_up: impl Fn() + 'static) {
    let Table {
        keys,
        page,
        current,
        selected,
    } = table;
    let displayed = {
        let keys = keys.clone();
        move |key: &str| page.with_untracked(|p| p.iter().any(|&i| keys[i] == key))
    };
    let move_to = move |step: Step| {
        let next = page.with_untracked(|page| {
            let at = current.with_untracked(|c| {
                c.as_ref()
                    .and_then(|c| page.iter().position(|&i| keys[i] == *c))
            });
            crate::keys::step(page.len(), at, step).map(|n| keys[page[n]].clone())
        });
        let Some(key) = next else {
            return false;
        };
        focus_row(&key, true);
        current.set(Some(key));
        true
    };
    let toggle_current = move || {
        let Some(key) = current.get_untracked().filter(|key| displayed(key)) else {
            return false;
        };
        selected.update(|set| {
            if !set.remove(&key) {
                set.insert(key);
            }
        });
        true
    };
    let listener = window_event_listener(leptos::ev::keydown, move |ev| {
        if ev.default_prevented() || ev.is_composing() {
            return;
        }
        let modified = ev.ctrl_key() || ev.alt_key() || ev.meta_key();
        let Some(shortcut) = crate::keys::shortcut(&ev.key(), modified, target_of(&ev)) else {
            return;
        };
        let handled = match shortcut {
            Shortcut::FocusFilter => focus_filter(),
            Shortcut::Move(step) => move_to(step),
            Shortcut::ToggleSelection => toggle_current(),
            Shortcut::BackUp => {
                back_up();
                true
            }
        };
        if handled {
            ev.prevent_default();
        }
    });
    on_cleanup(move || listener.remove());
}

/// The filter box's id.
pub const FILTER_ID: &str = "pvc-filter";

/// What `event` was aimed at.
fn target_of(event: &web_sys::KeyboardEvent) -> KeyTarget {
    let Some(element) = event
        .target()
        .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
    else {
        return KeyTarget::Page;
    };
    let editable = element
        .dyn_ref::<web_sys::HtmlElement>()
        .is_some_and(web_sys::HtmlElement::is_content_editable);
    KeyTarget::of(
        &element.tag_name(),
        element.get_attribute("type").as_deref(),
        editable,
    )
}

/// Focuses the filter box (caret at the end of its text). False when it is not on the page.
fn focus_filter() -> bool {
    let Some(input) = document()
        .get_element_by_id(FILTER_ID)
        .and_then(|e| e.dyn_into::<web_sys::HtmlInputElement>().ok())
    else {
        return false;
    };
    let _ = input.focus();
    let end = u32::try_from(input.value().encode_utf16().count()).unwrap_or(u32::MAX);
    let _ = input.set_selection_range(end, end);
    true
}

/// The element of the inventory table's row `key` (`namespace/name`), if it is displayed.
fn row(key: &str) -> Option<web_sys::HtmlElement> {
    // Kubernetes names hold no quote or backslash, so the key needs no escaping.
    document()
        .query_selector(&format!(
            "table.inventory-table tbody tr[data-pvc=\"{key}\"]"
        ))
        .ok()
        .flatten()
        .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok())
}

/// Calls `target.method({name: value, …})`, for DOM options this build's `web-sys` has no
/// binding of (`scrollIntoView({block})`, `focus({preventScroll})`). Errors are ignored: the
/// worst case is a browser that scrolls differently.
fn call_with_options(target: &web_sys::Element, method: &str, options: &[(&str, JsValue)]) {
    let object = js_sys::Object::new();
    for (name, value) in options {
        let _ = js_sys::Reflect::set(&object, &JsValue::from_str(name), value);
    }
    if let Ok(function) = js_sys::Reflect::get(target, &JsValue::from_str(method))
        .and_then(JsCast::dyn_into::<js_sys::Function>)
    {
        let _ = function.call1(target, &object);
    }
}

/// Moves the focus to row `key`: scrolled just into view (`scroll`), or left where it is (a live
/// update re-rendering the table must not move the page). False when the row is not displayed.
pub fn focus_row(key: &str, scroll: bool) -> bool {
    let Some(row) = row(key) else {
        return false;
    };
    // The current row carries tabindex="0" once it is rendered as current; until then -1 makes it
    // focusable now.
    if !row.has_attribute("tabindex") {
        let _ = row.set_attribute("tabindex", "-1");
    }
    if scroll {
        call_with_options(&row, "scrollIntoView", &[("block", "nearest".into())]);
    }
    call_with_options(&row, "focus", &[("preventScroll", true.into())]);
    true
}

/// Escape in the filter box: leaves it for the table, on the current row when it is displayed.
pub fn leave_filter(current: Option<&str>) {
    if current.is_some_and(|key| focus_row(key, true)) {
        return;
    }
    if let Some(input) = document()
        .get_element_by_id(FILTER_ID)
        .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok())
    {
        let _ = input.blur();
    }
}

/// The focused row, kept across a live update: its `namespace/name` and the element that had the
/// focus (the row or its checkbox). A live update renders the rows anew (the toolbar's elements,
/// the filter box among them, stay and keep their focus by themselves).
#[derive(Debug, Clone)]
pub struct KeptFocus {
    key: String,
    previous: web_sys::Element,
}

/// The row to focus again after the table is rendered again; `None` when the focus is not in a
/// row. Call it while the previous rows are still on the page (in the component, before its view
/// is mounted).
pub fn kept_focus() -> Option<KeptFocus> {
    let previous = document().active_element()?;
    let key = previous
        .closest("table.inventory-table tbody tr[data-pvc]")
        .ok()
        .flatten()?
        .get_attribute("data-pvc")?;
    Some(KeptFocus { key, previous })
}

/// Focuses the kept row again, without scrolling, once the previous one has left the page
/// (checked again on the next `tries` animation frames), unless the user moved the focus
/// meanwhile.
pub fn restore_focus(focus: KeptFocus, tries: u8) {
    if focus.previous.is_connected() {
        if let Some(tries) = tries.checked_sub(1) {
            request_animation_frame(move || restore_focus(focus, tries));
        }
        return;
    }
    let lost = document()
        .active_element()
        .is_none_or(|e| e.tag_name().eq_ignore_ascii_case("body"));
    if lost {
        focus_row(&focus.key, false);
    }
}
