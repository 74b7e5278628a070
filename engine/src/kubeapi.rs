//! Kubernetes API calls as nkvm makes them: one timeout per request ([`timed`]), the HTTP status
//! of a failure ([`http_status`]), whether repeating it may help ([`is_transient`]), and one table
//! of what an operator should do about a failed call ([`advice`]), used by the inventory, backups,
//! cleanup and the connection check alike.

use std::error::Error as _;
use std::future::Future;
use std::time::Duration;

/// A request that got no answer within its timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no response from the apiserver within {}s", .0.as_secs_f64())]
pub struct TimedOut(pub Duration);

/// Runs one API request under `timeout`; no answer in time becomes a [`kube::Error::Service`]
/// holding [`TimedOut`] (transient, see [`is_transient`]).
///
/// # Errors
/// The request's own error, or the timeout.
pub async fn timed<T>(
    timeout: Duration,
    call: impl Future<Output = kube::Result<T>>,
) -> kube::Result<T> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result,
        Err(_elapsed) => Err(kube::Error::Service(Box::new(TimedOut(timeout)))),
    }
}

/// The timeout of a request that [`timed`] gave up on.
#[must_use]
pub fn timed_out(err: &kube::Error) -> Option<Duration> {
    match err {
        kube::Error::Service(inner) => inner.downcast_ref::<TimedOut>().map(|t| t.0),
        _ => None,
    }
}

/// HTTP status of a kube error, when the apiserver answered.
#[must_use]
pub fn http_status(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) if status.code != 0 => Some(status.code),
        _ => None,
    }
}

/// Whether a failed API call may succeed when repeated: 429, 5xx, and transport failures
/// (connection errors, timeouts). Never 400/401/403/404/409/422 or other client errors.
#[must_use]
pub fn is_transient(err: &kube::Error) -> bool {
    match http_status(err) {
        Some(code) => code == 429 || (500..=599).contains(&code),
        None => matches!(err, kube::Error::HyperError(_) | kube::Error::Service(_)),
    }
}

/// A request as an operator grants it: the verb, the resource as RBAC rules spell it
/// (`pods`, `replicasets.apps`), and the namespace (`None`: cluster-wide).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call<'a> {
    pub verb: &'a str,
    pub resource: &'a str,
    pub namespace: Option<&'a str>,
}

impl<'a> Call<'a> {
    /// `verb` on `resource` in `namespace`.
    #[must_use]
    pub fn new(verb: &'a str, resource: &'a str, namespace: &'a str) -> Self {
        Self {
            verb,
            resource,
            namespace: Some(namespace),
        }
    }

    /// `verb` on `resource` cluster-wide.
    #[must_use]
    pub fn cluster_wide(verb: &'a str, resource: &'a str) -> Self {
        Self {
            verb,
            resource,
            namespace: None,
        }
    }

    /// What to grant for this call: `grant list on pods in namespace shop`.
    #[must_use]
    pub fn grant(&self) -> String {
        match self.namespace {
            Some(ns) => format!("grant {} on {} in namespace {ns}", self.verb, self.resource),
            None if self.verb == "list" => format!(
                "grant list on {} cluster-wide (a ClusterRole), or pass -n NAMESPACE to scan only \
                 namespaces you may read",
                self.resource
            ),
            None => format!(
                "grant {} on {} cluster-wide (a ClusterRole)",
                self.verb, self.resource
            ),
        }
    }
}

/// What an operator should do about a failed call, by HTTP status (or the transport failure's
/// cause). One table for every call nkvm makes.
#[must_use]
pub fn advice(err: &kube::Error, call: Call<'_>) -> String {
    if timed_out(err).is_some() {
        return "no response in time; check that the apiserver is reachable and not overloaded, \
                then retry (or raise the request timeout)"
            .to_owned();
    }
    let resource = call.resource;
    match http_status(err) {
        Some(401) => "HTTP 401 Unauthorized: the credentials are expired or invalid; refresh the \
                      kubeconfig's token or certificate (or the service account token)"
            .to_owned(),
        Some(403) => format!("HTTP 403 Forbidden: {}", call.grant()),
        Some(404) if call.verb == "list" => format!(
            "HTTP 404 Not Found: the apiserver does not serve {resource}; check the cluster \
             version and that the API is enabled"
        ),
        Some(404) => match call.namespace {
            Some(ns) => format!("HTTP 404 Not Found: no such {resource} in namespace {ns}"),
            None => format!("HTTP 404 Not Found: no such {resource}"),
        },
        Some(409) => format!("HTTP 409 Conflict: the {resource} already exists; retry"),
        Some(410) => "HTTP 410 Gone: the list expired while paging through it; retry".to_owned(),
        Some(422) => format!(
            "HTTP 422: the apiserver rejected the {resource} (an admission policy such as Pod \
             Security may forbid it): {}",
            api_message(err)
        ),
        Some(429) => {
            "HTTP 429 Too Many Requests: the apiserver is throttling; retry later".to_owned()
        }
        Some(code @ 500..=599) => format!(
            "HTTP {code}: the apiserver failed; retry, and check the apiserver's health and logs \
             if it persists"
        ),
        Some(code) => format!(
            "unexpected HTTP {code} from the apiserver: {}",
            api_message(err)
        ),
        None => transport_advice(err),
    }
}

/// The apiserver's own words about a failure.
fn api_message(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

/// A kube error in words for people: `HTTP 401 Unauthorized: <the apiserver's message>` when the
/// apiserver answered, else the transport failure's cause. Never the client's debug dump.
#[must_use]
pub fn describe(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => {
            let reason = if status.reason.is_empty() {
                String::new()
            } else {
                format!(" {}", status.reason)
            };
            format!("HTTP {}{reason}: {}", status.code, status.message)
        }
        other => match timed_out(other) {
            Some(after) => TimedOut(after).to_string(),
            None => root_cause(other),
        },
    }
}

