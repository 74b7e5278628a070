//! Which site a request is for: the `Host` allowlist that stops DNS rebinding, the request's scheme
//! (`https` when nkvm is declared to be served over TLS, or a trusted proxy says so in
//! `X-Forwarded-Proto`), the same-origin check of state-changing requests (scheme, host and port),
//! and HSTS on https responses.
//!
//! A rebinding page (`http://evil.example`, whose name later resolves to nkvm's address) sends
//! `Host: evil.example`; nothing but the host name tells it apart from the real site, so every
//! request whose host is neither configured nor loopback/IP-literal is refused before routing.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use nkvm_engine::auth::proxy::Cidr;

/// The `Strict-Transport-Security` value of https responses: one year, no subdomains (nkvm does
/// not own its parent domain).
pub const HSTS: &str = "max-age=31536000";

/// Paths answered whatever the `Host`: liveness, readiness and metrics (kubelet probes and
/// Prometheus name the pod by its address; none of them carries a session or changes anything).
fn is_host_exempt(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// Why a host-name pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid allowed host {0:?}: expected a DNS name such as nkvm.example.com (letters, digits, \
     `-` and `.`), `*.` followed by a name, or `*` for any host"
)]
pub struct HostPatternError(pub String);

/// One entry of `--allowed-hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// Exactly this name (lowercase).
    Name(String),
    /// Any name ending in `.suffix` (`*.example.com`; not `example.com` itself).
    Suffix(String),
    /// Any host (`*`): turns the check off.
    Any,
}

fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl std::str::FromStr for HostPattern {
    type Err = HostPatternError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let lower = text.trim().to_ascii_lowercase();
        if lower == "*" {
            return Ok(Self::Any);
        }
        if let Some(suffix) = lower.strip_prefix("*.")
            && is_dns_name(suffix)
        {
            return Ok(Self::Suffix(suffix.to_owned()));
        }
        if is_dns_name(&lower) {
            return Ok(Self::Name(lower));
        }
        Err(HostPatternError(text.to_owned()))
    }
}

/// The host names nkvm answers to.
///
/// Always allowed: IP literals (a page can only rebind a DNS name, never an address) and
/// `localhost` / `*.localhost` (RFC 6761: always loopback, never resolved through DNS). Anything
/// else must be configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts(Vec<HostPattern>);

impl AllowedHosts {
    /// Parses `--allowed-hosts` entries (empty entries are skipped).
    ///
    /// # Errors
    /// The first entry that is not a DNS name, `*.name` or `*`.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, HostPatternError> {
        entries
            .into_iter()
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// Whether every host is accepted (`*`).
    #[must_use]
    pub fn any(&self) -> bool {
        self.0.contains(&HostPattern::Any)
    }

    /// Whether `host` (a `Host` header value: name or address, optional port) may be served.
    #[must_use]
    pub fn allows(&self, host: &str) -> bool {
        let Some(name) = host_name(host) else {
            return false;
        };
        if name.parse::<IpAddr>().is_ok() || name == "localhost" || name.ends_with(".localhost") {
            return true;
        }
        self.0.iter().any(|pattern| match pattern {
            HostPattern::Any => true,
            HostPattern::Name(n) => *n == name,
            HostPattern::Suffix(s) => name
                .strip_suffix(s.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        })
    }
}

/// The lowercase name or address of a `Host` value (`[::1]:8080` → `::1`, `A.example:80` →
/// `a.example`, a trailing dot dropped); `None` when it is malformed.
fn host_name(host: &str) -> Option<String> {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        inner.parse::<std::net::Ipv6Addr>().ok()?;
        inner
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return None,
            None => host,
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    (name.parse::<IpAddr>().is_ok() || is_dns_name(&name)).then_some(name)
}

fn is_port(text: &str) -> bool {
    !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit())
}

/// How requests reach nkvm and which sites it is.
#[derive(Debug, Clone, Default)]
pub struct SitePolicy {
    pub hosts: AllowedHosts,
    /// Users reach nkvm over https (a TLS-terminating Ingress; `--cookie-secure`).
    pub https: bool,
    /// Proxies whose `X-Forwarded-Proto` is believed.
    pub trusted_proxies: Vec<Cidr>,
}

/// The scheme a request was made with, as the browser saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

