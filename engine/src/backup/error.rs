//! Errors of a backup run, one variant per stage; each message says what happened and what to do.

use std::path::PathBuf;

use crate::store::{Stage, StoreError};

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
    /// Writing the archive to the destination failed.
    #[error("writing {}: {message}", .path.display())]
    Write { path: PathBuf, message: String },
    /// Writing the sidecar or manifest failed.
    #[error("finalizing {}: {message}", .path.display())]
    Finalize { path: PathBuf, message: String },
    /// The history database could not record the run.
    #[error("{message}: {source}")]
    Record {
        message: String,
        #[source]
        source: StoreError,
    },
    /// Deleting the helper pod failed (only fails a run that had not failed already when the
    /// engine cannot hand the deletion to the sweeper).
    #[error("could not delete helper pod {pod}: {message}")]
    Cleanup { pod: String, message: String },
    /// The run was cancelled during `stage`.
    #[error("cancelled during {}", stage_name(*.stage))]
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
            Self::Stream { .. } => Stage::Stream,
            Self::Write { .. } => Stage::Write,
            Self::Finalize { .. } => Stage::Finalize,
            Self::Record { .. } => Stage::Record,
            Self::Cleanup { .. } => Stage::Cleanup,
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

/// Lowercase name of a stage, as in history and the CLI's JSON.
pub fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::Preflight => "preflight",
        Stage::Create => "create",
        Stage::Schedule => "schedule",
        Stage::Exec => "exec",
        Stage::Stream => "stream",
        Stage::Write => "write",
        Stage::Finalize => "finalize",
        Stage::Record => "record",
        Stage::Cleanup => "cleanup",
    }
}

/// HTTP status of a kube error, when the apiserver answered.
pub fn http_status(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) if status.code != 0 => Some(status.code),
        _ => None,
    }
}

/// Whether a failed API call may succeed when repeated: 429, 5xx, and transport failures (connection
/// errors, timeouts). Never 400/401/403/404/409/422 or other client errors.
pub fn is_transient(err: &kube::Error) -> bool {
    match http_status(err) {
        Some(code) => code == 429 || (500..=599).contains(&code),
        None => matches!(err, kube::Error::HyperError(_) | kube::Error::Service(_)),
    }
}

/// What to do about a failed API call, by HTTP status.
pub fn api_advice(err: &kube::Error, verb: &str, resource: &str, namespace: &str) -> String {
    match http_status(err) {
        Some(401) => {
            "HTTP 401: the credentials are expired or invalid; refresh them and retry".to_owned()
        }
        Some(403) => format!(
            "HTTP 403 Forbidden: grant {verb} on {resource} in namespace {namespace} to nkvm's \
             credentials (in-cluster: bind the ClusterRole nkvm-backup there, see docs/security.md) \
             or ask an administrator"
        ),
        Some(404) => format!("HTTP 404: {resource} not found in namespace {namespace}"),
        Some(409) => format!("HTTP 409: {resource} already exists; retry"),
        Some(422) => format!(
            "HTTP 422: the apiserver rejected the {resource} (an admission policy such as Pod \
             Security may forbid it): {}",
            api_message(err)
        ),
        Some(429) => "HTTP 429: the apiserver is throttling requests; retry later".to_owned(),
        Some(code @ 500..=599) => format!(
            "HTTP {code}: the apiserver failed ({}); retry, and check its health if it persists",
            api_message(err)
        ),
        Some(code) => format!("HTTP {code}: {}", api_message(err)),
        None => format!(
            "could not reach the apiserver ({err}); check the network and the apiserver, then retry"
        ),
    }
}

fn api_message(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            message: format!("status {code}"),
            ..kube::core::Status::default()
        }))
    }

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
                    path: "/x".into(),
                    message: "m".into(),
                },
                Stage::Write,
            ),
            (
                BackupError::Finalize {
                    path: "/x".into(),
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
                BackupError::Cleanup {
                    pod: "p".into(),
                    message: "m".into(),
                },
                Stage::Cleanup,
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

    #[test]
    fn stage_names_match_serde() {
        for stage in [
            Stage::Preflight,
            Stage::Create,
            Stage::Schedule,
            Stage::Exec,
            Stage::Stream,
            Stage::Write,
            Stage::Finalize,
            Stage::Record,
            Stage::Cleanup,
        ] {
            assert_eq!(
                serde_json::to_value(stage).unwrap(),
                serde_json::Value::String(stage_name(stage).to_owned())
            );
        }
    }

    #[test]
    fn transient_classification() {
        for code in [429, 500, 502, 503, 504] {
            assert!(is_transient(&api(code)), "{code}");
        }
        for code in [400, 401, 403, 404, 409, 422] {
            assert!(!is_transient(&api(code)), "{code}");
        }
    }

    #[test]
    fn advice_names_what_to_do() {
        let advice = api_advice(&api(403), "create", "pods", "shop");
        assert!(
            advice.contains("grant create on pods in namespace shop"),
            "{advice}"
        );
        assert!(api_advice(&api(422), "create", "pods", "shop").contains("Pod Security"));
    }
}
