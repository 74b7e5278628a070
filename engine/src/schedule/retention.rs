//! Which backups a retention policy keeps (pure): keep-last-N plus grandfather-father-son buckets
//! (the newest backup of each of the N newest days, ISO weeks and months that have one), over one
//! PVC's successful backups, newest first; the caller adds the backups that must never go (the
//! PVC's newest successful and newest verified backup). Everything not kept is deleted.
//!
//! "Newest" is the history's order: `finished_at` descending, ties broken by the newest row.
//! Buckets are days, weeks and months on the clock of the policy's time zone.

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

/// A retention policy. A rule left `None` keeps nothing by itself; a policy with no rule set keeps
/// everything (nothing is ever pruned by it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// The N newest backups.
    pub keep_last: Option<u32>,
    /// The newest backup of each of the N newest days that have one.
    pub keep_daily: Option<u32>,
    /// The newest backup of each of the N newest ISO weeks that have one.
    pub keep_weekly: Option<u32>,
    /// The newest backup of each of the N newest months that have one.
    pub keep_monthly: Option<u32>,
}

impl Retention {
    /// Whether any rule is set (a policy without rules never prunes).
    #[must_use]
    pub fn is_set(&self) -> bool {
        self.keep_last.is_some()
            || self.keep_daily.is_some()
            || self.keep_weekly.is_some()
            || self.keep_monthly.is_some()
    }

    /// This policy when it sets a rule, else `default`.
    #[must_use]
    pub fn or(self, default: Self) -> Self {
        if self.is_set() { self } else { default }
    }
}

impl fmt::Display for Retention {
    /// `last 7, daily 14, weekly 8, monthly 12` (only the rules set), or `keep everything`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rules: Vec<String> = [
            ("last", self.keep_last),
            ("daily", self.keep_daily),
            ("weekly", self.keep_weekly),
            ("monthly", self.keep_monthly),
        ]
        .into_iter()
        .filter_map(|(name, n)| n.map(|n| format!("{name} {n}")))
        .collect();
        if rules.is_empty() {
            f.write_str("keep everything")
        } else {
            f.write_str(&rules.join(", "))
        }
    }
}

/// One successful backup of the PVC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backup {
    /// History row id (breaks ties on time: the larger is newer).
    pub id: i64,
    pub finished_at: Timestamp,
}

/// Why a backup is kept.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeepReason {
    /// Among the N newest (`position` counts from 1).
    Last { position: u32 },
    /// The newest of its day (`2026-11-28`).
    Daily(String),
    /// The newest of its ISO week (`2026-W48`).
    Weekly(String),
    /// The newest of its month (`2026-11`).
    Monthly(String),
    /// The PVC's newest successful backup: never removed.
    NewestSuccess,
    /// The PVC's newest verified backup: never removed.
    NewestVerified,
    /// The policy sets no rule: everything is kept.
    NoPolicy,
}

impl fmt::Display for KeepReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Last { position } => write!(f, "last #{position}"),
            Self::Daily(day) => write!(f, "daily {day}"),
            Self::Weekly(week) => write!(f, "weekly {week}"),
            Self::Monthly(month) => write!(f, "monthly {month}"),
            Self::NewestSuccess => f.write_str("newest successful backup of the PVC"),
            Self::NewestVerified => f.write_str("newest verified backup of the PVC"),
            Self::NoPolicy => f.write_str("no retention rule set"),
        }
    }
}

/// What the policy decided for one backup: kept (with every reason) or deleted (no reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub id: i64,
    pub keep: Vec<KeepReason>,
}

impl Decision {
    #[must_use]
    pub fn is_kept(&self) -> bool {
        !self.keep.is_empty()
    }
}

/// The bucket (day, week, month) of a time, as the reason it is kept.
type BucketOf = fn(&jiff::Zoned) -> KeepReason;

/// Decides for every backup of one PVC under `policy`, bucketing in `zone`. `protected` are the
/// backups that are always kept, with why. A policy with no rule keeps everything. Decisions come
/// newest first.
#[must_use]
pub fn select(
    backups: &[Backup],
    policy: &Retention,
    zone: &TimeZone,
    protected: &[(i64, KeepReason)],
) -> Vec<Decision> {
    let mut ordered: Vec<Backup> = backups.to_vec();
    ordered.sort_by_key(|b| std::cmp::Reverse((b.finished_at, b.id)));
    let mut reasons: BTreeMap<i64, Vec<KeepReason>> = BTreeMap::new();
    if !policy.is_set() {
        return ordered
            .iter()
            .map(|b| Decision {
                id: b.id,
                keep: vec![KeepReason::NoPolicy],
            })
            .collect();
    }
    if let Some(n) = policy.keep_last {
        for (position, backup) in (1..=n).zip(&ordered) {
            reasons
                .entry(backup.id)
                .or_default()
                .push(KeepReason::Last { position });
        }
    }
    let buckets: [(Option<u32>, BucketOf); 3] = [
        (policy.keep_daily, |z| {
            KeepReason::Daily(z.strftime("%Y-%m-%d").to_string())
        }),
        (policy.keep_weekly, |z| {
            let week = z.date().iso_week_date();
            KeepReason::Weekly(format!("{:04}-W{:02}", week.year(), week.week()))
        }),
        (policy.keep_monthly, |z| {
            KeepReason::Monthly(z.strftime("%Y-%m").to_string())
        }),
    ];
    for (count, bucket_of) in buckets {
        let Some(count) = count else { continue };
        let mut kept = 0u32;
        let mut last_bucket: Option<KeepReason> = None;
        for backup in &ordered {
            if kept >= count {
                break;
            }
            let bucket = bucket_of(&backup.finished_at.to_zoned(zone.clone()));
            if last_bucket.as_ref() == Some(&bucket) {
                continue;
            }
            last_bucket = Some(bucket.clone());
            kept += 1;
            reasons.entry(backup.id).or_default().push(bucket);
        }
    }
    for (id, reason) in protected {
        if ordered.iter().any(|b| b.id == *id) {
            reasons.entry(*id).or_default().push(reason.clone());
        }
    }
    ordered
        .iter()
        .map(|b| Decision {
            id: b.id,
            keep: reasons.remove(&b.id).unwrap_or_default(),
        })
        .collect()
}

#[cfg(test)]
mod tests;
