//! Fixed-width RFC 3339 UTC timestamps with microseconds (`2026-11-28T23:18:58.123456Z`): the one
//! text form of every time nkvm writes (history rows, manifests, the CLI's JSON), chosen so that
//! text order is time order.

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// Length of every stored timestamp.
pub const WIDTH: usize = "2026-11-28T23:18:58.123456Z".len();

/// Formats `ts` as `YYYY-MM-DDTHH:MM:SS.ffffffZ`, truncated to the microsecond.
///
/// `None` for times before year 0 (outside the fixed-width form; never produced by a sane clock).
pub fn format(ts: Timestamp) -> Option<String> {
    let dt = TimeZone::UTC.to_datetime(ts);
    if dt.year() < 0 {
        return None;
    }
    Some(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.subsec_nanosecond() / 1_000
    ))
}

/// [`format()`] for times nkvm produces itself (a sane clock is never before year 0; such a time
/// falls back to jiff's own RFC 3339 form).
#[must_use]
pub fn rfc3339(ts: Timestamp) -> String {
    format(ts).unwrap_or_else(|| ts.to_string())
}

/// Parses the exact form written by [`format()`]; anything else (other offsets, other precisions,
/// out-of-range fields) is `None`.
pub fn parse(text: &str) -> Option<Timestamp> {
    let bytes = text.as_bytes();
    if bytes.len() != WIDTH {
        return None;
    }
    let shape_ok = bytes.iter().enumerate().all(|(i, b)| match i {
        4 | 7 => *b == b'-',
        10 => *b == b'T',
        13 | 16 => *b == b':',
        19 => *b == b'.',
        26 => *b == b'Z',
        _ => b.is_ascii_digit(),
    });
    if !shape_ok {
        return None;
    }
    let ts: Timestamp = text.parse().ok()?;
    // Rejects values jiff accepts but normalises (a leap second `:60`), so that parse ∘ format = id.
    (format(ts)?.as_str() == text).then_some(ts)
}

/// Truncates `ts` to the microsecond (what a stored time round-trips to).
pub fn truncate(ts: Timestamp) -> Timestamp {
    let nanos = ts.as_nanosecond();
    let truncated = nanos - nanos.rem_euclid(1_000);
    Timestamp::from_nanosecond(truncated).unwrap_or(ts)
}

/// The first microsecond at or after `ts` (`None` past the end of time): for a stored time `t`,
/// `t >= ts` exactly when `t >= ceil(ts)`.
pub fn ceil(ts: Timestamp) -> Option<Timestamp> {
    let down = truncate(ts);
    if down == ts {
        Some(ts)
    } else {
        down.checked_add(jiff::SignedDuration::from_micros(1)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().expect(text)
    }

    #[test]
    fn rfc3339_always_has_microseconds() {
        assert_eq!(
            rfc3339(ts("2026-11-28T23:18:58.1Z")),
            "2026-11-28T23:18:58.100000Z"
        );
    }

    #[test]
    fn formats_fixed_width_utc_with_microseconds() {
        assert_eq!(
            format(ts("2026-11-28T23:18:58.123456789Z")).as_deref(),
            Some("2026-11-28T23:18:58.123456Z")
        );
        assert_eq!(
            format(ts("2026-01-02T03:04:05Z")).as_deref(),
            Some("2026-01-02T03:04:05.000000Z")
        );
        // An offset is converted to UTC.
        assert_eq!(
            format(ts("2026-11-29T01:18:58.5+02:00")).as_deref(),
            Some("2026-11-28T23:18:58.500000Z")
        );
        assert_eq!(
            format(ts("0001-01-01T00:00:00Z")).as_deref(),
            Some("0001-01-01T00:00:00.000000Z")
        );
        assert_eq!(format(ts("-000001-01-01T00:00:00Z")), None);
        assert_eq!(format(Timestamp::MAX).map(|s| s.len()), Some(WIDTH));
    }

    #[test]
    fn truncates_instead_of_rounding() {
        // Rounding would carry into the next second (and the next day, month and year).
        assert_eq!(
            format(ts("2026-12-31T23:59:59.999999999Z")).as_deref(),
            Some("2026-12-31T23:59:59.999999Z")
        );
        // Before the epoch, truncation still goes towards the past in calendar terms.
        assert_eq!(
            format(ts("1969-12-31T23:59:59.999999999Z")).as_deref(),
            Some("1969-12-31T23:59:59.999999Z")
        );
        assert_eq!(
            truncate(ts("1969-12-31T23:59:59.999999999Z")),
            ts("1969-12-31T23:59:59.999999Z")
        );
        assert_eq!(
            truncate(ts("2026-11-28T23:18:58.123456789Z")),
            ts("2026-11-28T23:18:58.123456Z")
        );
    }

    #[test]
    fn ceil_rounds_up_to_the_next_microsecond() {
        assert_eq!(
            ceil(ts("2026-11-28T23:18:58.123456Z")),
            Some(ts("2026-11-28T23:18:58.123456Z"))
        );
        assert_eq!(
            ceil(ts("2026-11-28T23:18:58.123456001Z")),
            Some(ts("2026-11-28T23:18:58.123457Z"))
        );
        assert_eq!(
            ceil(ts("1969-12-31T23:59:59.999999001Z")),
            Some(ts("1970-01-01T00:00:00Z"))
        );
        assert_eq!(ceil(Timestamp::MAX), None);
    }

    #[test]
    fn parse_inverts_format() {
        for text in [
            "2026-11-28T23:18:58.123456Z",
            "1970-01-01T00:00:00.000000Z",
            "0000-01-01T00:00:00.000000Z",
            "9999-12-30T12:00:00.000001Z",
        ] {
            let parsed = parse(text).expect(text);
            assert_eq!(format(parsed).as_deref(), Some(text));
        }
        assert_eq!(
            parse("2026-11-28T23:18:58.123456Z"),
            Some(ts("2026-11-28T23:18:58.123456Z"))
        );
    }

    #[test]
    fn parse_rejects_other_forms() {
        for text in [
            "",
            "2026-11-28T23:18:58Z",
            "2026-11-28T23:18:58.123Z",
            "2026-11-28T23:18:58.123456789Z",
            "2026-11-28T23:18:58.123456+00:00",
            "2026-11-28 23:18:58.123456Z",
            "2026-11-28t23:18:58.123456z",
            "2026-13-28T23:18:58.123456Z",
            "2026-02-30T23:18:58.123456Z",
            "2026-11-28T24:00:00.000000Z",
            "2026-12-31T23:59:60.000000Z",
            "+2026-11-28T23:18:58.12345Z",
            "２026-11-28T23:18:58.12345Z",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn text_order_is_time_order() {
        let times = [
            "0999-01-01T00:00:00Z",
            "1969-12-31T23:59:59.999999Z",
            "1970-01-01T00:00:00Z",
            "2026-11-28T23:18:58.000001Z",
            "2026-11-28T23:18:58.1Z",
            "2026-11-28T23:18:59Z",
            "2026-11-29T00:00:00Z",
            "9999-01-01T00:00:00Z",
        ];
        let texts: Vec<String> = times.iter().map(|t| format(ts(t)).expect(t)).collect();
        for pair in texts.windows(2) {
            assert!(pair[0] < pair[1], "{} !< {}", pair[0], pair[1]);
            assert!(parse(&pair[0]) < parse(&pair[1]));
        }
    }
}
