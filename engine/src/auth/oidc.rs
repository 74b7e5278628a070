//! OpenID Connect login (authorization code flow with PKCE): provider discovery, pending logins
//! (state → PKCE verifier, nonce, return path, client address; one-time, 10-minute TTL, bounded
//! per client and in total), the
//! authorization URL, the code exchange, ID-token verification (signature against the provider's
//! key set, `iss`, `aud`, `azp`, `exp`, `iat`, `nbf`, `nonce`), the user name and groups from the
//! claims, and the role they map to (deny by default). No web framework: the server maps its two
//! routes onto [`OidcClient::start`] and [`OidcClient::finish`].
//!
//! Secrets stay out of logs and errors: the client secret ([`ClientSecret`] has a redacted
//! `Debug`), the code, the tokens and the PKCE verifier are never formatted into a message.

pub(crate) mod http;
pub mod jws;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use url::Url;

use self::http::HttpClient;
pub use self::http::HttpError;
pub use self::jws::{Algorithm, Jwks, JwksError, JwsError};
use super::users::is_valid_name;
use super::{RandomError, Role, constant_time_eq, random_token};

/// How long a started login may take at the identity provider.
pub const PENDING_TTL: Duration = Duration::from_mins(10);

/// Logins in progress kept at most; when full, the oldest login of the client with the most
/// logins in progress is dropped first.
pub const MAX_PENDING: usize = 1000;

/// Logins in progress kept at most per client (an IPv4 address, or an IPv6 /64); its oldest is
/// dropped first. Starting logins needs no account, so one client must not push out everyone
/// else's.
pub const MAX_PENDING_PER_CLIENT: usize = 10;

/// Clock skew tolerated on `exp`, `iat` and `nbf`, in seconds.
pub const LEEWAY_SECONDS: i64 = 60;

/// Path of the callback route (the redirect URL must point there).
pub const CALLBACK_PATH: &str = "/auth/oidc/callback";

/// Longest authorization code accepted, in bytes.
const MAX_CODE_LEN: usize = 4096;

/// Most groups read from a token.
const MAX_GROUPS: usize = 1000;

/// Longest group name kept, in bytes.
const MAX_GROUP_LEN: usize = 256;