/// The innermost cause of an error (what the TLS stack, the resolver or the socket said).
#[must_use]
pub fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// Why the apiserver could not be reached, in words, with what to do.
#[must_use]
pub fn transport_advice(err: &kube::Error) -> String {
    let cause = root_cause(err);
    let lower = cause.to_lowercase();
    let what_to_do = if lower.contains("certificate") || lower.contains("unknownissuer") {
        "TLS failed: the apiserver's certificate is not trusted; check the certificate authority \
         (certificate-authority-data) of the kubeconfig"
    } else if lower.contains("connection refused") {
        "connection refused: nothing listens at the server address; check the address and that \
         the apiserver runs"
    } else if lower.contains("dns") || lower.contains("lookup") || lower.contains("resolve") {
        "the server's name does not resolve; check the server address"
    } else if lower.contains("timed out") || lower.contains("deadline") {
        "the connection timed out; check the network path to the apiserver"
    } else {
        "could not reach or understand the apiserver; check the server address, network and TLS \
         settings, then retry"
    };
    let _ = err.source();
    format!("{what_to_do} ({cause})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            message: format!("status {code}"),
            ..kube::core::Status::default()
        }))
    }

    #[test]
    fn transient_classification() {
        for code in [429, 500, 502, 503, 504] {
            assert!(is_transient(&api(code)), "{code}");
        }
        for code in [400, 401, 403, 404, 409, 422] {
            assert!(!is_transient(&api(code)), "{code}");
        }
        let timeout = kube::Error::Service(Box::new(TimedOut(Duration::from_secs(3))));
        assert!(is_transient(&timeout));
        assert_eq!(timed_out(&timeout), Some(Duration::from_secs(3)));
        assert_eq!(timed_out(&api(500)), None);
    }

    #[tokio::test(start_paused = true)]
    async fn timed_gives_up_with_a_transient_error() {
        let err = timed(
            Duration::from_secs(2),
            std::future::pending::<kube::Result<()>>(),
        )
        .await
        .unwrap_err();
        assert_eq!(timed_out(&err), Some(Duration::from_secs(2)));
        assert!(advice(&err, Call::new("get", "pods", "shop")).starts_with("no response in time"));
        assert_eq!(
            timed(Duration::from_secs(2), async { Ok(7) })
                .await
                .unwrap(),
            7
        );
    }

    #[test]
    fn advice_by_status() {
        let get = Call::new("get", "persistentvolumeclaims", "shop");
        let cases = [
            (
                401,
                get,
                "HTTP 401 Unauthorized: the credentials are expired",
            ),
            (
                403,
                get,
                "HTTP 403 Forbidden: grant get on persistentvolumeclaims in namespace shop",
            ),
            (
                403,
                Call::cluster_wide("list", "pods"),
                "HTTP 403 Forbidden: grant list on pods cluster-wide (a ClusterRole), or pass -n",
            ),
            (
                403,
                Call::cluster_wide("get", "nodes"),
                "HTTP 403 Forbidden: grant get on nodes cluster-wide (a ClusterRole)",
            ),
            (
                404,
                get,
                "HTTP 404 Not Found: no such persistentvolumeclaims in namespace shop",
            ),
            (
                404,
                Call::cluster_wide("list", "jobs.batch"),
                "HTTP 404 Not Found: the apiserver does not serve jobs.batch",
            ),
            (409, get, "HTTP 409 Conflict"),
            (410, get, "HTTP 410 Gone"),
            (422, Call::new("create", "pods", "shop"), "Pod Security"),
            (429, get, "HTTP 429 Too Many Requests"),
            (503, get, "HTTP 503: the apiserver failed"),
            (
                418,
                get,
                "unexpected HTTP 418 from the apiserver: status 418",
            ),
        ];
        for (code, call, expected) in cases {
            let text = advice(&api(code), call);
            assert!(text.contains(expected), "{code}: {text}");
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn descriptions_never_dump_the_status() {
        let unauthorized = kube::Error::Api(Box::new(kube::core::Status {
            code: 401,
            message: "Unauthorized".into(),
            reason: "Unauthorized".into(),
            ..kube::core::Status::default()
        }));
        assert_eq!(
            describe(&unauthorized),
            "HTTP 401 Unauthorized: Unauthorized"
        );
        let refused = kube::Error::Service(Box::new(Outer(std::io::Error::other(
            "Connection refused (os error 111)",
        ))));
        assert_eq!(describe(&refused), "Connection refused (os error 111)");
        let late = kube::Error::Service(Box::new(TimedOut(Duration::from_secs(3))));
        assert_eq!(describe(&late), "no response from the apiserver within 3s");
    }

    #[test]
    fn transport_failures_name_their_cause() {
        let cases = [
            ("invalid peer certificate: UnknownIssuer", "TLS failed"),
            ("Connection refused (os error 111)", "connection refused"),
            ("dns error: failed to lookup address", "does not resolve"),
            ("connection timed out", "timed out"),
            ("something odd", "could not reach or understand"),
        ];
        for (inner, expected) in cases {
            let err = kube::Error::Service(Box::new(Outer(std::io::Error::other(inner))));
            let text = advice(&err, Call::new("get", "pods", "shop"));
            assert!(text.contains(expected), "{inner}: {text}");
            assert!(text.contains(inner), "the cause is named: {text}");
        }
    }
}
