-- History of backup runs: one row per run, keyed by the PVC's UID (namespace and name kept for
-- display and filtering, since a PVC re-created under the same name gets a new UID).
--
-- Timestamps are UTC, fixed-width RFC 3339 with exactly 6 fractional digits
-- (`2026-11-28T23:18:58.123456Z`), so that text order is time order; ties are ordered by `id`.
-- Sizes and counts are non-negative integers (u64 values that fit in SQLite's signed 64 bits);
-- `sha256` is 64 lowercase hex digits.
--
-- This file is applied once and recorded in `_sqlx_migrations` with its checksum: never edit it,
-- add `0002_*.sql` instead.

CREATE TABLE runs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id       TEXT    NOT NULL UNIQUE CHECK (run_id <> ''),
    pvc_uid      TEXT    NOT NULL CHECK (pvc_uid <> ''),
    namespace    TEXT    NOT NULL CHECK (namespace <> ''),
    pvc          TEXT    NOT NULL CHECK (pvc <> ''),
    status       TEXT    NOT NULL
        CHECK (status IN ('running', 'succeeded', 'failed', 'interrupted', 'cancelled')),
    stage        TEXT
        CHECK (stage IS NULL OR stage IN ('preflight', 'create', 'schedule', 'exec', 'stream',
                                          'write', 'finalize', 'record', 'cleanup')),
    message      TEXT,
    started_by   TEXT    NOT NULL,
    started_at   TEXT    NOT NULL
        CHECK (started_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'),
    finished_at  TEXT
        CHECK (finished_at IS NULL OR finished_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'),
    bytes        INTEGER CHECK (bytes IS NULL OR bytes >= 0),
    source_bytes INTEGER CHECK (source_bytes IS NULL OR source_bytes >= 0),
    files        INTEGER CHECK (files IS NULL OR files >= 0),
    sha256       TEXT
        CHECK (sha256 IS NULL OR (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*')),
    artifact     TEXT,
    helper_pod   TEXT,
    node         TEXT
) STRICT;

-- Last success per PVC and retention: succeeded rows of one PVC by finish time.
CREATE INDEX runs_pvc_uid_status_finished_at ON runs (pvc_uid, status, finished_at);
-- Recent runs, newest first (the implicit rowid breaks ties in index order).
CREATE INDEX runs_started_at ON runs (started_at);
-- Filters by namespace and by namespace/name.
CREATE INDEX runs_namespace_pvc ON runs (namespace, pvc);
