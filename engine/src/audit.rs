//! The audit trail's vocabulary: what happened ([`AuditAction`]), how it ended ([`AuditOutcome`]),
//! the event to record ([`AuditEvent`]), the row read back ([`AuditRecord`]), the query
//! ([`AuditFilter`]) and the CSV export ([`to_csv`]). Rows are written and read by
//! [`Store::record_audit`](crate::store::Store::record_audit) and
//! [`Store::audit_events`](crate::store::Store::audit_events) in the history database.
//!
//! Never put a password or a session token in an event: the actor of a failed login is the name
//! that was typed (use [`crate::auth::users::is_valid_name`] to avoid recording a password typed
//! into the name field), a target names a PVC, a run or a context.

use serde::{Deserialize, Serialize};

/// Longest stored actor, in bytes (longer texts are cut at a character boundary, marked `…`).
pub const MAX_ACTOR_LEN: usize = 256;
/// Longest stored target, in bytes.
pub const MAX_TARGET_LEN: usize = 1024;
/// Longest stored detail, in bytes.
pub const MAX_DETAIL_LEN: usize = 4096;
/// Longest stored source, in bytes.
pub const MAX_SOURCE_LEN: usize = 256;

crate::text_enum! {
    /// What happened.
    pub enum AuditAction("audit action") {
        Login => "login",
        LoginFailed => "login_failed",
        Logout => "logout",
        BackupStarted => "backup_started",
        BackupCancelled => "backup_cancelled",
        Download => "download",
        ConnectionChanged => "connection_changed",
        /// A restore (into a new PVC or in place) started, or was refused.
        RestoreStarted => "restore_started",
        RestoreCancelled => "restore_cancelled",
        /// A stored backup was verified (outcome: whether it passed).
        Verify => "verify",
        /// A restore drill started, or was refused.
        DrillStarted => "drill_started",
        /// A request refused for lack of a role (or a login refused by the rate limiter).
        AccessDenied => "access_denied",
        /// A schedule created, paused, resumed or removed.
        ScheduleChanged => "schedule_changed",
        /// Retention deleted a backup's files (its history row is kept, marked pruned).
        BackupPruned => "backup_pruned",
    }
}

crate::text_enum! {
    /// How it ended.
    pub enum AuditOutcome("audit outcome") {
        Success => "success",
        Failure => "failure",
        /// Refused: not allowed, or rate limited.
        Denied => "denied",
    }
}

/// Something to record. Build with [`AuditEvent::new`] and the `with_*` methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// When; stored truncated to the microsecond.
    pub at: jiff::Timestamp,
    /// Who: a user name, `cli:<user>`, or the name typed at a failed login.
    pub actor: String,
    pub action: AuditAction,
    /// What it was done to: `NS/PVC`, a run id, a context name, a path.
    pub target: Option<String>,
    pub outcome: AuditOutcome,
    /// A short explanation (an error message, a byte count).
    pub detail: Option<String>,
    /// Where from: the client address.
    pub source: Option<String>,
}

impl AuditEvent {
    /// An event happening now.
    pub fn new(actor: impl Into<String>, action: AuditAction, outcome: AuditOutcome) -> Self {
        Self {
            at: jiff::Timestamp::now(),
            actor: actor.into(),
            action,
            target: None,
            outcome,
            detail: None,
            source: None,
        }
    }

    #[must_use]
    pub fn with_target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    #[must_use]
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    #[must_use]
    pub fn with_time(mut self, at: jiff::Timestamp) -> Self {
        self.at = at;
        self
    }
}

/// One audit row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub id: i64,
    /// RFC 3339 UTC with microseconds (`2026-11-28T23:18:58.123456Z`).
    pub at: String,
    pub actor: String,
    pub action: AuditAction,
    pub target: Option<String>,
    pub outcome: AuditOutcome,
    pub detail: Option<String>,
    pub source: Option<String>,
}

/// Filters of [`Store::audit_events`](crate::store::Store::audit_events); `None` means any.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<AuditAction>,
    pub outcome: Option<AuditOutcome>,
    /// Events at or after this time.
    pub since: Option<jiff::Timestamp>,
    /// Events before this time.
    pub until: Option<jiff::Timestamp>,
    /// Most rows returned; `0` means no limit.
    pub limit: u32,
    /// Rows skipped before the first one returned.
    pub offset: u32,
}

/// `text` cut to at most `max` bytes (`max` ≥ 3) at a character boundary, ending in `…` when
/// cut.
pub(crate) fn clip(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end]).into()
}

/// The header of [`to_csv`].
pub const CSV_HEADER: &str = "id,at,actor,action,target,outcome,detail,source";

/// The records as CSV (RFC 4180: a header line, CRLF line ends, fields quoted when they hold a
/// comma, a quote or a line break, quotes doubled).
///
/// Text that a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, a tab or a
/// carriage return) is prefixed with `'`.
pub fn to_csv(records: &[AuditRecord]) -> String {
    let mut out = String::with_capacity(64 * (records.len() + 1));
    out.push_str(CSV_HEADER);
    out.push_str("\r\n");
    for r in records {
        push_csv_record(&mut out, r);
    }
    out
}

/// Appends one record as a CSV line of [`to_csv`] (with its CRLF).
pub fn push_csv_record(out: &mut String, r: &AuditRecord) {
    let id = r.id.to_string();
    let fields = [
        id.as_str(),
        r.at.as_str(),
        r.actor.as_str(),
        r.action.as_str(),
        r.target.as_deref().unwrap_or(""),
        r.outcome.as_str(),
        r.detail.as_deref().unwrap_or(""),
        r.source.as_deref().unwrap_or(""),
    ];
    for (i, field) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_csv_field(out, field);
    }
    out.push_str("\r\n");
}

