use super::*;

const MIN: Duration = Duration::from_mins(1);

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn limiter(max_failures: u32, window_min: u32, max_keys: usize) -> LoginLimiter {
    LoginLimiter::new(LimiterOptions {
        max_failures,
        window: MIN * window_min,
        max_keys,
    })
}

/// A checked attempt that fails.
fn fail(limiter: &LoginLimiter, from: &str, user: &str, now: Instant) {
    limiter.check(ip(from), user, now).expect("attempt allowed");
    limiter.record_failure(ip(from), user, now);
}

#[test]
fn defaults_are_five_failures_per_fifteen_minutes() {
    let options = LimiterOptions::default();
    assert_eq!(options.max_failures, 5);
    assert_eq!(options.window, Duration::from_mins(15));
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
fn blocks_an_address_after_n_failures_until_the_first_leaves_the_window() {
    let limiter = limiter(5, 15, 100);
    let t0 = Instant::now();
    // Five failures, one a minute, each for a different name.
    for i in 0..5u32 {
        fail(&limiter, "192.0.2.7", &format!("user{i}"), t0 + MIN * i);
    }
    let now = t0 + 5 * MIN;
    assert_eq!(
        limiter.check(ip("192.0.2.7"), "user9", now),
        Err(RetryAfter(10 * MIN))
    );
    // Another address may still try those names.
    assert!(limiter.check(ip("192.0.2.8"), "user9", now).is_ok());
    limiter.record_success(ip("192.0.2.8"), "user9");
    // Just before the first failure is 15 minutes old: still blocked; at 15 minutes: one more try.
    let almost = (t0 + 15 * MIN)
        .checked_sub(Duration::from_millis(1))
        .unwrap();
    assert_eq!(
        limiter.check(ip("192.0.2.7"), "user9", almost),
        Err(RetryAfter(Duration::from_millis(1)))
    );
    let later = t0 + 15 * MIN;
    fail(&limiter, "192.0.2.7", "user9", later);
    // That failure fills the window again: blocked until the second one (t0+1) expires.
    assert_eq!(
        limiter.check(ip("192.0.2.7"), "user9", later),
        Err(RetryAfter(MIN))
    );
}

#[test]
fn blocks_a_name_across_addresses() {
    let limiter = limiter(3, 15, 100);
    let t0 = Instant::now();
    for (i, from) in ["198.51.100.1", "198.51.100.2", "203.0.113.9"]
        .iter()
        .enumerate()
    {
        fail(
            &limiter,
            from,
            "alice",
            t0 + MIN * u32::try_from(i).unwrap(),
        );
    }
    let now = t0 + 3 * MIN;
    let err = limiter.check(ip("192.0.2.1"), "alice", now).unwrap_err();
    assert_eq!(err, RetryAfter(12 * MIN));
    // Others are not affected, from the same addresses either.
    assert!(limiter.check(ip("198.51.100.1"), "bob", now).is_ok());
}

#[test]
fn reports_the_longer_of_the_two_waits() {
    let limiter = limiter(2, 10, 100);
    let t0 = Instant::now();
    // alice: failures at t0 and t0+1 (blocked until t0+10).
    fail(&limiter, "192.0.2.2", "alice", t0);
    fail(&limiter, "192.0.2.3", "alice", t0 + MIN);
    // Address .1: failures at t0+5 and t0+6 (blocked until t0+15).
    fail(&limiter, "192.0.2.1", "x", t0 + 5 * MIN);
    fail(&limiter, "192.0.2.1", "y", t0 + 6 * MIN);
    let now = t0 + 7 * MIN;
    assert_eq!(
        limiter.check(ip("192.0.2.1"), "alice", now),
        Err(RetryAfter(8 * MIN))
    );
    assert_eq!(
        limiter.check(ip("192.0.2.4"), "alice", now),
        Err(RetryAfter(3 * MIN))
    );
    assert_eq!(
        limiter.check(ip("192.0.2.1"), "bob", now),
        Err(RetryAfter(8 * MIN))
    );
}

#[test]
fn success_clears_the_name_but_not_the_address() {
    let limiter = limiter(3, 15, 100);
    let t0 = Instant::now();
    fail(&limiter, "192.0.2.1", "alice", t0);
    fail(&limiter, "192.0.2.2", "alice", t0);
    fail(&limiter, "192.0.2.2", "mallory", t0);
    assert!(limiter.check(ip("192.0.2.3"), "alice", t0).is_ok());
    limiter.record_success(ip("192.0.2.3"), "alice");
    // alice starts over: three more failures allowed.
    for i in 4..7 {
        fail(&limiter, &format!("192.0.2.{i}"), "alice", t0 + MIN);
    }
    assert!(limiter.check(ip("192.0.2.7"), "alice", t0 + MIN).is_err());

    // Address .2 has two failures; a success from it as another user does not reset them.
    assert!(limiter.check(ip("192.0.2.2"), "bob", t0 + MIN).is_ok());
    limiter.record_success(ip("192.0.2.2"), "bob");
    fail(&limiter, "192.0.2.2", "carol", t0 + MIN);
    assert!(limiter.check(ip("192.0.2.2"), "bob", t0 + MIN).is_err());
}

#[test]
fn pending_attempts_count_until_recorded_or_stale() {
    let limiter = limiter(3, 15, 100);
    let t0 = Instant::now();
    // Three attempts in parallel pass; the fourth waits for one of them.
    for user in ["a", "b", "c"] {
        assert!(limiter.check(ip("192.0.2.1"), user, t0).is_ok());
    }
    assert_eq!(
        limiter.check(ip("192.0.2.1"), "d", t0),
        Err(RetryAfter(PENDING_TTL))
    );
    // One succeeds: its slot is free again.
    limiter.record_success(ip("192.0.2.1"), "a");
    assert!(limiter.check(ip("192.0.2.1"), "d", t0).is_ok());
    assert!(limiter.check(ip("192.0.2.1"), "e", t0).is_err());
    // Attempts never recorded stop counting after PENDING_TTL.
    assert!(
        limiter
            .check(ip("192.0.2.1"), "e", t0 + PENDING_TTL)
            .is_ok()
    );
}

#[test]
fn ipv6_clients_are_counted_by_their_slash_64() {
    let limiter = limiter(2, 15, 100);
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
fn invalid_names_are_limited_by_address_only() {
    let limiter = limiter(2, 15, 100);
    let t0 = Instant::now();
    fail(&limiter, "192.0.2.1", "Not A Name", t0);
    fail(&limiter, "192.0.2.2", "Not A Name", t0);
    assert_eq!(limiter.tracked(), 2);
    assert!(limiter.check(ip("192.0.2.3"), "Not A Name", t0).is_ok());
}

#[test]
fn memory_is_bounded_and_old_keys_go_first() {
    let limiter = limiter(2, 15, 4);
    let t0 = Instant::now();
    fail(&limiter, "192.0.2.1", "alice", t0);
    fail(&limiter, "192.0.2.1", "alice", t0 + MIN);
    assert!(limiter.check(ip("192.0.2.1"), "zed", t0 + MIN).is_err());
    // Many other keys, each newer: the tracked set never exceeds 4.
    for i in 0..20u32 {
        let at = t0 + 2 * MIN + Duration::from_secs(u64::from(i));
        fail(&limiter, &format!("198.51.100.{i}"), &format!("u{i}"), at);
        assert!(limiter.tracked() <= 4, "{}", limiter.tracked());
    }
    // alice and 192.0.2.1 were the least recently active: forgotten (though still in their
    // window, where they would be blocked).
    assert!(
        limiter
            .check(ip("192.0.2.1"), "alice", t0 + 3 * MIN)
            .is_ok()
    );
}

#[test]
fn expire_forgets_quiet_keys() {
    let limiter = limiter(5, 15, 100);
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
