//! Termination signals of the `nkvm` process, handled alike by every long-running command: SIGINT
//! (Ctrl-C), SIGTERM (what `timeout`, systemd and Kubernetes send) and SIGHUP (a closed terminal),
//! each with the exit status a shell reports for it.

use std::process::ExitCode;

use tokio::signal::unix::{SignalKind, signal};

/// A signal asking the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    Interrupt,
    Terminate,
    Hangup,
}

impl Termination {
    /// The signal's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Interrupt => "SIGINT",
            Self::Terminate => "SIGTERM",
            Self::Hangup => "SIGHUP",
        }
    }

    /// 128 + the signal number, as shells report a process stopped by it.
    pub fn exit_code(self) -> ExitCode {
        ExitCode::from(match self {
            Self::Interrupt => 130,
            Self::Terminate => 143,
            Self::Hangup => 129,
        })
    }
}

/// Resolves with the first termination signal. A signal that cannot be watched is logged and
/// never resolves.
pub async fn termination() -> Termination {
    async fn one(kind: SignalKind, which: Termination) -> Termination {
        match signal(kind) {
            Ok(mut stream) => {
                stream.recv().await;
                which
            }
            Err(error) => {
                tracing::error!(%error, signal = which.name(), "cannot watch the signal");
                std::future::pending().await
            }
        }
    }
    tokio::select! {
        which = one(SignalKind::interrupt(), Termination::Interrupt) => which,
        which = one(SignalKind::terminate(), Termination::Terminate) => which,
        which = one(SignalKind::hangup(), Termination::Hangup) => which,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        assert_eq!(Termination::Interrupt.exit_code(), ExitCode::from(130));
        assert_eq!(Termination::Terminate.exit_code(), ExitCode::from(143));
        assert_eq!(Termination::Hangup.exit_code(), ExitCode::from(129));
    }

    #[tokio::test]
    async fn a_signal_to_the_process_is_seen() {
        let waiting = tokio::spawn(termination());
        // Let the handlers register before the signal is sent.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::HUP)
            .unwrap();
        let which = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(which, Termination::Hangup);
    }
}
