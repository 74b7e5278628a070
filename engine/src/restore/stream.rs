//! Pass two of a restore: the archive read again, every piece of the tar stream checked (the same
//! decoding, tar checks and safety rules as pass one) and only then written into GNU tar's stdin
//! in the helper, with stall detection on both ends (the archive delivers nothing, or the helper
//! accepts nothing) and an early stop when tar exits; and what tar's exit status means.

use std::sync::Arc;

use bytes::Bytes;
use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::check::{self, CheckError, Decoded, PassConfig, PassOutcome, PassProgress};
use super::error::RestoreError;
use super::wsexec::StdinSession;
use crate::backup::exec::ExecOutcome;
use crate::domain::RestoreStage;
use crate::domain::format::format_bytes_exact;

/// Checked pieces queued for the writer.
const QUEUE: usize = 8;

/// Why writing into the helper stopped.
enum WriteStop {
    Cancelled,
    Stalled,
    TarExited,
    Failed(String),
}

/// Streams `reader`'s checked tar stream into `session`'s stdin. Returns pass two's outcome
/// (its digest is compared with the history by the caller).
pub(super) async fn into_helper<R>(
    session: &mut StdinSession,
    reader: R,
    config: &PassConfig,
    cancel: &CancellationToken,
    on_progress: impl FnMut(&PassProgress),
) -> Result<PassOutcome, RestoreError>
where
    R: AsyncRead + Unpin,
{
    let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUE);
    let exited = session.exited();
    let stall = config.stall_timeout;
    let writer = async move {
        let mut exited = std::pin::pin!(exited);
        while let Some(piece) = rx.recv().await {
            let written = tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(WriteStop::Cancelled),
                () = &mut exited => return Err(WriteStop::TarExited),
                written = tokio::time::timeout(stall, session.write(&piece)) => written,
            };
            match written {
                Err(_) => return Err(WriteStop::Stalled),
                Ok(Err(err)) => return Err(WriteStop::Failed(err.to_string())),
                Ok(Ok(())) => {}
            }
        }
        Ok(())
    };
    let checked = check::pass(
        reader,
        config,
        Some(tx),
        cancel,
        Arc::new(PassProgress::default()),
        on_progress,
    );
    let (passed, written) = tokio::join!(checked, writer);
    let cancelled = RestoreError::Cancelled {
        stage: RestoreStage::Stream,
    };
    match written {
        Err(WriteStop::Cancelled) => return Err(cancelled),
        Err(WriteStop::Stalled) => {
            return Err(RestoreError::Stream(format!(
                "stalled: the helper accepted no data for {}s; its node, the volume or the \
                 network to the apiserver may be hung",
                stall.as_secs()
            )));
        }
        Err(WriteStop::TarExited) => {
            return Err(RestoreError::Stream(
                "tar in the helper stopped before the archive's end".to_owned(),
            ));
        }
        Err(WriteStop::Failed(err)) => {
            return Err(RestoreError::Stream(format!(
                "writing to the helper failed ({err}); the helper pod may have been deleted"
            )));
        }
        Ok(()) => {}
    }
    let outcome = passed.map_err(|err| match err {
        CheckError::Cancelled => RestoreError::Cancelled {
            stage: RestoreStage::Stream,
        },
        other => RestoreError::Stream(format!("reading the archive again failed: {other}")),
    })?;
    if let Err(err) = &outcome.decoded {
        return Err(RestoreError::Stream(format!(
            "the archive failed its second check while being restored ({err}); it changed since \
             its verification: the volume holds a partial restore, restore again"
        )));
    }
    Ok(outcome)
}

/// What tar's end means, when it is not a plain success: its exit code, its last messages, and
/// what to do (a full volume is named as such).
pub(super) fn describe_tar(outcome: &ExecOutcome, decoded: &Decoded, pod: &str) -> Option<String> {
    if outcome.succeeded() {
        return None;
    }
    let stderr = outcome.stderr.trim();
    let tail: Vec<&str> = stderr.lines().rev().take(6).collect();
    let said = if tail.is_empty() {
        String::new()
    } else {
        format!(
            "; tar said: {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        )
    };
    let advice = if stderr.contains("No space left on device") {
        format!(
            "the target volume is full: the archive holds {} of files; restore into a larger \
             PVC (--size), or free space and retry",
            format_bytes_exact(decoded.counts.file_bytes)
        )
    } else if stderr.contains("Read-only file system") {
        "the volume is mounted read-only in the helper; check the PVC's access modes".to_owned()
    } else if stderr.contains("not GNU tar") {
        "the helper image needs GNU tar (--helper-image / NKVM_HELPER_IMAGE)".to_owned()
    } else {
        format!("check helper pod {pod}'s volume and retry")
    };
    let code = match outcome.exit_code() {
        Some(code) => format!("tar exited with code {code}"),
        None => match &outcome.transport_error {
            Some(err) => format!("tar's exit status is unknown ({err})"),
            None => "tar's exit status is unknown".to_owned(),
        },
    };
    Some(format!("{code} in helper pod {pod}{said}; {advice}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(code: Option<i64>, stderr: &str) -> ExecOutcome {
        ExecOutcome {
            status: None,
            reported_exit: code,
            compressor_exit: None,
            stderr: stderr.to_owned(),
            transport_error: None,
            connection_lost: false,
        }
    }

    #[test]
    fn tar_failures_say_what_to_do() {
        let decoded = Decoded {
            tar_bytes: 0,
            counts: crate::backup::tarcheck::TarCounts {
                file_bytes: 5 << 30,
                ..Default::default()
            },
            samples: vec![],
        };
        assert_eq!(describe_tar(&outcome(Some(0), ""), &decoded, "p"), None);
        let full = describe_tar(
            &outcome(
                Some(2),
                "tar: ./big: Cannot write: No space left on device\ntar: Exiting with failure",
            ),
            &decoded,
            "p",
        )
        .unwrap();
        assert!(
            full.starts_with("tar exited with code 2 in helper pod p"),
            "{full}"
        );
        assert!(full.contains("the target volume is full"), "{full}");
        assert!(full.contains("5.0 GiB"), "{full}");
        let unknown = describe_tar(&outcome(None, ""), &decoded, "p").unwrap();
        assert!(unknown.contains("unknown"), "{unknown}");
    }
}
