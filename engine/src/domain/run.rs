//! The words of a backup run: its status ([`RunStatus`]), the stage it is in or failed at
//! ([`Stage`]), the two outcomes the CLI contract reports ([`ResultStatus`]), and the counters of a
//! running job's progress ([`Progress`]).

use serde::{Deserialize, Serialize};

crate::text_enum! {
    /// Status of a run, as history stores it.
    pub enum RunStatus("run status") {
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        /// The process running it stopped before it finished (found at start-up).
        Interrupted => "interrupted",
        Cancelled => "cancelled",
    }
}

impl RunStatus {
    /// False only for `running`.
    #[must_use]
    pub fn is_finished(self) -> bool {
        self != Self::Running
    }
}

crate::text_enum! {
    /// The step of a backup, in the order a run goes through them; a failed run names the stage
    /// that failed.
    pub enum Stage("stage") {
        /// Checks before anything is created: the PVC, its consumers, free space.
        Preflight => "preflight",
        /// Creating the helper pod.
        Create => "create",
        /// Waiting for the helper pod to run.
        Schedule => "schedule",
        /// Starting `tar` in the helper.
        Exec => "exec",
        /// The checked, compressed and hashed stream.
        Stream => "stream",
        /// The archive gets its final name.
        Write => "write",
        /// Sidecar and manifest.
        Finalize => "finalize",
        /// The history row.
        Record => "record",
        /// Deleting the helper pod.
        Cleanup => "cleanup",
    }
}

crate::text_enum! {
    /// Outcome of one PVC's backup, as `nkvm backup --output json` prints it (`cancelled`, like
    /// the history's status, when someone stopped it).
    pub enum ResultStatus("result status") {
        Succeeded => "succeeded",
        Failed => "failed",
        Cancelled => "cancelled",
    }
}

/// How far a job (a backup, restore, verification or drill) has got: the counters its live
/// progress events carry and the live panel shows. Flattened into those events' JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// File content bytes done.
    pub bytes: u64,
    /// File content bytes in all, once known (the pre-scan of a volume, an archive's manifest).
    pub total_bytes: Option<u64>,
    /// Regular files done.
    pub files: u64,
    pub total_files: Option<u64>,
    /// Rate over the last few seconds.
    pub rate_bytes_per_sec: f64,
    pub elapsed_secs: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_in_run_order() {
        let names: Vec<&str> = Stage::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "preflight",
                "create",
                "schedule",
                "exec",
                "stream",
                "write",
                "finalize",
                "record",
                "cleanup"
            ]
        );
    }

    #[test]
    fn only_running_is_unfinished() {
        for status in RunStatus::ALL {
            assert_eq!(status.is_finished(), *status != RunStatus::Running);
        }
    }
}
