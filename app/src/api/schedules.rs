//! Schedule server functions: the Schedules page's data (stored schedules, those declared by
//! annotations with the problems found, next runs, coverage), creating, pausing, resuming and
//! removing stored schedules (admins; audited by the engine), and the retention preview (a dry
//! run). The scheduler itself runs in the server and re-reads the database every few seconds.
#![allow(
    clippy::too_many_arguments,
    reason = "`create_schedule` takes one argument per form field, also in the browser's generated stub"
)]

use leptos::prelude::*;

use crate::model::{PruneView, SchedulesView};

/// Every schedule with its next run and coverage, as of a fresh scan of the server's cluster.
#[server(endpoint = "schedules")]
pub async fn list_schedules() -> Result<SchedulesView, ServerFnError> {
    use nkvm_engine::auth::Role;
    use nkvm_engine::schedule::{self, declared, freshness};

    let caller = crate::ssr::require(Role::Viewer, "the schedules").await?;
    let ctx = crate::ssr::app_context()?;
    let connection = ctx.workspace.default_connection();
    let now = jiff::Timestamp::now();
    let store = ctx.workspace.store();
    let scanned = connection
        .scans
        .scan(
            &connection.cluster.client,
            &ctx.inventory,
            ctx.workspace.store(),
            None,
        )
        .await;
    let (records, scan_error) = match scanned {
        Ok(inventory) => (std::sync::Arc::unwrap_or_clone(inventory).pvcs, None),
        Err(error) => (Vec::new(), Some(error.to_string())),
    };
    let (namespaces, namespaces_unread) = if scan_error.is_none() {
        freshness::namespaces_or_warn(
            &connection.cluster.client,
            ctx.allowlist(),
            ctx.inventory.request_timeout,
        )
        .await
    } else {
        (Vec::new(), None)
    };
    let found = declared::collect(&records, &namespaces, Some(&ctx.schedules.destinations));
    let declared_now = scan_error.is_none().then_some(found.definitions.as_slice());
    let (schedules, broken) = schedule::catalog(store, declared_now, now)
        .await
        .map_err(|e| crate::ssr::AppError::internal("reading the schedules", e))?;
    let mut problems: Vec<crate::model::AnnotationProblem> = found
        .problems
        .into_iter()
        .map(|p| crate::model::AnnotationProblem {
            object: p.object,
            message: p.message,
        })
        .collect();
    problems.extend(broken.into_iter().map(|b| crate::model::AnnotationProblem {
        object: format!("schedule {}", b.name),
        message: b.message,
    }));
    let views = schedules
        .iter()
        .map(|s| {
            let summary = s.summary(now);
            let covered: Vec<_> = records.iter().filter(|r| s.target.matches(r)).collect();
            let overdue = covered
                .iter()
                .filter(|r| r.flags.contains(&nkvm_engine::domain::Flag::Overdue))
                .count();
            crate::model::ScheduleView {
                name: summary.name,
                source: summary.source,
                declared_on: summary.declared_on,
                cron: summary.cron,
                timezone: summary.timezone,
                cron_description: summary.cron_description,
                target: summary.target,
                destination: summary.destination,
                concurrency: summary.concurrency,
                retention: summary.retention.to_string(),
                rpo_seconds: summary.rpo_seconds,
                paused: summary.paused,
                next_run: summary.next_run,
                last_scheduled_at: summary.last_scheduled_at,
                covered: covered.len(),
                overdue,
            }
        })
        .collect();
    Ok(SchedulesView {
        schedules: views,
        problems,
        namespaces_unread,
        scan_error,
        destinations: ctx.schedules.destinations.clone(),
        default_retention: ctx.schedules.default_retention.to_string(),
        can_edit: caller.role.allows(Role::Admin),
    })
}

/// A number field of the form: empty means not set.
#[cfg(feature = "ssr")]
fn count(field: &str, text: &str) -> Result<Option<u32>, ServerFnError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| ServerFnError::new(format!("{field}: expected a whole number, got {text:?}")))
}

