//! Authentication and authorization primitives of the web server: roles, local users with argon2id
//! password hashes, in-memory sessions, login rate limiting and identities asserted by a trusted
//! reverse proxy, and OpenID Connect logins ([`oidc`], whose client calls the identity provider).
//! No web framework: the server maps requests onto these calls.
//!
//! A login with a password, as the server is expected to wire it:
//!
//! 1. [`ratelimit::LoginLimiter::check`] for the client IP and the typed name (refuse with
//!    `Retry-After` when limited);
//! 2. [`users::Users::verify_async`] (argon2id, off the async threads);
//! 3. on failure [`ratelimit::LoginLimiter::record_failure`] and an audit row
//!    ([`crate::audit::AuditAction::LoginFailed`]); on success
//!    [`ratelimit::LoginLimiter::record_success`], [`sessions::SessionStore::create`] and an audit
//!    row ([`crate::audit::AuditAction::Login`]);
//! 4. every later request: [`sessions::SessionStore::get`] with the cookie's token, then
//!    [`Role::allows`] for what the request needs.
//!
//! There is no default user and no default password: an empty [`users::Users`] is refused by
//! [`users::Users::non_empty`].

pub mod oidc;
pub mod proxy;
pub mod ratelimit;
pub mod sessions;
pub mod users;

pub use proxy::{Cidr, CidrError, ProxyConfig, ProxyError};
pub use ratelimit::{LimiterOptions, LoginLimiter, RetryAfter};
pub use sessions::{Session, SessionOptions, SessionStore, Token};
pub use users::{
    HashParams, HashProblem, PasswordError, User, Users, UsersError, VerifyMemory, check_hash,
    hash_password, is_valid_name,
};

crate::text_enum! {
    /// What a user may do; each role includes the ones below it (`Viewer < Operator < Admin`).
    #[derive(PartialOrd, Ord)]
    pub enum Role("role") {
        /// Reads the inventory and the history.
        Viewer => "viewer",
        /// Also starts and cancels backups and downloads archives.
        Operator => "operator",
        /// Also changes connections and reads the audit trail.
        Admin => "admin",
    }
}

impl Role {
    /// Whether a user with this role may do something that needs `needed`.
    #[must_use]
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

/// The operating system's random generator failed (no token or salt could be made).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the system random number generator failed: {0}")]
pub struct RandomError(pub getrandom::Error);

/// A fresh random token: 256 bits from the operating system as 64 lowercase hex digits (for keys
/// and nonces other than login sessions, which [`SessionStore::create`] makes itself).
pub fn random_token() -> Result<String, RandomError> {
    random_hex::<32>()
}

/// `N` random bytes from the operating system, as `2 * N` lowercase hex digits.
pub fn random_hex<const N: usize>() -> Result<String, RandomError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(RandomError)?;
    Ok(hex::encode(bytes))
}

/// Compares two byte strings in time that depends on their lengths only, not on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter()
        .zip(b)
        .fold(0u8, |diff, (x, y)| diff | (x ^ y))
        .eq(&0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_include_the_lower_ones() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        assert!(Role::Admin.allows(Role::Viewer));
        assert!(Role::Admin.allows(Role::Admin));
        assert!(Role::Operator.allows(Role::Operator));
        assert!(Role::Operator.allows(Role::Viewer));
        assert!(!Role::Operator.allows(Role::Admin));
        assert!(!Role::Viewer.allows(Role::Operator));
        assert!(Role::Viewer.allows(Role::Viewer));
    }

    #[test]
    fn roles_parse_and_serialize_lowercase() {
        for &role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(role.to_string(), role.as_str());
            assert_eq!(
                serde_json::to_string(&role).unwrap(),
                format!("\"{}\"", role.as_str())
            );
            assert_eq!(
                serde_json::from_str::<Role>(&format!("\"{}\"", role.as_str())).unwrap(),
                role
            );
        }
        for bad in ["", "Admin", "ADMIN", "root", " admin", "admin "] {
            let err = bad.parse::<Role>().unwrap_err();
            assert_eq!(err.what, "role");
            assert!(err.to_string().contains("viewer, operator, admin"), "{err}");
        }
        assert!(serde_json::from_str::<Role>("\"Admin\"").is_err());
    }

    #[test]
    fn random_tokens_are_fresh_lowercase_hex() {
        let a = random_token().unwrap();
        let b = random_token().unwrap();
        assert_eq!(a.len(), 64);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        );
        assert_ne!(a, b);
        assert_eq!(random_hex::<4>().unwrap().len(), 8);
    }

    #[test]
    fn constant_time_eq_compares_whole_strings() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"xbc"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
