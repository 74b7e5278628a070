//! Text for people, shared by the CLI, the web UI and the engine's messages: byte counts, rates,
//! durations, ages, progress, RFC 3339 times, capacities and the inventory's labels. Pure (it also
//! compiles for the browser).

/// Formats a byte count with binary (IEC) units: `512 B`, `1.5 KiB`, `10.0 GiB`.
#[must_use]
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut unit = 0;
    let mut whole = bytes;
    // Scale with integers so the printed unit is exact even for huge values.
    while whole >= 1024 * 1024 && unit + 1 < UNITS.len() {
        whole /= 1024;
        unit += 1;
    }
    // `whole` is now in [1024, 1024^2) of the unit below `UNITS[unit]`: one decimal, rounded half up.
    let tenths = (whole * 10 + 512) / 1024;
    format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])
}

/// A size with its exact count, for messages about limits: `1.5 GiB (1610612736 bytes)`; plain
/// `512 B` below 1 KiB.
#[must_use]
pub fn format_bytes_exact(bytes: u64) -> String {
    if bytes < 1024 {
        format_bytes(bytes)
    } else {
        format!("{} ({bytes} bytes)", format_bytes(bytes))
    }
}

/// The capacity cell: Kubernetes' own notation when known (`1Gi`), else the byte count, else `—`.
#[must_use]
pub fn format_capacity(capacity: Option<&str>, bytes: Option<u64>) -> String {
    match (capacity.map(str::trim), bytes) {
        (Some(text), _) if !text.is_empty() => text.to_owned(),
        (_, Some(bytes)) => format_bytes(bytes),
        _ => "—".to_owned(),
    }
}

