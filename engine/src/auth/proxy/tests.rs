use super::*;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn cidr(text: &str) -> Cidr {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn parses_networks_and_single_hosts() {
    assert_eq!(cidr("10.0.0.0/8").to_string(), "10.0.0.0/8");
    assert_eq!(cidr("192.0.2.7").to_string(), "192.0.2.7/32");
    assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
    assert_eq!(cidr("fd00::/8").to_string(), "fd00::/8");
    assert_eq!(cidr("::1").to_string(), "::1/128");
    assert_eq!(cidr("::/0").to_string(), "::/0");
    assert_eq!(cidr("2001:db8::/32").prefix(), 32);
    assert_eq!(cidr("2001:db8::/32").network(), ip("2001:db8::"));
    // IPv4-mapped networks become IPv4.
    assert_eq!(cidr("::ffff:10.0.0.0/104").to_string(), "10.0.0.0/8");
    assert_eq!(cidr("::ffff:192.0.2.7").to_string(), "192.0.2.7/32");
}

#[test]
fn refuses_malformed_networks() {
    for text in [
        "",
        "/",
        "/8",
        "10.0.0.0/",
        "10.0.0.0/x",
        "10.0.0.0/+8",
        "10.0.0.0/-1",
        "10.0.0.0/8/8",
        "10.0.0/8",
        "10.0.0.256/32",
        "10.0.0.0 /8",
        "example.com/8",
        "fd00::/0008",
        "[::1]/128",
        "10.0.0.0/256",
    ] {
        assert!(
            matches!(text.parse::<Cidr>(), Err(CidrError::Syntax(_))),
            "{text:?}: {:?}",
            text.parse::<Cidr>()
        );
    }
    assert_eq!(
        "10.0.0.0/33".parse::<Cidr>(),
        Err(CidrError::Prefix {
            text: "10.0.0.0/33".to_owned(),
            max: 32
        })
    );
    assert!(matches!(
        "fd00::/129".parse::<Cidr>(),
        Err(CidrError::Prefix { max: 128, .. })
    ));
    let err = "10.0.0.1/8".parse::<Cidr>().unwrap_err();
    assert_eq!(
        err,
        CidrError::HostBits {
            text: "10.0.0.1/8".to_owned(),
            network: "10.0.0.0/8".to_owned()
        }
    );
    assert!(err.to_string().contains("10.0.0.0/8"), "{err}");
    assert!(matches!(
        "fd00::1/64".parse::<Cidr>(),
        Err(CidrError::HostBits { .. })
    ));
    assert!(matches!(
        "::ffff:10.0.0.0/95".parse::<Cidr>(),
        Err(CidrError::HostBits { .. })
    ));
}

#[test]
fn new_clears_host_bits_and_checks_the_prefix() {
    assert_eq!(Cidr::new(ip("10.1.2.3"), 8), Some(cidr("10.0.0.0/8")));
    assert_eq!(Cidr::new(ip("10.1.2.3"), 0), Some(cidr("0.0.0.0/0")));
    assert_eq!(Cidr::new(ip("10.1.2.3"), 33), None);
    assert_eq!(Cidr::new(ip("fd00::1"), 128), Some(cidr("fd00::1/128")));
    assert_eq!(Cidr::new(ip("fd00::1"), 129), None);
}

#[test]
fn matches_ipv4_prefixes_at_the_edges() {
    let net = cidr("192.168.0.0/16");
    assert!(net.contains(ip("192.168.0.0")));
    assert!(net.contains(ip("192.168.255.255")));
    assert!(!net.contains(ip("192.167.255.255")));
    assert!(!net.contains(ip("192.169.0.0")));

    let host = cidr("192.0.2.7/32");
    assert!(host.contains(ip("192.0.2.7")));
    assert!(!host.contains(ip("192.0.2.6")));
    assert!(!host.contains(ip("192.0.2.8")));

    let all = cidr("0.0.0.0/0");
    for addr in ["0.0.0.0", "255.255.255.255", "10.1.2.3"] {
        assert!(all.contains(ip(addr)), "{addr}");
    }
    // IPv4 networks never match IPv6 peers, except IPv4-mapped ones.
    assert!(!all.contains(ip("::1")));
    assert!(!all.contains(ip("::")));
    assert!(all.contains(ip("::ffff:10.1.2.3")));
    assert!(host.contains(ip("::ffff:192.0.2.7")));
    assert!(!host.contains(ip("::ffff:192.0.2.8")));

    let odd = cidr("10.0.0.0/31");
    assert!(odd.contains(ip("10.0.0.1")));
    assert!(!odd.contains(ip("10.0.0.2")));
}

#[test]
fn matches_ipv6_prefixes_at_the_edges() {
    let net = cidr("2001:db8::/32");
    assert!(net.contains(ip("2001:db8::")));
    assert!(net.contains(ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")));
    assert!(!net.contains(ip("2001:db9::")));
    assert!(!net.contains(ip("2001:db7:ffff::")));

    let loopback = cidr("::1/128");
    assert!(loopback.contains(ip("::1")));
    assert!(!loopback.contains(ip("::2")));
    assert!(!loopback.contains(ip("127.0.0.1")));

    let all = cidr("::/0");
    assert!(all.contains(ip("::")));
    assert!(all.contains(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
    // A mapped IPv4 peer is IPv4, so IPv6 networks do not match it.
    assert!(!all.contains(ip("::ffff:10.0.0.1")));
    assert!(!all.contains(ip("10.0.0.1")));

    let odd = cidr("fe80::/10");
    assert!(odd.contains(ip("febf:ffff::1")));
    assert!(!odd.contains(ip("fec0::1")));
}

#[test]
fn parses_lists() {
    assert_eq!(Cidr::parse_list("").unwrap(), Vec::<Cidr>::new());
    assert_eq!(
        Cidr::parse_list(" 10.0.0.0/8, fd00::/8\n127.0.0.1,,").unwrap(),
        vec![cidr("10.0.0.0/8"), cidr("fd00::/8"), cidr("127.0.0.1/32")]
    );
    assert!(matches!(
        Cidr::parse_list("10.0.0.0/8, nope"),
        Err(CidrError::Syntax(text)) if text == "nope"
    ));
}

fn config() -> ProxyConfig {
    let mut config = ProxyConfig::new(
        "X-Forwarded-User",
        Cidr::parse_list("10.0.0.0/8, fd00::/8").unwrap(),
    );
    config.roles = BTreeMap::from([
        ("alice".to_owned(), Role::Admin),
        ("olga@example.com".to_owned(), Role::Operator),
    ]);
    config
}

#[allow(clippy::unnecessary_wraps, reason = "matches the lookup's signature")]
fn user(name: &str, role: Role) -> Option<User> {
    Some(User {
        name: name.to_owned(),
        role,
    })
}

#[test]
fn believes_the_header_only_from_trusted_peers() {
    let config = config();
    assert_eq!(
        config.identify(ip("10.1.2.3"), Some("alice")),
        Ok(user("alice", Role::Admin))
    );
    assert_eq!(
        config.identify(ip("fd00::5"), Some("olga@example.com")),
        Ok(user("olga@example.com", Role::Operator))
    );
    assert_eq!(
        config.identify(ip("::ffff:10.9.9.9"), Some("alice")),
        Ok(user("alice", Role::Admin))
    );
    for peer in ["192.0.2.1", "11.0.0.1", "fe80::1", "::1", "127.0.0.1"] {
        let err = config.identify(ip(peer), Some("alice")).unwrap_err();
        assert_eq!(
            err,
            ProxyError::UntrustedPeer {
                peer: ip(peer),
                header: "X-Forwarded-User".to_owned()
            }
        );
        assert!(err.to_string().contains("not a trusted proxy"), "{err}");
    }
    // No header: no identity, from anyone.
    assert_eq!(config.identify(ip("10.1.2.3"), None), Ok(None));
    assert_eq!(config.identify(ip("192.0.2.1"), None), Ok(None));
    // No trusted network: every header is refused.
    let none = ProxyConfig::new("X-Forwarded-User", Vec::new());
    assert!(none.identify(ip("10.1.2.3"), Some("alice")).is_err());
}

#[test]
fn validates_and_normalises_names() {
    let config = config();
    let peer = ip("10.0.0.1");
    assert_eq!(
        config.identify(peer, Some(" \tAlice ")),
        Ok(user("alice", Role::Admin))
    );
    assert_eq!(
        config.identify(peer, Some("OLGA@Example.COM")),
        Ok(user("olga@example.com", Role::Operator))
    );
    for bad in [
        "",
        "  ",
        "alice, mallory",
        "a b",
        "alice\n",
        "ä",
        &"a".repeat(65),
    ] {
        let err = config.identify(peer, Some(bad)).unwrap_err();
        assert!(
            matches!(err, ProxyError::InvalidName { .. }),
            "{bad:?}: {err}"
        );
    }
    let err = config.identify(peer, Some(&"x ".repeat(500))).unwrap_err();
    assert!(err.to_string().len() < 400, "{err}");
}

#[test]
fn roles_come_from_the_map_then_the_default() {
    let mut config = config();
    let peer = ip("10.0.0.1");
    let err = config.identify(peer, Some("bob")).unwrap_err();
    assert_eq!(
        err,
        ProxyError::NoRole {
            user: "bob".to_owned()
        }
    );
    config.default_role = Some(Role::Viewer);
    assert_eq!(
        config.identify(peer, Some("bob")),
        Ok(user("bob", Role::Viewer))
    );
    // The map wins over the default.
    assert_eq!(
        config.identify(peer, Some("alice")),
        Ok(user("alice", Role::Admin))
    );
}

#[test]
fn the_client_behind_trusted_proxies_is_the_right_most_untrusted_entry() {
    let trusted = vec![cidr("10.0.0.0/8"), cidr("fd00::/8")];
    let proxy = ip("10.1.2.3");
    // A direct client: its header is its own word, ignored.
    assert_eq!(
        forwarded_client(ip("198.51.100.9"), &["203.0.113.5"], &trusted),
        ip("198.51.100.9")
    );
    // One trusted proxy: the entry it appended.
    assert_eq!(
        forwarded_client(proxy, &["203.0.113.5"], &trusted),
        ip("203.0.113.5")
    );
    // A forged left part cannot win: the right-most untrusted entry does.
    assert_eq!(
        forwarded_client(proxy, &["1.1.1.1, 203.0.113.5"], &trusted),
        ip("203.0.113.5")
    );
    // Chains of trusted proxies are skipped, across repeated headers too.
    assert_eq!(
        forwarded_client(proxy, &["203.0.113.5, 10.9.9.9", "fd00::7"], &trusted),
        ip("203.0.113.5")
    );
    // Ports and IPv6 forms.
    assert_eq!(
        forwarded_client(proxy, &["203.0.113.5:4711"], &trusted),
        ip("203.0.113.5")
    );
    assert_eq!(
        forwarded_client(proxy, &["[2001:db8::1]:443"], &trusted),
        ip("2001:db8::1")
    );
    // Garbage stops the walk at the last address that could be believed.
    assert_eq!(
        forwarded_client(proxy, &["203.0.113.5, unknown"], &trusted),
        proxy
    );
    assert_eq!(
        forwarded_client(proxy, &["unknown, 10.9.9.9"], &trusted),
        ip("10.9.9.9")
    );
    // No header, or only trusted entries: the nearest trusted hop.
    assert_eq!(forwarded_client(proxy, &[], &trusted), proxy);
    assert_eq!(
        forwarded_client(proxy, &["10.8.8.8"], &trusted),
        ip("10.8.8.8")
    );
    // Nothing trusted: never read.
    assert_eq!(forwarded_client(proxy, &["203.0.113.5"], &[]), proxy);
}
