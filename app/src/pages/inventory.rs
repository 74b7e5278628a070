//! The inventory page: every PVC with its owner and consumers, a live text filter and the namespaces
//! the server could not read. Renders completely on the server; hydration adds live filtering.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use crate::api::{list_inventory, user_message};
use crate::filter::{Filter, displayed, haystack};
use crate::format::{
    access_mode_short, count_label, format_capacity, last_backup_label, refusal_status,
};
use crate::model::{InventoryView, PvcRow, RefusedNamespace};

/// Rows displayed at most until the user asks for all: laying out thousands of table rows takes the
/// browser seconds, while filtering is what operators do on big clusters.
pub const DISPLAY_LIMIT: usize = 250;

/// The inventory page at `/`. Works without JavaScript: the filter form submits `?q=` (and "Show all"
/// adds `all=1`) and the server renders the result. Once hydrated, typing filters immediately,
/// "Refresh" rescans without reloading, and "Show all" displays every match in place.
#[component]
pub fn InventoryPage() -> impl IntoView {
    let (initial_query, initial_all) = use_query_map().with_untracked(|q| {
        (
            q.get("q").unwrap_or_default(),
            q.get("all").is_some_and(|v| v == "1"),
        )
    });
    let (query, set_query) = signal(initial_query.clone());
    let show_all = RwSignal::new(initial_all);
    let inventory = Resource::new(|| (), |()| list_inventory());

    view! {
        <section class="inventory" aria-labelledby="inventory-heading">
            <h1 id="inventory-heading">"Persistent volume claims"</h1>
            <form
                class="toolbar"
                role="search"
                method="get"
                action="/"
                on:submit=move |ev| {
                    ev.prevent_default();
                    inventory.refetch();
                }
            >
                <label for="pvc-filter">"Filter"</label>
                <input
                    id="pvc-filter"
                    name="q"
                    type="search"
                    autocomplete="off"
                    spellcheck="false"
                    placeholder="namespace, name, owner, flag…"
                    aria-describedby="pvc-filter-help"
                    value=initial_query
                    prop:value=query
                    on:input=move |ev| set_query.set(event_target_value(&ev))
                />
                <button type="submit">"Refresh"</button>
                <p id="pvc-filter-help" class="hint">
                    "Words separated by spaces; a row is shown when every word appears in it. "
                    "“shop/data” matches namespace shop, PVC data."
                </p>
            </form>
            <Transition fallback=|| {
                view! {
                    <p class="loading" role="status">
                        "Scanning the cluster…"
                    </p>
                }
            }>
                {move || Suspend::new(async move {
                    match inventory.await {
                        Ok(view) => {
                            view! { <InventoryTable inventory=view query show_all /> }.into_any()
                        }
                        Err(error) => {
                            view! {
                                <div class="error" role="alert">
                                    <h2>"The inventory could not be loaded"</h2>
                                    <p>{user_message(&error)}</p>
                                </div>
                            }
                                .into_any()
                        }
                    }
                })}
            </Transition>
        </section>
    }
}

