//! Host allowlist, scheme and same-origin rules of [`super::SitePolicy`].

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};

use super::*;

fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> Request {
    let mut builder = axum::http::Request::builder().method(method).uri(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let mut request = builder.body(Body::empty()).unwrap();
    let peer: SocketAddr = "10.1.2.3:5000".parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    request
}

fn policy(hosts: &[&str]) -> SitePolicy {
    SitePolicy {
        hosts: AllowedHosts::parse(hosts.iter().copied()).unwrap(),
        https: false,
        trusted_proxies: Vec::new(),
    }
}

fn refusal(policy: &SitePolicy, request: &Request) -> Option<Refusal> {
    policy.refusal(request, policy.scheme(request))
}

#[test]
fn loopback_names_and_ip_literals_are_always_allowed() {
    let hosts = AllowedHosts::default();
    for host in [
        "localhost",
        "LOCALHOST:3000",
        "app.localhost:8080",
        "127.0.0.1",
        "127.0.0.1:8080",
        "[::1]:8080",
        "[::1]",
        "10.244.0.7:8080",
        "localhost.",
    ] {
        assert!(hosts.allows(host), "{host}");
    }
    for host in [
        "evil.example",
        "evil.example:8080",
        "localhost.evil.example",
        "127.0.0.1.nip.io",
        "",
        "a b",
        "[::1",
        "host:port",
        "0x7f.1",
    ] {
        assert!(!hosts.allows(host), "{host}");
    }
}

#[test]
fn configured_names_and_suffixes_are_allowed() {
    let hosts = AllowedHosts::parse(["nkvm.example.com", "*.apps.example"]).unwrap();
    for host in [
        "nkvm.example.com",
        "NKVM.example.com:443",
        "a.apps.example",
        "x.y.apps.example:8443",
    ] {
        assert!(hosts.allows(host), "{host}");
    }
    for host in [
        "apps.example",
        "evilapps.example",
        "nkvm.example.com.evil.example",
        "evil.example",
    ] {
        assert!(!hosts.allows(host), "{host}");
    }
    assert!(
        AllowedHosts::parse(["*"])
            .unwrap()
            .allows("anything.example")
    );
    for bad in [
        "http://nkvm.example",
        "nkvm.example:443",
        "a_b.example",
        "-a.example",
    ] {
        assert!(AllowedHosts::parse([bad]).is_err(), "{bad}");
    }
}

#[test]
fn a_rebound_host_is_refused_on_every_route_but_the_probes() {
    let policy = policy(&[]);
    let evil = [("host", "evil.example"), ("origin", "http://evil.example")];
    for (method, path) in [
        ("GET", "/"),
        ("POST", "/api/inventory"),
        ("GET", "/download/1/archive"),
        ("GET", "/audit.csv"),
        ("POST", "/auth/login"),
    ] {
        assert_eq!(
            refusal(&policy, &request(method, path, &evil)).map(Refusal::status),
            Some(axum::http::StatusCode::MISDIRECTED_REQUEST),
            "{method} {path}"
        );
    }
    let upgrade = [
        ("host", "evil.example"),
        ("origin", "http://evil.example"),
        ("upgrade", "websocket"),
    ];
    assert!(matches!(
        refusal(&policy, &request("GET", "/api/backups/updates", &upgrade)),
        Some(Refusal::Host(_))
    ));
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            refusal(&policy, &request("GET", path, &evil)),
            None,
            "{path}"
        );
    }
    // No Host at all: refused too.
    assert!(matches!(
        refusal(&policy, &request("GET", "/", &[])),
        Some(Refusal::Host(_))
    ));
}

#[test]
fn safe_requests_need_no_origin() {
    let policy = policy(&["a"]);
    assert_eq!(
        refusal(&policy, &request("GET", "/x", &[("host", "a")])),
        None
    );
    assert_eq!(
        refusal(&policy, &request("HEAD", "/x", &[("host", "a")])),
        None
    );
}

#[test]
fn state_changing_requests_must_be_same_origin() {
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let policy = policy(&["nkvm.example"]);
    let same = [
        ("host", "nkvm.example:8443"),
        ("origin", "http://NKVM.example:8443"),
    ];
    assert_eq!(refusal(&policy, &request("POST", "/api/x", &same)), None);
    let cases: [Case; 6] = [
        (
            "POST",
            &[("host", "nkvm.example")],
            "the request has no Origin header",
        ),
        (
            "POST",
            &[("host", "nkvm.example"), ("origin", "https://evil.example")],
            "the Origin does not match the Host",
        ),
        (
            "DELETE",
            &[("host", "nkvm.example"), ("origin", "null")],
            "the Origin header is not an http(s) origin",
        ),
        (
            "POST",
            &[
                ("host", "nkvm.example"),
                ("origin", "https://nkvm.example.evil.example"),
            ],
            "the Origin does not match the Host",
        ),
        (
            "GET",
            &[
                ("host", "nkvm.example"),
                ("origin", "http://evil.example"),
                ("upgrade", "websocket"),
            ],
            "the Origin does not match the Host",
        ),
        // Same host, other scheme: an http page must not drive the https site (and back).
        (
            "POST",
            &[("host", "nkvm.example"), ("origin", "https://nkvm.example")],
            "the Origin's scheme does not match this site's",
        ),
    ];
    for (method, headers, reason) in cases {
        assert_eq!(
            refusal(&policy, &request(method, "/api/x", headers)),
            Some(Refusal::CrossOrigin(reason)),
            "{method} {headers:?}"
        );
    }
    let upgrade = [
        ("host", "nkvm.example"),
        ("origin", "http://nkvm.example"),
        ("upgrade", "WebSocket"),
    ];
    assert_eq!(refusal(&policy, &request("GET", "/api/x", &upgrade)), None);
}

#[test]
fn the_scheme_comes_from_the_configuration_or_a_trusted_proxy() {
    let mut policy = policy(&["nkvm.example"]);
    let forwarded = [("host", "nkvm.example"), ("x-forwarded-proto", "https")];
    // An untrusted peer's X-Forwarded-Proto is ignored.
    assert_eq!(
        policy.scheme(&request("GET", "/", &forwarded)),
        Scheme::Http
    );
    policy.trusted_proxies = nkvm_engine::auth::proxy::Cidr::parse_list("10.0.0.0/8").unwrap();
    assert_eq!(
        policy.scheme(&request("GET", "/", &forwarded)),
        Scheme::Https
    );
    assert_eq!(
        policy.scheme(&request("GET", "/", &[("x-forwarded-proto", "http")])),
        Scheme::Http
    );
    policy.trusted_proxies.clear();
    policy.https = true;
    assert_eq!(policy.scheme(&request("GET", "/", &[])), Scheme::Https);
    let https_origin = [("host", "nkvm.example"), ("origin", "https://nkvm.example")];
    assert_eq!(
        refusal(&policy, &request("POST", "/api/x", &https_origin)),
        None
    );
}