/// The client secret. `Debug` does not show it and there is no `Display`.
#[derive(Clone)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// The secret, trimmed (a file's trailing newline is not part of it); `None` when empty.
    pub fn new(text: &str) -> Option<Self> {
        let text = text.trim();
        (!text.is_empty()).then(|| Self(text.to_owned()))
    }

    fn expose(&self) -> &str {
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

/// Why OIDC could not be set up or a login failed. Never quotes a code, token, verifier or secret.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("invalid issuer {url:?}: {reason}")]
    InvalidIssuer { url: String, reason: &'static str },
    #[error("invalid redirect URL {url:?}: {reason}")]
    InvalidRedirectUrl { url: String, reason: String },
    #[error("invalid client id: it must be 1 to 255 printable ASCII characters")]
    InvalidClientId,
    #[error("invalid scope {0:?}: a scope is printable ASCII without spaces or quotes")]
    InvalidScope(String),
    #[error("invalid claim name {0:?}")]
    InvalidClaim(String),
    #[error("cannot set up the HTTPS client (system root certificates): {0}")]
    HttpClient(#[source] std::io::Error),
    #[error("fetching the discovery document {url} failed: {source}")]
    Discovery {
        url: String,
        #[source]
        source: HttpError,
    },
    #[error("the discovery document {url} is invalid: {reason}")]
    DiscoveryDocument { url: String, reason: String },
    #[error(
        "the discovery document names the issuer {found:?}, not the configured {expected:?} (they \
         must match exactly, trailing slash included)"
    )]
    IssuerMismatch { expected: String, found: String },
    #[error("the provider's {which} {url:?} is not https ({reason})")]
    InsecureEndpoint {
        which: &'static str,
        url: String,
        reason: &'static str,
    },
    #[error(
        "the provider supports neither client_secret_basic nor client_secret_post at its token \
         endpoint (it lists {0})"
    )]
    NoClientAuthMethod(String),
    #[error("the provider does not support PKCE with S256 (it lists {0})")]
    NoPkce(String),
    #[error("fetching the provider's keys from {url} failed: {source}")]
    Keys {
        url: String,
        #[source]
        source: HttpError,
    },
    #[error("the provider's key set at {url} is invalid: {source}")]
    KeySet {
        url: String,
        #[source]
        source: JwksError,
    },
    #[error("{0}")]
    Random(#[from] RandomError),
    #[error("the login's state parameter is malformed")]
    MalformedState,
    #[error("the authorization code is malformed")]
    MalformedCode,
    #[error("unknown or already used login attempt (the state does not match a started login)")]
    UnknownState,
    #[error("the login attempt expired (it must finish within {} minutes)", PENDING_TTL.as_secs() / 60)]
    StateExpired,
    #[error("the login was started in another browser (the state cookie does not match)")]
    StateMismatch,
    #[error("the token request failed: {0}")]
    TokenRequest(#[source] HttpError),
    #[error("the token endpoint refused the code: HTTP {status}{}", detail(.error.as_deref(), .description.as_deref()))]
    TokenRefused {
        status: u16,
        error: Option<String>,
        description: Option<String>,
    },
    #[error("the token endpoint's answer is invalid: {0}")]
    TokenResponse(String),
    #[error("the ID token is refused: {0}")]
    IdToken(#[from] IdTokenError),
    #[error("the user info request failed: {0}")]
    UserInfoRequest(#[source] HttpError),
    #[error("the user info endpoint answered HTTP {0}")]
    UserInfoStatus(u16),
    #[error("the user info answer is invalid: {0}")]
    UserInfoResponse(String),
    #[error("the user info is about another subject than the ID token")]
    UserInfoSubject,
    #[error("the identity provider sent no user name (no {claim:?} claim and no email)")]
    NoUsername { claim: String },
    #[error(
        "the identity provider's {claim:?} claim {value:?} is not a valid nkvm user name (1 to 64 \
         of lowercase letters, digits, `.`, `_`, `@` and `-`)"
    )]
    InvalidUsername { claim: String, value: String },
    #[error(
        "the identity provider does not confirm that the email address {0:?} is verified \
         (email_verified must be true to use it as the user name)"
    )]
    EmailNotVerified(String),
}

fn detail(error: Option<&str>, description: Option<&str>) -> String {
    match (error, description) {
        (Some(e), Some(d)) => format!(" ({e}: {d})"),
        (Some(e), None) => format!(" ({e})"),
        (None, Some(d)) => format!(" ({d})"),
        (None, None) => String::new(),
    }
}

/// Why an ID token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    #[error("{0}")]
    Signature(#[from] JwsError),
    #[error("its claims are not a JSON object")]
    Claims,
    #[error("it was issued by {0:?}, not the configured issuer")]
    Issuer(String),
    #[error("it is not meant for this client (aud)")]
    Audience,
    #[error("it was issued to another party (azp)")]
    AuthorizedParty,
    #[error("it has expired")]
    Expired,
    #[error("it has no valid exp claim")]
    NoExpiry,
    #[error("it has no valid iat claim")]
    NoIssuedAt,
    #[error("it was issued in the future (iat)")]
    IssuedInFuture,
    #[error("it is not valid yet (nbf)")]
    NotYetValid,
    #[error("its nonce does not match this login")]
    Nonce,
    #[error("it has no subject")]
    NoSubject,
}

/// A login handed to the identity provider: send the browser to `url`; keep `state` in a cookie
/// for [`OidcClient::finish`].
#[derive(Clone)]
pub struct Started {
    pub url: String,
    pub state: String,
}

impl fmt::Debug for Started {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Started").finish_non_exhaustive()
    }
}

