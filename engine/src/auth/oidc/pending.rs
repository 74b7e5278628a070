//! Logins in progress: one-time states with their PKCE verifier, nonce, return path and client,
//! expiring after [`super::PENDING_TTL`], bounded per client and in total.

#[allow(
    clippy::wildcard_imports,
    reason = "a part of the oidc module, sharing its imports"
)]
use super::*;

/// A login waiting for the provider's callback.
pub(super) struct Pending {
    pub(super) verifier: String,
    pub(super) nonce: String,
    pub(super) next: String,
    /// Who started it ([`client_key`] of the address).
    pub(super) client: IpAddr,
    pub(super) created: Instant,
}

/// The client a login in progress is counted against: an IPv4 address (IPv4-mapped IPv6 ones
/// included), or the /64 prefix of an IPv6 address (one host usually has a whole /64).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !u128::from(u64::MAX),
            )),
        },
    }
}

/// Logins in progress, by state. One-time: [`PendingLogins::take`] removes the entry.
pub(super) struct PendingLogins {
    entries: Mutex<HashMap<String, Pending>>,
    ttl: Duration,
    max: usize,
    max_per_client: usize,
}

impl PendingLogins {
    /// No login in progress; each lives `ttl`, at most `max` in all and `max_per_client` per
    /// client.
    pub(super) fn new(ttl: Duration, max: usize, max_per_client: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            ttl,
            max,
            max_per_client,
        }
    }
}

/// The state of the oldest entry among `entries` that `keep` selects.
pub(super) fn oldest<'a>(
    entries: impl Iterator<Item = (&'a String, &'a Pending)>,
    keep: impl Fn(&Pending) -> bool,
) -> Option<String> {
    entries
        .filter(|(_, p)| keep(p))
        .min_by_key(|(_, p)| p.created)
        .map(|(k, _)| k.clone())
}

impl PendingLogins {
    pub(super) fn lock(&self) -> MutexGuard<'_, HashMap<String, Pending>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers `pending`. A client at its limit loses its own oldest login; when all clients
    /// together are at the limit, the client with the most logins in progress loses its oldest.
    pub(super) fn insert(&self, state: String, pending: Pending, now: Instant) {
        let mut entries = self.lock();
        let client = pending.client;
        let count = |entries: &HashMap<String, Pending>| {
            entries.values().filter(|p| p.client == client).count()
        };
        let ttl = self.ttl;
        if entries.len() >= self.max || count(&entries) >= self.max_per_client {
            entries.retain(|_, p| now.saturating_duration_since(p.created) < ttl);
        }
        while count(&entries) >= self.max_per_client.max(1) {
            let Some(state) = oldest(entries.iter(), |p| p.client == client) else {
                break;
            };
            entries.remove(&state);
        }
        while entries.len() >= self.max.max(1) {
            let mut per_client: HashMap<IpAddr, usize> = HashMap::new();
            for p in entries.values() {
                *per_client.entry(p.client).or_default() += 1;
            }
            let Some(heaviest) = per_client.values().copied().max() else {
                break;
            };
            let Some(state) = oldest(entries.iter(), |p| per_client[&p.client] == heaviest) else {
                break;
            };
            entries.remove(&state);
        }
        entries.insert(state, pending);
    }

    pub(super) fn take(&self, state: &str, now: Instant) -> Result<Pending, OidcError> {
        let pending = self.lock().remove(state).ok_or(OidcError::UnknownState)?;
        if now.saturating_duration_since(pending.created) >= self.ttl {
            return Err(OidcError::StateExpired);
        }
        Ok(pending)
    }

    pub(super) fn expire(&self, now: Instant) -> usize {
        let mut entries = self.lock();
        let before = entries.len();
        let ttl = self.ttl;
        entries.retain(|_, p| now.saturating_duration_since(p.created) < ttl);
        before - entries.len()
    }
}
