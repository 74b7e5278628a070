//! The words of a backup run: its status ([`RunStatus`]), the stage it is in or failed at
//! ([`Stage`]), and the two outcomes the CLI contract reports ([`ResultStatus`]).

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
