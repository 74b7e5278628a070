//! Retention selection, table-driven: keep-last, GFS buckets (days, ISO weeks, months in a time
//! zone), ties on time, and the backups that must never go.

use super::*;

fn backups(times: &[&str]) -> Vec<Backup> {
    times
        .iter()
        .enumerate()
        .map(|(i, t)| Backup {
            id: i64::try_from(i).unwrap() + 1,
            finished_at: t.parse().unwrap(),
        })
        .collect()
}

/// The ids kept, newest first.
fn kept(decisions: &[Decision]) -> Vec<i64> {
    decisions
        .iter()
        .filter(|d| d.is_kept())
        .map(|d| d.id)
        .collect()
}

fn policy(
    last: Option<u32>,
    daily: Option<u32>,
    weekly: Option<u32>,
    monthly: Option<u32>,
) -> Retention {
    Retention {
        keep_last: last,
        keep_daily: daily,
        keep_weekly: weekly,
        keep_monthly: monthly,
    }
}

type Case = (&'static str, Retention, &'static [i64]);

#[test]
fn selection_table() {
    // Twice a day for a while, ids 1 (oldest) .. 12 (newest). 2026-11-30 is a Monday.
    let history = [
        "2026-10-30T02:00:00Z", // 1  Fri, October, W44
        "2026-10-31T02:00:00Z", // 2  Sat, October, W44
        "2026-11-01T02:00:00Z", // 3  Sun, November, W44
        "2026-11-15T02:00:00Z", // 4  Sun, W46
        "2026-11-23T02:00:00Z", // 5  Mon, W48
        "2026-11-27T02:00:00Z", // 6  Fri, W48
        "2026-11-28T02:00:00Z", // 7  Sat, W48
        "2026-11-28T14:00:00Z", // 8  Sat, W48
        "2026-11-29T02:00:00Z", // 9  Sun, W48
        "2026-11-29T14:00:00Z", // 10 Sun, W48
        "2026-11-30T02:00:00Z", // 11 Mon, W49
        "2026-11-30T14:00:00Z", // 12 Mon, W49
    ];
    let cases: &[Case] = &[
        (
            "no rule keeps everything",
            Retention::default(),
            &[12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1],
        ),
        ("last 3", policy(Some(3), None, None, None), &[12, 11, 10]),
        (
            "last 0 keeps nothing by itself",
            policy(Some(0), None, None, None),
            &[],
        ),
        (
            "last more than there are",
            policy(Some(50), None, None, None),
            &[12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1],
        ),
        // The newest of each of the 3 newest days: Mon 30 (12), Sun 29 (10), Sat 28 (8).
        ("daily 3", policy(None, Some(3), None, None), &[12, 10, 8]),
        // Days without a backup do not count: Fri 27 (6) is the 4th day, Mon 23 (5) the 5th.
        (
            "daily 5",
            policy(None, Some(5), None, None),
            &[12, 10, 8, 6, 5],
        ),
        // W49 (12), W48 (10), W46 (4), W44 (3).
        (
            "weekly 4",
            policy(None, None, Some(4), None),
            &[12, 10, 4, 3],
        ),
        // November (12), October (2).
        ("monthly 6", policy(None, None, None, Some(6)), &[12, 2]),
        // Rules add up: last 2 (12, 11) + daily 2 (12, 10) + weekly 3 (12, 10, 4) + monthly 2 (12, 2).
        (
            "GFS combined",
            policy(Some(2), Some(2), Some(3), Some(2)),
            &[12, 11, 10, 4, 2],
        ),
    ];
    for (name, policy, expected) in cases {
        let decisions = select(&backups(&history), policy, &TimeZone::UTC, &[]);
        assert_eq!(decisions.len(), history.len(), "{name}");
        assert_eq!(kept(&decisions), *expected, "{name}");
    }
}

#[test]
fn buckets_follow_the_policy_time_zone() {
    // 23:30Z on the 28th is already the 29th in Berlin (00:30 CET).
    let history = backups(&["2026-11-28T20:00:00Z", "2026-11-28T23:30:00Z"]);
    let daily = policy(None, Some(2), None, None);
    assert_eq!(kept(&select(&history, &daily, &TimeZone::UTC, &[])), [2]);
    let berlin = TimeZone::get("Europe/Berlin").unwrap();
    assert_eq!(kept(&select(&history, &daily, &berlin, &[])), [2, 1]);
}

#[test]
fn ties_on_time_go_to_the_newest_row() {
    // Same finish time: row 2 is newer than row 1 (inserted later).
    let history = backups(&[
        "2026-11-28T02:00:00Z",
        "2026-11-28T02:00:00Z",
        "2026-11-27T02:00:00Z",
    ]);
    let decisions = select(
        &history,
        &policy(Some(1), None, None, None),
        &TimeZone::UTC,
        &[],
    );
    assert_eq!(kept(&decisions), [2]);
    assert_eq!(
        decisions.iter().map(|d| d.id).collect::<Vec<_>>(),
        [2, 1, 3]
    );
    let daily = select(
        &history,
        &policy(None, Some(1), None, None),
        &TimeZone::UTC,
        &[],
    );
    assert_eq!(kept(&daily), [2]);
    assert_eq!(daily[0].keep, [KeepReason::Daily("2026-11-28".to_owned())]);
}

#[test]
fn the_newest_success_and_the_newest_verified_are_never_deleted() {
    let history = backups(&[
        "2026-11-01T02:00:00Z",
        "2026-11-02T02:00:00Z",
        "2026-11-03T02:00:00Z",
    ]);
    // A policy that would keep nothing: the protected ones stay anyway, with the reason.
    let keep_none = policy(Some(0), None, None, None);
    let protected = [
        (3, KeepReason::NewestSuccess),
        (1, KeepReason::NewestVerified),
    ];
    let decisions = select(&history, &keep_none, &TimeZone::UTC, &protected);
    assert_eq!(kept(&decisions), [3, 1]);
    assert_eq!(decisions[0].keep, [KeepReason::NewestSuccess]);
    assert_eq!(decisions[2].keep, [KeepReason::NewestVerified]);
    assert!(!decisions[1].is_kept());
    // A protected id that is not among the backups changes nothing.
    let decisions = select(
        &history,
        &keep_none,
        &TimeZone::UTC,
        &[(99, KeepReason::NewestSuccess)],
    );
    assert!(kept(&decisions).is_empty());
    // Reasons accumulate.
    let decisions = select(
        &history,
        &policy(Some(1), Some(1), None, None),
        &TimeZone::UTC,
        &protected[..1],
    );
    assert_eq!(
        decisions[0].keep,
        [
            KeepReason::Last { position: 1 },
            KeepReason::Daily("2026-11-03".to_owned()),
            KeepReason::NewestSuccess
        ]
    );
}

#[test]
fn policies_print_and_fall_back() {
    assert_eq!(Retention::default().to_string(), "keep everything");
    let p = policy(Some(7), None, Some(4), None);
    assert_eq!(p.to_string(), "last 7, weekly 4");
    assert!(p.is_set());
    let default = policy(None, Some(14), None, None);
    assert_eq!(Retention::default().or(default), default);
    assert_eq!(p.or(default), p);
    assert_eq!(
        KeepReason::Weekly("2026-W48".into()).to_string(),
        "weekly 2026-W48"
    );
    assert!(select(&[], &p, &TimeZone::UTC, &[]).is_empty());
}
