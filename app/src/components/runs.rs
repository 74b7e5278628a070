//! The live runs panel: one row per backup, restore, verification or drill (running, queued,
//! recently finished) with stage, progress, rate, ETA and result. The server renders the current
//! runs; once hydrated, the panel follows the runs websocket (reconnecting when it drops) and
//! offers cancel and downloads.

use leptos::prelude::*;

use crate::api::{cancel_backup, cancel_restore, list_runs, user_message};
use crate::format::{format_bytes, format_duration, percent_done, progress_label};
use crate::model::{RunView, RunsMessage};

/// The runs of this session, shared by the panel and the page that starts backups.
#[derive(Debug, Clone, Copy)]
pub struct LiveRuns {
    /// The runs as the websocket last described them.
    pub runs: RwSignal<Vec<RunView>>,
    /// True once the websocket delivered its first snapshot.
    pub live: RwSignal<bool>,
    /// The last finished run, for the screen-reader announcement.
    pub announcement: RwSignal<String>,
    /// Changes each time the inventory changed on the server (a watched object, or a finished
    /// backup's freshness): the inventory page reads it again.
    pub inventory_changes: RwSignal<u64>,
}

impl LiveRuns {
    #[must_use]
    pub fn new() -> Self {
        Self {
            runs: RwSignal::new(Vec::new()),
            live: RwSignal::new(false),
            announcement: RwSignal::new(String::new()),
            inventory_changes: RwSignal::new(0),
        }
    }

    /// Adds a run the server just accepted (it may wait for a slot before its first event).
    pub fn add_queued(&self, run_id: String, target: &str) {
        let Some((namespace, pvc)) = target.split_once('/') else {
            return;
        };
        self.runs.update(|runs| {
            if !runs.iter().any(|r| r.run_id == run_id) {
                runs.insert(0, RunView::queued(run_id, namespace, pvc));
            }
        });
    }

    /// Applies one websocket message.
    pub fn apply(&self, message: RunsMessage) {
        match message {
            RunsMessage::Snapshot(views) => self.runs.set(views),
            RunsMessage::Inventory(_revision) => self.inventory_changes.update(|n| *n += 1),
            RunsMessage::Update(view) => {
                if view.status == "succeeded" {
                    // Its PVC's last backup changed.
                    self.inventory_changes.update(|n| *n += 1);
                }
                if is_finished(&view.status) {
                    self.announcement.set(format!(
                        "{} of {}/{} {}",
                        kind_label(&view.kind),
                        view.namespace,
                        view.pvc,
                        view.status
                    ));
                }
                self.runs.update(|runs| upsert(runs, *view));
            }
        }
    }
}

impl Default for LiveRuns {
    fn default() -> Self {
        Self::new()
    }
}

/// The word for a run's kind: `Backup`, `Restore`, `Verification`, `Drill`.
#[must_use]
pub fn kind_label(kind: &str) -> &'static str {
    match kind {
        "restore" => "Restore",
        "verify" => "Verification",
        "drill" => "Drill",
        _ => "Backup",
    }
}

/// True for a run that will not change any more.
#[must_use]
pub fn is_finished(status: &str) -> bool {
    !matches!(status, "running" | "queued")
}

/// Replaces the run with the same id, or puts a new one first.
pub fn upsert(runs: &mut Vec<RunView>, view: RunView) {
    match runs.iter_mut().find(|r| r.run_id == view.run_id) {
        Some(existing) => *existing = view,
        None => runs.insert(0, view),
    }
}

/// Subscribes to the runs websocket for as long as the page lives, reconnecting after a drop.
#[cfg(feature = "hydrate")]
fn follow(live: LiveRuns) {
    use futures::StreamExt;
    use leptos::server_fn::ServerFnError;

    leptos::task::spawn_local(async move {
        let mut delay_ms = 1_000;
        loop {
            // The sender stays alive while the socket is used: the server reads the browser's side
            // to notice a closed tab.
            let (_keep_open, receiver) =
                futures::channel::mpsc::channel::<Result<String, ServerFnError>>(1);
            if let Ok(mut messages) = crate::api::run_updates(receiver.into()).await {
                while let Some(Ok(message)) = messages.next().await {
                    live.live.set(true);
                    delay_ms = 1_000;
                    live.apply(message);
                }
            }
            live.live.set(false);
            sleep_ms(delay_ms).await;
            delay_ms = (delay_ms * 2).min(30_000);
        }
    });
}

