//! Helpers shared by the engine's real-cluster integration tests.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long a fixture may take to become ready on the test cluster.
pub const READY_TIMEOUT: Duration = Duration::from_secs(240);

/// Polls `check` every `every` until it returns `Some` or `READY_TIMEOUT` passes (then panics, naming
/// `what`).
pub async fn wait_for<T, F, Fut>(what: &str, every: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < READY_TIMEOUT,
            "timed out after {READY_TIMEOUT:?} waiting for {what}"
        );
        tokio::time::sleep(every).await;
    }
}
