//! Bounds on the work anonymous callers can make the server do: password verifications run on a
//! small pool of dedicated threads with a bounded queue (argon2id takes about 19 MiB each; without
//! a bound a few dozen parallel bad logins exceed the pod's memory limit and kill running
//! backups), and rate-limited requests are audited with one row per client address and window
//! instead of one per request.
//!
//! Why dedicated threads, each with its own argon2 working memory ([`VerifyMemory`]), rather than
//! a semaphore around `spawn_blocking`: allocating and freeing 19 MiB per verification fragments
//! the allocator's per-thread heaps, so memory grew far beyond the number of verifications running
//! at once (measured: 40 parallel logins with a semaphore of 4 grew the peak by over 700 MiB, and
//! by about 135 MiB even with one verifying thread). Threads that keep one buffer each stay at the
//! hash's cost per thread.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nkvm_engine::auth::VerifyMemory;

/// Password verifications running at once by default.
pub const DEFAULT_MAX_VERIFICATIONS: u16 = 4;

/// Logins waiting for a verification thread at most; more are refused with 503.
pub const DEFAULT_MAX_QUEUED: usize = 64;

type Job = Box<dyn FnOnce(&mut VerifyMemory) + Send>;

/// The password-verification threads of the server. Cheap to clone (shared state); the threads
/// end when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct VerifyGate {
    jobs: SyncSender<Job>,
}

/// No room in the queue: the caller answers 503 with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many logins in progress; try again in a few seconds")]
pub struct Busy;

/// One verification thread: runs jobs in its own working memory, reused from one to the next.
fn worker(jobs: &Mutex<Receiver<Job>>) {
    let mut memory = VerifyMemory::default();
    loop {
        let job = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        match job {
            Ok(job) => job(&mut memory),
            Err(_) => return,
        }
    }
}

impl VerifyGate {
    /// `threads` verification threads (at least 1) and a queue of at most `max_queued` waiting.
    ///
    /// # Panics
    /// When the operating system refuses to start a thread (at server start-up).
    #[must_use]
    pub fn new(threads: usize, max_queued: usize) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(max_queued);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("nkvm-verify-{i}"))
                .spawn(move || worker(&rx))
                .expect("cannot start a password verification thread");
        }
        Self { jobs: tx }
    }

    /// Runs `verify` on a verification thread, in that thread's working memory, and returns its
    /// result. The work is done even when the caller stops waiting (a client that disconnects
    /// frees no thread early).
    ///
    /// # Errors
    /// [`Busy`] when the queue is full (or the verification panicked).
    pub async fn run<T: Send + 'static>(
        &self,
        verify: impl FnOnce(&mut VerifyMemory) -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let _ = tx.send(verify(memory));
        });
        match self.jobs.try_send(job) {
            Ok(()) => rx.await.map_err(|_| Busy),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Busy),
        }
    }
}

impl Default for VerifyGate {
    fn default() -> Self {
        Self::new(usize::from(DEFAULT_MAX_VERIFICATIONS), DEFAULT_MAX_QUEUED)
    }
}

/// Addresses whose refusals are tracked at most (the oldest window is forgotten first).
const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    /// Refusals in this window not written as rows.
    suppressed: u64,
}

/// Decides which rate-limit refusals become audit rows: the first of each client address in each
/// window, carrying the number of refusals since the address's previous row.
#[derive(Debug, Clone)]
pub struct RefusalAudit {
    window: Duration,
    windows: Arc<Mutex<HashMap<IpAddr, Window>>>,
}

impl RefusalAudit {
    #[must_use]
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            windows: Arc::default(),
        }
    }

    /// Whether the refusal of a request from `ip` at `now` gets an audit row: `Some(n)` with the
    /// number of refusals from `ip` left out since its previous row, `None` to leave this one out.
    pub fn admit(&self, ip: IpAddr, now: Instant) -> Option<u64> {
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(window) = windows.get_mut(&ip) {
            if now.saturating_duration_since(window.started) < self.window {
                window.suppressed += 1;
                return None;
            }
            let left_out = window.suppressed;
            *window = Window {
                started: now,
                suppressed: 0,
            };
            return Some(left_out);
        }
        if windows.len() >= MAX_TRACKED {
            let window = self.window;
            windows.retain(|_, w| now.saturating_duration_since(w.started) < window);
            if windows.len() >= MAX_TRACKED
                && let Some(oldest) = windows
                    .iter()
                    .min_by_key(|(_, w)| w.started)
                    .map(|(ip, _)| *ip)
            {
                windows.remove(&oldest);
            }
        }
        windows.insert(
            ip,
            Window {
                started: now,
                suppressed: 0,
            },
        );
        Some(0)
    }

    /// Forgets windows that ended.
    pub fn expire(&self, now: Instant) {
        let window = self.window;
        self.windows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, w| now.saturating_duration_since(w.started) < window);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_gate_runs_n_at_once_queues_m_and_refuses_the_rest() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let gate = VerifyGate::new(2, 1);
        let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let release = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let job = || {
            let (running, peak, release) = (running.clone(), peak.clone(), release.clone());
            move |_: &mut VerifyMemory| {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                let (lock, wake) = &*release;
                let mut go = lock.lock().unwrap();
                while !*go {
                    go = wake.wait(go).unwrap();
                }
                running.fetch_sub(1, Ordering::SeqCst);
            }
        };
        // Two run (each taken by a thread before the next is sent), one waits in the queue...
        let mut started = Vec::new();
        for n in 1..=3 {
            let (gate, job) = (gate.clone(), job());
            started.push(tokio::spawn(async move { gate.run(job).await }));
            while n <= 2 && running.load(Ordering::SeqCst) < n {
                tokio::task::yield_now().await;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // ...and a fourth finds the queue full.
        assert_eq!(gate.run(job()).await, Err(Busy));
        {
            let (lock, wake) = &*release;
            *lock.lock().unwrap() = true;
            wake.notify_all();
        }
        for handle in started {
            assert_eq!(handle.await.unwrap(), Ok(()));
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn one_refusal_row_per_address_and_window() {
        let audit = RefusalAudit::new(Duration::from_mins(15));
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(audit.admit(ip, t0), Some(0));
        for i in 1..=100u64 {
            assert_eq!(audit.admit(ip, t0 + Duration::from_secs(i)), None);
        }
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(audit.admit(other, t0), Some(0));
        assert_eq!(audit.admit(ip, t0 + Duration::from_mins(15)), Some(100));
        audit.expire(t0 + Duration::from_mins(40));
        assert_eq!(audit.admit(ip, t0 + Duration::from_mins(40)), Some(0));
    }
}
