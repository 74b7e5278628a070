-- Verification of stored backups and the restore history.
--
-- Verification columns on `runs` (set by `nkvm verify`, the web UI's Verify button and restores,
-- which verify the archive first):
--   verified_at       when the archive was last verified, whatever the result
--   verify_status     the result of that verification: 'verified' or 'failed'
--   verified_by       who ran it (`cli:<user>`, `web:<user>`, ...)
--   verify_message    what it found
--   last_verified_at  when the archive last PASSED a verification; NULL when it never did or when a
--                     later verification failed (so `last_verified_at IS NOT NULL` means "the
--                     latest verification passed"; retention never deletes the newest such backup)
--
-- `restores`: one row per restore or restore drill: which backup (`run_id`) was restored from
-- where (`source_*`) to where (`target_*`), how (`mode`), by whom, and how it ended. Times are the
-- fixed-width RFC 3339 text of `runs`.
--
-- This file is applied once and recorded in `_sqlx_migrations` with its checksum: never edit it,
-- add `0005_*.sql` instead.

ALTER TABLE runs ADD COLUMN verified_at TEXT
    CHECK (verified_at IS NULL OR verified_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z');
ALTER TABLE runs ADD COLUMN verify_status TEXT
    CHECK (verify_status IS NULL OR verify_status IN ('verified', 'failed'));
ALTER TABLE runs ADD COLUMN verified_by TEXT;
ALTER TABLE runs ADD COLUMN verify_message TEXT;
ALTER TABLE runs ADD COLUMN last_verified_at TEXT
    CHECK (last_verified_at IS NULL OR last_verified_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z');

-- The newest verified backup of each PVC (inventory, retention).
CREATE INDEX runs_pvc_uid_last_verified_at ON runs (pvc_uid, last_verified_at);

CREATE TABLE restores (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    restore_id        TEXT    NOT NULL UNIQUE CHECK (restore_id <> ''),
    run_id            TEXT    NOT NULL CHECK (run_id <> ''),
    mode              TEXT    NOT NULL CHECK (mode IN ('new-pvc', 'in-place', 'drill')),
    wipe              INTEGER NOT NULL DEFAULT 0 CHECK (wipe IN (0, 1)),
    source_namespace  TEXT    NOT NULL CHECK (source_namespace <> ''),
    source_pvc        TEXT    NOT NULL CHECK (source_pvc <> ''),
    target_namespace  TEXT    NOT NULL CHECK (target_namespace <> ''),
    target_pvc        TEXT    NOT NULL CHECK (target_pvc <> ''),
    status            TEXT    NOT NULL
        CHECK (status IN ('running', 'succeeded', 'failed', 'interrupted', 'cancelled')),
    stage             TEXT
        CHECK (stage IS NULL OR stage IN ('verify', 'preflight', 'scale-down', 'create',
                                          'schedule', 'exec', 'stream', 'finalize', 'scale-up',
                                          'record', 'cleanup')),
    message           TEXT,
    started_by        TEXT    NOT NULL,
    started_at        TEXT    NOT NULL
        CHECK (started_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'),
    finished_at       TEXT
        CHECK (finished_at IS NULL OR finished_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z'),
    -- File content bytes and regular files written into the volume.
    bytes             INTEGER CHECK (bytes IS NULL OR bytes >= 0),
    files             INTEGER CHECK (files IS NULL OR files >= 0),
    -- Whether nkvm created the target PVC, and whether it still exists after the restore.
    pvc_created       INTEGER NOT NULL DEFAULT 0 CHECK (pvc_created IN (0, 1)),
    pvc_kept          INTEGER CHECK (pvc_kept IS NULL OR pvc_kept IN (0, 1)),
    helper_pod        TEXT,
    cluster           TEXT
) STRICT;

-- Recent restores, newest first; restores of one backup; restores into one PVC.
CREATE INDEX restores_started_at ON restores (started_at);
CREATE INDEX restores_run_id ON restores (run_id);
CREATE INDEX restores_target ON restores (target_namespace, target_pvc);
