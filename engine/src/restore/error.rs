//! Errors of a restore or drill, one variant per stage; each message says what happened and what
//! to do.

use crate::domain::RestoreStage;

/// Why a restore failed. [`RestoreError::stage`] names the stage for history and the CLI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// The archive did not pass verification or the pre-scan (nothing was written).
    #[error("{0}")]
    Verify(String),
    /// The target, its consumers or the request were refused before anything changed.
    #[error("{0}")]
    Preflight(String),
    /// Scaling the workloads down, or waiting for their pods to stop, failed.
    #[error("{0}")]
    ScaleDown(String),
    /// Creating the new PVC or the helper pod failed.
    #[error("{0}")]
    Create(String),
    /// The helper (or the new PVC) did not become ready.
    #[error("{0}")]
    Schedule(String),
    /// Clearing the volume or starting tar in the helper failed.
    #[error("{0}")]
    Exec(String),
    /// Streaming the archive into the helper failed.
    #[error("{0}")]
    Stream(String),
    /// tar failed, the spot check found differences, or the helper could not be removed.
    #[error("{0}")]
    Finalize(String),
    /// Scaling the workloads back up failed.
    #[error("{0}")]
    ScaleUp(String),
    /// The restore history could not be written.
    #[error("{0}")]
    Record(String),
    /// The restore was cancelled during `stage`.
    #[error("cancelled during {stage}")]
    Cancelled { stage: RestoreStage },
}

impl RestoreError {
    /// The stage that failed.
    pub fn stage(&self) -> RestoreStage {
        match self {
            Self::Verify(_) => RestoreStage::Verify,
            Self::Preflight(_) => RestoreStage::Preflight,
            Self::ScaleDown(_) => RestoreStage::ScaleDown,
            Self::Create(_) => RestoreStage::Create,
            Self::Schedule(_) => RestoreStage::Schedule,
            Self::Exec(_) => RestoreStage::Exec,
            Self::Stream(_) => RestoreStage::Stream,
            Self::Finalize(_) => RestoreStage::Finalize,
            Self::ScaleUp(_) => RestoreStage::ScaleUp,
            Self::Record(_) => RestoreStage::Record,
            Self::Cancelled { stage } => *stage,
        }
    }

    /// Whether the restore was cancelled rather than failed.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Self::Cancelled { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_names_its_stage() {
        let cases = [
            (RestoreError::Verify("m".into()), RestoreStage::Verify),
            (RestoreError::Preflight("m".into()), RestoreStage::Preflight),
            (RestoreError::ScaleDown("m".into()), RestoreStage::ScaleDown),
            (RestoreError::Create("m".into()), RestoreStage::Create),
            (RestoreError::Schedule("m".into()), RestoreStage::Schedule),
            (RestoreError::Exec("m".into()), RestoreStage::Exec),
            (RestoreError::Stream("m".into()), RestoreStage::Stream),
            (RestoreError::Finalize("m".into()), RestoreStage::Finalize),
            (RestoreError::ScaleUp("m".into()), RestoreStage::ScaleUp),
            (RestoreError::Record("m".into()), RestoreStage::Record),
            (
                RestoreError::Cancelled {
                    stage: RestoreStage::Stream,
                },
                RestoreStage::Stream,
            ),
        ];
        for (err, stage) in cases {
            assert_eq!(err.stage(), stage, "{err}");
        }
    }
}