/// A finished login: who signed in at the provider, and the role nkvm grants them (`None`:
/// refuse).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    pub username: String,
    pub subject: String,
    pub groups: Vec<String>,
    pub role: Option<Role>,
    /// Where to send the browser now (a local path).
    pub next: String,
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

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Whether `url` may carry codes and tokens: https, or http to a loopback host.
fn is_secure_enough(url: &Url) -> bool {
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

fn check_token_text(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 255
        && text
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

/// The provider's metadata that a login needs (from discovery).
#[derive(Debug, Clone)]
struct Provider {
    issuer: String,
    authorization_endpoint: Url,
    token_endpoint: Url,
    jwks_uri: Url,
    userinfo_endpoint: Option<Url>,
    client_auth: ClientAuth,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    Basic,
    Post,
    /// A public client: `client_id` in the body, no secret.
    None,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    userinfo_endpoint: Option<String>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    code_challenge_methods_supported: Option<Vec<String>>,
}

/// A login waiting for the provider's callback.
struct Pending {
    verifier: String,
    nonce: String,
    next: String,
    /// Who started it ([`client_key`] of the address).
    client: IpAddr,
    created: Instant,
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
struct PendingLogins {
    entries: Mutex<HashMap<String, Pending>>,
    ttl: Duration,
    max: usize,
    max_per_client: usize,
}

/// The state of the oldest entry among `entries` that `keep` selects.
fn oldest<'a>(
    entries: impl Iterator<Item = (&'a String, &'a Pending)>,
    keep: impl Fn(&Pending) -> bool,
) -> Option<String> {
    entries
        .filter(|(_, p)| keep(p))
        .min_by_key(|(_, p)| p.created)
        .map(|(k, _)| k.clone())
}

impl PendingLogins {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Pending>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers `pending`. A client at its limit loses its own oldest login; when all clients
    /// together are at the limit, the client with the most logins in progress loses its oldest.
    fn insert(&self, state: String, pending: Pending, now: Instant) {
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

    fn take(&self, state: &str, now: Instant) -> Result<Pending, OidcError> {
        let pending = self.lock().remove(state).ok_or(OidcError::UnknownState)?;
        if now.saturating_duration_since(pending.created) >= self.ttl {
            return Err(OidcError::StateExpired);
        }
        Ok(pending)
    }

    fn expire(&self, now: Instant) -> usize {
        let mut entries = self.lock();
        let before = entries.len();
        let ttl = self.ttl;
        entries.retain(|_, p| now.saturating_duration_since(p.created) < ttl);
        before - entries.len()
    }
}

/// A configured, discovered OpenID provider, and the logins in progress with it. Cheap to clone.
#[derive(Clone)]
pub struct OidcClient {
    inner: Arc<Inner>,
}

struct Inner {
    settings: OidcSettings,
    redirect_url: Url,
    scope: String,
    provider: Provider,
    http: HttpClient,
    keys: Mutex<Arc<Jwks>>,
    pending: PendingLogins,
}

impl fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcClient")
            .field("issuer", &self.inner.provider.issuer)
            .field("client_id", &self.inner.settings.client_id)
            .finish_non_exhaustive()
    }
}

/// The token endpoint's answer.
#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// An endpoint from the discovery document: https, or http on a loopback host, and https
/// whenever the issuer is (a provider reached over TLS must not send codes and tokens elsewhere
/// in the clear, not even to a loopback port).
fn parse_endpoint(
    which: &'static str,
    text: &str,
    document: &str,
    issuer: &Url,
) -> Result<Url, OidcError> {
    let url = Url::parse(text).map_err(|_| OidcError::DiscoveryDocument {
        url: document.to_owned(),
        reason: format!("its {which} is not an absolute URL"),
    })?;
    let insecure = |reason| OidcError::InsecureEndpoint {
        which,
        url: shown(text),
        reason,
    };
    if !is_secure_enough(&url) {
        return Err(insecure("only loopback hosts may use http"));
    }
    if issuer.scheme() == "https" && url.scheme() != "https" {
        return Err(insecure("the issuer is https, so every endpoint must be"));
    }
    Ok(url)
}

impl OidcClient {
    /// Checks the settings, fetches the discovery document (`{issuer}/.well-known/openid-configuration`,
    /// whose `issuer` must equal the configured one exactly) and the provider's key set.
    pub async fn discover(settings: OidcSettings) -> Result<Self, OidcError> {
        Self::discover_with(settings, PENDING_TTL, MAX_PENDING, MAX_PENDING_PER_CLIENT).await
    }

    /// [`OidcClient::discover`] with other limits for logins in progress (tests).
    pub async fn discover_with(
        settings: OidcSettings,
        ttl: Duration,
        max_pending: usize,
        max_pending_per_client: usize,
    ) -> Result<Self, OidcError> {
        let issuer = parse_issuer(&settings.issuer)?;
        let redirect_url = parse_redirect_url(&settings.redirect_url)?;
        if !check_token_text(&settings.client_id) {
            return Err(OidcError::InvalidClientId);
        }
        let mut scopes: Vec<&str> = Vec::new();
        for scope in &settings.scopes {
            if !check_token_text(scope) {
                return Err(OidcError::InvalidScope(shown(scope)));
            }
            if !scopes.contains(&scope.as_str()) {
                scopes.push(scope);
            }
        }
        if !scopes.contains(&"openid") {
            scopes.insert(0, "openid");
        }
        for claim in [&settings.username_claim, &settings.groups_claim] {
            if !check_token_text(claim) {
                return Err(OidcError::InvalidClaim(shown(claim)));
            }
        }
        let http = HttpClient::new(issuer.scheme() == "https").map_err(OidcError::HttpClient)?;
        let document = format!(
            "{}/.well-known/openid-configuration",
            settings.issuer.trim_end_matches('/')
        );
        let document_url = Url::parse(&document).map_err(|_| OidcError::InvalidIssuer {
            url: shown(&settings.issuer),
            reason: "no discovery URL can be made from it",
        })?;
        let answer =
            http.get(&document_url, None)
                .await
                .map_err(|source| OidcError::Discovery {
                    url: document.clone(),
                    source,
                })?;
        let invalid = |reason: String| OidcError::DiscoveryDocument {
            url: document.clone(),
            reason,
        };
        if answer.status != ::http::StatusCode::OK {
            return Err(invalid(format!("HTTP {}", answer.status.as_u16())));
        }
        let discovery: Discovery =
            serde_json::from_slice(&answer.body).map_err(|e| invalid(e.to_string()))?;
        if discovery.issuer != settings.issuer {
            return Err(OidcError::IssuerMismatch {
                expected: settings.issuer.clone(),
                found: shown(&discovery.issuer),
            });
        }
        let authorization_endpoint = parse_endpoint(
            "authorization_endpoint",
            &discovery.authorization_endpoint,
            &document,
            &issuer,
        )?;
        let token_endpoint = parse_endpoint(
            "token_endpoint",
            &discovery.token_endpoint,
            &document,
            &issuer,
        )?;
        let jwks_uri = parse_endpoint("jwks_uri", &discovery.jwks_uri, &document, &issuer)?;
        let userinfo_endpoint = discovery
            .userinfo_endpoint
            .as_deref()
            .map(|u| parse_endpoint("userinfo_endpoint", u, &document, &issuer))
            .transpose()?;
        if let Some(methods) = &discovery.code_challenge_methods_supported
            && !methods.iter().any(|m| m == "S256")
        {
            return Err(OidcError::NoPkce(shown(&methods.join(", "))));
        }
        let client_auth = if settings.client_secret.is_some() {
            // RFC 8414: client_secret_basic when the provider lists nothing.
            let methods = discovery
                .token_endpoint_auth_methods_supported
                .unwrap_or_else(|| vec!["client_secret_basic".to_owned()]);
            if methods.iter().any(|m| m == "client_secret_basic") {
                ClientAuth::Basic
            } else if methods.iter().any(|m| m == "client_secret_post") {
                ClientAuth::Post
            } else {
                return Err(OidcError::NoClientAuthMethod(shown(&methods.join(", "))));
            }
        } else {
            ClientAuth::None
        };
        let provider = Provider {
            issuer: discovery.issuer,
            authorization_endpoint,
            token_endpoint,
            jwks_uri,
            userinfo_endpoint,
            client_auth,
        };
        let keys = fetch_keys(&http, &provider.jwks_uri).await?;
        let scope = scopes.join(" ");
        Ok(Self {
            inner: Arc::new(Inner {
                settings,
                redirect_url,
                scope,
                provider,
                http,
                keys: Mutex::new(Arc::new(keys)),
                pending: PendingLogins {
                    entries: Mutex::new(HashMap::new()),
                    ttl,
                    max: max_pending,
                    max_per_client: max_pending_per_client,
                },
            }),
        })
    }

    /// The issuer's `host[:port]`, for "Sign in with …".
    pub fn issuer_host(&self) -> String {
        Url::parse(&self.inner.provider.issuer)
            .ok()
            .and_then(|u| {
                let host = u.host_str()?.to_owned();
                Some(match u.port() {
                    Some(port) => format!("{host}:{port}"),
                    None => host,
                })
            })
            .unwrap_or_else(|| self.inner.provider.issuer.clone())
    }

    /// The configured settings.
    pub fn settings(&self) -> &OidcSettings {
        &self.inner.settings
    }

    /// Logins in progress.
    pub fn pending_count(&self) -> usize {
        self.inner.pending.lock().len()
    }

    /// Forgets logins in progress past their time (call periodically); returns how many.
    pub fn expire(&self, now: Instant) -> usize {
        self.inner.pending.expire(now)
    }

    /// Starts a login for the browser at `client` that returns to `next` (checked with
    /// [`safe_next`]): remembers a fresh state, nonce and PKCE verifier, and returns the
    /// provider's authorization URL. Each client keeps at most [`MAX_PENDING_PER_CLIENT`] logins
    /// in progress.
    pub fn start(
        &self,
        next: Option<&str>,
        client: IpAddr,
        now: Instant,
    ) -> Result<Started, OidcError> {
        let state = random_token()?;
        let nonce = random_token()?;
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(RandomError)?;
        let verifier = URL_SAFE_NO_PAD.encode(bytes);
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let mut url = self.inner.provider.authorization_endpoint.clone();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.inner.settings.client_id)
            .append_pair("redirect_uri", self.inner.redirect_url.as_str())
            .append_pair("scope", &self.inner.scope)
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        self.inner.pending.insert(
            state.clone(),
            Pending {
                verifier,
                nonce,
                next: safe_next(next),
                client: client_key(client),
                created: now,
            },
            now,
        );
        Ok(Started {
            url: url.into(),
            state,
        })
    }

    /// Forgets the login of `state` (the provider answered with an error); returns its `next`.
    pub fn abandon(&self, state: &str) -> Option<String> {
        self.inner.pending.lock().remove(state).map(|p| p.next)
    }

    /// Finishes the login of `state` (one time only) with the provider's `code`: `cookie_state`
    /// must be the state this browser was given by [`OidcClient::start`]. Exchanges the code,
    /// verifies the ID token, reads the user name and groups (from the user info endpoint when the
    /// ID token lacks them) and maps them to a role.
    pub async fn finish(
        &self,
        state: &str,
        code: &str,
        cookie_state: Option<&str>,
        now: Instant,
    ) -> Result<Completed, OidcError> {
        if state.len() != 64 || !state.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(OidcError::MalformedState);
        }
        let pending = self.inner.pending.take(state, now)?;
        if !cookie_state.is_some_and(|c| constant_time_eq(c.as_bytes(), state.as_bytes())) {
            return Err(OidcError::StateMismatch);
        }
        if code.is_empty()
            || code.len() > MAX_CODE_LEN
            || !code.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(OidcError::MalformedCode);
        }
        let tokens = self.exchange(code, &pending.verifier).await?;
        let id_token = tokens
            .id_token
            .as_deref()
            .ok_or_else(|| OidcError::TokenResponse("it has no id_token".to_owned()))?;
        let mut claims = self.verify_id_token(id_token, &pending.nonce).await?;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 255)
            .ok_or(IdTokenError::NoSubject)?
            .to_owned();
        let settings = &self.inner.settings;
        let lacks_name = !claims.contains_key(&settings.username_claim);
        let lacks_groups =
            !settings.roles.groups.is_empty() && !claims.contains_key(&settings.groups_claim);
        if (lacks_name || lacks_groups)
            && let (Some(endpoint), Some(access)) = (
                &self.inner.provider.userinfo_endpoint,
                tokens.access_token.as_deref(),
            )
        {
            let info = self.user_info(endpoint, access).await?;
            if info.get("sub").and_then(Value::as_str) != Some(subject.as_str()) {
                return Err(OidcError::UserInfoSubject);
            }
            for (key, value) in info {
                claims.entry(key).or_insert(value);
            }
        }
        let username = username_from(&claims, &settings.username_claim)?;
        let groups = groups_from(&claims, &settings.groups_claim);
        let role = settings.roles.role_for(&username, &groups);
        Ok(Completed {
            username,
            subject,
            groups,
            role,
            next: pending.next,
        })
    }

    async fn exchange(&self, code: &str, verifier: &str) -> Result<TokenAnswer, OidcError> {
        let settings = &self.inner.settings;
        let redirect = self.inner.redirect_url.as_str();
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect),
            ("code_verifier", verifier),
        ];
        let secret = settings.client_secret.as_ref().map(ClientSecret::expose);
        let basic = match (self.inner.provider.client_auth, secret) {
            (ClientAuth::Basic, Some(secret)) => Some((settings.client_id.as_str(), secret)),
            (ClientAuth::Post, Some(secret)) => {
                form.push(("client_id", &settings.client_id));
                form.push(("client_secret", secret));
                None
            }
            _ => {
                form.push(("client_id", &settings.client_id));
                None
            }
        };
        let answer = self
            .inner
            .http
            .post_form(&self.inner.provider.token_endpoint, &form, basic)
            .await
            .map_err(OidcError::TokenRequest)?;
        if answer.status != ::http::StatusCode::OK {
            let error: Option<ErrorAnswer> = serde_json::from_slice(&answer.body).ok();
            let (error, description) =
                error.map_or((None, None), |e| (e.error, e.error_description));
            return Err(OidcError::TokenRefused {
                status: answer.status.as_u16(),
                error: error.map(|e| shown(&e)),
                description: description.map(|d| shown(&d)),
            });
        }
        serde_json::from_slice(&answer.body)
            .map_err(|_| OidcError::TokenResponse("it is not the expected JSON object".to_owned()))
    }

    /// The ID token's claims, after checking its signature and the standard claims.
    async fn verify_id_token(
        &self,
        token: &str,
        nonce: &str,
    ) -> Result<Map<String, Value>, OidcError> {
        let compact = jws::parse(token).map_err(IdTokenError::from)?;
        let keys = self.keys();
        let payload = match compact.verify(&keys) {
            Ok(payload) => payload,
            Err(JwsError::NoKey { .. }) => {
                // The provider may have rotated its keys: fetch them again, once.
                let fresh = fetch_keys(&self.inner.http, &self.inner.provider.jwks_uri).await?;
                let fresh = Arc::new(fresh);
                *self
                    .inner
                    .keys
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = fresh.clone();
                return self
                    .check_claims(compact.verify(&fresh).map_err(IdTokenError::from)?, nonce);
            }
            Err(error) => return Err(IdTokenError::from(error).into()),
        };
        self.check_claims(payload, nonce)
    }

    fn keys(&self) -> Arc<Jwks> {
        self.inner
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn check_claims(&self, payload: &[u8], nonce: &str) -> Result<Map<String, Value>, OidcError> {
        let claims: Map<String, Value> =
            serde_json::from_slice(payload).map_err(|_| IdTokenError::Claims)?;
        check_claims(
            &claims,
            &self.inner.provider.issuer,
            &self.inner.settings.client_id,
            nonce,
            jiff::Timestamp::now().as_second(),
        )?;
        Ok(claims)
    }

    async fn user_info(
        &self,
        endpoint: &Url,
        access: &str,
    ) -> Result<Map<String, Value>, OidcError> {
        let answer = self
            .inner
            .http
            .get(endpoint, Some(access))
            .await
            .map_err(OidcError::UserInfoRequest)?;
        if answer.status != ::http::StatusCode::OK {
            return Err(OidcError::UserInfoStatus(answer.status.as_u16()));
        }
        if answer
            .content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("application/jwt"))
        {
            return Err(OidcError::UserInfoResponse(
                "signed user info (application/jwt) is not supported".to_owned(),
            ));
        }
        serde_json::from_slice(&answer.body)
            .map_err(|_| OidcError::UserInfoResponse("it is not a JSON object".to_owned()))
    }
}

