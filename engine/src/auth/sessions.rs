//! Login sessions held in memory: a random 256-bit token per login, absolute and idle expiry, a
//! cap on their number, and revocation by token or by user. Times are passed in (`now`) so that
//! expiry is tested without sleeping; a server restart logs everyone out.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::users::User;
use super::{RandomError, Role, constant_time_eq, random_hex};

/// Longest life of a session, however active.
pub const DEFAULT_ABSOLUTE: Duration = Duration::from_hours(12);

/// A session unused for this long ends.
pub const DEFAULT_IDLE: Duration = Duration::from_hours(1);

/// Sessions kept at most; the least recently used is dropped first.
pub const DEFAULT_MAX_SESSIONS: usize = 10_000;

/// Limits of a [`SessionStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOptions {
    /// A session ends this long after it was created.
    pub absolute: Duration,
    /// A session ends when unused for this long.
    pub idle: Duration,
    /// Sessions kept at most (`0` keeps none: nobody stays logged in).
    pub max_sessions: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            absolute: DEFAULT_ABSOLUTE,
            idle: DEFAULT_IDLE,
            max_sessions: DEFAULT_MAX_SESSIONS,
        }
    }
}

/// A session token: 64 lowercase hex digits (256 random bits), for the session cookie.
///
/// `Debug` does not show it and there is no `Display`, so that it does not end up in logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// The text to put in the cookie.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(..)")
    }
}

/// A logged-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    pub role: Role,
    pub created_at: Instant,
    /// The last time [`SessionStore::get`] found it.
    pub last_seen: Instant,
    /// A second random token (64 hex digits) for forms: the server embeds it in pages and checks
    /// it with [`Session::csrf_matches`] on state-changing requests.
    pub csrf: String,
}

impl Session {
    /// Whether `candidate` is this session's CSRF token (compared in constant time).
    pub fn csrf_matches(&self, candidate: &str) -> bool {
        constant_time_eq(self.csrf.as_bytes(), candidate.as_bytes())
    }

    fn alive(&self, options: &SessionOptions, now: Instant) -> bool {
        now.saturating_duration_since(self.created_at) < options.absolute
            && now.saturating_duration_since(self.last_seen) < options.idle
    }
}

/// The sessions of the server. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct SessionStore {
    options: SessionOptions,
    sessions: Arc<Mutex<HashMap<String, Session>>>,
}

impl Default for SessionStore {
    fn default() -> Self {
        Self::new(SessionOptions::default())
    }
}

impl SessionStore {
    pub fn new(options: SessionOptions) -> Self {
        Self {
            options,
            sessions: Arc::default(),
        }
    }

    pub fn options(&self) -> &SessionOptions {
        &self.options
    }

    /// The map, even if a thread panicked while holding it (every change leaves it consistent).
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a session for `user` (after a successful login). At the cap, expired sessions are
    /// dropped first, then the least recently used one.
    pub fn create(&self, user: &User, now: Instant) -> Result<(Token, Session), RandomError> {
        let token = random_hex::<32>()?;
        let session = Session {
            user: user.name.clone(),
            role: user.role,
            created_at: now,
            last_seen: now,
            csrf: random_hex::<32>()?,
        };
        let mut sessions = self.lock();
        if sessions.len() >= self.options.max_sessions {
            sessions.retain(|_, s| s.alive(&self.options, now));
        }
        while !sessions.is_empty() && sessions.len() >= self.options.max_sessions {
            let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            sessions.remove(&oldest);
        }
        if self.options.max_sessions > 0 {
            sessions.insert(token.clone(), session.clone());
        }
        Ok((Token(token), session))
    }

    /// The live session of `token`, marked as used at `now`; an expired one is removed and `None`.
    pub fn get(&self, token: &str, now: Instant) -> Option<Session> {
        let mut sessions = self.lock();
        let session = sessions.get_mut(token)?;
        if !session.alive(&self.options, now) {
            sessions.remove(token);
            return None;
        }
        session.last_seen = session.last_seen.max(now);
        Some(session.clone())
    }

    /// Whether `token` names a live session at `now`, without marking it as used (for streams that
    /// re-check the login they were opened with: their own traffic must not keep it alive).
    pub fn is_alive(&self, token: &str, now: Instant) -> bool {
        self.lock()
            .get(token)
            .is_some_and(|session| session.alive(&self.options, now))
    }

    /// Ends the session of `token` (logout); false when there was none.
    pub fn revoke(&self, token: &str) -> bool {
        self.lock().remove(token).is_some()
    }

    /// Ends every session of the user `name`; returns how many.
    pub fn revoke_user(&self, name: &str) -> usize {
        let mut sessions = self.lock();
        let before = sessions.len();
        sessions.retain(|_, s| s.user != name);
        before - sessions.len()
    }

