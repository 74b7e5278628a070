//! The inventory page: every PVC with its owner, consumers, last backup and flags; text, namespace and
//! owner-kind filters and sortable columns, all kept in the URL so the server renders the same view
//! without JavaScript; once hydrated, multi-select and "Back up selected" start a batch (to the
//! destination picked beside the button, the server's default preselected) whose progress the
//! backups panel above the table follows live. Keyboard (hydrated): `/` filter, Escape back to the
//! table, arrows/Home/End move the current row, Space selects it, `b` backs up the selection.

use std::collections::BTreeSet;
use std::sync::Arc;

use leptos::prelude::*;
use leptos_router::NavigateOptions;
use leptos_router::hooks::{use_navigate, use_query_map};

use crate::api::{list_destinations, list_inventory, start_backups, user_message};
use crate::components::runs::{LiveRuns, RunsPanel};
use crate::filter::haystack;
use crate::format::count_label;
use crate::model::{DestinationChoices, InventoryView, StartOutcome};
use crate::table::{PAGE_ROWS, SortKey, TableState, facets, visible_rows};

mod keyboard;
mod notes;
mod row;

use notes::{KeyboardHint, KeysHint, RefusedWarning, StaleWarning, StartErrors};
use row::{InventoryRow, Slots};

/// The inventory page at `/`.
#[component]
pub fn InventoryPage() -> impl IntoView {
    let query = use_query_map();
    let state = Memo::new(move |_| query.with(|q| TableState::from_query(|key| q.get(key))));
    let live = LiveRuns::new();
    // The server renders, and the page hydrates from, the first screen of the URL's view only; once
    // hydrated, the page reads every row (and filters and sorts them itself). Read again whenever the
    // server says the inventory changed; filter, sort and page stay in the URL and the selection in
    // `selected`, so they survive.
    let complete = RwSignal::new(false);
    Effect::new(move |_| complete.set(true));
    let inventory = Resource::new(
        move || (live.inventory_changes.get(), complete.get()),
        move |(_changes, complete)| {
            let first_screen = (!complete).then(|| state.with_untracked(TableState::to_query));
            read_inventory(first_screen)
        },
    );
    let destinations = Resource::new(|| (), |()| list_destinations());
    let selected = RwSignal::new(BTreeSet::<String>::new());
    // The destination picked (`None`: the server's default) and the start of a batch live here, not
    // in the table, so that rendering the table again (the whole inventory arriving after the first
    // screen, a live update) neither resets the picker nor drops a start under way.
    let destination = RwSignal::new(None::<String>);
    let start: StartAction = Action::new(move |targets: &Vec<String>| {
        let targets = targets.clone();
        let destination = destination.get_untracked();
        async move { start_backups(targets, destination).await }
    });
    // Runs the server accepted appear at once (queued), before their first progress event.
    Effect::new(move |_| {
        if let Some(Ok(outcomes)) = start.value().get() {
            for outcome in &outcomes {
                if let Some(run_id) = &outcome.run_id {
                    live.add_queued(run_id.clone(), &outcome.target);
                }
            }
            selected.update(BTreeSet::clear);
        }
    });
    // The keyboard's current row, by `namespace/name`: like the selection, it outlives the table
    // a live update renders again.
    let current = RwSignal::new(None::<String>);
    // The shortcuts work, and their hint shows, once the page is hydrated (without JavaScript the
    // keys do nothing). Here, not in the table, so that a live update neither hides the hint for a
    // moment nor closes it.
    let hint = KeysHint {
        ready: RwSignal::new(false),
        open: RwSignal::new(false),
    };
    Effect::new(move |_| hint.ready.set(true));

    view! {
        <RunsPanel live />
        <section class="inventory" aria-labelledby="inventory-heading">
            <h1 id="inventory-heading">"Persistent volume claims"</h1>
            <Transition fallback=|| {
                view! {
                    <p class="loading" role="status">
                        "Scanning the cluster…"
                    </p>
                }
            }>
                {move || Suspend::new(async move {
                    // Without the list (an older server, a refusal) the server's default is used.
                    let choices = destinations.await.unwrap_or_default();
                    match inventory.await {
                        Ok(view) => {
                            view! {
                                <InventoryTable
                                    inventory=view
                                    choices
                                    destination
                                    start
                                    state
                                    selected
                                    current
                                    hint
                                    refresh=move || inventory.refetch()
                                />
                            }
                                .into_any()
                        }
                        Err(error) => {
                            view! {
                                <div class="error" role="alert">
                                    <h2>"The inventory could not be loaded"</h2>
                                    <p>{user_message(&error)}</p>
                                    <p>
                                        <a href="/connect">"Check the connection"</a>
                                    </p>
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

/// Reads the inventory. In the browser, a request the network cut (no answer from the server at
/// all) is tried again, three times, 0.5, 1 and 2 s apart: browsers abort requests in flight when
/// the machine's network changes (a VPN coming up, Wi-Fi roaming; Chromium's
/// `ERR_NETWORK_CHANGED`), and the page would otherwise replace the table with an error. An answer
/// of the server, error or not, is shown as it is.
async fn read_inventory(first_screen: Option<String>) -> Result<InventoryView, ServerFnError> {
    #[cfg(feature = "hydrate")]
    for delay_ms in [500, 1_000, 2_000] {
        match list_inventory(first_screen.clone()).await {
            Err(ServerFnError::Request(_)) => {
                crate::components::runs::sleep_ms(delay_ms).await;
            }
            answered => return answered,
        }
    }
    list_inventory(first_screen).await
}

/// Starts one backup per `namespace/name` target (to the destination picked).
type StartAction = Action<Vec<String>, Result<Vec<StartOutcome>, ServerFnError>>;

/// Replaces the URL's query with `state` (no new history entry, no scroll).
fn navigate_to(state: &TableState) {
    let navigate = use_navigate();
    let query = state.to_query();
    let url = if query.is_empty() {
        "/".to_owned()
    } else {
        format!("/?{query}")
    };
    navigate(
        &url,
        NavigateOptions {
            replace: true,
            scroll: false,
            ..NavigateOptions::default()
        },
    );
}

/// Toolbar, selection bar, count, table and "show more".
#[component]
fn InventoryTable(
    inventory: InventoryView,
    choices: DestinationChoices,
    destination: RwSignal<Option<String>>,
    start: StartAction,
    state: Memo<TableState>,
    selected: RwSignal<BTreeSet<String>>,
    current: RwSignal<Option<String>>,
    hint: KeysHint,
    refresh: impl Fn() + Clone + Send + Sync + 'static,
) -> impl IntoView {
    // A live update renders the rows again: a focused row gets the focus back (read now, while the
    // previous rows are still on the page).
    let mut kept = if is_server() {
        None
    } else {
        keyboard::kept_focus()
    };
    Effect::new(move |_| {
        if let Some(kept) = kept.take() {
            keyboard::restore_focus(kept, 30);
        }
    });
    let InventoryView {
        rows,
        refused,
        scanned_at_unix,
        stale,
        first_screen,
    } = inventory;
    let complete = first_screen.is_none();
    let rows = Arc::new(rows);
    let (total, summary, (namespaces, kinds), order, matched) = if let Some(screen) = first_screen {
        // The server's first screen: its rows are already the view's, in order.
        let count = rows.len();
        let order = Memo::new(move |_| (0..count).collect::<Vec<usize>>());
        let matched = Memo::new(move |_| screen.matched);
        let facets = (screen.namespaces, screen.kinds);
        (screen.total, screen.coverage, facets, order, matched)
    } else {
        let haystacks: Vec<String> = rows.iter().map(haystack).collect();
        let order = {
            let rows = rows.clone();
            Memo::new(move |_| state.with(|s| visible_rows(&rows, &haystacks, s)))
        };
        let matched = Memo::new(move |_| order.with(Vec::len));
        let summary = crate::components::coverage::coverage(&rows);
        (rows.len(), summary, facets(&rows), order, matched)
    };
    let page = Memo::new(move |_| {
        let limit = state.with(|s| s.limit);
        order.with(|o| o.iter().take(limit).copied().collect::<Vec<usize>>())
    });
    let shown = Memo::new(move |_| page.with(Vec::len));
    let keys: Arc<Vec<String>> = Arc::new(
        rows.iter()
            .map(|r| format!("{}/{}", r.pvc.namespace, r.pvc.name))
            .collect(),
    );

    let select_all_matching = {
        let keys = keys.clone();
        move |on: bool| {
            let matching: Vec<String> =
                order.with(|o| o.iter().map(|&i| keys[i].clone()).collect());
            selected.update(|set| {
                for key in matching {
                    if on {
                        set.insert(key);
                    } else {
                        set.remove(&key);
                    }
                }
            });
        }
    };
    let all_matching_selected = {
        let keys = keys.clone();
        Memo::new(move |_| {
            let set = selected.read();
            order.with(|o| !o.is_empty() && o.iter().all(|&i| set.contains(&keys[i])))
        })
    };

    // "Back up selected" (the button and the `b` key): nothing while the selection is empty or a
    // start is under way, as the disabled button.
    let back_up_selected = move || {
        let targets: Vec<String> = selected.with_untracked(|s| s.iter().cloned().collect());
        if !targets.is_empty() && !start.pending().get_untracked() {
            start.dispatch(targets);
        }
    };
    let destination_options = choices
        .names
        .iter()
        .map(|name| {
            let label = if *name == choices.default {
                format!("{name} (default)")
            } else {
                name.clone()
            };
            let default = choices.default.clone();
            let value = name.clone();
            let is_selected =
                move || destination.with(|d| *d.as_ref().unwrap_or(&default) == value);
            view! {
                <option value=name.clone() selected=is_selected>
                    {label}
                </option>
            }
        })
        .collect_view();
    let show_picker = !choices.names.is_empty();

    keyboard::listen(
        keyboard::Table {
            keys: keys.clone(),
            page,
            current,
            selected,
        },
        back_up_selected,
    );

    // Each row follows only whether it is the current one (not every move of the current row).
    let is_current = Selector::new(move || current.get());
    // One slot per row the page can show (the URL's limit): a filter step fills and hides slots.
    let row_count = rows.len();
    let slot_count = Memo::new(move |_| state.with(|s| s.limit).min(row_count));
    let slots = Slots {
        page,
        rows,
        keys,
        scanned_at_unix,
        selected,
        current,
        is_current,
    };
    let sort_header = move |key: SortKey, label: &'static str| {
        let aria_sort = move || {
            state.with(|s| {
                if s.sort != key {
                    "none"
                } else if s.descending {
                    "descending"
                } else {
                    "ascending"
                }
            })
        };
        let href = move || format!("/?{}", state.with(|s| s.sorted_by(key).to_query()));
        // The arrow is decoration: `aria-sort` tells assistive technology the direction.
        let arrow = move || match aria_sort() {
            "ascending" => " ▲",
            "descending" => " ▼",
            _ => "",
        };
        view! {
            <th scope="col" aria-sort=aria_sort>
                <a class="sort" href=href>
                    {label}
                </a>
                <span class="sort-arrow" aria-hidden="true">
                    {arrow}
                </span>
            </th>
        }
    };
    let namespace_options = namespaces
        .into_iter()
        .map(|ns| {
            let value = ns.clone();
            let option_value = ns.clone();
            let is_selected = move || state.with(|s| s.namespace == value);
            view! {
                <option value=option_value selected=is_selected>
                    {ns}
                </option>
            }
        })
        .collect_view();
    let kind_options = kinds
        .into_iter()
        .map(|kind| {
            let value = kind.clone();
            let option_value = kind.clone();
            let is_selected = move || state.with(|s| s.owner_kind == value);
            view! {
                <option value=option_value selected=is_selected>
                    {kind}
                </option>
            }
        })
        .collect_view();

    view! {
        <form
            class="toolbar"
            role="search"
            method="get"
            action="/"
            aria-label="Search PVCs"
            on:submit=move |ev| ev.prevent_default()
        >
            <div class="field">
                <label for="pvc-filter">"Filter"</label>
                <input
                    id="pvc-filter"
                    name="q"
                    type="search"
                    autocomplete="off"
                    spellcheck="false"
                    placeholder="namespace, name, owner, flag…"
                    aria-describedby="pvc-filter-help"
                    aria-keyshortcuts=move || hint.ready.get().then_some("/")
                    prop:value=move || state.with(|s| s.query.clone())
                    on:input=move |ev| {
                        let mut next = state.get_untracked();
                        next.query = event_target_value(&ev);
                        next.limit = PAGE_ROWS;
                        navigate_to(&next);
                    }
                    on:keydown=move |ev| {
                        if ev.key() == "Escape" {
                            // Back to the table (the search box would otherwise clear itself).
                            ev.prevent_default();
                            keyboard::leave_filter(current.get_untracked().as_deref());
                        }
                    }
                />
            </div>
            <div class="field">
                <label for="pvc-namespace">"Namespace"</label>
                <select
                    id="pvc-namespace"
                    name="ns"
                    on:change=move |ev| {
                        let mut next = state.get_untracked();
                        next.namespace = event_target_value(&ev);
                        next.limit = PAGE_ROWS;
                        navigate_to(&next);
                    }
                >
                    <option value="" selected=move || state.with(|s| s.namespace.is_empty())>
                        "All namespaces"
                    </option>
                    {namespace_options}
                </select>
            </div>
            <div class="field">
                <label for="pvc-kind">"Owner kind"</label>
                <select
                    id="pvc-kind"
                    name="kind"
                    on:change=move |ev| {
                        let mut next = state.get_untracked();
                        next.owner_kind = event_target_value(&ev);
                        next.limit = PAGE_ROWS;
                        navigate_to(&next);
                    }
                >
                    <option value="" selected=move || state.with(|s| s.owner_kind.is_empty())>
                        "All owners"
                    </option>
                    {kind_options}
                </select>
            </div>
            <input
                type="hidden"
                name="sort"
                value=move || state.with(|s| s.sort.as_str().to_owned())
            />
            <input
                type="hidden"
                name="dir"
                value=move || state.with(|s| if s.descending { "desc" } else { "asc" })
            />
            <button type="submit" class="apply">
                "Apply"
            </button>
            <button type="button" on:click=move |_| refresh()>
                "Refresh"
            </button>
            <p id="pvc-filter-help" class="hint">
                "Words separated by spaces; a row is shown when every word appears in it. "
                "“shop/data” matches namespace shop, PVC data."
            </p>
        </form>
        <RefusedWarning refused />
        <StaleWarning stale />
        <crate::components::coverage::CoverageSummary rows=summary state />
        <div class="selection-bar" role="group" aria-label="Selection">
            <button
                type="button"
                class="primary"
                data-testid="backup-selected"
                disabled=move || selected.with(BTreeSet::is_empty) || start.pending().get()
                aria-keyshortcuts=move || hint.ready.get().then_some("b")
                on:click=move |_| back_up_selected()
            >
                {move || format!("Back up selected ({})", selected.with(BTreeSet::len))}
            </button>
            <span class="field destination-picker" hidden=!show_picker>
                <label for="backup-destination">"to"</label>
                <select
                    id="backup-destination"
                    data-testid="backup-destination"
                    aria-label="Destination"
                    on:change=move |ev| destination.set(Some(event_target_value(&ev)))
                >
                    {destination_options}
                </select>
            </span>
            <button
                type="button"
                disabled=move || selected.with(BTreeSet::is_empty)
                on:click=move |_| selected.update(BTreeSet::clear)
            >
                "Clear selection"
            </button>
            <StartErrors outcomes=Signal::derive(move || start.value().get()) />
        </div>
        <p class="count" role="status" aria-live="polite" data-testid="pvc-count">
            {move || count_label(shown.get(), matched.get(), total)}
        </p>
        <KeyboardHint hint />
        <div class="table-scroll">
            // `data-rows`: `first-screen` until the hydrated page has every row, then `all`.
            <table
                class="data-table inventory-table"
                data-rows=if complete { "all" } else { "first-screen" }
            >
                <caption>"PVCs with the workloads that own them and the pods that mount them"</caption>
                <thead>
                    <tr>
                        <th scope="col" class="select">
                            <input
                                type="checkbox"
                                aria-label="Select every matching PVC"
                                prop:checked=move || all_matching_selected.get()
                                on:change=move |ev| select_all_matching(event_target_checked(&ev))
                            />
                        </th>
                        {sort_header(SortKey::Namespace, "Namespace")}
                        {sort_header(SortKey::Name, "Name")}
                        {sort_header(SortKey::Phase, "Phase")}
                        {sort_header(SortKey::Capacity, "Capacity")}
                        {sort_header(SortKey::StorageClass, "Storage class")}
                        <th scope="col">"Access modes"</th>
                        {sort_header(SortKey::Owner, "Owner")}
                        <th scope="col">"Consumers"</th>
                        {sort_header(SortKey::LastBackup, "Last backup")}
                        <th scope="col">"Flags"</th>
                    </tr>
                </thead>
                <tbody>
                    <For
                        each=move || 0..slot_count.get()
                        key=|slot| *slot
                        children=move |slot| {
                            view! { <InventoryRow position=slot slots=slots.clone() /> }
                        }
                    />
                </tbody>
            </table>
        </div>
        <p class="more" hidden=move || { shown.get() >= matched.get() }>
            <a href=move || {
                let mut next = state.get();
                next.limit = next.limit.saturating_add(PAGE_ROWS);
                format!("/?{}", next.to_query())
            }>{move || format!("Show {} more", (matched.get() - shown.get()).min(PAGE_ROWS))}</a>
            " · "
            <a href=move || {
                let mut next = state.get();
                next.limit = matched.get().max(PAGE_ROWS);
                format!("/?{}", next.to_query())
            }>{move || format!("Show all {} matching PVCs", matched.get())}</a>
        </p>
        <p class="empty" hidden=move || { total == 0 || matched.get() != 0 }>
            "No PVC matches the filter."
        </p>
        <p class="empty" hidden={ total != 0 }>
            "No PVCs in the namespaces this server may read."
        </p>
    }
}
