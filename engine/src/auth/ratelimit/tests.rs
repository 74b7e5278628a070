use super::*;

const MIN: Duration = Duration::from_mins(1);
const SEC: Duration = Duration::from_secs(1);

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// `max_failures` per pair (first delay 30 s), `max_address` per address, a window in minutes.
fn limiter(max_failures: u32, max_address: u32, window_min: u32, max_keys: usize) -> LoginLimiter {
    LoginLimiter::new(LimiterOptions {
        max_failures,
        base_delay: 30 * SEC,
        window: MIN * window_min,
        max_address_failures: max_address,
        max_keys,
    })
}

/// A checked attempt that fails.
fn fail(limiter: &LoginLimiter, from: &str, user: &str, now: Instant) {
    limiter.check(ip(from), user, now).expect("attempt allowed");
    limiter.record_failure(ip(from), user, now);
}

#[test]
fn defaults() {
    let options = LimiterOptions::default();
    assert_eq!(options.max_failures, 5);
    assert_eq!(options.base_delay, Duration::from_secs(30));
    assert_eq!(options.window, Duration::from_mins(15));
    assert_eq!(options.max_address_failures, 50);
    assert_eq!(options.max_keys, 10_000);
}

#[test]
fn retry_after_rounds_up_to_whole_seconds() {
    assert_eq!(RetryAfter(Duration::from_millis(1)).seconds(), 1);
    assert_eq!(RetryAfter(Duration::ZERO).seconds(), 1);
    assert_eq!(RetryAfter(Duration::from_millis(60_001)).seconds(), 61);
    assert_eq!(RetryAfter(Duration::from_mins(1)).seconds(), 60);
    assert_eq!(
        RetryAfter(Duration::from_secs(90)).to_string(),
        "too many failed logins; try again in 90 seconds"
    );
}

#[test]
fn a_pair_is_slowed_with_doubling_delays_after_n_failures() {
    let limiter = limiter(5, 100, 15, 100);
    let t0 = Instant::now();
    for _ in 0..5 {
        fail(&limiter, "192.0.2.7", "admin", t0);
    }
    // The sixth attempt waits 30 s from the last failure.
    assert_eq!(
        limiter.check(ip("192.0.2.7"), "admin", t0 + 10 * SEC),
        Err(RetryAfter(20 * SEC))
    );
    fail(&limiter, "192.0.2.7", "admin", t0 + 30 * SEC);
    // Then 60 s, 120 s, ...
    let t1 = t0 + 30 * SEC;
    assert_eq!(
        limiter.check(ip("192.0.2.7"), "admin", t1),
        Err(RetryAfter(60 * SEC))
    );
    fail(&limiter, "192.0.2.7", "admin", t1 + 60 * SEC);
    let t2 = t1 + 60 * SEC;
    assert_eq!(
        limiter.check(ip("192.0.2.7"), "admin", t2),
        Err(RetryAfter(120 * SEC))
    );
    // ...never longer than the window.
    let mut at = t2;
    for _ in 0..10 {
        // Failures recorded without a check (as parallel attempts could).
        limiter.record_failure(ip("192.0.2.7"), "admin", at);
        at += SEC;
    }
    let Err(RetryAfter(wait)) = limiter.check(ip("192.0.2.7"), "admin", at) else {
        panic!("not limited");
    };
    assert!(wait <= 15 * MIN, "{wait:?}");
}

/// The lockout of a named admin: junk attempts from one client must not refuse another client.
#[test]
fn junk_for_a_name_from_one_address_does_not_refuse_another_address() {
    let limiter = limiter(5, 50, 15, 100);
    let t0 = Instant::now();
    for _ in 0..5 {
        fail(&limiter, "203.0.113.5", "admin", t0);
    }
    assert!(limiter.check(ip("203.0.113.5"), "admin", t0).is_err());
    assert!(limiter.check(ip("198.51.100.20"), "admin", t0).is_ok());
    limiter.record_success(ip("198.51.100.20"), "admin");
    // The attacker's pair is still slowed after the admin's success.
    assert!(limiter.check(ip("203.0.113.5"), "admin", t0 + SEC).is_err());
}

#[test]
fn an_address_spraying_names_hits_its_cap() {
    let limiter = limiter(5, 10, 15, 1000);
    let t0 = Instant::now();
    for i in 0..10u32 {
        fail(&limiter, "192.0.2.7", &format!("user{i}"), t0 + MIN * i);
    }
    // Blocked for every name until the first failure leaves the window.
    assert_eq!(
        limiter.check(ip("192.0.2.7"), "fresh", t0 + 10 * MIN),
        Err(RetryAfter(5 * MIN))
    );
    assert!(
        limiter
            .check(ip("192.0.2.8"), "fresh", t0 + 10 * MIN)
            .is_ok()
    );
    assert!(
        limiter
            .check(ip("192.0.2.7"), "fresh", t0 + 15 * MIN)
            .is_ok()
    );
}