/// The refused-namespaces warning, the row count, the table and the "Show all" control.
#[component]
fn InventoryTable(
    inventory: InventoryView,
    query: ReadSignal<String>,
    show_all: RwSignal<bool>,
) -> impl IntoView {
    let InventoryView {
        rows,
        refused,
        scanned_at_unix,
    } = inventory;
    let total = rows.len();
    let haystacks: Vec<String> = rows.iter().map(haystack).collect();
    let matches = Memo::new(move |_| {
        let filter = Filter::parse(&query.read());
        haystacks
            .iter()
            .map(|text| filter.matches(text))
            .collect::<Vec<bool>>()
    });
    let matched = Memo::new(move |_| matches.read().iter().filter(|m| **m).count());
    let limit = move || {
        if show_all.get() {
            usize::MAX
        } else {
            DISPLAY_LIMIT
        }
    };
    let shown_rows = Memo::new(move |_| displayed(&matches.read(), limit()));
    let shown = Memo::new(move |_| shown_rows.read().iter().filter(|v| **v).count());

    // The server renders each row's `hidden` attribute once. In the browser a single effect toggles
    // only the rows whose state changed: one pass per keystroke instead of one reactive effect per
    // row (thousands of rows).
    let initial = shown_rows.get_untracked();
    let tbody = NodeRef::<leptos::html::Tbody>::new();
    Effect::new(move |_| {
        let shown_rows = shown_rows.read();
        let Some(tbody) = tbody.get() else {
            return;
        };
        let children = tbody.children();
        for (index, display) in shown_rows.iter().enumerate() {
            let Some(row) = u32::try_from(index).ok().and_then(|i| children.item(i)) else {
                break;
            };
            if row.has_attribute("hidden") == *display {
                // Toggling a boolean attribute cannot fail for a valid name like "hidden".
                let _ = row.toggle_attribute_with_force("hidden", !*display);
            }
        }
    });

    let body = rows
        .into_iter()
        .zip(initial)
        .map(|(row, display)| view! { <InventoryRow row scanned_at_unix hidden=!display /> })
        .collect_view();

    view! {
        <RefusedWarning refused />
        <p class="count" role="status" aria-live="polite" data-testid="pvc-count">
            {move || count_label(shown.get(), matched.get(), total)}
        </p>
        <div class="table-scroll">
            <table class="inventory-table">
                <caption>"PVCs with the workloads that own them and the pods that mount them"</caption>
                <thead>
                    <tr>
                        <th scope="col">"Namespace"</th>
                        <th scope="col">"Name"</th>
                        <th scope="col">"Phase"</th>
                        <th scope="col">"Capacity"</th>
                        <th scope="col">"Storage class"</th>
                        <th scope="col">"Access modes"</th>
                        <th scope="col">"Owner"</th>
                        <th scope="col">"Consumers"</th>
                        <th scope="col">"Last backup"</th>
                        <th scope="col">"Flags"</th>
                    </tr>
                </thead>
                <tbody node_ref=tbody>{body}</tbody>
            </table>
        </div>
        <form
            class="show-all"
            method="get"
            action="/"
            hidden=move || shown.get() == matched.get()
            on:submit=move |ev| {
                ev.prevent_default();
                show_all.set(true);
            }
        >
            <input type="hidden" name="q" value=query.get_untracked() prop:value=query />
            <input type="hidden" name="all" value="1" />
            <button type="submit">{move || format!("Show all {} matching PVCs", matched.get())}</button>
        </form>
        <p class="empty" hidden=move || total == 0 || matched.get() != 0>
            "No PVC matches the filter."
        </p>
        <p class="empty" hidden=total != 0>
            "No PVCs in the namespaces this server may read."
        </p>
    }
}

/// One table row, `hidden` when it is not displayed at first render.
#[component]
fn InventoryRow(row: PvcRow, scanned_at_unix: i64, hidden: bool) -> impl IntoView {
    let capacity = format_capacity(row.capacity.as_deref(), row.capacity_bytes);
    let last_backup = last_backup_label(row.last_success_at.as_deref(), scanned_at_unix);
    let storage_class = row.storage_class.unwrap_or_else(|| "—".to_owned());
    let phase_class = format!("phase phase-{}", row.phase.to_lowercase());
    let access_modes = row
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
    let key = format!("{}/{}", row.namespace, row.name);
    let flags = row
        .flags
        .into_iter()
        .map(|flag| {
            let class = format!("flag flag-{flag}");
            view! { <li class=class>{flag}</li> }
        })
        .collect_view();
    view! {
        <tr hidden=hidden data-pvc=key>
            <td>{row.namespace}</td>
            <th scope="row">{row.name}</th>
            <td>
                <span class=phase_class>{row.phase}</span>
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
            <td>{last_backup}</td>
            <td>
                <ul class="flags">{flags}</ul>
            </td>
        </tr>
    }
}

/// Warns which namespaces were refused and why, so a partial inventory is never mistaken for a full one.
#[component]
fn RefusedWarning(refused: Vec<RefusedNamespace>) -> impl IntoView {
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