async fn fetch_keys(http: &HttpClient, url: &Url) -> Result<Jwks, OidcError> {
    let answer = http
        .get(url, None)
        .await
        .map_err(|source| OidcError::Keys {
            url: url.to_string(),
            source,
        })?;
    if answer.status != ::http::StatusCode::OK {
        return Err(OidcError::KeySet {
            url: url.to_string(),
            source: JwksError::Document(format!("HTTP {}", answer.status.as_u16())),
        });
    }
    Jwks::from_json(&answer.body).map_err(|source| OidcError::KeySet {
        url: url.to_string(),
        source,
    })
}

fn number(claims: &Map<String, Value>, name: &str) -> Option<i64> {
    let value = claims.get(name)?;
    // Whole seconds; fractions are cut (allowed by RFC 7519's NumericDate).
    #[allow(clippy::cast_possible_truncation, reason = "checked to be in range")]
    value.as_i64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.is_finite() && f.abs() < 1e15)
            .map(|f| f as i64)
    })
}

/// The standard checks of an ID token's claims (OpenID Connect Core 3.1.3.7).
fn check_claims(
    claims: &Map<String, Value>,
    issuer: &str,
    client_id: &str,
    nonce: &str,
    now: i64,
) -> Result<(), IdTokenError> {
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if iss != issuer {
        return Err(IdTokenError::Issuer(shown(iss)));
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !audiences.contains(&client_id) {
        return Err(IdTokenError::Audience);
    }
    match claims.get("azp") {
        Some(Value::String(azp)) if azp == client_id => {}
        Some(_) => return Err(IdTokenError::AuthorizedParty),
        None if audiences.len() > 1 => return Err(IdTokenError::AuthorizedParty),
        None => {}
    }
    let exp = number(claims, "exp").ok_or(IdTokenError::NoExpiry)?;
    if now > exp.saturating_add(LEEWAY_SECONDS) {
        return Err(IdTokenError::Expired);
    }
    let iat = number(claims, "iat").ok_or(IdTokenError::NoIssuedAt)?;
    if iat > now.saturating_add(LEEWAY_SECONDS) {
        return Err(IdTokenError::IssuedInFuture);
    }
    if claims.contains_key("nbf") {
        let nbf = number(claims, "nbf").ok_or(IdTokenError::NotYetValid)?;
        if nbf > now.saturating_add(LEEWAY_SECONDS) {
            return Err(IdTokenError::NotYetValid);
        }
    }
    let token_nonce = claims
        .get("nonce")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !constant_time_eq(token_nonce.as_bytes(), nonce.as_bytes()) {
        return Err(IdTokenError::Nonce);
    }
    Ok(())
}

/// The nkvm user name: the configured claim, else a verified `email`; lowercased, then checked.
fn username_from(claims: &Map<String, Value>, claim: &str) -> Result<String, OidcError> {
    let (used, value) =
        if let Some(value) = claims.get(claim).and_then(Value::as_str) {
            (claim, value)
        } else {
            let email = claims.get("email").and_then(Value::as_str).ok_or_else(|| {
                OidcError::NoUsername {
                    claim: claim.to_owned(),
                }
            })?;
            ("email", email)
        };
    // An unverified address may belong to anybody who typed it in at the provider: the email
    // names the user only when the provider vouches for it (a missing claim vouches for nothing).
    if used == "email"
        && !claims
            .get("email_verified")
            .is_some_and(|v| v == &Value::Bool(true) || v == &Value::String("true".into()))
    {
        return Err(OidcError::EmailNotVerified(shown(value)));
    }
    let name = value.trim().to_ascii_lowercase();
    if !is_valid_name(&name) {
        return Err(OidcError::InvalidUsername {
            claim: used.to_owned(),
            value: shown(value),
        });
    }
    Ok(name)
}

/// The user's groups: a list of strings (other entries ignored) or one string; bounded.
fn groups_from(claims: &Map<String, Value>, claim: &str) -> Vec<String> {
    let keep = |g: &str| !g.is_empty() && g.len() <= MAX_GROUP_LEN;
    match claims.get(claim) {
        Some(Value::String(one)) if keep(one) => vec![one.clone()],
        Some(Value::Array(many)) => many
            .iter()
            .filter_map(Value::as_str)
            .filter(|g| keep(g))
            .take(MAX_GROUPS)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod fake_idp;
#[cfg(test)]
mod tests;
