-- The helper pods nkvm created, by UID, so that start-up recovery deletes only those (a pod that
-- merely carries the helper labels — anyone who may label pods can add them — is left alone).
--
--   helper_pods          one row per helper pod created: `uid` = its metadata.uid, `job_id` = the
--                        backup's run id or the restore's id, `namespace`/`name` where it ran,
--                        `created_at` RFC 3339 UTC.
--   runs.before_helper_uids, restores.before_helper_uids
--                        1 for rows recorded before this migration, whose helpers' UIDs were never
--                        recorded: recovery still deletes such a helper when its run-id label names
--                        one of these rows, in that row's namespace, under that job's helper name.
--
-- This file is applied once and recorded in `_sqlx_migrations` with its checksum: never edit it,
-- add `0007_*.sql` instead.

CREATE TABLE helper_pods (
    uid         TEXT    PRIMARY KEY NOT NULL CHECK (uid <> ''),
    job_id      TEXT    NOT NULL CHECK (job_id <> ''),
    namespace   TEXT    NOT NULL CHECK (namespace <> ''),
    name        TEXT    NOT NULL CHECK (name <> ''),
    created_at  TEXT    NOT NULL
);
CREATE INDEX helper_pods_job ON helper_pods (job_id);

ALTER TABLE runs ADD COLUMN before_helper_uids INTEGER NOT NULL DEFAULT 0
    CHECK (before_helper_uids IN (0, 1));
UPDATE runs SET before_helper_uids = 1;
ALTER TABLE restores ADD COLUMN before_helper_uids INTEGER NOT NULL DEFAULT 0
    CHECK (before_helper_uids IN (0, 1));
UPDATE restores SET before_helper_uids = 1;
