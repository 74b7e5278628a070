//! Helpers shared by the engine's real-cluster integration tests.

pub mod fixtures;
pub mod restores;

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nkvm_engine::connection::ConnectionSource;

/// The test cluster's kubeconfig from `NKVM_TEST_KUBECONFIG`; panics with what to do when unset (the
/// real-cluster tests never skip).
pub fn test_cluster_source() -> ConnectionSource {
    let path = std::env::var_os("NKVM_TEST_KUBECONFIG").unwrap_or_else(|| {
        panic!(
            "NKVM_TEST_KUBECONFIG is not set: this test needs the test cluster. Start it and run the \
             repository's test command (scripts/test-all.sh), or export NKVM_TEST_KUBECONFIG=<kubeconfig>"
        )
    });
    ConnectionSource::KubeconfigFile {
        path: Some(PathBuf::from(path)),
        context: None,
    }
}

/// How long a fixture may take to become ready on the test cluster.
pub const READY_TIMEOUT: Duration = Duration::from_mins(4);

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
