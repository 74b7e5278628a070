//! What a run's end means and how it is worded: tar's exit status and the stream's fate judged
//! together ([`judge`]), advice per tar exit code, the success message, warnings appended to a
//! result, and the sidecar and manifest put beside a committed archive ([`write_finals`]).

use std::time::Duration;

use bytes::Bytes;
use kube::Client;

use super::artifact::{self, Manifest};
use super::error::BackupError;
use super::exec::ExecOutcome;
use super::helper;
use super::stream::{StreamCap, StreamError, StreamedArchive};
use crate::destination::{ArtifactKeys, Destination};
use crate::domain::Stage;
use crate::domain::escape_control;
use crate::domain::format::format_bytes;

/// Decides what the end of the stream means, given tar's exit status. `write_advice` says what to
/// do when the destination refused the bytes.
pub(super) async fn judge(
    client: &Client,
    namespace: &str,
    helper_image: &str,
    streamed: Result<StreamedArchive, StreamError>,
    outcome: &ExecOutcome,
    pod: &str,
    write_advice: &str,
) -> Result<StreamedArchive, BackupError> {
    let streamed = match streamed {
        Ok(partial) if outcome.succeeded() => return Ok(partial),
        Err(StreamError::Cancelled) => {
            return Err(BackupError::Cancelled {
                stage: Stage::Stream,
            });
        }
        Err(StreamError::Write { target, source }) => {
            return Err(BackupError::Write {
                artifact: target,
                message: format!("{source}; {write_advice}"),
            });
        }
        Err(StreamError::Stalled(after)) => {
            return Err(BackupError::Stream {
                message: format!(
                    "stalled: no data for {}s from tar in helper pod {pod}; the volume or its \
                     node may be hung (check `kubectl describe pod -n {} {pod}`), or raise the \
                     stall timeout for very slow storage",
                    after.as_secs(),
                    namespace
                ),
            });
        }
        Err(StreamError::TooLarge(cap)) => {
            return Err(BackupError::Stream {
                message: too_large_message(&cap, pod),
            });
        }
        other => other,
    };
    let stderr = if outcome.stderr.is_empty() {
        String::new()
    } else {
        format!("; tar said: {}", last_lines(&outcome.stderr, 8))
    };
    // A deleted or evicted helper explains whatever else went wrong (tar killed, stream cut).
    if helper::helper_gone(client, namespace, pod).await {
        let why = match (&streamed, outcome.exit_code()) {
            (Err(err), _) => err.to_string(),
            (Ok(_), Some(code)) => format!("tar exited with code {code}"),
            (Ok(_), None) => "tar's exit status is unknown".to_owned(),
        };
        return Err(BackupError::Stream {
            message: format!(
                "helper pod {pod} was deleted or stopped while streaming ({why}); the \
                 incomplete archive was discarded; retry the backup"
            ),
        });
    }
    // The connection ended mid-stream without tar's exit status: it was lost.
    let lost = match &streamed {
        Err(StreamError::ConnectionLost) => true,
        Err(_) => outcome.connection_lost && outcome.reported_exit.is_none(),
        Ok(_) => false,
    };
    if lost {
        return Err(BackupError::ConnectionLost {
            pod: pod.to_owned(),
            message: connection_lost_message(pod, outcome.transport_error.as_deref()),
        });
    }
    if let Some(code) = outcome.compressor_exit.filter(|c| *c != 0) {
        let tar = match outcome.exit_code() {
            Some(tar) => format!(" (tar exited with code {tar})"),
            None => String::new(),
        };
        return Err(BackupError::Exec {
            pod: pod.to_owned(),
            message: format!(
                "the compressor in helper pod {pod} exited with code {code}{tar}{stderr}; the \
                 archive was discarded; check pigz/gzip in the helper image {helper_image}, or \
                 let nkvm compress (--compression server)"
            ),
        });
    }
    if let Some(code) = outcome.exit_code() {
        let note = match &streamed {
            Err(err) => format!(" (and the stream was {})", short(&err.to_string())),
            Ok(_) => String::new(),
        };
        return Err(BackupError::Exec {
            pod: pod.to_owned(),
            message: format!(
                "tar exited with code {code} in helper pod {pod}{note}{stderr}; {}",
                exit_advice(code, helper_image)
            ),
        });
    }
    if let Err(err) = streamed {
        Err(BackupError::Stream {
            message: format!(
                "{err}{stderr}; the archive was discarded; retry, and check the helper pod and \
             the network to the apiserver if it happens again"
            ),
        })
    } else {
        let detail = match (&outcome.status, &outcome.transport_error) {
            (Some(status), _) => format!(
                "the exec failed: {} {}",
                status.reason.as_deref().unwrap_or_default(),
                status.message.as_deref().unwrap_or_default()
            ),
            (None, Some(err)) => format!("the exec connection failed ({err})"),
            (None, None) => "the exec connection closed without an exit status".to_owned(),
        };
        Err(BackupError::Exec {
            pod: pod.to_owned(),
            message: format!(
                "tar's exit status is unknown: {detail}{stderr}; the archive was \
                 discarded; retry"
            ),
        })
    }
}

