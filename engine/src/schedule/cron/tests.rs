//! Cron evaluation: next times, DST gaps and folds in a real time zone, missed runs, intervals.

use super::*;

fn ts(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn next_n(spec: &CronSpec, from: &str, n: usize) -> Vec<String> {
    let mut at = ts(from);
    let mut out = Vec::new();
    for _ in 0..n {
        at = spec.next_after(at).unwrap();
        out.push(at.to_string());
    }
    out
}

#[test]
fn every_minute_in_utc() {
    let spec = CronSpec::parse("* * * * *", "").unwrap();
    assert_eq!(spec.zone_name(), "UTC");
    assert_eq!(
        next_n(&spec, "2026-11-28T23:58:30Z", 3),
        [
            "2026-11-28T23:59:00Z",
            "2026-11-29T00:00:00Z",
            "2026-11-29T00:01:00Z"
        ]
    );
    // Strictly after: a time on the minute is not its own next time.
    assert_eq!(
        spec.next_after(ts("2026-11-29T00:00:00Z")),
        Some(ts("2026-11-29T00:01:00Z"))
    );
}

#[test]
fn a_daily_time_stays_on_the_local_clock_across_dst() {
    let spec = CronSpec::parse("0 3 * * *", "Europe/Berlin").unwrap();
    // 03:00 CET is 02:00Z; from 29 March 2026 03:00 CEST is 01:00Z; back on 25 October.
    assert_eq!(
        next_n(&spec, "2026-03-27T12:00:00Z", 3),
        [
            "2026-03-28T02:00:00Z",
            "2026-03-29T01:00:00Z",
            "2026-03-30T01:00:00Z"
        ]
    );
    assert_eq!(
        next_n(&spec, "2026-10-24T12:00:00Z", 2),
        ["2026-10-25T02:00:00Z", "2026-10-26T02:00:00Z"]
    );
}

#[test]
fn a_time_in_the_spring_forward_gap_runs_right_after_the_gap() {
    // 29 March 2026, Berlin: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
    let spec = CronSpec::parse("30 2 * * *", "Europe/Berlin").unwrap();
    assert_eq!(
        next_n(&spec, "2026-03-28T12:00:00Z", 2),
        ["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]
    );
}

#[test]
fn a_time_repeated_by_fall_back_runs_once() {
    // 25 October 2026, Berlin: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    let spec = CronSpec::parse("30 2 * * *", "Europe/Berlin").unwrap();
    assert_eq!(
        next_n(&spec, "2026-10-24T12:00:00Z", 2),
        ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
    );
}

#[test]
fn an_hourly_schedule_runs_every_real_hour_across_fall_back() {
    let spec = CronSpec::parse("0 * * * *", "Europe/Berlin").unwrap();
    // 02:00 CEST (00:00Z), 02:00 CET (01:00Z), 03:00 CET (02:00Z): one run per real hour.
    assert_eq!(
        next_n(&spec, "2026-10-24T23:30:00Z", 3),
        [
            "2026-10-25T00:00:00Z",
            "2026-10-25T01:00:00Z",
            "2026-10-25T02:00:00Z"
        ]
    );
    // New York springs forward on 8 March 2026: 02:00 EST → 03:00 EDT (07:00Z).
    let spec = CronSpec::parse("0 * * * *", "America/New_York").unwrap();
    assert_eq!(
        next_n(&spec, "2026-03-08T05:30:00Z", 3),
        [
            "2026-03-08T06:00:00Z",
            "2026-03-08T07:00:00Z",
            "2026-03-08T08:00:00Z"
        ]
    );
}

#[test]
fn missed_runs_are_due_once_then_the_schedule_realigns() {
    let spec = CronSpec::parse("* * * * *", "UTC").unwrap();
    let handled = ts("2026-11-29T10:00:00Z");
    // Down from 10:00:20 to 10:05:30: 10:01-10:04 missed, 10:05 due (once).
    let due = spec.due(handled, ts("2026-11-29T10:05:30Z")).unwrap();
    assert_eq!(due.scheduled_at, ts("2026-11-29T10:05:00Z"));
    assert_eq!(due.missed, 4);
    // Handled: nothing more until the next minute, which is on time again.
    assert_eq!(spec.due(due.scheduled_at, ts("2026-11-29T10:05:59Z")), None);
    assert_eq!(
        spec.due(due.scheduled_at, ts("2026-11-29T10:06:00Z")),
        Some(Due {
            scheduled_at: ts("2026-11-29T10:06:00Z"),
            missed: 0
        })
    );
    // Nothing scheduled since `handled`: nothing due.
    assert_eq!(spec.due(handled, ts("2026-11-29T10:00:59Z")), None);
}

#[test]
fn a_long_outage_is_one_run() {
    let spec = CronSpec::parse("0 3 * * *", "Europe/Berlin").unwrap();
    let due = spec
        .due(ts("2026-03-01T02:00:00Z"), ts("2026-03-31T12:00:00Z"))
        .unwrap();
    assert_eq!(due.scheduled_at, ts("2026-03-31T01:00:00Z"));
    assert_eq!(due.missed, 29);
}

#[test]
fn intervals_use_the_longest_gap() {
    let interval = |expr: &str| {
        CronSpec::parse(expr, "UTC")
            .unwrap()
            .interval(ts("2026-11-25T12:00:00Z"))
            .unwrap()
    };
    assert_eq!(interval("* * * * *"), SignedDuration::from_mins(1));
    assert_eq!(interval("*/15 * * * *"), SignedDuration::from_mins(15));
    assert_eq!(interval("@daily"), SignedDuration::from_hours(24));
    // Weekdays only: the weekend gap (Friday → Monday) is the interval.
    assert_eq!(interval("0 3 * * 1-5"), SignedDuration::from_hours(72));
}

#[test]
fn refusals_say_what_is_expected() {
    for bad in ["61 * * * *", "* * *", "0 0 3 * * *", "every day", ""] {
        let error = CronSpec::parse(bad, "UTC").unwrap_err();
        assert!(
            matches!(error, CronError::Expression { .. }),
            "{bad}: {error}"
        );
        assert!(error.to_string().contains("five fields"), "{error}");
    }
    assert_eq!(
        CronSpec::parse("0 3 * * *", "Mars/Olympus").unwrap_err(),
        CronError::TimeZone("Mars/Olympus".to_owned())
    );
    assert!(matches!(
        CronSpec::parse("0 0 31 2 *", "UTC").unwrap_err(),
        CronError::Never(_)
    ));
    let spec = CronSpec::parse(" 0 3 * * MON ", "Europe/Berlin").unwrap();
    assert_eq!(spec.expression(), "0 3 * * MON");
    assert!(!spec.describe().is_empty());
}
