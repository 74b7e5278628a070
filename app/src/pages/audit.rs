//! The audit page (administrators): who did what, when and from where — logins, failed logins,
//! logouts, backups started and cancelled, downloads, connection changes and refusals — newest
//! first, filterable by actor and action, with a CSV export.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use crate::api::{list_audit, user_message};
use crate::model::{AuditPage, AuditQuery};
use crate::table::encode_component;

const ACTIONS: [&str; 10] = [
    "login",
    "login_failed",
    "logout",
    "backup_started",
    "backup_cancelled",
    "download",
    "connection_changed",
    "access_denied",
    "schedule_changed",
    "backup_pruned",
];

fn page_link(query: &AuditQuery, page: u32) -> String {
    let mut pairs = Vec::new();
    if let Some(actor) = query.actor.as_deref().filter(|a| !a.is_empty()) {
        pairs.push(format!("actor={}", encode_component(actor)));
    }
    if let Some(action) = query.action.as_deref().filter(|a| !a.is_empty()) {
        pairs.push(format!("action={}", encode_component(action)));
    }
    pairs.push(format!("page={page}"));
    format!("/audit?{}", pairs.join("&"))
}

/// The audit page at `/audit`.
#[component]
pub fn AuditPageView() -> impl IntoView {
    let params = use_query_map();
    let query = Memo::new(move |_| {
        params.with(|q| AuditQuery {
            actor: q.get("actor"),
            action: q.get("action"),
            page: q.get("page").and_then(|p| p.parse().ok()),
        })
    });
    let events = Resource::new(move || query.get(), list_audit);
    let options = ACTIONS
        .into_iter()
        .map(|action| {
            let selected = move || query.with(|q| q.action.as_deref() == Some(action));
            view! {
                <option value=action selected=selected>
                    {action}
                </option>
            }
        })
        .collect_view();
    view! {
        <section class="audit" aria-labelledby="audit-heading">
            <h1 id="audit-heading">"Audit trail"</h1>
            <form class="toolbar" method="get" action="/audit" aria-label="Audit filters">
                <div class="field">
                    <label for="a-actor">"User"</label>
                    <input
                        id="a-actor"
                        name="actor"
                        autocomplete="off"
                        prop:value=move || query.with(|q| q.actor.clone().unwrap_or_default())
                    />
                </div>
                <div class="field">
                    <label for="a-action">"Action"</label>
                    <select id="a-action" name="action">
                        <option value="">"Any"</option>
                        {options}
                    </select>
                </div>
                <button type="submit">"Apply"</button>
                <a href="/audit.csv" download="">"Export CSV"</a>
            </form>
            <Transition fallback=|| view! { <p class="loading" role="status">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match events.await {
                        Ok(page) => view! { <AuditTable page query=query.get_untracked() /> }.into_any(),
                        Err(error) => {
                            view! {
                                <p class="error" role="alert">
                                    {user_message(&error)}
                                </p>
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
fn AuditTable(page: AuditPage, query: AuditQuery) -> impl IntoView {
    let AuditPage {
        rows,
        page,
        has_more,
    } = page;
    let body = rows
        .into_iter()
        .map(|row| {
            let outcome_class = format!("status status-{}", row.outcome);
            let (action, actor) = (row.action.clone(), row.actor.clone());
            view! {
                <tr data-action=action data-actor=actor>
                    <td class="time">{row.at.replace('T', " ")}</td>
                    <th scope="row">{row.actor}</th>
                    <td>{row.action}</td>
                    <td>{row.target.unwrap_or_default()}</td>
                    <td>
                        <span class=outcome_class>{row.outcome}</span>
                    </td>
                    <td>{row.detail.unwrap_or_default()}</td>
                    <td>{row.source.unwrap_or_default()}</td>
                </tr>
            }
        })
        .collect_view();
    let newer = (page > 1).then(|| {
        let href = page_link(&query, page - 1);
        view! { <a rel="prev" href=href>"← Newer"</a> }
    });
    let older = has_more.then(|| {
        let href = page_link(&query, page + 1);
        view! { <a rel="next" href=href>"Older →"</a> }
    });
    view! {
        <div class="table-scroll">
            <table class="data-table audit-table">
                <caption class="visually-hidden">"Audit events, newest first"</caption>
                <thead>
                    <tr>
                        <th scope="col">"When (UTC)"</th>
                        <th scope="col">"User"</th>
                        <th scope="col">"Action"</th>
                        <th scope="col">"Target"</th>
                        <th scope="col">"Outcome"</th>
                        <th scope="col">"Detail"</th>
                        <th scope="col">"From"</th>
                    </tr>
                </thead>
                <tbody>{body}</tbody>
            </table>
        </div>
        <nav class="pager" aria-label="Audit pages">
            {newer}
            <span>{format!("Page {page}")}</span>
            {older}
        </nav>
    }
}