/// Words separated by spaces or commas.
#[cfg(feature = "ssr")]
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Creates a stored schedule (admins). Empty fields are unset; `pvcs` and `namespaces` are
/// separated by spaces or commas; give PVCs or a selector (namespaces, labels, owner kind).
#[server(endpoint = "schedules/create")]
pub async fn create_schedule(
    name: String,
    cron: String,
    timezone: String,
    pvcs: String,
    namespaces: String,
    selector: String,
    owner_kind: String,
    destination: String,
    concurrency: String,
    keep_last: String,
    keep_daily: String,
    keep_weekly: String,
    keep_monthly: String,
) -> Result<String, ServerFnError> {
    use nkvm_engine::backup::Requester;
    use nkvm_engine::schedule::{Definition, Retention, manage};

    let caller = crate::ssr::require(nkvm_engine::auth::Role::Admin, "managing schedules").await?;
    let ctx = crate::ssr::app_context()?;
    let mut definition = Definition::new(name.trim(), &cron);
    if !timezone.trim().is_empty() {
        timezone.trim().clone_into(&mut definition.timezone);
    }
    definition.pvcs = words(&pvcs);
    definition.namespaces = words(&namespaces);
    selector.trim().clone_into(&mut definition.selector);
    definition.owner_kind = Some(owner_kind.trim().to_owned()).filter(|k| !k.is_empty());
    definition.destination = Some(destination.trim().to_owned()).filter(|d| !d.is_empty());
    if !concurrency.trim().is_empty() {
        definition.concurrency = concurrency.trim().parse().map_err(|_| {
            ServerFnError::new(format!(
                "concurrency: expected 1 to 64, got {concurrency:?}"
            ))
        })?;
    }
    definition.retention = Retention {
        keep_last: count("keep last", &keep_last)?,
        keep_daily: count("keep daily", &keep_daily)?,
        keep_weekly: count("keep weekly", &keep_weekly)?,
        keep_monthly: count("keep monthly", &keep_monthly)?,
    };
    let who = Requester::web(&caller.user, &caller.source);
    manage::create(
        ctx.workspace.store(),
        &definition,
        &ctx.schedules.destinations,
        &who,
    )
    .await
    .map_err(schedule_error)?;
    Ok(definition.name)
}

#[cfg(feature = "ssr")]
fn schedule_error(error: nkvm_engine::schedule::ScheduleError) -> ServerFnError {
    match error {
        nkvm_engine::schedule::ScheduleError::Store(error) => {
            crate::ssr::AppError::internal("saving the schedule", error).into()
        }
        other => ServerFnError::new(other.to_string()),
    }
}

/// Pauses (`paused = "true"`) or resumes a stored schedule (admins).
#[server(endpoint = "schedules/pause")]
pub async fn pause_schedule(name: String, paused: String) -> Result<String, ServerFnError> {
    use nkvm_engine::backup::Requester;

    let caller = crate::ssr::require(nkvm_engine::auth::Role::Admin, "managing schedules").await?;
    let ctx = crate::ssr::app_context()?;
    let who = Requester::web(&caller.user, &caller.source);
    let paused = paused == "true";
    nkvm_engine::schedule::manage::set_paused(ctx.workspace.store(), &name, paused, &who)
        .await
        .map_err(schedule_error)?;
    Ok(name)
}

/// Removes a stored schedule (admins); its runs stay in the history.
#[server(endpoint = "schedules/delete")]
pub async fn delete_schedule(name: String) -> Result<String, ServerFnError> {
    use nkvm_engine::backup::Requester;

    let caller = crate::ssr::require(nkvm_engine::auth::Role::Admin, "managing schedules").await?;
    let ctx = crate::ssr::app_context()?;
    let who = Requester::web(&caller.user, &caller.source);
    nkvm_engine::schedule::manage::remove(ctx.workspace.store(), &name, &who)
        .await
        .map_err(schedule_error)?;
    Ok(name)
}

/// What retention would do now (a dry run of `nkvm prune`), backups to delete first.
#[server(endpoint = "schedules/retention-preview")]
pub async fn retention_preview() -> Result<Vec<PruneView>, ServerFnError> {
    use nkvm_engine::schedule::{self, prune};

    crate::ssr::require(nkvm_engine::auth::Role::Viewer, "the retention preview").await?;
    let ctx = crate::ssr::app_context()?;
    let store = ctx.workspace.store();
    let (schedules, _) = schedule::catalog(store, None, jiff::Timestamp::now())
        .await
        .map_err(|e| crate::ssr::AppError::internal("reading the schedules", e))?;
    let mut items = prune::plan(
        store,
        &schedules,
        &ctx.schedules.default_retention,
        ctx.allowlist(),
    )
    .await
    .map_err(|e| crate::ssr::AppError::internal("reading the backup history", e))?;
    items.sort_by_key(|i| i.action != prune::PruneAction::Delete);
    Ok(items
        .into_iter()
        .map(|i| PruneView {
            run_id: i.run_id,
            namespace: i.namespace,
            pvc: i.pvc,
            finished_at: i.finished_at,
            policy: i.policy,
            action: i.action.as_str().to_owned(),
            reasons: i.reasons,
        })
        .collect())
}
