//! One row slot of the inventory table: the PVC at one position of the page with its cells, its
//! selection checkbox, and whether it is the keyboard's current row. Slots outlive filter steps.

use std::collections::BTreeSet;
use std::sync::Arc;

use leptos::prelude::*;

use crate::format::{access_mode_short, format_capacity, last_backup_label};
use crate::model::PvcRecord;

/// What every slot of one table reads: the page (indexes into `rows`, in display order), the rows
/// with their `namespace/name` keys, and the selection and keyboard state.
#[derive(Clone)]
pub(super) struct Slots {
    pub page: Memo<Vec<usize>>,
    pub rows: Arc<Vec<PvcRecord>>,
    pub keys: Arc<Vec<String>>,
    pub scanned_at_unix: i64,
    pub selected: RwSignal<BTreeSet<String>>,
    pub current: RwSignal<Option<String>>,
    pub is_current: Selector<Option<String>>,
}

/// The table row at `position` of the page. A filter step changes what a slot shows (its text
/// and attributes) instead of building rows again: a slot past the end of the page is hidden and
/// keeps the cells it last showed (without `data-pvc`), so that going back to a longer page only
/// shows it again. The keyboard's current row is marked `aria-current` (styled `.current`) and is
/// the table's one tab stop; clicking a row or focusing its checkbox makes it current.
#[component]
pub(super) fn InventoryRow(position: usize, slots: Slots) -> impl IntoView {
    let Slots {
        page,
        rows,
        keys,
        scanned_at_unix,
        selected,
        current,
        is_current,
    } = slots;
    // The row this slot shows, if the page reaches it.
    let shown = Memo::new(move |_| page.with(|p| p.get(position).copied()));
    // The row whose cells the slot holds: the shown one, or the last one shown while hidden. A slot
    // is created only below the number of rows, so `position` itself names a row.
    let held = Memo::new(move |prev: Option<&usize>| {
        shown.get().or_else(|| prev.copied()).unwrap_or(position)
    });
    // A cell, following the held row.
    let cell = |render: fn(&PvcRecord) -> String| follow(&rows, held, render);
    let key_of = {
        let keys = keys.clone();
        move |i: usize| keys[i].clone()
    };
    let data_pvc = {
        let key_of = key_of.clone();
        move || shown.get().map(&key_of)
    };
    let checked = {
        let keys = keys.clone();
        move || held.with(|&i| selected.with(|s| s.contains(&keys[i])))
    };
    let row_checked = checked.clone();
    let toggle = {
        let key_of = key_of.clone();
        move |ev| {
            let on = event_target_checked(&ev);
            let key = key_of(held.get_untracked());
            selected.update(|s| {
                if on {
                    s.insert(key);
                } else {
                    s.remove(&key);
                }
            });
        }
    };
    let label = {
        let key_of = key_of.clone();
        move || format!("Select {}", key_of(held.get()))
    };
    let this_current = {
        let key_of = key_of.clone();
        move || {
            shown
                .get()
                .is_some_and(|i| is_current.selected(&Some(key_of(i))))
        }
    };
    let make_current = move || {
        let key = key_of(held.get_untracked());
        if current.with_untracked(|c| c.as_deref() != Some(key.as_str())) {
            current.set(Some(key));
        }
    };
    let focus_current = make_current.clone();
    let phase_class = cell(|r| format!("phase phase-{}", r.pvc.phase.to_lowercase()));
    let last_backup = follow(&rows, held, move |r| {
        last_backup_label(r.last_success_at.as_deref(), scanned_at_unix)
    });
    let last_verified = follow(&rows, held, move |r| last_verified(r, scanned_at_unix));
    view! {
        <tr
            data-pvc=data_pvc
            hidden=move || shown.with(Option::is_none)
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
            <td>{cell(|r| r.pvc.namespace.clone())}</td>
            <th scope="row">{cell(|r| r.pvc.name.clone())}</th>
            <td>
                <span class=phase_class>{cell(|r| r.pvc.phase.clone())}</span>
            </td>
            <td class="num">
                {cell(|r| format_capacity(r.pvc.capacity.as_deref(), r.pvc.capacity_bytes))}
            </td>
            <td>{cell(|r| r.pvc.storage_class.clone().unwrap_or_else(|| "—".to_owned()))}</td>
            <td class="modes">{follow(&rows, held, access_modes)}</td>
            <td class="owner">
                <span class="owner-kind">{cell(|r| r.owner_kind.clone())}</span>
                " "
                <span class="owner-name">{cell(|r| r.owner_name.clone())}</span>
            </td>
            <td>{follow(&rows, held, consumers)}</td>
            <td>
                {last_backup}
                " "
                {last_verified}
            </td>
            <td>
                <ul class="flags">{follow(&rows, held, flags)}</ul>
            </td>
        </tr>
    }
}

/// What a cell shows of the held row, again whenever the slot holds another row.
fn follow<T, F>(
    rows: &Arc<Vec<PvcRecord>>,
    held: Memo<usize>,
    render: F,
) -> impl Fn() -> T + Clone + Send + Sync + 'static + use<T, F>
where
    F: Fn(&PvcRecord) -> T + Send + Sync + 'static,
{
    let rows = rows.clone();
    let render = Arc::new(render);
    move || held.with(|&i| render(&rows[i]))
}

fn access_modes(row: &PvcRecord) -> impl IntoView + use<> {
    row.pvc
        .access_modes
        .iter()
        .map(|mode| {
            let short = access_mode_short(mode).to_owned();
            view! { <abbr title=mode.clone()>{short}</abbr> }
        })
        .collect_view()
}

fn consumers(row: &PvcRecord) -> AnyView {
    if row.consumers.is_empty() {
        return view! { "—" }.into_any();
    }
    let items = row
        .consumers
        .iter()
        .map(|pod| view! { <li>{pod.clone()}</li> })
        .collect_view();
    view! { <ul class="consumers">{items}</ul> }.into_any()
}

fn last_verified(row: &PvcRecord, now_unix: i64) -> Option<impl IntoView + use<>> {
    row.last_verified_at.as_deref().map(|at| {
        let label = format!("verified {}", last_backup_label(Some(at), now_unix));
        view! { <span class="detail verified" title=at.to_owned()>{label}</span> }
    })
}

fn flags(row: &PvcRecord) -> impl IntoView + use<> {
    row.flags
        .iter()
        .map(|flag| {
            let class = format!("flag flag-{flag}");
            view! { <li class=class>{flag.as_str()}</li> }
        })
        .collect_view()
}