#[test]
fn unknown_and_known_names_are_counted_alike_and_invalid_names_share_a_pair() {
    let limiter = limiter(2, 50, 15, 100);
    let t0 = Instant::now();
    fail(&limiter, "192.0.2.1", "Not A Name", t0);
    fail(&limiter, "192.0.2.1", "Other Junk!", t0);
    // Both are the pair (192.0.2.1, ""): slowed.
    assert!(limiter.check(ip("192.0.2.1"), "$$$", t0).is_err());
    // Valid names (configured or not: the limiter cannot tell) have their own pairs.
    assert!(limiter.check(ip("192.0.2.1"), "nobody", t0).is_ok());
    limiter.release(ip("192.0.2.1"), "nobody");
    assert_eq!(limiter.tracked(), 2);
}

#[test]
fn success_clears_the_pair_but_not_the_address() {
    let limiter = limiter(3, 4, 15, 100);
    let t0 = Instant::now();
    fail(&limiter, "192.0.2.2", "alice", t0);
    fail(&limiter, "192.0.2.2", "alice", t0);
    fail(&limiter, "192.0.2.2", "mallory", t0);
    assert!(limiter.check(ip("192.0.2.2"), "alice", t0).is_ok());
    limiter.record_success(ip("192.0.2.2"), "alice");
    // alice's pair starts over, the address keeps its three failures: one more fills it.
    fail(&limiter, "192.0.2.2", "carol", t0);
    assert!(limiter.check(ip("192.0.2.2"), "alice", t0).is_err());
}

#[test]
fn pending_attempts_count_until_recorded_released_or_stale() {
    let limiter = limiter(1, 3, 15, 100);
    let t0 = Instant::now();
    // One attempt in progress for a pair: a parallel one for the same pair waits.
    assert!(limiter.check(ip("192.0.2.1"), "a", t0).is_ok());
    assert!(limiter.check(ip("192.0.2.1"), "a", t0).is_err());
    limiter.release(ip("192.0.2.1"), "a");
    assert!(limiter.check(ip("192.0.2.1"), "a", t0).is_ok());
    // Three in progress from the address fill its cap.
    assert!(limiter.check(ip("192.0.2.1"), "b", t0).is_ok());
    assert!(limiter.check(ip("192.0.2.1"), "c", t0).is_ok());
    assert_eq!(
        limiter.check(ip("192.0.2.1"), "d", t0),
        Err(RetryAfter(PENDING_TTL))
    );
    limiter.record_success(ip("192.0.2.1"), "a");
    assert!(limiter.check(ip("192.0.2.1"), "d", t0).is_ok());
    // Attempts never recorded stop counting after PENDING_TTL.
    assert!(
        limiter
            .check(ip("192.0.2.1"), "e", t0 + PENDING_TTL)
            .is_ok()
    );
}

#[test]
fn ipv6_clients_are_counted_by_their_slash_64() {
    let limiter = limiter(5, 2, 15, 100);
    let t0 = Instant::now();
    fail(&limiter, "2001:db8:1:2::1", "a", t0);
    fail(&limiter, "2001:db8:1:2:ffff:ffff:ffff:ffff", "b", t0);
    assert!(limiter.check(ip("2001:db8:1:2::abcd"), "c", t0).is_err());
    assert!(limiter.check(ip("2001:db8:1:3::1"), "c", t0).is_ok());
    // An IPv4-mapped address is the IPv4 address.
    fail(&limiter, "::ffff:192.0.2.1", "x", t0);
    fail(&limiter, "192.0.2.1", "y", t0);
    assert!(limiter.check(ip("::ffff:192.0.2.1"), "z", t0).is_err());
}

#[test]
fn memory_is_bounded_and_old_keys_go_first() {
    let limiter = limiter(2, 50, 15, 4);
    let t0 = Instant::now();
    fail(&limiter, "192.0.2.1", "alice", t0);
    fail(&limiter, "192.0.2.1", "alice", t0 + MIN);
    assert!(limiter.check(ip("192.0.2.1"), "alice", t0 + MIN).is_err());
    for i in 0..20u32 {
        let at = t0 + 2 * MIN + Duration::from_secs(u64::from(i));
        fail(&limiter, &format!("198.51.100.{i}"), &format!("u{i}"), at);
        assert!(limiter.tracked() <= 4, "{}", limiter.tracked());
    }
    // The least recently active keys were forgotten.
    assert!(
        limiter
            .check(ip("192.0.2.1"), "alice", t0 + 3 * MIN)
            .is_ok()
    );
}

#[test]
fn expire_forgets_quiet_keys() {
    let limiter = limiter(5, 50, 15, 100);
    let t0 = Instant::now();
    fail(&limiter, "192.0.2.1", "alice", t0);
    fail(&limiter, "192.0.2.2", "bob", t0 + 10 * MIN);
    assert_eq!(limiter.tracked(), 4);
    assert_eq!(limiter.expire(t0 + 14 * MIN), 0);
    assert_eq!(limiter.expire(t0 + 15 * MIN), 2);
    assert_eq!(limiter.tracked(), 2);
    assert_eq!(limiter.expire(t0 + 25 * MIN), 2);
    assert_eq!(limiter.tracked(), 0);
}
