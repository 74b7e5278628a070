//! A run's live progress: the [`ProgressEvent`] it publishes at every stage change, at most every
//! `progress_interval` while streaming, and at the end, with a read rate over the last seconds.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::engine::Inner;
use super::stream::StreamProgress;
use super::{ProgressEvent, PvcRef};
use crate::domain::{RunStatus, Stage};

/// Window of the rate estimate.
const RATE_WINDOW: Duration = Duration::from_secs(5);

/// A rate over the last [`RATE_WINDOW`] of a growing byte count (also used by restores).
#[derive(Debug, Default)]
pub(crate) struct RateWindow {
    samples: VecDeque<(Instant, u64)>,
}

impl RateWindow {
    /// Adds the count reached now; returns bytes per second over the window, once two samples
    /// are apart in time.
    pub(crate) fn update(&mut self, bytes: u64) -> Option<f64> {
        let now = Instant::now();
        self.samples.push_back((now, bytes));
        while self.samples.len() > 2
            && self
                .samples
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
        {
            self.samples.pop_front();
        }
        let ((t0, b0), (t1, b1)) = (self.samples.front()?, self.samples.back()?);
        let dt = t1.duration_since(*t0).as_secs_f64();
        #[allow(clippy::cast_precision_loss)] // rates need no more than f64's 52 bits
        let delta = b1.saturating_sub(*b0) as f64;
        (dt > 0.0).then(|| delta / dt)
    }
}

/// Publishes one run's progress through the engine.
pub(super) struct Tracker<'a> {
    inner: &'a Inner,
    target: PvcRef,
    pub(super) event: ProgressEvent,
    started: Instant,
    rate: RateWindow,
}

impl<'a> Tracker<'a> {
    pub(super) fn new(inner: &'a Inner, target: &PvcRef, run_id: &str, started_by: &str) -> Self {
        Self {
            inner,
            target: target.clone(),
            event: ProgressEvent {
                run_id: run_id.to_owned(),
                namespace: target.namespace.clone(),
                pvc: target.name.clone(),
                stage: Stage::Preflight,
                status: RunStatus::Running,
                bytes_read: 0,
                source_bytes: 0,
                archive_bytes: 0,
                files: 0,
                rate_bytes_per_sec: 0.0,
                total_bytes: None,
                total_files: None,
                elapsed_secs: 0.0,
                message: None,
                started_by: started_by.to_owned(),
            },
            started: Instant::now(),
            rate: RateWindow::default(),
        }
    }

    /// Publishes the current state.
    pub(super) fn emit(&mut self) {
        self.event.elapsed_secs = self.started.elapsed().as_secs_f64();
        self.inner.publish(&self.target, &self.event);
    }

    /// Enters `stage` and publishes it.
    pub(super) fn stage(&mut self, stage: Stage) {
        self.event.stage = stage;
        self.emit();
    }

    /// Starts the stream's counters over (a new stream after a lost connection), with `note` as
    /// the event's message, and publishes that.
    pub(super) fn restart(&mut self, note: String) {
        self.rate = RateWindow::default();
        self.event.rate_bytes_per_sec = 0.0;
        self.event.bytes_read = 0;
        self.event.archive_bytes = 0;
        self.event.files = 0;
        self.event.source_bytes = 0;
        self.event.message = Some(note);
        self.emit();
    }

    /// Publishes the stream's counters with the rate over the last [`RATE_WINDOW`].
    pub(super) fn update(&mut self, progress: &StreamProgress) {
        if let Some(rate) = self.rate.update(progress.bytes_read) {
            self.event.rate_bytes_per_sec = rate;
        }
        self.event.bytes_read = progress.bytes_read;
        self.event.archive_bytes = progress.archive_bytes;
        self.event.files = progress.files;
        self.event.source_bytes = progress.source_bytes;
        self.emit();
    }
}