/// Parses an RFC 3339 timestamp (`2025-01-31T12:00:00Z`, optional fraction, `Z` or `±HH:MM`) into
/// Unix seconds. Returns `None` for anything malformed.
#[must_use]
pub fn parse_rfc3339_unix(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || !matches!(bytes[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        if part.bytes().all(|b| b.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    if bytes[4] != b'-' || bytes[7] != b'-' || bytes[13] != b':' || bytes[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &fraction[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            let hours: i64 = rest.get(1..3)?.parse().ok()?;
            let minutes: i64 = rest.get(4..6)?.parse().ok()?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            sign * (hours * 3600 + minutes * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A compact age like `kubectl` prints it: `45s`, `12m`, `5h`, `3d`. Negative ages (clock skew)
/// read as `0s`.
#[must_use]
pub fn format_age(seconds: i64) -> String {
    let s = seconds.max(0);
    if s < 120 {
        format!("{s}s")
    } else if s < 120 * 60 {
        format!("{}m", s / 60)
    } else if s < 48 * 3600 {
        format!("{}h", s / 3600)
    } else {
        format!("{}d", s / 86_400)
    }
}

/// The "last backup" cell: `never`, `3h ago` (relative to `now_unix`), or the raw text when it is
/// not a valid RFC 3339 time.
#[must_use]
pub fn last_backup_label(last_success_at: Option<&str>, now_unix: i64) -> String {
    match last_success_at {
        None => "never".to_owned(),
        Some(text) => match parse_rfc3339_unix(text) {
            Some(at) => format!("{} ago", format_age(now_unix - at)),
            None => text.to_owned(),
        },
    }
}

/// The usual abbreviation of a Kubernetes access mode (`ReadWriteOnce` → `RWO`); unknown modes
/// are returned unchanged.
#[must_use]
pub fn access_mode_short(mode: &str) -> &str {
    match mode {
        "ReadWriteOnce" => "RWO",
        "ReadOnlyMany" => "ROX",
        "ReadWriteMany" => "RWX",
        "ReadWriteOncePod" => "RWOP",
        other => other,
    }
}

/// The row count above the table. `shown` rows are displayed out of `matched` rows matching the
/// filter, out of `total`: `30 PVCs`, `Showing 2 of 30 PVCs`, or, when the display limit cuts a
/// filtered list, `Showing 250 of 400 matching (5000 PVCs)`.
#[must_use]
pub fn count_label(shown: usize, matched: usize, total: usize) -> String {
    let noun = if total == 1 { "PVC" } else { "PVCs" };
    if shown == total {
        format!("{total} {noun}")
    } else if shown == matched || matched == total {
        format!("Showing {shown} of {total} {noun}")
    } else {
        format!("Showing {shown} of {matched} matching ({total} {noun})")
    }
}

/// The HTTP status to print beside a refusal, unless the message already names it.
#[must_use]
pub fn refusal_status(status: Option<u16>, message: &str) -> Option<String> {
    let code = status?;
    (!message.contains(&format!("HTTP {code}"))).then(|| format!("HTTP {code}"))
}

/// A transfer rate: `0 B/s`, `12.5 MiB/s`.
#[must_use]
pub fn format_rate(bytes_per_sec: f64) -> String {
    if !bytes_per_sec.is_finite() || bytes_per_sec <= 0.0 {
        return "0 B/s".to_owned();
    }
    // Rates fit in u64 (the cast saturates).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let bytes = bytes_per_sec.round() as u64;
    format!("{}/s", format_bytes(bytes))
}

/// A duration for people: `45s`, `3m 05s`, `2h 07m`.
#[must_use]
pub fn format_duration(seconds: f64) -> String {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let s = if seconds.is_finite() && seconds > 0.0 {
        seconds.round() as u64
    } else {
        0
    };
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// Percent done when the total is known (the pre-scan ran), capped at 100.
#[must_use]
pub fn percent_done(done: u64, total: Option<u64>) -> Option<f64> {
    let total = total.filter(|t| *t > 0)?;
    #[allow(clippy::cast_precision_loss)]
    let percent = (done as f64 / total as f64 * 100.0).min(100.0);
    Some(percent)
}

/// Seconds left at `rate`, when the total is known and the rate is positive.
#[must_use]
pub fn eta_seconds(done: u64, total: Option<u64>, rate: f64) -> Option<f64> {
    let total = total?;
    if !rate.is_finite() || rate <= 0.0 {
        return None;
    }
    #[allow(clippy::cast_precision_loss)]
    let left = total.saturating_sub(done) as f64;
    Some(left / rate)
}

/// The progress cell of a running backup: bytes (of the total, with percent), rate and ETA when
/// they are known; never a made-up percentage.
#[must_use]
pub fn progress_label(done: u64, total: Option<u64>, rate: f64) -> String {
    let mut text = format_bytes(done);
    if let (Some(total), Some(percent)) = (total, percent_done(done, total)) {
        text.push_str(&format!(" of {} ({percent:.0}%)", format_bytes(total)));
    }
    if rate > 0.0 {
        text.push_str(&format!(" · {}", format_rate(rate)));
    }
    if let Some(eta) = eta_seconds(done, total, rate) {
        text.push_str(&format!(" · ETA {}", format_duration(eta)));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_use_binary_units() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1024), "1.0 KiB");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(10 * 1024 * 1024 * 1024), "10.0 GiB");
        assert_eq!(format_bytes(1_073_741_823), "1024.0 MiB");
        assert_eq!(format_bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn exact_sizes_name_the_byte_count() {
        assert_eq!(format_bytes_exact(512), "512 B");
        assert_eq!(format_bytes_exact(1536), "1.5 KiB (1536 bytes)");
    }

    #[test]
    fn capacity_prefers_kubernetes_notation() {
        assert_eq!(format_capacity(Some("1Gi"), Some(1 << 30)), "1Gi");
        assert_eq!(format_capacity(Some(" "), Some(1 << 30)), "1.0 GiB");
        assert_eq!(format_capacity(None, Some(2048)), "2.0 KiB");
        assert_eq!(format_capacity(None, None), "—");
    }

    #[test]
    fn rfc3339_parses_utc_offsets_and_fractions() {
        assert_eq!(parse_rfc3339_unix("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_unix("2000-03-01T00:00:00Z"),
            Some(951_868_800)
        );
        assert_eq!(
            parse_rfc3339_unix("2024-02-29T12:34:56.123456Z"),
            Some(1_709_210_096)
        );
        assert_eq!(
            parse_rfc3339_unix("2024-02-29T14:34:56+02:00"),
            Some(1_709_210_096)
        );
        assert_eq!(
            parse_rfc3339_unix("2024-02-29T07:04:56-05:30"),
            Some(1_709_210_096)
        );
        assert_eq!(parse_rfc3339_unix("1969-12-31T23:59:59Z"), Some(-1));
    }

    #[test]
    fn rfc3339_rejects_malformed_text() {
        for bad in [
            "",
            "yesterday",
            "2024-02-30T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00+0200",
            "2024-01-01X00:00:00Z",
            "2024-0a-01T00:00:00Z",
            "+024-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339_unix(bad), None, "{bad}");
        }
    }

    #[test]
    fn ages_are_compact() {
        assert_eq!(format_age(-5), "0s");
        assert_eq!(format_age(45), "45s");
        assert_eq!(format_age(119), "119s");
        assert_eq!(format_age(120), "2m");
        assert_eq!(format_age(7199), "119m");
        assert_eq!(format_age(7200), "2h");
        assert_eq!(format_age(47 * 3600), "47h");
        assert_eq!(format_age(3 * 86_400), "3d");
    }

    #[test]
    fn last_backup_label_is_relative_to_the_scan() {
        let now = parse_rfc3339_unix("2025-06-01T12:00:00Z").unwrap_or_default();
        assert_eq!(last_backup_label(None, now), "never");
        assert_eq!(
            last_backup_label(Some("2025-06-01T09:00:00Z"), now),
            "3h ago"
        );
        assert_eq!(
            last_backup_label(Some("2025-05-29T12:00:00Z"), now),
            "3d ago"
        );
        assert_eq!(last_backup_label(Some("garbage"), now), "garbage");
    }

    #[test]
    fn counts_are_plural_aware() {
        assert_eq!(count_label(0, 0, 0), "0 PVCs");
        assert_eq!(count_label(1, 1, 1), "1 PVC");
        assert_eq!(count_label(30, 30, 30), "30 PVCs");
        assert_eq!(count_label(0, 0, 1), "Showing 0 of 1 PVC");
        assert_eq!(count_label(2, 2, 30), "Showing 2 of 30 PVCs");
        assert_eq!(count_label(250, 5000, 5000), "Showing 250 of 5000 PVCs");
        assert_eq!(
            count_label(250, 400, 5000),
            "Showing 250 of 400 matching (5000 PVCs)"
        );
    }

    #[test]
    fn refusal_status_is_not_repeated() {
        assert_eq!(refusal_status(None, "timeout"), None);
        assert_eq!(
            refusal_status(Some(403), "forbidden"),
            Some("HTTP 403".to_owned())
        );
        assert_eq!(
            refusal_status(Some(403), "HTTP 403 Forbidden: grant list"),
            None
        );
    }

    #[test]
    fn access_modes_abbreviate() {
        assert_eq!(access_mode_short("ReadWriteOnce"), "RWO");
        assert_eq!(access_mode_short("ReadOnlyMany"), "ROX");
        assert_eq!(access_mode_short("ReadWriteMany"), "RWX");
        assert_eq!(access_mode_short("ReadWriteOncePod"), "RWOP");
        assert_eq!(access_mode_short("Future"), "Future");
    }
    #[test]
    fn progress_is_formatted_without_fake_numbers() {
        assert_eq!(format_rate(0.0), "0 B/s");
        assert_eq!(format_rate(f64::NAN), "0 B/s");
        assert_eq!(format_rate(1.5 * 1024.0 * 1024.0), "1.5 MiB/s");
        assert_eq!(format_duration(0.4), "0s");
        assert_eq!(format_duration(59.6), "1m 00s");
        assert_eq!(format_duration(185.0), "3m 05s");
        assert_eq!(format_duration(7620.0), "2h 07m");
        assert_eq!(percent_done(50, Some(200)), Some(25.0));
        assert_eq!(percent_done(300, Some(200)), Some(100.0));
        assert_eq!(percent_done(1, Some(0)), None);
        assert_eq!(percent_done(1, None), None);
        assert_eq!(eta_seconds(100, Some(300), 50.0), Some(4.0));
        assert_eq!(eta_seconds(400, Some(300), 50.0), Some(0.0));
        assert_eq!(eta_seconds(100, None, 50.0), None);
        assert_eq!(eta_seconds(100, Some(300), 0.0), None);
        let mib = 1024 * 1024;
        assert_eq!(
            progress_label(mib, Some(4 * mib), 1024.0 * 1024.0),
            "1.0 MiB of 4.0 MiB (25%) · 1.0 MiB/s · ETA 3s"
        );
        assert_eq!(progress_label(mib, None, 0.0), "1.0 MiB");
        assert_eq!(progress_label(2048, None, 1024.0), "2.0 KiB · 1.0 KiB/s");
    }
}
