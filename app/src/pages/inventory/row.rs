//! One row of the inventory table: the PVC's cells, its selection checkbox, and whether it is the
//! keyboard's current row.

use std::collections::BTreeSet;

use leptos::prelude::*;

use crate::format::{access_mode_short, format_capacity, last_backup_label};
use crate::model::PvcRecord;

/// One table row with its selection checkbox. The keyboard's current row is marked
/// `aria-current` (styled `.current`) and is the table's one tab stop; clicking a row or focusing
/// its checkbox makes it current.
#[component]
pub(super) fn InventoryRow(
    row: PvcRecord,
    scanned_at_unix: i64,
    selected: RwSignal<BTreeSet<String>>,
    current: RwSignal<Option<String>>,
    is_current: Selector<Option<String>>,
) -> impl IntoView {
    let capacity = format_capacity(row.pvc.capacity.as_deref(), row.pvc.capacity_bytes);
    let last_backup = last_backup_label(row.last_success_at.as_deref(), scanned_at_unix);
    let last_verified = row.last_verified_at.as_deref().map(|at| {
        let label = format!("verified {}", last_backup_label(Some(at), scanned_at_unix));
        view! { <span class="detail verified" title=at.to_owned()>{label}</span> }
    });
    let storage_class = row.pvc.storage_class.unwrap_or_else(|| "—".to_owned());
    let phase_class = format!("phase phase-{}", row.pvc.phase.to_lowercase());
    let access_modes = row
        .pvc
        .access_modes
        .into_iter()
        .map(|mode| {
            let short = access_mode_short(&mode).to_owned();
            view! { <abbr title=mode>{short}</abbr> }
        })
        .collect_view();
    let consumers = if row.consumers.is_empty() {
        view! { "—" }.into_any()
    } else {
        let items = row
            .consumers
            .into_iter()
            .map(|pod| view! { <li>{pod}</li> })
            .collect_view();
        view! { <ul class="consumers">{items}</ul> }.into_any()
    };
    let key = format!("{}/{}", row.pvc.namespace, row.pvc.name);
    let flags = row
        .flags
        .into_iter()
        .map(|flag| {
            let class = format!("flag flag-{flag}");
            view! { <li class=class>{flag.as_str()}</li> }
        })
        .collect_view();
    let checked = {
        let key = key.clone();
        move || selected.with(|s| s.contains(&key))
    };
    let toggle = {
        let key = key.clone();
        move |ev| {
            let on = event_target_checked(&ev);
            selected.update(|s| {
                if on {
                    s.insert(key.clone());
                } else {
                    s.remove(&key);
                }
            });
        }
    };
    let row_checked = checked.clone();
    let (row_key, label) = (key.clone(), format!("Select {key}"));
    let this_current = {
        let key = Some(key.clone());
        move || is_current.selected(&key)
    };
    let make_current = move || {
        if current.with_untracked(|c| c.as_deref() != Some(key.as_str())) {
            current.set(Some(key.clone()));
        }
    };
    let focus_current = make_current.clone();
    view! {
        <tr
            data-pvc=row_key
            aria-selected=move || row_checked().to_string()
            aria-current={
                let this_current = this_current.clone();
                move || this_current().then_some("true")
            }
            class:current=this_current.clone()
            tabindex=move || this_current().then_some("0")
            on:click=move |_| make_current()
            on:focusin=move |_| focus_current()
        >
            <td class="select">
                <input
                    type="checkbox"
                    aria-label=label
                    prop:checked=checked
                    on:change=toggle
                />
            </td>
            <td>{row.pvc.namespace}</td>
            <th scope="row">{row.pvc.name}</th>
            <td>
                <span class=phase_class>{row.pvc.phase}</span>
            </td>
            <td class="num">{capacity}</td>
            <td>{storage_class}</td>
            <td class="modes">{access_modes}</td>
            <td class="owner">
                <span class="owner-kind">{row.owner_kind}</span>
                " "
                <span class="owner-name">{row.owner_name}</span>
            </td>
            <td>{consumers}</td>
            <td>{last_backup} {last_verified}</td>
            <td>
                <ul class="flags">{flags}</ul>
            </td>
        </tr>
    }
}
