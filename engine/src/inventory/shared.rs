//! One inventory scan in flight per connection: a viewer asking while a scan of the same kind runs
//! waits for that scan's result instead of starting another, so many open pages (or a script
//! reloading one) cost one cluster-wide scan at a time, not one each.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};

use super::{HistoryJoin, Inventory, InventoryError, InventoryOptions, scan_with_history};
use crate::store::Store;

/// The result of a shared scan, handed to every waiter.
pub type SharedResult = Result<Arc<Inventory>, Arc<InventoryError>>;

type InFlight = Shared<BoxFuture<'static, SharedResult>>;

/// The scans in flight of one connection, by their staleness setting (the only thing that differs
/// between the server's callers).
#[derive(Default)]
pub struct SharedScans {
    in_flight: Mutex<HashMap<Option<Duration>, InFlight>>,
}

impl std::fmt::Debug for SharedScans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedScans").finish_non_exhaustive()
    }
}

impl SharedScans {
    /// [`scan_with_history`] with `client`, `options`, `store` and `stale_after`, joined to the
    /// scan of the same `stale_after` already running, if any. The time of "now" is the scan's
    /// start.
    pub async fn scan(
        &self,
        client: &kube::Client,
        options: &InventoryOptions,
        store: &Store,
        stale_after: Option<Duration>,
    ) -> SharedResult {
        let (client, options, store) = (client.clone(), options.clone(), store.clone());
        let running = self.join_or_start(stale_after, move || {
            async move {
                let history = HistoryJoin {
                    store: Some(&store),
                    stale_after,
                    now: jiff::Timestamp::now(),
                };
                scan_with_history(&client, &options, history)
                    .await
                    .map(Arc::new)
                    .map_err(Arc::new)
            }
            .boxed()
        });
        running.await
    }

    /// The scan of `key` in flight, or a new one made by `start` (called only then).
    fn join_or_start(
        &self,
        key: Option<Duration>,
        start: impl FnOnce() -> BoxFuture<'static, SharedResult>,
    ) -> InFlight {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match in_flight.get(&key) {
            Some(scan) if scan.peek().is_none() => scan.clone(),
            _ => {
                let scan = start().shared();
                in_flight.insert(key, scan.clone());
                scan
            }
        }
    }

    /// Scans started so far that are still running (for tests).
    #[must_use]
    pub fn running(&self) -> usize {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|scan| scan.peek().is_none())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn empty() -> Inventory {
        Inventory {
            pvcs: Vec::new(),
            refused: Vec::new(),
            api_requests: 0,
        }
    }

    /// Eight callers while a scan runs: one scan, eight identical results; a caller after it ended
    /// starts a new one.
    #[tokio::test]
    async fn callers_during_a_scan_share_it() {
        let scans = Arc::new(SharedScans::default());
        let started = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let call = |scans: Arc<SharedScans>| {
            let (started, gate) = (started.clone(), gate.clone());
            async move {
                scans
                    .join_or_start(None, move || {
                        started.fetch_add(1, Ordering::SeqCst);
                        async move {
                            gate.notified().await;
                            Ok(Arc::new(empty()))
                        }
                        .boxed()
                    })
                    .await
            }
        };
        let waiters: Vec<_> = (0..8).map(|_| tokio::spawn(call(scans.clone()))).collect();
        while scans.running() == 0 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(started.load(Ordering::SeqCst), 1);
        gate.notify_waiters();
        for waiter in waiters {
            assert!(waiter.await.unwrap().is_ok());
        }
        assert_eq!(scans.running(), 0);
        gate.notify_one();
        assert!(call(scans.clone()).await.is_ok());
        assert_eq!(started.load(Ordering::SeqCst), 2);
    }
}
