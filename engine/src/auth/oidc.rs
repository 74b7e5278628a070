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

mod claims;
mod error;
mod http;
pub mod jws;
mod pending;
mod settings;

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

use self::claims::{check_claims, fetch_keys, groups_from, username_from};
pub use self::error::{IdTokenError, OidcError};
use self::http::HttpClient;
pub use self::http::HttpError;
pub use self::jws::{Algorithm, Jwks, JwksError, JwsError};
pub use self::pending::client_key;
use self::pending::{Pending, PendingLogins};
use self::settings::is_secure_enough;
pub(crate) use self::settings::shown;
pub use self::settings::{
    ClientSecret, MAX_ERROR_CODE_LEN, OidcSettings, RoleMapping, error_code, parse_issuer,
    parse_redirect_url, safe_next,
};
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
                pending: PendingLogins::new(ttl, max_pending, max_pending_per_client),
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

#[cfg(test)]
mod fake_idp;
#[cfg(test)]
mod tests;
