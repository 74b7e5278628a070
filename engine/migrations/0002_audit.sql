-- Audit trail: who did what, when, from where, and how it ended (logins, backups, downloads,
-- connection changes, refusals). Rows are only ever inserted.
--
-- `at` is UTC, fixed-width RFC 3339 with exactly 6 fractional digits, like the times of `runs`;
-- ties are ordered by `id`. `action` and `outcome` are the snake_case names of the engine's
-- `AuditAction` and `AuditOutcome` (checked when read, so that new actions need no migration).
-- `source` is the client address. Passwords and session tokens are never stored.
--
-- This file is applied once and recorded in `_sqlx_migrations` with its checksum: never edit it,
-- add `0003_*.sql` instead.

CREATE TABLE audit (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       TEXT    NOT NULL
        CHECK (at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'),
    actor    TEXT    NOT NULL,
    action   TEXT    NOT NULL CHECK (action <> ''),
    target   TEXT,
    outcome  TEXT    NOT NULL CHECK (outcome <> ''),
    detail   TEXT,
    source   TEXT
) STRICT;

-- Newest first, and time ranges (the implicit rowid breaks ties in index order).
CREATE INDEX audit_at ON audit (at);
-- One actor's events.
CREATE INDEX audit_actor_at ON audit (actor, at);
