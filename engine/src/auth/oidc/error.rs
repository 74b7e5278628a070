//! Why an OIDC login failed ([`OidcError`], [`IdTokenError`]), worded for the log and the page
//! without quoting codes, tokens or secrets.

#[allow(
    clippy::wildcard_imports,
    reason = "a part of the oidc module, sharing its imports"
)]
use super::*;

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

pub(super) fn detail(error: Option<&str>, description: Option<&str>) -> String {
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
