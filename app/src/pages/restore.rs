//! The restore page at `/restore/<run id>`: the backup (PVC, time, size, sha256, last
//! verification), a restore into a new PVC (name, namespace, storage class and size, defaulting to
//! the backup's PVC), a guarded restore in place (the plan first: the pods using the PVC and the
//! workloads that will be scaled down; optionally replacing the contents; the PVC's name typed to
//! confirm), a restore drill, and the runs panel following them live. Starting needs JavaScript;
//! the page itself renders without it.

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

use crate::api::{restore_plan, restore_source, start_drill, start_restore, user_message};
use crate::components::runs::{LiveRuns, RunsPanel};
use crate::format::format_bytes;
use crate::model::{InPlacePlanView, RestoreForm, RestoreSourceView, StartOutcome};

/// The restore page.
#[component]
pub fn RestorePage() -> impl IntoView {
    let params = use_params_map();
    let run_id = Memo::new(move |_| params.with(|p| p.get("run_id").unwrap_or_default()));
    let source = Resource::new(move || run_id.get(), restore_source);
    let live = LiveRuns::new();
    view! {
        <section class="restore" aria-labelledby="restore-heading">
            <h1 id="restore-heading">"Restore a backup"</h1>
            <Transition fallback=|| view! { <p class="loading" role="status">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match source.await {
                        Ok(source) => view! { <RestoreForms source live /> }.into_any(),
                        Err(error) => {
                            view! {
                                <div class="error" role="alert">
                                    <h2>"This backup cannot be restored"</h2>
                                    <p>{user_message(&error)}</p>
                                </div>
                            }
                                .into_any()
                        }
                    }
                })}
            </Transition>
        </section>
        <RunsPanel live empty="No restore is running. Start one above." />
    }
}

/// What starting gave, for the `role=status`/`role=alert` line under a button.
fn outcome_line(outcome: Option<Result<String, String>>) -> impl IntoView {
    outcome.map(|result| match result {
        Ok(text) => view! { <p class="started" role="status">{text}</p> }.into_any(),
        Err(text) => view! { <p class="error" role="alert">{text}</p> }.into_any(),
    })
}

fn started(
    outcome: Result<StartOutcome, ServerFnError>,
    live: LiveRuns,
    target: &str,
) -> Result<String, String> {
    match outcome {
        Ok(StartOutcome {
            run_id: Some(id), ..
        }) => {
            live.add_queued(id.clone(), target);
            Ok(format!(
                "Restore {id} started; its progress is shown below."
            ))
        }
        Ok(StartOutcome { error, .. }) => Err(error.unwrap_or_else(|| "not started".to_owned())),
        Err(error) => Err(user_message(&error)),
    }
}

#[component]
fn RestoreForms(source: RestoreSourceView, live: LiveRuns) -> impl IntoView {
    let target = format!("{}/{}", source.namespace, source.pvc);
    let finished = source
        .finished_at
        .clone()
        .map(|t| t.replace('T', " ").get(..19).unwrap_or_default().to_owned())
        .unwrap_or_default();
    let verification = match (
        source.verify_status.as_deref(),
        source.verified_at.as_deref(),
    ) {
        (Some(status), Some(at)) => format!(
            "{status} at {}",
            at.replace('T', " ").get(..19).unwrap_or_default()
        ),
        _ => "not verified yet (a restore verifies it first)".to_owned(),
    };
    let summary = view! {
        <dl class="summary" data-testid="restore-source">
            <dt>"Backup"</dt>
            <dd>{source.run_id.clone()}</dd>
            <dt>"PVC"</dt>
            <dd>{target.clone()}</dd>
            <dt>"Finished (UTC)"</dt>
            <dd>{finished}</dd>
            <dt>"Content"</dt>
            <dd>
                {format!(
                    "{} files, {} (archive {})",
                    source.files.unwrap_or(0),
                    format_bytes(source.source_bytes.unwrap_or(0)),
                    format_bytes(source.bytes.unwrap_or(0)),
                )}
            </dd>
            <dt>"sha256"</dt>
            <dd>
                <code class="sha256">{source.sha256.clone().unwrap_or_default()}</code>
            </dd>
            <dt>"Verification"</dt>
            <dd>{verification}</dd>
        </dl>
    };
    let rules = Trust {
        setuid: RwSignal::new(false),
        symlinks: RwSignal::new(false),
    };
    view! {
        {summary}
        <fieldset class="restore-rules" aria-labelledby="rules-legend">
            <legend id="rules-legend">"Safety checks"</legend>
            <p>
                "Before anything is written, every entry of the archive is checked: absolute paths, "
                "`..`, device files and FIFOs are always refused. These two are refused unless you "
                "trust the archive:"
            </p>
            <div class="field checkbox">
                <input id="r-setuid" type="checkbox" bind:checked=rules.setuid />
                <label for="r-setuid">"Restore setuid/setgid files"</label>
            </div>
            <div class="field checkbox">
                <input id="r-symlinks" type="checkbox" bind:checked=rules.symlinks />
                <label for="r-symlinks">"Restore symlinks that point outside the volume"</label>
            </div>
        </fieldset>
        <NewPvcForm source=source.clone() live rules />
        <InPlaceForm source=source.clone() live rules />
        <DrillForm target />
    }
}

