//! Login throttling that slows guessing without letting anyone lock out a named user: failures
//! are counted per (client address, user name) pair, with delays that double after the first few;
//! and per client address across all names, with a larger cap (one address spraying many names, or
//! flushing its own pair counters with random names). Nothing is counted per name alone, so junk
//! attempts from one address never refuse the right password from another. Memory is bounded.
//! Times are passed in (`now`) for tests.
//!
//! Names that are not configured users are counted exactly like real ones (a different answer would
//! tell which names exist); names that cannot be user names at all share one pair per address.
//!
//! Use: [`LoginLimiter::check`] before verifying a password (refuse with `Retry-After` on `Err`),
//! then exactly one of [`LoginLimiter::record_failure`], [`LoginLimiter::record_success`] or
//! [`LoginLimiter::release`] (the attempt was not made). `check` reserves a slot for the attempt in
//! progress, so that many parallel attempts cannot all pass before the first failure is recorded; a
//! slot never released expires after [`PENDING_TTL`].

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::users::is_valid_name;

/// Failed logins per (address, name) pair before delays start.
pub const DEFAULT_MAX_FAILURES: u32 = 5;

/// The first delay after [`DEFAULT_MAX_FAILURES`]; each further failure doubles it, up to the
/// window.
pub const DEFAULT_BASE_DELAY: Duration = Duration::from_secs(30);

/// The sliding window failures are counted in (also the longest delay).
pub const DEFAULT_WINDOW: Duration = Duration::from_mins(15);

/// Failed logins per client address, all names together, within the window.
pub const DEFAULT_MAX_ADDRESS_FAILURES: u32 = 50;

/// Pairs and addresses tracked at most; the least recently active is forgotten first.
pub const DEFAULT_MAX_KEYS: usize = 10_000;

/// How long an attempt passed by [`LoginLimiter::check`] counts without being recorded.
pub const PENDING_TTL: Duration = Duration::from_mins(1);

/// Settings of a [`LoginLimiter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimiterOptions {
    /// Failures allowed per (address, name) pair before each further attempt waits (at least 1).
    pub max_failures: u32,
    /// The wait after `max_failures` failures; it doubles with every further failure.
    pub base_delay: Duration,
    pub window: Duration,
    /// Failures allowed per address within `window`, all names together (at least 1).
    pub max_address_failures: u32,
    pub max_keys: usize,
}

impl Default for LimiterOptions {
    fn default() -> Self {
        Self {
            max_failures: DEFAULT_MAX_FAILURES,
            base_delay: DEFAULT_BASE_DELAY,
            window: DEFAULT_WINDOW,
            max_address_failures: DEFAULT_MAX_ADDRESS_FAILURES,
            max_keys: DEFAULT_MAX_KEYS,
        }
    }
}

/// Too many failed logins: try again after this long (for the `Retry-After` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many failed logins; try again in {} seconds", self.seconds())]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds, rounded up, at least 1.
    pub fn seconds(&self) -> u64 {
        let secs = self.0.as_secs() + u64::from(self.0.subsec_nanos() > 0);
        secs.max(1)
    }
}

/// What failures are counted by. Addresses are IPv4 addresses or the /64 network of an IPv6
/// address (one host usually has a whole /64).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// One client trying one name (`""`: names that cannot exist).
    Pair(IpAddr, String),
    /// One client, all names.
    Address(IpAddr),
}

#[derive(Debug, Default)]
struct Counter {
    /// Times of the latest failures, oldest first (bounded).
    failures: VecDeque<Instant>,
    /// Times of attempts passed by `check` and not yet recorded, oldest first.
    pending: VecDeque<Instant>,
    /// The last time this key was touched (for eviction).
    last: Option<Instant>,
}

impl Counter {
    /// Drops failures outside the window and pending attempts past their time.
    fn prune(&mut self, options: &LimiterOptions, now: Instant) {
        let window = options.window;
        while self
            .failures
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            self.failures.pop_front();
        }
        while self
            .pending
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= PENDING_TTL)
        {
            self.pending.pop_front();
        }
    }

    fn is_empty(&self) -> bool {
        self.failures.is_empty() && self.pending.is_empty()
    }

    fn count(&self) -> usize {
        self.failures.len() + self.pending.len()
    }

    /// A pair's wait (`None`: may try now): after `max_failures`, `base_delay` doubled per further
    /// failure (capped at the window), counted from the latest failure or attempt in progress.
    /// Call after [`Counter::prune`].
    fn pair_wait(&self, options: &LimiterOptions, now: Instant) -> Option<Duration> {
        let max = usize::try_from(options.max_failures.max(1)).unwrap_or(usize::MAX);
        let count = self.count();
        if count < max {
            return None;
        }
        let doublings = u32::try_from(count - max).unwrap_or(u32::MAX).min(20);
        let delay = options
            .base_delay
            .saturating_mul(1 << doublings)
            .min(options.window);
        let latest = self
            .failures
            .back()
            .into_iter()
            .chain(self.pending.back())
            .max()?;
        let wait = (*latest + delay).saturating_duration_since(now);
        (!wait.is_zero()).then_some(wait)
    }

    /// An address's wait (`None`: may try now): once `max` failures and attempts are in the
    /// window, until enough of them leave it. Call after [`Counter::prune`].
    fn cap_wait(&self, max: u32, options: &LimiterOptions, now: Instant) -> Option<Duration> {
        let max = usize::try_from(max.max(1)).unwrap_or(usize::MAX);
        let count = self.count();
        if count < max {
            return None;
        }
        let mut expiries: Vec<Instant> = self
            .failures
            .iter()
            .map(|t| *t + options.window)
            .chain(self.pending.iter().map(|t| *t + PENDING_TTL))
            .collect();
        expiries.sort_unstable();
        expiries
            .get(count - max)
            .map(|at| at.saturating_duration_since(now))
    }
}

