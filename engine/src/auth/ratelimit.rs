//! Login rate limiting: at most N failed logins per sliding window, counted separately per client
//! address and per user name, with bounded memory. Times are passed in (`now`) for tests.
//!
//! Use: [`LoginLimiter::check`] before verifying a password (refuse with `Retry-After` on `Err`),
//! then exactly one of [`LoginLimiter::record_failure`] or [`LoginLimiter::record_success`].
//! `check` reserves a slot for the attempt in progress, so that many parallel attempts cannot all
//! pass before the first failure is recorded; a slot never released expires after
//! [`PENDING_TTL`].

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::users::is_valid_name;

/// Failed logins allowed per key and window.
pub const DEFAULT_MAX_FAILURES: u32 = 5;

/// The sliding window failures are counted in.
pub const DEFAULT_WINDOW: Duration = Duration::from_mins(15);

/// Addresses and names tracked at most; the least recently active is forgotten first.
pub const DEFAULT_MAX_KEYS: usize = 10_000;

/// How long an attempt passed by [`LoginLimiter::check`] counts without being recorded.
pub const PENDING_TTL: Duration = Duration::from_mins(1);

/// Settings of a [`LoginLimiter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimiterOptions {
    /// Failures allowed per address and per name within `window` (at least 1).
    pub max_failures: u32,
    pub window: Duration,
    pub max_keys: usize,
}

impl Default for LimiterOptions {
    fn default() -> Self {
        Self {
            max_failures: DEFAULT_MAX_FAILURES,
            window: DEFAULT_WINDOW,
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

/// What failures are counted by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// An IPv4 address, or the /64 network of an IPv6 address (one host usually has a whole /64).
    Ip(IpAddr),
    User(String),
}

#[derive(Debug, Default)]
struct Counter {
    /// Times of the latest failures, oldest first (at most `max_failures`).
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

    /// How long until this key may try again (`None`: now). Call after [`Counter::prune`].
    fn blocked_for(&self, options: &LimiterOptions, now: Instant) -> Option<Duration> {
        let max = usize::try_from(options.max_failures.max(1)).unwrap_or(usize::MAX);
        let count = self.failures.len() + self.pending.len();
        if count < max {
            return None;
        }
        // Allowed again once `count - max + 1` entries have expired.
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

/// The keys of an attempt: the client's address (IPv6 by /64) and the name, when it is a valid
/// user name (other names cannot log in, so they need no protection).
fn keys(ip: IpAddr, user: &str) -> Vec<Key> {
    let ip = match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & (u128::MAX << 64)).into()),
        v4 @ IpAddr::V4(_) => v4,
    };
    let mut keys = vec![Key::Ip(ip)];
    if is_valid_name(user) {
        keys.push(Key::User(user.to_owned()));
    }
    keys
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
    /// slot until it is recorded. `Err` carries the longer wait of the two keys.
    pub fn check(&self, ip: IpAddr, user: &str, now: Instant) -> Result<(), RetryAfter> {
        let keys = keys(ip, user);
        let mut state = self.lock();
        let options = state.options;
        let mut wait: Option<Duration> = None;
        for key in &keys {
            if let Some(counter) = state.counters.get_mut(key) {
                counter.prune(&options, now);
                if let Some(d) = counter.blocked_for(&options, now) {
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
        let max = usize::try_from(options.max_failures.max(1)).unwrap_or(usize::MAX);
        for key in keys(ip, user) {
            let counter = state.counter(key, now);
            counter.pending.pop_front();
            counter.prune(&options, now);
            counter.failures.push_back(now);
            while counter.failures.len() > max {
                counter.failures.pop_front();
            }
        }
    }

    /// A successful login: clears the failures of `user` and releases the slot of the check. The
    /// address keeps its failures, so that one valid account cannot reset an address's guesses at
    /// other accounts.
    pub fn record_success(&self, ip: IpAddr, user: &str) {
        let mut state = self.lock();
        for key in keys(ip, user) {
            match key {
                Key::User(_) => {
                    state.counters.remove(&key);
                }
                Key::Ip(_) => {
                    if let Some(counter) = state.counters.get_mut(&key) {
                        counter.pending.pop_front();
                        if counter.is_empty() {
                            state.counters.remove(&key);
                        }
                    }
                }
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

    /// Addresses and names tracked.
    pub fn tracked(&self) -> usize {
        self.lock().counters.len()
    }
}

#[cfg(test)]
mod tests;
