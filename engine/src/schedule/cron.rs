//! Cron expressions evaluated in a time zone ([`CronSpec`]): the next run after a time, the firing
//! that is due at a time (a run missed while nkvm was down is due once, then the schedule
//! realigns: [`CronSpec::due`]), and the usual interval between runs (for the default RPO).
//!
//! Standard five fields (minute, hour, day of month, month, day of week; names like `MON` and
//! `JAN`, `*/15`, ranges and lists, and the nicknames `@hourly`, `@daily`, `@weekly`, `@monthly`,
//! `@yearly`), parsed and evaluated by the `croner` crate over jiff's zoned times. Daylight saving
//! time: a wall-clock time skipped by a spring-forward change runs at the first instant after the
//! gap; a time repeated by a fall-back change runs once (at its first occurrence).

use croner::Cron;
use croner::parser::{CronParser, Seconds};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, Zoned};

/// Occurrences looked at to find the usual interval of a schedule.
const INTERVAL_SAMPLES: usize = 12;

/// Most missed occurrences counted after a long outage (only reported, never run).
const MAX_COUNTED_MISSES: u32 = 100_000;

/// A parsed cron expression and the time zone it is read in.
#[derive(Debug, Clone)]
pub struct CronSpec {
    expression: String,
    zone_name: String,
    cron: Cron,
    zone: TimeZone,
}

/// Why a cron expression or time zone was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error(
        "invalid cron expression {expression:?}: {reason} (five fields: minute hour day-of-month \
         month day-of-week, for example `0 3 * * *` for 03:00 every day)"
    )]
    Expression { expression: String, reason: String },
    #[error(
        "unknown time zone {0:?}: use an IANA name such as `UTC`, `Europe/Berlin` or \
         `America/New_York`"
    )]
    TimeZone(String),
    #[error("the cron expression {0:?} never matches a real date")]
    Never(String),
}

/// A firing that is due: the scheduled time to run for, and how many earlier scheduled times were
/// missed (not run) since the last handled one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub scheduled_at: Timestamp,
    pub missed: u32,
}

impl CronSpec {
    /// Parses `expression` to be read in the time zone `zone` (an IANA name; `UTC` when empty).
    pub fn parse(expression: &str, zone: &str) -> Result<Self, CronError> {
        let expression = expression.trim();
        let zone_name = if zone.trim().is_empty() {
            "UTC"
        } else {
            zone.trim()
        };
        let tz = TimeZone::get(zone_name).map_err(|_| CronError::TimeZone(zone_name.to_owned()))?;
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .build()
            .parse(expression)
            .map_err(|error| CronError::Expression {
                expression: expression.to_owned(),
                reason: error.to_string(),
            })?;
        let spec = Self {
            expression: expression.to_owned(),
            zone_name: zone_name.to_owned(),
            cron,
            zone: tz,
        };
        // A pattern like `0 0 31 2 *` parses but never fires: refuse it now, not at 3 a.m.
        if spec.next_after(Timestamp::now()).is_none() {
            return Err(CronError::Never(expression.to_owned()));
        }
        Ok(spec)
    }

    /// The expression as given (trimmed).
    #[must_use]
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The time zone's IANA name.
    #[must_use]
    pub fn zone_name(&self) -> &str {
        &self.zone_name
    }

    /// An English description of the expression (`At 03:00`), for people.
    #[must_use]
    pub fn describe(&self) -> String {
        self.cron.describe()
    }

    fn zoned(&self, at: Timestamp) -> Zoned {
        at.to_zoned(self.zone.clone())
    }

    /// The first scheduled time strictly after `after`.
    #[must_use]
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        self.cron
            .find_next_occurrence(&self.zoned(after), false)
            .ok()
            .map(|z| z.timestamp())
    }

    /// The latest scheduled time at or before `at`.
    #[must_use]
    pub fn latest_at_or_before(&self, at: Timestamp) -> Option<Timestamp> {
        self.cron
            .find_previous_occurrence(&self.zoned(at), true)
            .ok()
            .map(|z| z.timestamp())
    }

    /// The firing due at `now` when every scheduled time up to `handled` was already handled (run
    /// or skipped): the latest scheduled time in `(handled, now]`, once, however many were missed
    /// while nkvm was down. `None` when nothing is due.
    #[must_use]
    pub fn due(&self, handled: Timestamp, now: Timestamp) -> Option<Due> {
        let first = self.next_after(handled)?;
        if first > now {
            return None;
        }
        let latest = self.latest_at_or_before(now)?.max(first);
        let mut missed = 0u32;
        let mut at = first;
        while at < latest && missed < MAX_COUNTED_MISSES {
            missed += 1;
            match self.next_after(at) {
                Some(next) => at = next,
                None => break,
            }
        }
        Some(Due {
            scheduled_at: latest,
            missed,
        })
    }

    /// The longest gap between consecutive scheduled times among the next few after `from` (a
    /// weekday-only schedule's weekend gap counts): the schedule's usual interval.
    #[must_use]
    pub fn interval(&self, from: Timestamp) -> Option<SignedDuration> {
        let mut previous = self.next_after(from)?;
        let mut longest = SignedDuration::ZERO;
        for _ in 0..INTERVAL_SAMPLES {
            let Some(next) = self.next_after(previous) else {
                break;
            };
            longest = longest.max(next.duration_since(previous));
            previous = next;
        }
        (longest > SignedDuration::ZERO).then_some(longest)
    }
}

#[cfg(test)]
mod tests;