#[derive(Debug)]
struct State {
    options: LimiterOptions,
    counters: HashMap<Key, Counter>,
}

impl State {
    /// The counter of `key`, making room for it when it is new.
    fn counter(&mut self, key: Key, now: Instant) -> &mut Counter {
        if !self.counters.contains_key(&key) && self.counters.len() >= self.options.max_keys {
            let options = self.options;
            self.counters.retain(|_, c| {
                c.prune(&options, now);
                !c.is_empty()
            });
            while self.counters.len() >= self.options.max_keys.max(1) {
                let Some(oldest) = self
                    .counters
                    .iter()
                    .min_by_key(|(_, c)| c.last)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                self.counters.remove(&oldest);
            }
        }
        let counter = self.counters.entry(key).or_default();
        counter.last = Some(counter.last.map_or(now, |last| last.max(now)));
        counter
    }

    /// How many failures a key keeps (older ones add nothing to its wait).
    fn keep(&self, key: &Key) -> usize {
        let keep = match key {
            Key::Pair(..) => self.options.max_failures.saturating_add(21),
            Key::Address(_) => self.options.max_address_failures,
        };
        usize::try_from(keep.max(1)).unwrap_or(usize::MAX)
    }
}

/// Failed-login counters of the server. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct LoginLimiter {
    state: Arc<Mutex<State>>,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        Self::new(LimiterOptions::default())
    }
}

/// The keys of an attempt: the (address, name) pair and the address. Names that cannot be user
/// names share the pair `(address, "")`.
fn keys(ip: IpAddr, user: &str) -> [Key; 2] {
    let ip = match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & (u128::MAX << 64)).into()),
        v4 @ IpAddr::V4(_) => v4,
    };
    let name = if is_valid_name(user) { user } else { "" };
    [Key::Pair(ip, name.to_owned()), Key::Address(ip)]
}

impl LoginLimiter {
    pub fn new(options: LimiterOptions) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                options,
                counters: HashMap::new(),
            })),
        }
    }

    /// The counters, even if a thread panicked while holding them (every change leaves them
    /// consistent).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a login attempt from `ip` as `user` may go ahead; on `Ok`, the attempt holds a
    /// slot until it is recorded or released. `Err` carries the longer wait of the pair and the
    /// address.
    pub fn check(&self, ip: IpAddr, user: &str, now: Instant) -> Result<(), RetryAfter> {
        let keys = keys(ip, user);
        let mut state = self.lock();
        let options = state.options;
        let mut wait: Option<Duration> = None;
        for key in &keys {
            if let Some(counter) = state.counters.get_mut(key) {
                counter.prune(&options, now);
                let blocked = match key {
                    Key::Pair(..) => counter.pair_wait(&options, now),
                    Key::Address(_) => {
                        counter.cap_wait(options.max_address_failures, &options, now)
                    }
                };
                if let Some(d) = blocked {
                    wait = Some(wait.map_or(d, |w| w.max(d)));
                }
            }
        }
        if let Some(wait) = wait {
            return Err(RetryAfter(wait));
        }
        for key in keys {
            state.counter(key, now).pending.push_back(now);
        }
        Ok(())
    }

    /// Counts a failed login from `ip` as `user` (and releases the slot of its check).
    pub fn record_failure(&self, ip: IpAddr, user: &str, now: Instant) {
        let mut state = self.lock();
        let options = state.options;
        for key in keys(ip, user) {
            let keep = state.keep(&key);
            let counter = state.counter(key, now);
            counter.pending.pop_front();
            counter.prune(&options, now);
            counter.failures.push_back(now);
            while counter.failures.len() > keep {
                counter.failures.pop_front();
            }
        }
    }

    /// A successful login: clears the pair's failures and releases the slot of the check. The
    /// address keeps its failures, so that one valid account cannot reset an address's guesses at
    /// other accounts.
    pub fn record_success(&self, ip: IpAddr, user: &str) {
        let mut state = self.lock();
        let [pair, address] = keys(ip, user);
        state.counters.remove(&pair);
        Self::release_key(&mut state, &address);
    }

    /// An attempt passed by `check` that was not made (e.g. refused for load): releases its slot
    /// without counting a failure.
    pub fn release(&self, ip: IpAddr, user: &str) {
        let mut state = self.lock();
        for key in keys(ip, user) {
            Self::release_key(&mut state, &key);
        }
    }

    fn release_key(state: &mut State, key: &Key) {
        if let Some(counter) = state.counters.get_mut(key) {
            counter.pending.pop_front();
            if counter.is_empty() {
                state.counters.remove(key);
            }
        }
    }

    /// Forgets counters with nothing left in their window (call periodically); returns how many.
    pub fn expire(&self, now: Instant) -> usize {
        let mut state = self.lock();
        let options = state.options;
        let before = state.counters.len();
        state.counters.retain(|_, c| {
            c.prune(&options, now);
            !c.is_empty()
        });
        before - state.counters.len()
    }

    /// Pairs and addresses tracked.
    pub fn tracked(&self) -> usize {
        self.lock().counters.len()
    }
}

#[cfg(test)]
mod tests;
