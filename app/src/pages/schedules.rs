//! The Schedules page: every schedule with its cron time, target, next run, retention and how many
//! PVCs it covers (and how many of those are overdue); admins create, pause, resume and remove
//! stored schedules here, while schedules declared by `nkvm.io/*` annotations are shown read-only,
//! with every invalid annotation listed. Below, the retention preview: what `nkvm prune` would
//! delete now. Plain forms: they work without JavaScript (the server redirects back here).

use leptos::prelude::*;

use crate::api::{
    CreateSchedule, DeleteSchedule, PauseSchedule, list_schedules, retention_preview,
};
use crate::components::alert::{error_alert, error_of};
use crate::format::format_duration;
use crate::model::{PruneView, ScheduleView, SchedulesView};

/// `2026-11-29 03:00` from an RFC 3339 UTC time.
fn minute(text: &str) -> String {
    let text = text.replace('T', " ");
    text.get(..16).unwrap_or(&text).to_owned()
}

/// The Schedules page at `/schedules`.
#[component]
pub fn SchedulesPage() -> impl IntoView {
    let create = ServerAction::<CreateSchedule>::new();
    let pause = ServerAction::<PauseSchedule>::new();
    let delete = ServerAction::<DeleteSchedule>::new();
    let changes = move || {
        (
            create.version().get(),
            pause.version().get(),
            delete.version().get(),
        )
    };
    let data = Resource::new(changes, |_| list_schedules());
    let preview = Resource::new(changes, |_| retention_preview());
    view! {
        <section class="schedules" aria-labelledby="schedules-heading">
            <h1 id="schedules-heading">"Schedules"</h1>
            <p class="hint">
                "Schedules run inside the nkvm server; changes made here or with "
                <code>"nkvm schedule"</code>
                " apply within seconds. Times are UTC."
            </p>
            {error_of(move || pause.value().get())}
            {error_of(move || delete.value().get())}
            <Transition fallback=|| view! { <p class="loading" role="status">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match data.await {
                        Ok(view) => view! { <SchedulesBody view pause delete create /> }.into_any(),
                        Err(error) => error_alert(&error),
                    }
                })}
            </Transition>
            <h2 id="preview-heading">"Retention preview"</h2>
            <p class="hint">
                "What retention would delete now (a dry run of " <code>"nkvm prune"</code>
                "). A PVC’s newest successful backup is never deleted."
            </p>
            <Transition fallback=|| view! { <p class="loading" role="status">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match preview.await {
                        Ok(items) => view! { <Preview items /> }.into_any(),
                        Err(error) => error_alert(&error),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn SchedulesBody(
    view: SchedulesView,
    pause: ServerAction<PauseSchedule>,
    delete: ServerAction<DeleteSchedule>,
    create: ServerAction<CreateSchedule>,
) -> impl IntoView {
    let SchedulesView {
        schedules,
        problems,
        namespaces_unread,
        scan_error,
        destinations,
        default_retention,
        can_edit,
    } = view;
    let notices = (!problems.is_empty()).then(|| {
        let items = problems
            .into_iter()
            .map(|p| {
                view! {
                    <li>
                        <strong>{p.object}</strong>
                        {format!(": {}", p.message)}
                    </li>
                }
            })
            .collect_view();
        view! {
            <div class="warning" role="status" data-testid="annotation-problems">
                <h2>"Invalid schedule annotations"</h2>
                <ul>{items}</ul>
            </div>
        }
    });
    let empty = schedules.is_empty();
    let rows = schedules
        .into_iter()
        .map(|schedule| view! { <ScheduleRow schedule can_edit pause delete /> })
        .collect_view();
    view! {
        {scan_error
            .map(|e| {
                view! {
                    <p class="warning" role="status">
                        {format!("The cluster could not be scanned (declared schedules and coverage unknown): {e}")}
                    </p>
                }
            })}
        {namespaces_unread.map(|e| view! { <p class="hint">{e}</p> })}
        {notices}
        <p class="hint">{format!("Default retention (backups no schedule’s own retention covers): {default_retention}.")}</p>
        <div class="table-scroll">
            <table class="data-table schedules-table">
                <caption class="visually-hidden">"Schedules"</caption>
                <thead>
                    <tr>
                        <th scope="col">"Name"</th>
                        <th scope="col">"When"</th>
                        <th scope="col">"Target"</th>
                        <th scope="col">"Next run"</th>
                        <th scope="col">"Retention"</th>
                        <th scope="col">"PVCs"</th>
                        <th scope="col">"Source"</th>
                        <th scope="col">"Actions"</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
        <p class="empty" hidden=!empty>
            "No schedules yet."
        </p>
        {can_edit.then(|| view! { <CreateForm create destinations /> })}
    }
}

#[component]
fn ScheduleRow(
    schedule: ScheduleView,
    can_edit: bool,
    pause: ServerAction<PauseSchedule>,
    delete: ServerAction<DeleteSchedule>,
) -> impl IntoView {
    let next = match (&schedule.next_run, schedule.paused) {
        (_, true) => "paused".to_owned(),
        (Some(next), false) => minute(next),
        (None, false) => "—".to_owned(),
    };
    let rpo = schedule
        .rpo_seconds
        .map(|s| format!("RPO {}", format_duration(s as f64)))
        .unwrap_or_default();
    let coverage = if schedule.overdue > 0 {
        format!("{} ({} overdue)", schedule.covered, schedule.overdue)
    } else {
        schedule.covered.to_string()
    };
    let source = match &schedule.declared_on {
        Some(object) => format!("annotations on {object} (read-only)"),
        None => "stored".to_owned(),
    };
    let actions = (can_edit && schedule.declared_on.is_none()).then(|| {
        let (name, name2) = (schedule.name.clone(), schedule.name.clone());
        let (toggle, label) = if schedule.paused {
            ("false", "Resume")
        } else {
            ("true", "Pause")
        };
        view! {
            <ActionForm action=pause attr:class="inline">
                <input type="hidden" name="name" value=name />
                <input type="hidden" name="paused" value=toggle />
                <button type="submit">{label}</button>
            </ActionForm>
            <ActionForm action=delete attr:class="inline">
                <input type="hidden" name="name" value=name2 />
                <button type="submit" class="danger">
                    "Delete"
                </button>
            </ActionForm>
        }
    });
    let last = schedule
        .last_scheduled_at
        .as_deref()
        .map(|t| format!("last {}", minute(t)));
    view! {
        <tr data-schedule=schedule.name.clone() data-paused=schedule.paused.to_string()>
            <th scope="row">{schedule.name.clone()}</th>
            <td>
                <code>{schedule.cron.clone()}</code>
                {format!(" ({})", schedule.timezone)}
                <p class="detail">{schedule.cron_description.clone()}</p>
            </td>
            <td>
                {schedule.target.clone()}
                {schedule
                    .destination
                    .clone()
                    .map(|d| view! { <p class="detail">{format!("to {d}")}</p> })}
            </td>
            <td data-testid="next-run">
                {next}
                {last.map(|l| view! { <p class="detail">{l}</p> })}
            </td>
            <td>
                {schedule.retention.clone()}
                <p class="detail">{rpo}</p>
            </td>
            <td class="num" data-testid="coverage">{coverage}</td>
            <td>{source}</td>
            <td class="actions">{actions}</td>
        </tr>
    }
}

#[component]
fn CreateForm(create: ServerAction<CreateSchedule>, destinations: Vec<String>) -> impl IntoView {
    let options = destinations
        .into_iter()
        .map(|d| view! { <option value=d.clone()>{d.clone()}</option> })
        .collect_view();
    view! {
        <h2 id="create-heading">"New schedule"</h2>
        <ActionForm action=create attr:class="schedule-form" attr:aria-labelledby="create-heading">
            <div class="field">
                <label for="s-name">"Name"</label>
                <input id="s-name" name="name" required autocomplete="off" placeholder="nightly" />
            </div>
            <div class="field">
                <label for="s-cron">"Cron (minute hour day month weekday)"</label>
                <input id="s-cron" name="cron" required autocomplete="off" placeholder="0 3 * * *" />
            </div>
            <div class="field">
                <label for="s-tz">"Time zone"</label>
                <input id="s-tz" name="timezone" value="UTC" autocomplete="off" />
            </div>
            <div class="field">
                <label for="s-pvcs">"PVCs (NS/PVC, space-separated)"</label>
                <input id="s-pvcs" name="pvcs" autocomplete="off" />
            </div>
            <div class="field">
                <label for="s-ns">"or namespaces"</label>
                <input id="s-ns" name="namespaces" autocomplete="off" />
            </div>
            <div class="field">
                <label for="s-selector">"Label selector"</label>
                <input id="s-selector" name="selector" autocomplete="off" placeholder="app=db" />
            </div>
            <div class="field">
                <label for="s-owner">"Owner kind"</label>
                <input id="s-owner" name="owner_kind" autocomplete="off" placeholder="StatefulSet" />
            </div>
            <div class="field">
                <label for="s-dest">"Destination"</label>
                <select id="s-dest" name="destination">
                    <option value="">"Default"</option>
                    {options}
                </select>
            </div>
            <div class="field">
                <label for="s-conc">"Concurrency"</label>
                <input id="s-conc" name="concurrency" type="number" min="1" max="64" value="1" />
            </div>
            <div class="field">
                <label for="s-last">"Keep last"</label>
                <input id="s-last" name="keep_last" type="number" min="0" />
            </div>
            <div class="field">
                <label for="s-daily">"Keep daily"</label>
                <input id="s-daily" name="keep_daily" type="number" min="0" />
            </div>
            <div class="field">
                <label for="s-weekly">"Keep weekly"</label>
                <input id="s-weekly" name="keep_weekly" type="number" min="0" />
            </div>
            <div class="field">
                <label for="s-monthly">"Keep monthly"</label>
                <input id="s-monthly" name="keep_monthly" type="number" min="0" />
            </div>
            <button type="submit" class="primary">
                "Create schedule"
            </button>
        </ActionForm>
        {error_of(move || create.value().get())}
    }
}

#[component]
fn Preview(items: Vec<PruneView>) -> impl IntoView {
    if items.is_empty() {
        return view! {
            <p class="empty" data-testid="retention-preview">
                "No successful backup falls under a retention policy yet."
            </p>
        }
        .into_any();
    }
    let deletions = items.iter().filter(|i| i.action == "delete").count();
    let rows = items
        .into_iter()
        .map(|item| {
            let why = if item.reasons.is_empty() {
                "—".to_owned()
            } else {
                item.reasons.join("; ")
            };
            let class = format!("status status-{}", item.action);
            let action = item.action.clone();
            view! {
                <tr data-run=item.run_id data-action=action>
                    <th scope="row">{format!("{}/{}", item.namespace, item.pvc)}</th>
                    <td class="time">{minute(&item.finished_at)}</td>
                    <td>{item.policy}</td>
                    <td>
                        <span class=class>{item.action}</span>
                    </td>
                    <td>{why}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <p class="count" data-testid="retention-preview">
            {format!("{deletions} backup(s) would be deleted")}
        </p>
        <div class="table-scroll">
            <table class="data-table preview-table">
                <caption class="visually-hidden">"Retention preview"</caption>
                <thead>
                    <tr>
                        <th scope="col">"PVC"</th>
                        <th scope="col">"Finished (UTC)"</th>
                        <th scope="col">"Policy"</th>
                        <th scope="col">"Action"</th>
                        <th scope="col">"Why kept"</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
    }
    .into_any()
}