impl SitePolicy {
    /// The request's scheme: a trusted proxy's `X-Forwarded-Proto` when the direct peer is one,
    /// else `https` when the site is declared https, else `http`.
    #[must_use]
    pub fn scheme(&self, request: &Request) -> Scheme {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        let trusted = peer.is_some_and(|ip| self.trusted_proxies.iter().any(|n| n.contains(ip)));
        if trusted {
            let forwarded = request
                .headers()
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                // The proxy nearest to nkvm appended last.
                .and_then(|v| v.rsplit(',').next())
                .map(|v| v.trim().to_ascii_lowercase());
            match forwarded.as_deref() {
                Some("https") => return Scheme::Https,
                Some("http") => return Scheme::Http,
                _ => {}
            }
        }
        if self.https {
            Scheme::Https
        } else {
            Scheme::Http
        }
    }

    /// Why the request is refused, if it is: a host nkvm does not answer to (every path but the
    /// probes), or a state-changing request from another origin.
    #[must_use]
    pub fn refusal(&self, request: &Request, scheme: Scheme) -> Option<Refusal> {
        let host = request_host(request);
        if !is_host_exempt(request.uri().path()) {
            match host.as_deref() {
                None => return Some(Refusal::Host("the request names no host")),
                Some(host) if !self.hosts.allows(host) => {
                    return Some(Refusal::Host(
                        "the host name is not one this server answers to (see --allowed-hosts)",
                    ));
                }
                Some(_) => {}
            }
        }
        cross_origin_refusal(request, host.as_deref(), scheme).map(Refusal::CrossOrigin)
    }
}

/// Why [`SitePolicy::refusal`] refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a host of this server (421 Misdirected Request).
    Host(&'static str),
    /// A state-changing request from another origin (403).
    CrossOrigin(&'static str),
}

impl Refusal {
    fn status(self) -> StatusCode {
        match self {
            Self::Host(_) => StatusCode::MISDIRECTED_REQUEST,
            Self::CrossOrigin(_) => StatusCode::FORBIDDEN,
        }
    }

    fn message(self) -> String {
        match self {
            Self::Host(reason) => format!("request refused: {reason}"),
            Self::CrossOrigin(reason) => format!("cross-origin request refused: {reason}"),
        }
    }
}

/// The request's `Host` header, else the authority of its URI (HTTP/2).
fn request_host(request: &Request) -> Option<String> {
    request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()))
}

/// Whether a request can change state or open a channel: anything but GET/HEAD/OPTIONS, and any
/// websocket upgrade.
fn is_state_changing(request: &Request) -> bool {
    let method = request.method();
    let safe = method == axum::http::Method::GET
        || method == axum::http::Method::HEAD
        || method == axum::http::Method::OPTIONS;
    !safe
        || request
            .headers()
            .get(header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

/// The lowercase `scheme` and `host[:port]` of an `Origin` header value.
fn origin_parts(origin: &str) -> Option<(String, String)> {
    let (scheme, rest) = origin.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "http" | "https") || rest.is_empty() || rest.contains('/') {
        return None;
    }
    Some((scheme, rest.to_ascii_lowercase()))
}

/// Why a state-changing request is refused as cross-site, if it is: its `Origin` must be exactly
/// `<scheme>://<Host>`.
fn cross_origin_refusal(
    request: &Request,
    host: Option<&str>,
    scheme: Scheme,
) -> Option<&'static str> {
    if !is_state_changing(request) {
        return None;
    }
    let Some(origin) = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        return Some("the request has no Origin header");
    };
    let Some((origin_scheme, origin_host)) = origin_parts(origin) else {
        return Some("the Origin header is not an http(s) origin");
    };
    if host.map(str::to_ascii_lowercase).as_deref() != Some(origin_host.as_str()) {
        return Some("the Origin does not match the Host");
    }
    if origin_scheme != scheme.as_str() {
        return Some("the Origin's scheme does not match this site's");
    }
    None
}

/// DNS-rebinding and CSRF defence for every request (see [`SitePolicy::refusal`]); adds HSTS to
/// responses of https requests.
pub async fn site_guard(
    State(policy): State<SitePolicy>,
    request: Request,
    next: Next,
) -> Response {
    let scheme = policy.scheme(&request);
    if let Some(refusal) = policy.refusal(&request, scheme) {
        let message = refusal.message();
        tracing::warn!(
            method = %request.method(),
            path = %request.uri().path(),
            host = ?request_host(&request),
            "{message}"
        );
        return (refusal.status(), message).into_response();
    }
    let mut response = next.run(request).await;
    if scheme == Scheme::Https {
        response.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    response
}

#[cfg(test)]
mod tests;
