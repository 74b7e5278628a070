//! The words of restores, verifications and drills: the stage a restore is in or failed at
//! ([`RestoreStage`]), where it writes ([`RestoreMode`]), the outcome of a verification
//! ([`VerifyStatus`]) and of a drill ([`DrillStatus`]), and what kind of job a live progress row
//! describes ([`JobKind`]). Pure, so the browser build shares them.

crate::text_enum! {
    /// The step of a restore (and of a drill, which is a restore into a throwaway PVC followed by
    /// a content check), in the order a restore goes through them; a failed restore names the
    /// stage that failed.
    pub enum RestoreStage("restore stage") {
        /// The archive's sha256, gzip stream and tar entries are checked against the history,
        /// the sidecar and the manifest, and every entry against the safety rules.
        Verify => "verify",
        /// The target PVC, its consumers and the workloads to scale are read and checked.
        Preflight => "preflight",
        /// Workloads using the claim are scaled to 0 (in-place restores only).
        ScaleDown => "scale-down",
        /// The new PVC (new-PVC restores) and the restore helper pod are created.
        Create => "create",
        /// Waiting for the helper to run (and the new PVC to bind).
        Schedule => "schedule",
        /// Clearing the volume (`--wipe`) and starting tar in the helper.
        Exec => "exec",
        /// The checked tar stream goes into tar's standard input in the helper.
        Stream => "stream",
        /// tar's exit status, the owner/mode spot check, the helper removed.
        Finalize => "finalize",
        /// Scaled-down workloads are scaled back to their recorded replica counts.
        ScaleUp => "scale-up",
        /// The restore history row.
        Record => "record",
        /// Removing whatever is left (helper pod; a failed or throwaway PVC).
        Cleanup => "cleanup",
    }
}

crate::text_enum! {
    /// Where a restore writes.
    pub enum RestoreMode("restore mode") {
        /// Into a PVC nkvm creates (the default).
        NewPvc => "new-pvc",
        /// Into the backup's own PVC, with its workloads scaled down meanwhile.
        InPlace => "in-place",
        /// A restore drill: into a throwaway PVC that is removed afterwards.
        Drill => "drill",
    }
}

crate::text_enum! {
    /// The outcome of verifying a stored backup (`nkvm verify`).
    pub enum VerifyStatus("verify status") {
        Verified => "verified",
        Failed => "failed",
    }
}

crate::text_enum! {
    /// The outcome of a restore drill (`nkvm drill`).
    pub enum DrillStatus("drill status") {
        Passed => "passed",
        Failed => "failed",
    }
}

crate::text_enum! {
    /// What a row of the live runs panel describes.
    pub enum JobKind("job kind") {
        Backup => "backup",
        Restore => "restore",
        Verify => "verify",
        Drill => "drill",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_stages_are_in_run_order() {
        let names: Vec<&str> = RestoreStage::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "verify",
                "preflight",
                "scale-down",
                "create",
                "schedule",
                "exec",
                "stream",
                "finalize",
                "scale-up",
                "record",
                "cleanup"
            ]
        );
    }

    #[test]
    fn modes_and_outcomes_have_their_text_forms() {
        assert_eq!("in-place".parse::<RestoreMode>(), Ok(RestoreMode::InPlace));
        assert_eq!(VerifyStatus::Verified.as_str(), "verified");
        assert_eq!(DrillStatus::Passed.to_string(), "passed");
        assert_eq!("drill".parse::<JobKind>(), Ok(JobKind::Drill));
    }
}
