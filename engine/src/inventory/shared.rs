//! One inventory scan in flight per connection: a viewer asking while a scan of the same kind runs
//! waits for that scan's result instead of starting another, so many open pages (or a script
//! reloading one) cost one cluster-wide scan at a time, not one each. The live inventory's history
//! join is shared too, but only by callers that arrived before it started (a page reading the
//! inventory because a backup just succeeded must see it): callers arriving while one runs wait for
//! it and share the next, so one runs at a time and page loads at once share one copy of the records.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};

use super::live::{LiveReader, StaleWatch};
use super::{
    HistoryJoin, Inventory, InventoryError, InventoryOptions, add_history, scan_with_history,
};
use crate::store::Store;

/// The result of a shared scan, handed to every waiter.
pub type SharedResult = Result<Arc<Inventory>, Arc<InventoryError>>;

/// The live inventory joined with the history, and the watches failing when it was read, handed to
/// every waiter.
pub type SharedLive = Result<(Arc<Inventory>, Vec<StaleWatch>), Arc<InventoryError>>;

type InFlight<T> = Shared<BoxFuture<'static, T>>;

/// Work in flight, by the caller's staleness setting (the only thing that differs between the
/// server's callers).
type Flights<T> = Mutex<HashMap<Option<Duration>, InFlight<T>>>;

/// Work in flight or done, with when it started, by the caller's staleness setting.
type Started<T> = Mutex<HashMap<Option<Duration>, (Instant, InFlight<T>)>>;

/// The scans and history joins in flight of one connection.
#[derive(Default)]
pub struct SharedScans {
    in_flight: Flights<SharedResult>,
    live: Started<SharedLive>,
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
        let running = join_or_start(&self.in_flight, stale_after, move || {
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

    /// The records of `live`'s snapshot once it is ready, with [`add_history`] (the time of "now"
    /// is the join's start), shared with the other callers of the same `stale_after` that arrived
    /// before it started (see the module documentation): ten page loads at once read one or two
    /// copies of the records, not ten, and none reads a history older than its request.
    pub async fn live(
        &self,
        live: LiveReader,
        client: &kube::Client,
        options: &InventoryOptions,
        store: &Store,
        stale_after: Option<Duration>,
    ) -> SharedLive {
        let (client, options, store) = (client.clone(), options.clone(), store.clone());
        join_next(&self.live, stale_after, move || {
            async move {
                let snapshot = live.ready().await.map_err(Arc::new)?;
                let mut inventory = snapshot.inventory();
                let history = HistoryJoin {
                    store: Some(&store),
                    stale_after,
                    now: jiff::Timestamp::now(),
                };
                add_history(&client, &options, history, &mut inventory)
                    .await
                    .map_err(Arc::new)?;
                Ok((Arc::new(inventory), snapshot.stale.clone()))
            }
            .boxed()
        })
        .await
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

/// The result of the work of `key` in flight, or of new work made by `start` (called only then).
async fn join_or_start<T: Clone>(
    flights: &Flights<T>,
    key: Option<Duration>,
    start: impl FnOnce() -> BoxFuture<'static, T>,
) -> T {
    let work = {
        let mut in_flight = flights.lock().unwrap_or_else(PoisonError::into_inner);
        match in_flight.get(&key) {
            Some(work) if work.peek().is_none() => work.clone(),
            _ => {
                let work = start().shared();
                in_flight.insert(key, work.clone());
                work
            }
        }
    };
    let result = work.clone().await;
    forget(flights, key, &work);
    result
}

/// Drops the entry of `key` once its work is done, if it is still `work`: a later caller starts
/// new work anyway, and a finished scan's result (the records of every PVC, megabytes at cluster
/// scale) would otherwise stay in memory until then.
fn forget<T>(flights: &Flights<T>, key: Option<Duration>, work: &InFlight<T>) {
    let mut flights = flights.lock().unwrap_or_else(PoisonError::into_inner);
    if flights.get(&key).is_some_and(|entry| entry.ptr_eq(work)) {
        flights.remove(&key);
    }
}

/// What a caller of [`join_next`] does next.
enum Next<T> {
    /// Share work that started after the caller arrived.
    Join(InFlight<T>),
    /// Wait for work that started before it, then look again.
    Wait(InFlight<T>),
    Start,
}

/// The result of work of `key` that started after the caller arrived: work in flight or done that
/// started since, else new work made by `start` once the work in flight (started earlier) ended.
async fn join_next<T: Clone>(
    flights: &Started<T>,
    key: Option<Duration>,
    start: impl FnOnce() -> BoxFuture<'static, T>,
) -> T {
    let arrival = Instant::now();
    loop {
        let next = match flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            Some((started, work)) if *started >= arrival => Next::Join(work.clone()),
            Some((_, work)) if work.peek().is_none() => Next::Wait(work.clone()),
            _ => Next::Start,
        };
        match next {
            Next::Join(work) => return work.await,
            Next::Wait(work) => {
                work.await;
            }
            Next::Start => break,
        }
    }
    let work = {
        let mut flights = flights.lock().unwrap_or_else(PoisonError::into_inner);
        match flights.get(&key) {
            // Another caller that arrived at the same time started it in between.
            Some((started, work)) if *started >= arrival => work.clone(),
            _ => {
                let work = start().shared();
                flights.insert(key, (Instant::now(), work.clone()));
                work
            }
        }
    };
    work.await
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
                join_or_start(&scans.in_flight, None, move || {
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
        let held = || scans.in_flight.lock().unwrap().len();
        assert_eq!(held(), 0, "a finished scan's result is not kept");
        gate.notify_one();
        assert!(call(scans.clone()).await.is_ok());
        assert_eq!(started.load(Ordering::SeqCst), 2);
        assert_eq!(held(), 0);
    }

    /// Eight callers while a join runs: they wait for it and share one next join, which started
    /// after they arrived; the first caller gets the first join's result.
    #[tokio::test]
    async fn callers_during_a_join_share_the_next_one() {
        let flights: Arc<Started<usize>> = Arc::default();
        let started = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let call = |flights: Arc<Started<usize>>| {
            let (started, gate) = (started.clone(), gate.clone());
            async move {
                join_next(&flights, None, move || {
                    let number = started.fetch_add(1, Ordering::SeqCst) + 1;
                    async move {
                        if number == 1 {
                            gate.notified().await;
                        }
                        number
                    }
                    .boxed()
                })
                .await
            }
        };
        let first = tokio::spawn(call(flights.clone()));
        while started.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let waiters: Vec<_> = (0..8)
            .map(|_| tokio::spawn(call(flights.clone())))
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            started.load(Ordering::SeqCst),
            1,
            "the waiters start nothing yet"
        );
        gate.notify_one();
        assert_eq!(first.await.unwrap(), 1);
        for waiter in waiters {
            assert_eq!(
                waiter.await.unwrap(),
                2,
                "one next join, started after they arrived"
            );
        }
        assert_eq!(started.load(Ordering::SeqCst), 2);
        // A caller after that starts its own.
        assert_eq!(call(flights.clone()).await, 3);
    }
}
