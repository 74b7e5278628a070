//! Configuration of an OpenID provider and checks of the values a login carries: the client secret
//! (redacted `Debug`), the role mapping, the issuer and redirect URLs, a safe return path and a
//! provider error code.

#[allow(
    clippy::wildcard_imports,
    reason = "a part of the oidc module, sharing its imports"
)]
use super::*;

/// The client secret. `Debug` does not show it and there is no `Display`.
#[derive(Clone)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// The secret, trimmed (a file's trailing newline is not part of it); `None` when empty.
    pub fn new(text: &str) -> Option<Self> {
        let text = text.trim();
        (!text.is_empty()).then(|| Self(text.to_owned()))
    }

    pub(super) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(..)")
    }
}

/// Who gets which role. Deny by default: a user neither named nor in a mapped group gets none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleMapping {
    /// User name → role (the users file; password hashes play no part).
    pub users: BTreeMap<String, Role>,
    /// Group (from the groups claim) → role.
    pub groups: BTreeMap<String, Role>,
}

impl RoleMapping {
    /// Maps `group` to `role`; a group given several roles keeps the highest.
    pub fn add_group(&mut self, group: &str, role: Role) {
        let entry = self.groups.entry(group.to_owned()).or_insert(role);
        *entry = (*entry).max(role);
    }

    /// The highest role that the user's name or any of their groups is granted.
    pub fn role_for(&self, user: &str, groups: &[String]) -> Option<Role> {
        let by_name = self.users.get(user).copied();
        let by_group = groups
            .iter()
            .filter_map(|g| self.groups.get(g).copied())
            .max();
        by_name.max(by_group)
    }

    /// Whether nobody could get a role.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty()
    }
}

/// Everything configured for OIDC.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// The issuer URL (`https://…`, or `http://` on a loopback host); must equal the discovery
    /// document's `issuer`.
    pub issuer: String,
    pub client_id: String,
    /// `None`: a public client (PKCE only).
    pub client_secret: Option<ClientSecret>,
    /// The public URL of nkvm's callback route ([`CALLBACK_PATH`]).
    pub redirect_url: String,
    /// Requested scopes; `openid` is added when missing.
    pub scopes: Vec<String>,
    /// Claim holding the user name; `email` is the fallback when it is missing.
    pub username_claim: String,
    /// Claim holding the user's groups (a list of strings, or one string).
    pub groups_claim: String,
    pub roles: RoleMapping,
}

/// A local path to return to after login: absolute, not protocol-relative, no backslashes, no
/// whitespace or control characters (browsers drop tabs and newlines from URLs, which would turn
/// `/\t/host` into `//host`), not an `/auth/` endpoint, at most 2048 bytes. Anything else is `/`.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.starts_with("/auth/")
                && path.len() <= 2048
                && !path
                    .chars()
                    .any(|c| c == '\\' || c.is_whitespace() || c.is_control()) =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// Longest provider `error` code quoted, in bytes.
pub const MAX_ERROR_CODE_LEN: usize = 64;

/// `text` when it is a plausible OAuth 2.0 `error` code (RFC 6749 §4.1.2.1: 1 or more of
/// %x20-21 / %x23-5B / %x5D-7E, so no quotes, backslashes or control characters), at most
/// [`MAX_ERROR_CODE_LEN`] bytes; `None` otherwise.
pub fn error_code(text: &str) -> Option<&str> {
    let fits = |b: u8| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E);
    (!text.is_empty() && text.len() <= MAX_ERROR_CODE_LEN && text.bytes().all(fits)).then_some(text)
}

/// A configured value for an error message: printable, at most 128 characters.
pub(crate) fn shown(value: &str) -> String {
    let mut out: String = value
        .chars()
        .filter(|c| !c.is_control())
        .take(128)
        .collect();
    if value.chars().count() > 128 {
        out.push('…');
    }
    out
}

pub(super) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Whether `url` may carry codes and tokens: https, or http to a loopback host.
pub(super) fn is_secure_enough(url: &Url) -> bool {
    url.scheme() == "https" || (url.scheme() == "http" && is_loopback(url))
}

/// The issuer as an URL, checked: https (http only on loopback), no query, fragment or
/// credentials.
pub fn parse_issuer(issuer: &str) -> Result<Url, OidcError> {
    let invalid = |reason| OidcError::InvalidIssuer {
        url: shown(issuer),
        reason,
    };
    let url = Url::parse(issuer).map_err(|_| invalid("not an absolute URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("not an http(s) URL"));
    }
    if !is_secure_enough(&url) {
        return Err(invalid(
            "http is only allowed for a loopback issuer; use https",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("an issuer has no query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("an issuer has no user or password"));
    }
    Ok(url)
}

/// The redirect URL, checked: absolute http(s) (http only on loopback), ending in
/// [`CALLBACK_PATH`], no query or fragment.
pub fn parse_redirect_url(text: &str) -> Result<Url, OidcError> {
    let invalid = |reason: &str| OidcError::InvalidRedirectUrl {
        url: shown(text),
        reason: reason.to_owned(),
    };
    let url = Url::parse(text).map_err(|_| invalid("not an absolute URL"))?;
    if !is_secure_enough(&url) {
        return Err(invalid(
            "it must be https (http only on a loopback host): the code travels in it",
        ));
    }
    if url.path() != CALLBACK_PATH {
        return Err(invalid(&format!(
            "its path must be {CALLBACK_PATH} (nkvm's callback route)"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("it must have no query or fragment"));
    }
    Ok(url)
}
