//! The history page: backup runs newest first with filters (namespace, PVC, status, date range) and
//! pagination, all in the URL (a plain GET form, so it works without JavaScript), with size,
//! duration, sha256, the destination holding the archive, the last verification and downloads of
//! each archive and its checksum through the server (streamed from that destination); each
//! successful backup can be verified (once hydrated) or restored (its restore page), and the runs
//! panel above follows verifications and restores live.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use crate::api::{list_history, user_message, verify_backup};
use crate::components::runs::{LiveRuns, RunsPanel};
use crate::format::{format_bytes, format_duration};
use crate::model::{HistoryPage, HistoryQuery, HistoryRow};
use crate::table::encode_component;

const STATUSES: [&str; 5] = ["running", "succeeded", "failed", "cancelled", "interrupted"];

fn query_string(query: &HistoryQuery, page: u32) -> String {
    let mut pairs = Vec::new();
    for (key, value) in [
        ("namespace", &query.namespace),
        ("pvc", &query.pvc),
        ("status", &query.status),
        ("from", &query.from),
        ("to", &query.to),
    ] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            pairs.push(format!("{key}={}", encode_component(value)));
        }
    }
    if page > 1 {
        pairs.push(format!("page={page}"));
    }
    if pairs.is_empty() {
        "/history".to_owned()
    } else {
        format!("/history?{}", pairs.join("&"))
    }
}