/// What the restore may accept beyond the safe default, chosen on the page.
#[derive(Debug, Clone, Copy)]
struct Trust {
    setuid: RwSignal<bool>,
    symlinks: RwSignal<bool>,
}

#[component]
fn NewPvcForm(source: RestoreSourceView, live: LiveRuns, rules: Trust) -> impl IntoView {
    let name = RwSignal::new(format!("{}-restored", source.pvc));
    let namespace = RwSignal::new(source.namespace.clone());
    let storage_class = RwSignal::new(String::new());
    let size = RwSignal::new(String::new());
    let (pending, set_pending) = signal(false);
    let (outcome, set_outcome) = signal(None::<Result<String, String>>);
    let run_id = source.run_id.clone();
    let class_hint = source.storage_class.clone().map_or_else(
        || "the cluster's default".to_owned(),
        |c| format!("{c} (the backup's)"),
    );
    let size_hint = source
        .capacity
        .clone()
        .map_or_else(|| "required".to_owned(), |c| format!("{c} (the backup's)"));
    let submit = move |_| {
        set_pending.set(true);
        set_outcome.set(None);
        let form = RestoreForm {
            run_id: run_id.clone(),
            in_place: false,
            to_pvc: name.get_untracked(),
            to_namespace: namespace.get_untracked(),
            storage_class: storage_class.get_untracked(),
            size: size.get_untracked(),
            allow_setuid: rules.setuid.get_untracked(),
            allow_escaping_symlinks: rules.symlinks.get_untracked(),
            ..RestoreForm::default()
        };
        let target = format!("{}/{}", form.to_namespace, form.to_pvc);
        leptos::task::spawn_local(async move {
            let result = started(start_restore(form).await, live, &target);
            set_outcome.set(Some(result));
            set_pending.set(false);
        });
    };
    view! {
        <fieldset class="restore-new" aria-labelledby="new-pvc-legend">
            <legend id="new-pvc-legend">"Into a new PVC"</legend>
            <p>"nkvm creates the PVC, restores the backup into it and leaves it Bound with the data."</p>
            <div class="field">
                <label for="r-name">"New PVC name"</label>
                <input id="r-name" autocomplete="off" bind:value=name />
            </div>
            <div class="field">
                <label for="r-namespace">"Namespace"</label>
                <input id="r-namespace" autocomplete="off" bind:value=namespace />
            </div>
            <div class="field">
                <label for="r-class">"Storage class"</label>
                <input id="r-class" autocomplete="off" placeholder=class_hint bind:value=storage_class />
            </div>
            <div class="field">
                <label for="r-size">"Size"</label>
                <input id="r-size" autocomplete="off" placeholder=size_hint bind:value=size />
            </div>
            <button type="button" data-testid="restore-new" disabled=move || pending.get() on:click=submit>
                "Restore into a new PVC"
            </button>
            {move || outcome_line(outcome.get())}
        </fieldset>
    }
}

fn plan_view(plan: &InPlacePlanView) -> impl IntoView + use<> {
    let users = if plan.users.is_empty() {
        "No pod uses it now.".to_owned()
    } else {
        format!("Used by pod(s): {}.", plan.users.join(", "))
    };
    let workloads = plan
        .workloads
        .iter()
        .map(|(workload, replicas)| {
            view! {
                <li>{format!("{workload}: {replicas} → 0 replicas, then back to {replicas}")}</li>
            }
        })
        .collect_view();
    let refusal = plan
        .refusal
        .clone()
        .map(|r| view! { <p class="error" role="alert">{r}</p> });
    view! {
        <div class="plan" data-testid="restore-plan">
            <p>{users}</p>
            <ul>{workloads}</ul>
            {refusal}
        </div>
    }
}

