//! Errors of a backup run, one variant per stage; each message says what happened and what to do.

use crate::domain::Stage;
use crate::store::StoreError;

/// Why a backup run failed. [`BackupError::stage`] names the stage for history and the CLI.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Checks before anything is created: the PVC, its consumers, free space.
    #[error("{message}")]
    Preflight { message: String },
    /// Creating the helper pod was refused or kept failing.
    #[error("could not create helper pod {pod}: {message}")]
    CreateHelper {
        pod: String,
        message: String,
        status: Option<u16>,
    },
    /// The helper pod did not start running.
    #[error("helper pod {pod} did not start: {message}")]
    Schedule { pod: String, message: String },
    /// Running `tar` in the helper failed (could not exec, or tar exited non-zero).
    #[error("{message}")]
    Exec { pod: String, message: String },
    /// The tar stream was invalid, truncated or stalled.
    #[error("{message}")]
    Stream { message: String },
    /// The exec connection through the API server was lost while streaming: nothing was
    /// committed, and the run re-ran tar up to its stream attempts before failing.
    #[error("{message}")]
    ConnectionLost { pod: String, message: String },
    /// Writing the archive to its destination failed: opening the upload (connect, credentials,
    /// bucket), sending it, or making it visible under its final name. `artifact` is the archive's
    /// path or URI; nothing is left under it.
    #[error("writing {artifact}: {message}")]
    Write { artifact: String, message: String },
    /// Writing the sidecar or manifest beside the archive failed (the archive was removed).
    #[error("finalizing {artifact}: {message}")]
    Finalize { artifact: String, message: String },
    /// The history database could not record the run.
    #[error("{message}: {source}")]
    Record {
        message: String,
        #[source]
        source: StoreError,
    },
    /// The run was cancelled during `stage`.
    #[error("cancelled during {stage}")]
    Cancelled { stage: Stage },
}

impl BackupError {
    /// The stage that failed.
    pub fn stage(&self) -> Stage {
        match self {
            Self::Preflight { .. } => Stage::Preflight,
            Self::CreateHelper { .. } => Stage::Create,
            Self::Schedule { .. } => Stage::Schedule,
            Self::Exec { .. } => Stage::Exec,
            Self::Stream { .. } | Self::ConnectionLost { .. } => Stage::Stream,
            Self::Write { .. } => Stage::Write,
            Self::Finalize { .. } => Stage::Finalize,
            Self::Record { .. } => Stage::Record,
            Self::Cancelled { stage } => *stage,
        }
    }

    /// Whether the run was cancelled rather than failed.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Self::Cancelled { .. })
    }

    /// A preflight failure with this message.
    pub fn preflight(message: impl Into<String>) -> Self {
        Self::Preflight {
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_names_its_stage() {
        let cases = [
            (BackupError::preflight("x"), Stage::Preflight),
            (
                BackupError::CreateHelper {
                    pod: "p".into(),
                    message: "m".into(),
                    status: None,
                },
                Stage::Create,
            ),
            (
                BackupError::Schedule {
                    pod: "p".into(),
                    message: "m".into(),
                },
                Stage::Schedule,
            ),
            (
                BackupError::Exec {
                    pod: "p".into(),
                    message: "m".into(),
                },
                Stage::Exec,
            ),
            (
                BackupError::Stream {
                    message: "m".into(),
                },
                Stage::Stream,
            ),
            (
                BackupError::Write {
                    artifact: "/x".into(),
                    message: "m".into(),
                },
                Stage::Write,
            ),
            (
                BackupError::Finalize {
                    artifact: "/x".into(),
                    message: "m".into(),
                },
                Stage::Finalize,
            ),
            (
                BackupError::Record {
                    message: "m".into(),
                    source: StoreError::Corrupt {
                        id: 1,
                        column: "c",
                        value: "v".into(),
                    },
                },
                Stage::Record,
            ),
            (
                BackupError::Cancelled {
                    stage: Stage::Stream,
                },
                Stage::Stream,
            ),
        ];
        for (err, stage) in cases {
            assert_eq!(err.stage(), stage, "{err}");
        }
        assert_eq!(
            BackupError::Cancelled {
                stage: Stage::Schedule
            }
            .to_string(),
            "cancelled during schedule"
        );
    }
}
