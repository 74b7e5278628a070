-- Schedules, their firing state, and retention's mark on history rows.
--
--   schedules        schedules managed by admins (CLI and web UI). `name` is a DNS label; `cron` is
--                    five cron fields read in the IANA time zone `timezone`. The target is either
--                    `pvcs` (a JSON array of "NS/PVC") or a selector: `namespaces` (a JSON array;
--                    empty = every namespace nkvm may read), `selector` (a label selector, '' = any)
--                    and `owner_kind` (NULL = any). `keep_*` NULL = rule not set (a schedule with no
--                    rule uses the server's default retention). `rpo_seconds` NULL = twice the
--                    interval. Times are fixed-width RFC 3339 UTC like the rest of the database.
--   schedule_state   one row per schedule nkvm knows, stored or declared by an annotation on a PVC or
--                    namespace (names `@NS` and `@NS/PVC`): `since` = when it began to exist (no run
--                    before it is due), `last_scheduled_at` = the scheduled time of the latest firing
--                    handled (run, or skipped because the previous one still ran). `declared` is the
--                    JSON definition of an annotation-declared schedule as last seen (NULL for stored
--                    ones), so that `nkvm prune` knows its retention without asking the cluster.
--   runs.pruned_at   when retention deleted the run's archive, sidecar and manifest (the row is kept
--   runs.pruned_by   for the record); who did (`schedule:NAME`, `default`, `cli:USER`).
--
-- This file is applied once and recorded in `_sqlx_migrations` with its checksum: never edit it,
-- add `0006_*.sql` instead.

CREATE TABLE schedules (
    name          TEXT    PRIMARY KEY
        CHECK (length(name) BETWEEN 1 AND 63 AND name NOT GLOB '*[^a-z0-9-]*'),
    cron          TEXT    NOT NULL CHECK (cron <> ''),
    timezone      TEXT    NOT NULL CHECK (timezone <> ''),
    pvcs          TEXT    CHECK (pvcs IS NULL OR json_valid(pvcs)),
    namespaces    TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(namespaces)),
    selector      TEXT    NOT NULL DEFAULT '',
    owner_kind    TEXT    CHECK (owner_kind IS NULL OR owner_kind <> ''),
    destination   TEXT    CHECK (destination IS NULL OR destination <> ''),
    concurrency   INTEGER NOT NULL DEFAULT 1 CHECK (concurrency BETWEEN 1 AND 64),
    keep_last     INTEGER CHECK (keep_last IS NULL OR keep_last >= 0),
    keep_daily    INTEGER CHECK (keep_daily IS NULL OR keep_daily >= 0),
    keep_weekly   INTEGER CHECK (keep_weekly IS NULL OR keep_weekly >= 0),
    keep_monthly  INTEGER CHECK (keep_monthly IS NULL OR keep_monthly >= 0),
    rpo_seconds   INTEGER CHECK (rpo_seconds IS NULL OR rpo_seconds > 0),
    paused        INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    created_by    TEXT    NOT NULL,
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL
) STRICT;

CREATE TABLE schedule_state (
    name              TEXT PRIMARY KEY CHECK (name <> ''),
    since             TEXT NOT NULL,
    last_scheduled_at TEXT,
    declared          TEXT CHECK (declared IS NULL OR json_valid(declared))
) STRICT;

ALTER TABLE runs ADD COLUMN pruned_at TEXT
    CHECK (pruned_at IS NULL OR pruned_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z');
ALTER TABLE runs ADD COLUMN pruned_by TEXT;

-- Retention reads the successful, not yet pruned runs of each PVC.
CREATE INDEX runs_unpruned_successes ON runs (pvc_uid, finished_at) WHERE status = 'succeeded' AND pruned_at IS NULL;