#[component]
fn InPlaceForm(source: RestoreSourceView, live: LiveRuns, rules: Trust) -> impl IntoView {
    let pvc = source.pvc.clone();
    let target = format!("{}/{}", source.namespace, source.pvc);
    let run_id = source.run_id.clone();
    let plan = RwSignal::new(None::<Result<InPlacePlanView, String>>);
    let wipe = RwSignal::new(false);
    let confirm = RwSignal::new(String::new());
    let (pending, set_pending) = signal(false);
    let (outcome, set_outcome) = signal(None::<Result<String, String>>);
    let show_plan = {
        let run_id = run_id.clone();
        move |_| {
            let run_id = run_id.clone();
            leptos::task::spawn_local(async move {
                plan.set(Some(
                    restore_plan(run_id).await.map_err(|e| user_message(&e)),
                ));
            });
        }
    };
    let ready = {
        let pvc = pvc.clone();
        move || {
            confirm.get().trim() == pvc
                && plan.with(|p| matches!(p, Some(Ok(plan)) if plan.refusal.is_none()))
        }
    };
    let submit = move |_| {
        set_pending.set(true);
        set_outcome.set(None);
        let form = RestoreForm {
            run_id: run_id.clone(),
            in_place: true,
            wipe: wipe.get_untracked(),
            confirm: confirm.get_untracked(),
            allow_setuid: rules.setuid.get_untracked(),
            allow_escaping_symlinks: rules.symlinks.get_untracked(),
            ..RestoreForm::default()
        };
        let target = target.clone();
        leptos::task::spawn_local(async move {
            let result = started(start_restore(form).await, live, &target);
            set_outcome.set(Some(result));
            set_pending.set(false);
        });
    };
    let confirm_label = format!("Type {pvc} to confirm");
    view! {
        <fieldset class="restore-in-place" aria-labelledby="in-place-legend">
            <legend id="in-place-legend">"Into its own PVC, in place"</legend>
            <p>
                "The workloads using the PVC are scaled to 0 (their replica counts are recorded on them), "
                "the backup is written into it, and they are scaled back — also if the restore fails."
            </p>
            <button type="button" data-testid="restore-show-plan" on:click=show_plan>
                "Show the plan"
            </button>
            {move || {
                plan.get()
                    .map(|p| match p {
                        Ok(plan) => plan_view(&plan).into_any(),
                        Err(text) => view! { <p class="error" role="alert">{text}</p> }.into_any(),
                    })
            }}
            <div class="field checkbox">
                <input id="r-wipe" type="checkbox" bind:checked=wipe />
                <label for="r-wipe">"Replace the contents (delete the files that are not in the backup)"</label>
            </div>
            <div class="field">
                <label for="r-confirm">{confirm_label}</label>
                <input id="r-confirm" autocomplete="off" bind:value=confirm />
            </div>
            <button
                type="button"
                class="danger"
                data-testid="restore-in-place"
                disabled=move || pending.get() || !ready()
                on:click=submit
            >
                "Restore in place"
            </button>
            {move || outcome_line(outcome.get())}
        </fieldset>
    }
}

#[component]
fn DrillForm(target: String) -> impl IntoView {
    let (outcome, set_outcome) = signal(None::<Result<String, String>>);
    let label = format!("Run a restore drill of {target}");
    let click = move |_| {
        let target = target.clone();
        leptos::task::spawn_local(async move {
            let result = match start_drill(target).await {
                Ok(()) => Ok("Drill started; its progress is shown below.".to_owned()),
                Err(error) => Err(user_message(&error)),
            };
            set_outcome.set(Some(result));
        });
    };
    view! {
        <fieldset class="restore-drill" aria-labelledby="drill-legend">
            <legend id="drill-legend">"Restore drill"</legend>
            <p>
                "Restores the PVC's newest successful backup into a throwaway PVC, checks its content "
                "against the backup, and removes it."
            </p>
            <button type="button" data-testid="restore-drill" on:click=click>
                {label}
            </button>
            {move || outcome_line(outcome.get())}
        </fieldset>
    }
}
