//! What the CLI's long-running commands (backup, restore, drill, verify) share while they run:
//! cancelling on SIGINT, SIGTERM or SIGHUP, progress lines on stderr, and the exit status that
//! follows.

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nkvm_engine::backup::ProgressEvent;
use nkvm_engine::domain::format::progress_label;
use nkvm_engine::domain::{RestoreStage, RunStatus, Stage};
use nkvm_engine::restore::RestoreEvent;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::task::JoinHandle;

use super::Output;
use crate::signals::Termination;

/// How often a job that stays in one stage is reported.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// A command being watched: the signal watcher, and the progress printer when there is one.
pub(super) struct Watch {
    signal: JoinHandle<Termination>,
    progress: Option<JoinHandle<()>>,
}

impl Watch {
    /// Cancels on the first termination signal: `cancel` cancels and says what it cancelled
    /// (printed after the signal's name).
    pub(super) fn start(cancel: impl FnOnce() -> String + Send + 'static) -> Self {
        let signal = tokio::spawn(async move {
            let which = crate::signals::termination().await;
            eprintln!("{}: {}", which.name(), cancel());
            which
        });
        Self {
            signal,
            progress: None,
        }
    }

    /// Also prints `events` on stderr (when it is a terminal and the output is not JSON): one line
    /// per stage change of each job, and every few seconds in between.
    pub(super) fn with_progress<E: ProgressLine>(
        mut self,
        output: Output,
        events: broadcast::Receiver<E>,
    ) -> Self {
        if output != Output::Json && std::io::stderr().is_terminal() {
            self.progress = Some(tokio::spawn(print_progress(events)));
        }
        self
    }

    /// Stops watching; the signal that cancelled the command, if one did.
    pub(super) async fn stop(self) -> Option<Termination> {
        let signal = if self.signal.is_finished() {
            self.signal.await.ok()
        } else {
            self.signal.abort();
            None
        };
        if let Some(progress) = self.progress {
            progress.abort();
        }
        signal
    }
}

/// The exit status: the signal's (130/143/129) when one cancelled the command, else 0 when it
/// `succeeded`, else 1.
pub(super) fn exit_code(signal: Option<Termination>, succeeded: bool) -> ExitCode {
    match signal {
        Some(which) => which.exit_code(),
        None if succeeded => ExitCode::SUCCESS,
        None => ExitCode::FAILURE,
    }
}

/// A progress event the CLI prints.
pub(super) trait ProgressLine: Clone + Send + 'static {
    type Stage: Copy + PartialEq + Send;

    /// The job's id and stage while it runs (`None` once it ended).
    fn running(&self) -> Option<(&str, Self::Stage)>;

    /// The line printed on stderr.
    fn line(&self) -> String;
}

impl ProgressLine for ProgressEvent {
    type Stage = Stage;

    fn running(&self) -> Option<(&str, Stage)> {
        (self.status == RunStatus::Running).then_some((self.run_id.as_str(), self.stage))
    }

    fn line(&self) -> String {
        let mut line = format!("{}/{}: {}", self.namespace, self.pvc, self.stage);
        if self.stage == Stage::Stream {
            line.push_str(&format!(
                " {}, {} files",
                progress_label(self.source_bytes, self.total_bytes, self.rate_bytes_per_sec),
                self.files
            ));
        }
        line
    }
}

impl ProgressLine for RestoreEvent {
    type Stage = RestoreStage;

    fn running(&self) -> Option<(&str, RestoreStage)> {
        (self.status == RunStatus::Running).then_some((self.id.as_str(), self.stage))
    }

    fn line(&self) -> String {
        let mut line = format!("{}/{}: {}", self.namespace, self.pvc, self.stage);
        if matches!(self.stage, RestoreStage::Verify | RestoreStage::Stream) {
            line.push_str(&format!(
                " {}, {} files",
                progress_label(
                    self.progress.bytes,
                    self.progress.total_bytes,
                    self.progress.rate_bytes_per_sec
                ),
                self.progress.files
            ));
        }
        line
    }
}

async fn print_progress<E: ProgressLine>(mut events: broadcast::Receiver<E>) {
    let mut last: HashMap<String, (E::Stage, Instant)> = HashMap::new();
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        };
        let Some((id, stage)) = event.running() else {
            continue;
        };
        let now = Instant::now();
        let due = last
            .get(id)
            .is_none_or(|(seen, at)| *seen != stage || now.duration_since(*at) >= PROGRESS_EVERY);
        if due {
            last.insert(id.to_owned(), (stage, now));
            eprintln!("{}", event.line());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_show_percent_when_totals_are_known() {
        let event = ProgressEvent {
            run_id: "r".into(),
            namespace: "shop".into(),
            pvc: "data".into(),
            stage: Stage::Stream,
            status: RunStatus::Running,
            bytes_read: 10 << 20,
            source_bytes: 5 << 20,
            archive_bytes: 1,
            files: 4,
            rate_bytes_per_sec: f64::from(2 << 20),
            total_bytes: Some(10 << 20),
            total_files: Some(8),
            elapsed_secs: 1.0,
            message: None,
            started_by: "cli:me".into(),
        };
        assert_eq!(
            event.line(),
            "shop/data: stream 5.0 MiB of 10.0 MiB (50%) · 2.0 MiB/s · ETA 3s, 4 files"
        );
    }

    #[test]
    fn exit_codes_follow_the_signal_then_the_result() {
        assert_eq!(exit_code(None, true), ExitCode::SUCCESS);
        assert_eq!(exit_code(None, false), ExitCode::FAILURE);
    }
}
