//! Which destination failures are transient (retried with exponential backoff a bounded number of
//! times) and which are not (authentication, permissions, missing bucket, untrusted server).

use std::future::Future;
use std::io;
use std::time::Duration;

pub use crate::backup::helper::RetryPolicy;

/// The retries of destination requests: 4 attempts, 0.5 s then 1 s then 2 s apart.
pub const DEFAULT_RETRY: RetryPolicy = RetryPolicy {
    attempts: 4,
    base_delay: Duration::from_millis(500),
};

/// One failed attempt: whether trying again may help.
#[derive(Debug)]
pub(crate) enum Attempt<E> {
    /// Connection reset or refused, timeout, HTTP 408/429/5xx: worth another attempt.
    Transient(E),
    /// Anything else (bad credentials, 403, missing bucket, host key mismatch, bad certificate,
    /// a refused file name): fail at once.
    Permanent(E),
}

/// Whether an HTTP status is worth retrying.
pub(crate) fn http_status_is_transient(status: u16) -> bool {
    status == 408 || status == 429 || (500..=599).contains(&status)
}

/// Whether an I/O error is a network hiccup worth retrying (the server may be restarting).
pub(crate) fn io_error_is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::NotConnected
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::TimedOut
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::Interrupted
    )
}

/// The delay before attempt `attempt + 1` (attempt counts from 1), doubling from the base.
pub(crate) fn delay(policy: RetryPolicy, attempt: u32) -> Duration {
    policy
        .base_delay
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
}

/// Runs `call` until it succeeds, fails permanently, or `policy.attempts` are used up; the error
/// of the last attempt is returned with the number of attempts made.
pub(crate) async fn with_retries<T, E, F, Fut>(
    policy: RetryPolicy,
    mut call: F,
) -> Result<T, (E, u32)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Attempt<E>>>,
{
    let attempts = policy.attempts.max(1);
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(Attempt::Permanent(error)) => return Err((error, attempt)),
            Err(Attempt::Transient(error)) if attempt >= attempts => {
                return Err((error, attempt));
            }
            Err(Attempt::Transient(error)) => {
                tracing::debug!(attempt, "transient destination failure, retrying");
                drop(error);
                tokio::time::sleep(delay(policy, attempt)).await;
                attempt += 1;
            }
        }
    }
}

/// `message`, plus how many attempts were made when there were several.
pub(crate) fn after_attempts(message: String, attempts: u32) -> String {
    if attempts > 1 {
        format!("{message} (after {attempts} attempts)")
    } else {
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn classification() {
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(http_status_is_transient(status), "{status}");
        }
        for status in [200, 301, 400, 401, 403, 404, 409, 411, 412] {
            assert!(!http_status_is_transient(status), "{status}");
        }
        for kind in [
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::ConnectionRefused,
            io::ErrorKind::TimedOut,
            io::ErrorKind::BrokenPipe,
            io::ErrorKind::UnexpectedEof,
        ] {
            assert!(io_error_is_transient(&io::Error::from(kind)), "{kind:?}");
        }
        for kind in [
            io::ErrorKind::PermissionDenied,
            io::ErrorKind::NotFound,
            io::ErrorKind::InvalidData,
            io::ErrorKind::InvalidInput,
        ] {
            assert!(!io_error_is_transient(&io::Error::from(kind)), "{kind:?}");
        }
    }

    #[test]
    fn backoff_doubles() {
        let policy = RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(500),
        };
        assert_eq!(delay(policy, 1), Duration::from_millis(500));
        assert_eq!(delay(policy, 2), Duration::from_secs(1));
        assert_eq!(delay(policy, 3), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_a_bounded_number_of_times() {
        let calls = AtomicU32::new(0);
        let result: Result<(), (&str, u32)> = with_retries(DEFAULT_RETRY, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Attempt::Transient("reset"))
        })
        .await;
        assert_eq!(result, Err(("reset", 4)));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_failures_are_not_retried_and_success_stops() {
        let calls = AtomicU32::new(0);
        let result: Result<(), (&str, u32)> = with_retries(DEFAULT_RETRY, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Attempt::Permanent("403"))
        })
        .await;
        assert_eq!(result, Err(("403", 1)));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = AtomicU32::new(0);
        let result: Result<u32, (&str, u32)> = with_retries(DEFAULT_RETRY, || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => Err(Attempt::Transient("503")),
                n => Ok(n),
            }
        })
        .await;
        assert_eq!(result, Ok(1));
        assert_eq!(after_attempts("x".into(), 2), "x (after 2 attempts)");
    }
}