/// Waits `ms` milliseconds (a browser timer).
#[cfg(feature = "hydrate")]
pub(crate) async fn sleep_ms(ms: u64) {
    let (done, wait) = futures::channel::oneshot::channel::<()>();
    set_timeout(
        move || {
            let _ = done.send(());
        },
        std::time::Duration::from_millis(ms),
    );
    let _ = wait.await;
}

/// The panel. Renders nothing but its heading and an empty note when there is no run.
#[component]
pub fn RunsPanel(
    live: LiveRuns,
    /// The note shown when there is no run.
    #[prop(optional)]
    empty: Option<&'static str>,
) -> impl IntoView {
    let empty =
        empty.unwrap_or("No backup is running. Select PVCs below and choose “Back up selected”.");
    let initial = Resource::new(|| (), |()| list_runs());
    #[cfg(feature = "hydrate")]
    Effect::new(move |started: Option<()>| {
        if started.is_none() {
            follow(live);
        }
    });
    view! {
        <section class="runs" aria-labelledby="runs-heading" data-testid="runs-panel">
            <h2 id="runs-heading">"Backups and restores"</h2>
            <p class="visually-hidden" role="status" aria-live="polite">
                {move || live.announcement.get()}
            </p>
            <Transition fallback=|| view! { <p class="loading">"Loading backups…"</p> }>
                {move || Suspend::new(async move {
                    match initial.await {
                        Ok(first) => {
                            let rows = Signal::derive(move || {
                                if live.live.get() { live.runs.get() } else { first.clone() }
                            });
                            view! { <RunsTable rows empty /> }.into_any()
                        }
                        Err(error) => {
                            view! {
                                <p class="error" role="alert">
                                    "The backups could not be loaded: "
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
fn RunsTable(rows: Signal<Vec<RunView>>, empty: &'static str) -> impl IntoView {
    view! {
        <p class="empty" hidden=move || !rows.with(Vec::is_empty)>
            {empty}
        </p>
        <div class="table-scroll" hidden=move || rows.with(Vec::is_empty)>
            <table class="data-table runs-table">
                <caption class="visually-hidden">
                    "Backups, restores, verifications and drills running now and finished in the last hour"
                </caption>
                <thead>
                    <tr>
                        <th scope="col">"PVC"</th>
                        <th scope="col">"Status"</th>
                        <th scope="col">"Stage"</th>
                        <th scope="col">"Progress"</th>
                        <th scope="col">"Elapsed"</th>
                        <th scope="col">"Result"</th>
                        <th scope="col">"Actions"</th>
                    </tr>
                </thead>
                <tbody>
                    <For
                        each=move || rows.get()
                        key=|run| {
                            (
                                run.run_id.clone(),
                                run.status.clone(),
                                run.stage.clone(),
                                run.progress.bytes,
                                run.history_id,
                            )
                        }
                        let(run)
                    >
                        <RunRow run />
                    </For>
                </tbody>
            </table>
        </div>
    }
}

#[component]
fn RunRow(run: RunView) -> impl IntoView {
    let target = format!("{}/{}", run.namespace, run.pvc);
    let finished = is_finished(&run.status);
    let is_backup = run.kind == "backup";
    let progress = if finished {
        match (run.status.as_str(), run.kind.as_str()) {
            ("succeeded", "backup") => format!(
                "{} read, archive {}",
                format_bytes(run.progress.bytes),
                format_bytes(run.archive_bytes)
            ),
            ("succeeded", "verify") => format!("{} checked", format_bytes(run.progress.bytes)),
            ("succeeded", _) => format!("{} restored", format_bytes(run.progress.bytes)),
            _ => String::new(),
        }
    } else {
        progress_label(
            run.progress.bytes,
            run.progress.total_bytes,
            run.progress.rate_bytes_per_sec,
        )
    };
    let percent = (!finished)
        .then(|| percent_done(run.progress.bytes, run.progress.total_bytes))
        .flatten();
    let status_class = format!("status status-{}", run.status);
    let failed = run.status == "failed" || run.status == "interrupted";
    let stage_text = if failed {
        format!("failed at {}", run.stage)
    } else if run.status == "succeeded" {
        "done".to_owned()
    } else {
        run.stage.clone()
    };
    let message = run.message.clone().unwrap_or_default();
    let actions = if finished {
        match run.history_id {
            Some(id) if run.status == "succeeded" && is_backup => view! {
                <a href=format!("/download/{id}/archive") download="">"Archive"</a>
                " "
                <a href=format!("/download/{id}/sha256") download="">"sha256"</a>
            }
            .into_any(),
            _ => ().into_any(),
        }
    } else {
        let run_id = run.run_id.clone();
        let label = format!(
            "Cancel the {} of {target}",
            kind_label(&run.kind).to_lowercase()
        );
        let (pending, set_pending) = signal(false);
        view! {
            <button
                type="button"
                class="cancel"
                aria-label=label
                disabled=move || pending.get()
                on:click=move |_| {
                    set_pending.set(true);
                    let run_id = run_id.clone();
                    leptos::task::spawn_local(async move {
                        let _ = if is_backup {
                            cancel_backup(run_id).await
                        } else {
                            cancel_restore(run_id).await
                        };
                    });
                }
            >
                "Cancel"
            </button>
        }
        .into_any()
    };
    let (row_target, row_id, row_status) = (target.clone(), run.run_id.clone(), run.status.clone());
    let kind = (!is_backup).then(|| {
        view! { <span class="kind">{kind_label(&run.kind)}</span> " " }
    });
    view! {
        <tr data-run=row_id data-pvc=row_target data-status=row_status data-kind=run.kind.clone()>
            <th scope="row">{kind}{target}</th>
            <td>
                <span class=status_class>{run.status.clone()}</span>
            </td>
            <td class="stage">{stage_text}</td>
            <td class="progress">
                {percent
                    .map(|p| {
                        view! {
                            <progress max="100" value=format!("{p:.1}") aria-hidden="true"></progress>
                        }
                    })}
                <span class="progress-text">{progress}</span>
            </td>
            <td class="num">{format_duration(run.progress.elapsed_secs)}</td>
            <td class="message">
                {message}
                {run
                    .sha256
                    .map(|sum| {
                        view! {
                            <code class="sha256" title="sha256 of the archive">
                                {sum}
                            </code>
                        }
                    })}
            </td>
            <td class="actions">{actions}</td>
        </tr>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Progress;

    fn view(id: &str, status: &str, bytes: u64) -> RunView {
        RunView {
            progress: Progress {
                bytes,
                ..Progress::default()
            },
            status: status.to_owned(),
            ..RunView::queued(id.to_owned(), "ns", "pvc")
        }
    }

    #[test]
    fn updates_replace_runs_in_place_and_new_runs_come_first() {
        let mut runs = vec![view("a", "running", 1), view("b", "running", 1)];
        upsert(&mut runs, view("b", "running", 7));
        assert_eq!(
            runs.iter().map(|r| r.progress.bytes).collect::<Vec<_>>(),
            [1, 7]
        );
        upsert(&mut runs, view("c", "queued", 0));
        assert_eq!(
            runs.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(),
            ["c", "a", "b"]
        );
    }

    #[test]
    fn finished_means_neither_running_nor_queued() {
        assert!(!is_finished("running"));
        assert!(!is_finished("queued"));
        for status in ["succeeded", "failed", "interrupted"] {
            assert!(is_finished(status), "{status}");
        }
    }
}
