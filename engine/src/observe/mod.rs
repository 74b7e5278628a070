//! What nkvm tells the outside world about its backups: Prometheus metrics ([`Metrics`]) and webhook
//! notifications ([`Notifier`]), both fed by [`follow`], which watches a backup engine's runs end.

pub mod metrics;
pub mod notify;

use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

pub use self::metrics::Metrics;
pub use self::notify::Notifier;
use crate::backup::{BackupEngine, ProgressEvent};
use crate::store::{RunFilter, RunRecord, Store};

/// The history row of a finished run, or (a run refused before it had one, e.g. its PVC is gone)
/// a row built from its last event.
async fn finished_record(store: &Store, event: &ProgressEvent) -> RunRecord {
    let filter = RunFilter {
        run_id: Some(event.run_id.clone()),
        limit: 1,
        ..RunFilter::default()
    };
    if let Ok(rows) = store.recent_runs(&filter).await
        && let Some(row) = rows.into_iter().next()
        && row.status.is_finished()
    {
        return row;
    }
    let now = crate::timestamp::rfc3339(jiff::Timestamp::now());
    let started = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_secs_f64(
            event.elapsed_secs.max(0.0),
        ))
        .map_or_else(|_| now.clone(), crate::timestamp::rfc3339);
    RunRecord {
        stage: Some(event.stage),
        message: event.message.clone(),
        finished_at: Some(now),
        ..RunRecord::unrecorded(
            &event.run_id,
            &event.namespace,
            &event.pvc,
            event.status,
            &event.started_by,
            started,
        )
    }
}

/// Loads each PVC's last success from the history into `metrics` (at start-up).
pub async fn load_last_successes(
    store: &Store,
    metrics: &Metrics,
) -> Result<(), crate::store::StoreError> {
    for run in store.unpruned_successes().await? {
        if let Some(at) = run.finished_at.as_deref().and_then(crate::timestamp::parse) {
            metrics.set_last_success(&run.namespace, &run.pvc, at);
        }
    }
    Ok(())
}

/// Counts every run of `engine` that ends in `metrics` and notifies `notifier`, until `stop` is
/// cancelled (events already received are still handled) or the engine is gone. Also keeps the
/// runs-in-progress gauge current.
pub async fn follow(
    engine: BackupEngine,
    metrics: Metrics,
    notifier: Notifier,
    stop: CancellationToken,
) {
    let mut events = engine.subscribe();
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => {
                // Count what already arrived (runs cancelled at shutdown) before leaving.
                while let Ok(event) = events.try_recv() {
                    if event.status.is_finished() {
                        let record = finished_record(engine.store(), &event).await;
                        metrics.observe_run(&record);
                        notifier.run_finished(&record);
                    }
                }
                return;
            }
            event = events.recv() => event,
        };
        match event {
            Ok(event) => {
                metrics.set_in_progress(engine.active_runs().len());
                if event.status.is_finished() {
                    let record = finished_record(engine.store(), &event).await;
                    metrics.observe_run(&record);
                    notifier.run_finished(&record);
                }
            }
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "metrics and notifications fell behind the backup events; some runs were not \
                     counted"
                );
            }
            Err(RecvError::Closed) => return,
        }
    }
}