/// The history page at `/history`.
#[component]
pub fn HistoryPage() -> impl IntoView {
    let params = use_query_map();
    let query = Memo::new(move |_| {
        params.with(|q| HistoryQuery {
            namespace: q.get("namespace"),
            pvc: q.get("pvc"),
            status: q.get("status"),
            from: q.get("from"),
            to: q.get("to"),
            page: q.get("page").and_then(|p| p.parse().ok()),
        })
    });
    let history = Resource::new(move || query.get(), list_history);
    let value = move |f: fn(&HistoryQuery) -> &Option<String>| {
        query.with(|q| f(q).clone().unwrap_or_default())
    };
    let status_options = STATUSES
        .into_iter()
        .map(|status| {
            let is_selected = move || query.with(|q| q.status.as_deref() == Some(status));
            view! {
                <option value=status selected=is_selected>
                    {status}
                </option>
            }
        })
        .collect_view();

    let live = LiveRuns::new();
    view! {
        <RunsPanel
            live
            empty="No backup, restore or verification is running. Verify or restore a backup below."
        />
        <section class="history" aria-labelledby="history-heading">
            <h1 id="history-heading">"Backup history"</h1>
            <form class="toolbar" method="get" action="/history" aria-label="Filter the history">
                <div class="field">
                    <label for="h-namespace">"Namespace"</label>
                    <input
                        id="h-namespace"
                        name="namespace"
                        autocomplete="off"
                        prop:value=move || value(|q| &q.namespace)
                    />
                </div>
                <div class="field">
                    <label for="h-pvc">"PVC"</label>
                    <input
                        id="h-pvc"
                        name="pvc"
                        autocomplete="off"
                        prop:value=move || value(|q| &q.pvc)
                    />
                </div>
                <div class="field">
                    <label for="h-status">"Status"</label>
                    <select id="h-status" name="status">
                        <option value="" selected=move || value(|q| &q.status).is_empty()>
                            "Any"
                        </option>
                        {status_options}
                    </select>
                </div>
                <div class="field">
                    <label for="h-from">"From (UTC)"</label>
                    <input id="h-from" name="from" type="date" prop:value=move || value(|q| &q.from) />
                </div>
                <div class="field">
                    <label for="h-to">"To (UTC)"</label>
                    <input id="h-to" name="to" type="date" prop:value=move || value(|q| &q.to) />
                </div>
                <button type="submit">"Apply"</button>
                <a href="/history">"Clear"</a>
            </form>
            <Transition fallback=|| view! { <p class="loading" role="status">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match history.await {
                        Ok(page) => view! { <HistoryTable page query=query.get_untracked() /> }.into_any(),
                        Err(error) => {
                            view! {
                                <div class="error" role="alert">
                                    <h2>"The history could not be loaded"</h2>
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

#[component]
fn HistoryTable(page: HistoryPage, query: HistoryQuery) -> impl IntoView {
    let HistoryPage {
        rows,
        page,
        per_page,
        has_more,
    } = page;
    if rows.is_empty() {
        return view! {
            <p class="empty" data-testid="history-empty">
                {if page > 1 { "No more runs." } else { "No backup run matches." }}
            </p>
        }
        .into_any();
    }
    let first = u64::from(page - 1) * u64::from(per_page) + 1;
    let last = first + rows.len() as u64 - 1;
    let body = rows
        .into_iter()
        .map(|row| view! { <HistoryRowView row /> })
        .collect_view();
    let previous = (page > 1).then(|| {
        let href = query_string(&query, page - 1);
        view! { <a rel="prev" href=href>"← Newer"</a> }
    });
    let next = has_more.then(|| {
        let href = query_string(&query, page + 1);
        view! { <a rel="next" href=href>"Older →"</a> }
    });
    view! {
        <p class="count" data-testid="history-count">{format!("Runs {first}–{last}")}</p>
        <div class="table-scroll">
            <table class="data-table history-table" data-testid="history-table">
                <caption class="visually-hidden">"Backup runs, newest first"</caption>
                <thead>
                    <tr>
                        <th scope="col">"Started (UTC)"</th>
                        <th scope="col">"PVC"</th>
                        <th scope="col">"Status"</th>
                        <th scope="col">"Started by"</th>
                        <th scope="col">"Duration"</th>
                        <th scope="col">"Size"</th>
                        <th scope="col">"Files"</th>
                        <th scope="col">"sha256"</th>
                        <th scope="col">"Destination"</th>
                        <th scope="col">"Verified"</th>
                        <th scope="col">"Archive"</th>
                    </tr>
                </thead>
                <tbody>{body}</tbody>
            </table>
        </div>
        <nav class="pager" aria-label="History pages">
            {previous}
            <span>{format!("Page {page}")}</span>
            {next}
        </nav>
    }
    .into_any()
}

#[component]
fn HistoryRowView(row: HistoryRow) -> impl IntoView {
    let target = format!("{}/{}", row.namespace, row.pvc);
    let started = row.started_at.replace('T', " ");
    let started = started.get(..19).unwrap_or(&started).to_owned();
    let status_class = format!("status status-{}", row.status);
    let detail = match (&row.status[..], &row.stage, &row.message) {
        ("succeeded", _, _) => None,
        (_, Some(stage), Some(message)) => Some(format!("at {stage}: {message}")),
        (_, None, Some(message)) => Some(message.clone()),
        (_, Some(stage), None) => Some(format!("at {stage}")),
        _ => None,
    };
    let size = row.bytes.map_or_else(|| "—".to_owned(), format_bytes);
    let source = row
        .source_bytes
        .map(|b| format!("{} read", format_bytes(b)))
        .unwrap_or_default();
    let duration = row
        .duration_secs
        .map_or_else(|| "—".to_owned(), format_duration);
    let files = row.files.map_or_else(|| "—".to_owned(), |f| f.to_string());
    let downloads = match (&row.status[..], &row.archive_name) {
        ("succeeded", Some(_)) if row.pruned_at.is_some() => view! {
            <span class="pruned" data-testid="pruned">
                "pruned by retention"
            </span>
        }
        .into_any(),
        ("succeeded", Some(name)) => {
            let id = row.id;
            view! {
                <a href=format!("/download/{id}/archive") download="" data-testid="download-archive">
                    {name.clone()}
                </a>
                " "
                <a href=format!("/download/{id}/sha256") download="" data-testid="download-sha256">
                    "sha256"
                </a>
                " "
                <a href=format!("/download/{id}/manifest") download="">
                    "manifest"
                </a>
            }
            .into_any()
        }
        _ => "—".into_any(),
    };
    let verified = verification_cell(&row);
    let restorable = row.status == "succeeded";
    let run_id = row.run_id.clone();
    let (verifying, set_verifying) = signal(false);
    let (verify_result, set_verify_result) = signal(None::<Result<String, String>>);
    let verify_label = format!("Verify the backup of {target} started {started}");
    let restore_label = format!("Restore the backup of {target} started {started}");
    let restore_href = format!("/restore/{}", row.run_id);
    let restore_actions = restorable.then(move || {
        view! {
            <button
                type="button"
                class="verify"
                aria-label=verify_label
                disabled=move || verifying.get()
                on:click=move |_| {
                    set_verifying.set(true);
                    set_verify_result.set(None);
                    let run_id = run_id.clone();
                    leptos::task::spawn_local(async move {
                        let result = match verify_backup(run_id).await {
                            Ok(view) => Ok(format!("{}: {}", view.status, view.message)),
                            Err(error) => Err(user_message(&error)),
                        };
                        set_verify_result.set(Some(result));
                        set_verifying.set(false);
                    });
                }
            >
                {move || if verifying.get() { "Verifying…" } else { "Verify" }}
            </button>
            " "
            <a href=restore_href aria-label=restore_label data-testid="restore-link">
                "Restore…"
            </a>
        }
        .into_any()
    });
    let (row_target, row_id, row_status) = (target.clone(), row.run_id.clone(), row.status.clone());
    view! {
        <tr data-run=row_id data-pvc=row_target data-status=row_status>
            <td class="time">
                <time datetime=row.started_at.clone()>{started}</time>
            </td>
            <th scope="row">{target}</th>
            <td>
                <span class=status_class>{row.status.clone()}</span>
                {detail.map(|d| view! { <p class="detail">{d}</p> })}
            </td>
            <td data-testid="started-by">{row.started_by.clone()}</td>
            <td class="num">{duration}</td>
            <td class="num" title=source>
                {size}
            </td>
            <td class="num">{files}</td>
            <td>
                {row
                    .sha256
                    .map(|sum| {
                        view! {
                            <code class="sha256" data-testid="sha256">
                                {sum}
                            </code>
                        }
                    })}
            </td>
            <td data-testid="destination">{row.destination.clone()}</td>
            <td class="verified" data-testid="verified">
                {verified}
                {move || {
                    verify_result
                        .get()
                        .map(|result| match result {
                            Ok(text) => view! { <p class="verify-result" role="status">{text}</p> }.into_any(),
                            Err(text) => view! { <p class="error" role="alert">{text}</p> }.into_any(),
                        })
                }}
            </td>
            <td class="actions">{downloads} {restore_actions}</td>
        </tr>
    }
    .into_any()
}

/// The last verification of a backup: `verified 2026-11-29 10:00 by web:op`, `FAILED …` with what
/// was found, or `—`.
fn verification_cell(row: &HistoryRow) -> impl IntoView + use<> {
    let when = row
        .verified_at
        .as_deref()
        .map(|t| t.replace('T', " ").get(..16).unwrap_or_default().to_owned())
        .unwrap_or_default();
    let by = row.verified_by.clone().unwrap_or_default();
    match row.verify_status.as_deref() {
        Some("verified") => view! {
            <span class="status status-succeeded" title=row.verify_message.clone()>
                "verified"
            </span>
            <p class="detail">{format!("{when} by {by}")}</p>
        }
        .into_any(),
        Some(status) => view! {
            <span class="status status-failed">{status.to_owned()}</span>
            <p class="detail">{format!("{when} by {by}: {}", row.verify_message.clone().unwrap_or_default())}</p>
        }
        .into_any(),
        None => "—".into_any(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_links_keep_the_filters() {
        let query = HistoryQuery {
            namespace: Some("shop".into()),
            pvc: Some(String::new()),
            status: Some("failed".into()),
            from: Some("2026-11-01".into()),
            to: None,
            page: Some(3),
        };
        assert_eq!(
            query_string(&query, 2),
            "/history?namespace=shop&status=failed&from=2026-11-01&page=2"
        );
        assert_eq!(query_string(&HistoryQuery::default(), 1), "/history");
    }
}