/// What a lost connection means, with the transport's error when there is one.
fn connection_lost_message(pod: &str, transport_error: Option<&str>) -> String {
    let cause = transport_error.map_or(String::new(), |err| format!(" ({err})"));
    format!(
        "lost the connection to the API server while streaming from helper pod {pod}{cause}; the \
         incomplete archive was discarded; check that the API server is up and reachable from \
         nkvm, then retry"
    )
}

/// Why a stream past its cap failed, and what to do.
fn too_large_message(cap: &StreamCap, pod: &str) -> String {
    format!(
        "{}; tar in helper pod {pod} was stopped and the incomplete archive discarded. A volume \
         cannot hold more than its capacity: files growing while they are read, or a filesystem \
         reporting more than it stores, usually explain it; if the volume really holds that much, \
         raise the cap with --stream-cap-factor (NKVM_STREAM_CAP_FACTOR, now {}; 0 turns it off)",
        StreamError::TooLarge(*cap),
        cap.factor
    )
}

/// A result message followed by the run's warnings (as recorded in the history), control
/// characters escaped.
pub(super) fn with_warnings(message: &str, warnings: &[String]) -> String {
    let text = if warnings.is_empty() {
        message.to_owned()
    } else {
        format!("{message}; warning: {}", warnings.join("; "))
    };
    escape_control(&text).into_owned()
}

/// Puts the `sha256sum -c` sidecar and the manifest beside the committed archive (each atomic at
/// the destination: local files through a synced `.partial` and a rename).
pub(super) async fn write_finals(
    destination: &Destination,
    keys: &ArtifactKeys,
    sha256: &str,
    manifest: &Manifest,
    advice: &str,
) -> Result<(), BackupError> {
    let finalize = |key: &str, message: String| BackupError::Finalize {
        artifact: destination.uri(key),
        message,
    };
    let line = artifact::sidecar_line(sha256, artifact::file_name(&keys.archive));
    destination
        .put(&keys.sidecar, Bytes::from(line))
        .await
        .map_err(|err| {
            finalize(
                &keys.sidecar,
                format!("{err}; the archive was removed; {advice}"),
            )
        })?;
    let json = serde_json::to_vec_pretty(manifest).map_err(|err| {
        finalize(
            &keys.manifest,
            format!("cannot serialise the manifest: {err}"),
        )
    })?;
    destination
        .put(&keys.manifest, Bytes::from(json))
        .await
        .map_err(|err| {
            finalize(
                &keys.manifest,
                format!("{err}; the archive was removed; {advice}"),
            )
        })?;
    Ok(())
}

pub(super) fn success_message(
    files: u64,
    source_bytes: u64,
    archive_bytes: u64,
    took: Duration,
) -> String {
    let secs = took.as_secs_f64().max(0.001);
    format!(
        "backed up {files} files ({}) into a {} archive in {secs:.1}s",
        format_bytes(source_bytes),
        format_bytes(archive_bytes),
    )
}

/// The last `n` lines of a text.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

fn short(text: &str) -> String {
    let mut out: String = text.chars().take(200).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// What to do about a tar exit code.
fn exit_advice(code: i64, image: &str) -> String {
    match code {
        1 => "some files changed while tar read them (GNU tar exit 1), so the archive may be \
              inconsistent; stop or quiesce the workload writing to the volume and retry"
            .to_owned(),
        2 => "tar hit a fatal error, usually a file or directory it may not read (the helper runs \
              as the consumer pod's user when that pod names one); fix the permissions or run the \
              backup when the volume is readable, then retry"
            .to_owned(),
        126 | 127 => format!(
            "tar is missing or not executable in the helper image {image}; use an image with GNU \
             tar (--helper-image / NKVM_HELPER_IMAGE)"
        ),
        137 => {
            "tar was killed (out of memory, or the helper pod was deleted); retry, and raise the \
                helper's memory limit if it happens again"
                .to_owned()
        }
        _ => "see tar's messages above; retry once the cause is fixed".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_advice_covers_common_codes() {
        assert!(exit_advice(1, "i").contains("changed"));
        assert!(exit_advice(2, "i").contains("permissions"));
        assert!(exit_advice(127, "img").contains("img"));
        assert!(exit_advice(137, "i").contains("killed"));
    }

    #[test]
    fn too_large_names_the_cap_and_how_to_raise_it() {
        let message = too_large_message(
            &StreamCap {
                capacity: 1 << 30,
                factor: 4,
            },
            "nkvm-backup-x",
        );
        assert!(
            message.contains("passed 4.0 GiB (4294967296 bytes), 4× the PVC's capacity of 1.0 GiB"),
            "{message}"
        );
        assert!(message.contains("--stream-cap-factor"), "{message}");
        assert!(message.contains("NKVM_STREAM_CAP_FACTOR"), "{message}");
    }

    #[test]
    fn last_lines_joins_the_tail() {
        assert_eq!(last_lines("a\nb\nc", 2), "b | c");
    }
}