    /// Removes sessions expired at `now` (call periodically); returns how many.
    pub fn expire(&self, now: Instant) -> usize {
        let mut sessions = self.lock();
        let before = sessions.len();
        sessions.retain(|_, s| s.alive(&self.options, now));
        before - sessions.len()
    }

    /// Sessions held (some may have expired since the last [`SessionStore::expire`]).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, role: Role) -> User {
        User {
            name: name.to_owned(),
            role,
        }
    }

    const MIN: Duration = Duration::from_mins(1);

    fn store(absolute_min: u64, idle_min: u64, max: usize) -> SessionStore {
        SessionStore::new(SessionOptions {
            absolute: MIN * u32::try_from(absolute_min).unwrap(),
            idle: MIN * u32::try_from(idle_min).unwrap(),
            max_sessions: max,
        })
    }

    #[test]
    fn defaults_are_twelve_hours_one_hour_and_ten_thousand() {
        let options = SessionOptions::default();
        assert_eq!(options.absolute, Duration::from_hours(12));
        assert_eq!(options.idle, Duration::from_hours(1));
        assert_eq!(options.max_sessions, 10_000);
    }

    #[test]
    fn creates_sessions_with_random_tokens() {
        let sessions = SessionStore::default();
        let now = Instant::now();
        let (t1, s1) = sessions.create(&user("alice", Role::Admin), now).unwrap();
        let (t2, s2) = sessions.create(&user("alice", Role::Admin), now).unwrap();
        for token in [t1.as_str(), t2.as_str(), &s1.csrf, &s2.csrf] {
            assert_eq!(token.len(), 64);
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
        }
        assert_ne!(t1, t2);
        assert_ne!(s1.csrf, s2.csrf);
        assert_ne!(t1.as_str(), s1.csrf);
        assert_eq!(format!("{t1:?}"), "Token(..)");
        assert_eq!(s1.user, "alice");
        assert_eq!(s1.role, Role::Admin);
        assert_eq!((s1.created_at, s1.last_seen), (now, now));
        assert_eq!(sessions.len(), 2);
        assert_eq!(sessions.get(t1.as_str(), now), Some(s1));
        assert_eq!(sessions.get("0".repeat(64).as_str(), now), None);
        assert_eq!(sessions.get("", now), None);
    }

    #[test]
    fn csrf_tokens_match_exactly() {
        let (_, session) = SessionStore::default()
            .create(&user("a", Role::Viewer), Instant::now())
            .unwrap();
        assert!(session.csrf_matches(&session.csrf.clone()));
        assert!(!session.csrf_matches(&session.csrf.to_uppercase()));
        assert!(!session.csrf_matches(&session.csrf[1..]));
        assert!(!session.csrf_matches(""));
    }

    #[test]
    fn idle_sessions_expire_and_use_keeps_them_alive() {
        let sessions = store(12 * 60, 60, 10);
        let t0 = Instant::now();
        let (token, _) = sessions.create(&user("a", Role::Viewer), t0).unwrap();
        // Used every 59 minutes for 5 hours: still alive, last_seen follows.
        let mut now = t0;
        for _ in 0..5 {
            now += 59 * MIN;
            let session = sessions.get(token.as_str(), now).expect("alive");
            assert_eq!(session.last_seen, now);
            assert_eq!(session.created_at, t0);
        }
        // One minute short of the idle limit, then exactly at it.
        assert!(sessions.get(token.as_str(), now + 59 * MIN).is_some());
        let last = now + 59 * MIN;
        assert!(sessions.get(token.as_str(), last + 60 * MIN).is_none());
        // Gone for good, even if asked at an earlier time.
        assert!(sessions.get(token.as_str(), last).is_none());
        assert!(sessions.is_empty());
    }

    #[test]
    fn sessions_end_at_the_absolute_limit_however_active() {
        let sessions = store(120, 60, 10);
        let t0 = Instant::now();
        let (token, _) = sessions.create(&user("a", Role::Viewer), t0).unwrap();
        for minutes in [30, 60, 90, 119] {
            assert!(sessions.get(token.as_str(), t0 + MIN * minutes).is_some());
        }
        assert!(sessions.get(token.as_str(), t0 + 120 * MIN).is_none());
        assert_eq!(sessions.len(), 0);
    }

    #[test]
    fn an_earlier_now_does_not_move_last_seen_back() {
        let sessions = store(120, 60, 10);
        let t0 = Instant::now();
        let (token, _) = sessions.create(&user("a", Role::Viewer), t0).unwrap();
        assert!(sessions.get(token.as_str(), t0 + 50 * MIN).is_some());
        assert_eq!(
            sessions.get(token.as_str(), t0 + MIN).map(|s| s.last_seen),
            Some(t0 + 50 * MIN)
        );
    }

    #[test]
    fn revokes_by_token_and_by_user() {
        let sessions = SessionStore::default();
        let now = Instant::now();
        let (a1, _) = sessions.create(&user("alice", Role::Admin), now).unwrap();
        let (a2, _) = sessions.create(&user("alice", Role::Admin), now).unwrap();
        let (b, _) = sessions.create(&user("bob", Role::Viewer), now).unwrap();
        assert!(sessions.revoke(a1.as_str()));
        assert!(!sessions.revoke(a1.as_str()));
        assert!(sessions.get(a1.as_str(), now).is_none());
        assert!(sessions.get(a2.as_str(), now).is_some());

        let (a3, _) = sessions.create(&user("alice", Role::Admin), now).unwrap();
        assert_eq!(sessions.revoke_user("alice"), 2);
        assert!(sessions.get(a2.as_str(), now).is_none());
        assert!(sessions.get(a3.as_str(), now).is_none());
        assert!(sessions.get(b.as_str(), now).is_some());
        assert_eq!(sessions.revoke_user("alice"), 0);
        assert_eq!(sessions.len(), 1);
    }

    #[test]
    fn expire_removes_only_expired_sessions() {
        let sessions = store(120, 60, 10);
        let t0 = Instant::now();
        let (old, _) = sessions.create(&user("a", Role::Viewer), t0).unwrap();
        let (active, _) = sessions.create(&user("b", Role::Viewer), t0).unwrap();
        let (new, _) = sessions
            .create(&user("c", Role::Viewer), t0 + 50 * MIN)
            .unwrap();
        assert!(sessions.get(active.as_str(), t0 + 40 * MIN).is_some());
        assert_eq!(sessions.expire(t0 + 59 * MIN), 0);
        // At +60 min `old` is idle for an hour; `active` was seen at +40.
        assert_eq!(sessions.expire(t0 + 60 * MIN), 1);
        assert!(sessions.get(old.as_str(), t0 + 60 * MIN).is_none());
        // At +100 min `active` (seen at +40) is idle for an hour; `new` was seen at +50.
        assert_eq!(sessions.expire(t0 + 100 * MIN), 1);
        assert_eq!(sessions.len(), 1);
        assert!(sessions.get(new.as_str(), t0 + 100 * MIN).is_some());
        assert_eq!(sessions.expire(t0 + 1000 * MIN), 1);
        assert!(sessions.is_empty());
    }

    #[test]
    #[allow(
        clippy::many_single_char_names,
        reason = "sessions a, b, c, … in order of creation"
    )]
    fn the_cap_drops_expired_then_least_recently_used_sessions() {
        let sessions = store(120, 60, 3);
        let t0 = Instant::now();
        let (a, _) = sessions.create(&user("a", Role::Viewer), t0).unwrap();
        let (b, _) = sessions.create(&user("b", Role::Viewer), t0 + MIN).unwrap();
        let (c, _) = sessions
            .create(&user("c", Role::Viewer), t0 + 2 * MIN)
            .unwrap();
        // `a` is used again, so `b` is now the least recently used.
        assert!(sessions.get(a.as_str(), t0 + 3 * MIN).is_some());
        let (d, _) = sessions
            .create(&user("d", Role::Viewer), t0 + 4 * MIN)
            .unwrap();
        assert_eq!(sessions.len(), 3);
        let now = t0 + 5 * MIN;
        assert!(sessions.get(b.as_str(), now).is_none());
        for live in [&a, &c, &d] {
            assert!(sessions.get(live.as_str(), now).is_some());
        }

        // When sessions have expired, they go first and live ones stay.
        let sessions = store(120, 60, 2);
        let (x, _) = sessions.create(&user("x", Role::Viewer), t0).unwrap();
        let (y, _) = sessions
            .create(&user("y", Role::Viewer), t0 + 30 * MIN)
            .unwrap();
        assert!(sessions.get(x.as_str(), t0 + 59 * MIN).is_some());
        // At +95, `y` (seen at +30) is idle-expired while `x` (seen at +59) is alive.
        let (z, _) = sessions
            .create(&user("z", Role::Viewer), t0 + 95 * MIN)
            .unwrap();
        assert_eq!(sessions.len(), 2);
        assert!(sessions.get(y.as_str(), t0 + 95 * MIN).is_none());
        assert!(sessions.get(x.as_str(), t0 + 96 * MIN).is_some());
        assert!(sessions.get(z.as_str(), t0 + 96 * MIN).is_some());
    }

    #[test]
    fn clones_share_the_sessions() {
        let sessions = SessionStore::default();
        let other = sessions.clone();
        let now = Instant::now();
        let (token, _) = sessions.create(&user("a", Role::Operator), now).unwrap();
        assert_eq!(
            other.get(token.as_str(), now).map(|s| s.role),
            Some(Role::Operator)
        );
        assert!(other.revoke(token.as_str()));
        assert!(sessions.get(token.as_str(), now).is_none());
    }
}