fn push_csv_field(out: &mut String, field: &str) {
    let formula = field.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = field.contains([',', '"', '\r', '\n']);
    if quote {
        out.push('"');
    }
    if formula {
        out.push('\'');
    }
    if quote {
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: i64, actor: &str, detail: Option<&str>) -> AuditRecord {
        AuditRecord {
            id,
            at: "2026-11-28T23:18:58.123456Z".to_owned(),
            actor: actor.to_owned(),
            action: AuditAction::Download,
            target: Some("shop/data".to_owned()),
            outcome: AuditOutcome::Success,
            detail: detail.map(str::to_owned),
            source: Some("192.0.2.1".to_owned()),
        }
    }

    #[test]
    fn actions_and_outcomes_round_trip() {
        for &action in AuditAction::ALL {
            assert_eq!(action.as_str().parse::<AuditAction>(), Ok(action));
            assert_eq!(
                serde_json::to_string(&action).unwrap(),
                format!("\"{action}\"")
            );
        }
        assert_eq!(AuditAction::LoginFailed.as_str(), "login_failed");
        assert_eq!(
            AuditAction::ConnectionChanged.as_str(),
            "connection_changed"
        );
        for &outcome in AuditOutcome::ALL {
            assert_eq!(outcome.as_str().parse::<AuditOutcome>(), Ok(outcome));
            assert_eq!(
                serde_json::to_string(&outcome).unwrap(),
                format!("\"{outcome}\"")
            );
        }
        assert!("LoginFailed".parse::<AuditAction>().is_err());
        assert!("ok".parse::<AuditOutcome>().is_err());
    }

    #[test]
    fn builds_events() {
        let at: jiff::Timestamp = "2026-11-28T23:18:58Z".parse().unwrap();
        let event = AuditEvent::new("alice", AuditAction::BackupStarted, AuditOutcome::Success)
            .with_target("shop/data")
            .with_detail("run 20261128t231858-3f9a1c")
            .with_source("192.0.2.1")
            .with_time(at);
        assert_eq!(event.actor, "alice");
        assert_eq!(event.target.as_deref(), Some("shop/data"));
        assert_eq!(event.detail.as_deref(), Some("run 20261128t231858-3f9a1c"));
        assert_eq!(event.source.as_deref(), Some("192.0.2.1"));
        assert_eq!(event.at, at);
        let fresh = AuditEvent::new("bob", AuditAction::Logout, AuditOutcome::Success);
        assert_eq!(
            (fresh.target, fresh.detail, fresh.source),
            (None, None, None)
        );
    }

    #[test]
    fn clips_at_character_boundaries() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("", 3), "");
        assert_eq!(clip("abcd", 3), "…");
        assert_eq!(clip("abcdef", 5), "ab…");
        // "é" and "€" are 2 and 3 bytes: never split.
        assert_eq!(clip("aéé", 5), "aéé");
        assert_eq!(clip("aéééx", 6), "aé…");
        assert_eq!(clip("aéééx", 5), "a…");
        assert_eq!(clip("€€€", 8), "€…");
        for max in 3..20 {
            let clipped = clip("añ€𝄞bcdefghijklmnop", max);
            assert!(clipped.len() <= max, "{max}: {clipped}");
        }
    }

    #[test]
    fn writes_rfc_4180_csv() {
        let csv = to_csv(&[
            record(2, "alice", None),
            record(1, "bob", Some("said \"hi\", then\nleft\r\nearly")),
        ]);
        assert_eq!(
            csv,
            "id,at,actor,action,target,outcome,detail,source\r\n\
             2,2026-11-28T23:18:58.123456Z,alice,download,shop/data,success,,192.0.2.1\r\n\
             1,2026-11-28T23:18:58.123456Z,bob,download,shop/data,success,\
             \"said \"\"hi\"\", then\nleft\r\nearly\",192.0.2.1\r\n"
        );
        assert_eq!(to_csv(&[]), format!("{CSV_HEADER}\r\n"));
    }

    #[test]
    fn neutralises_spreadsheet_formulas() {
        let cases = [
            (
                "=HYPERLINK(\"http://x\")",
                "\"'=HYPERLINK(\"\"http://x\"\")\"",
            ),
            ("+1+1", "'+1+1"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tcmd", "'\tcmd"),
            ("\r=1", "\"'\r=1\""),
            ("=1,2", "\"'=1,2\""),
            ("a=1", "a=1"),
            ("mallory", "mallory"),
            ("", ""),
        ];
        for (actor, expected) in cases {
            let csv = to_csv(&[record(1, actor, None)]);
            let line = csv.split_once("\r\n").unwrap().1;
            let field = line
                .strip_prefix("1,2026-11-28T23:18:58.123456Z,")
                .and_then(|rest| rest.strip_suffix(",download,shop/data,success,,192.0.2.1\r\n"))
                .unwrap_or_else(|| panic!("{actor:?}: {line:?}"));
            assert_eq!(field, expected, "{actor:?}");
        }
        // Every text column is neutralised, not only the actor.
        let mut r = record(1, "a", Some("=cmd|' /C calc'!A0"));
        r.target = Some("@evil".to_owned());
        r.source = Some("-1".to_owned());
        let csv = to_csv(&[r]);
        assert!(csv.contains(",'@evil,"), "{csv}");
        assert!(csv.contains(",'=cmd|' /C calc'!A0,"), "{csv}");
        assert!(csv.ends_with(",'-1\r\n"), "{csv}");
    }
}
