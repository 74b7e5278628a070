-- Where a run's archive is and what it ran against:
--   destination  the name of the destination the archive was written to (`local`, `offsite`, …);
--                NULL for runs recorded before destinations existed (their `artifact` is a local path)
--   object_key   the archive's key inside that destination (`<namespace>/<pvc>/<stamp>.tar.gz`);
--                the sidecar is `<key>.sha256`, the manifest `<key without .tar.gz>.manifest.json`
--   helper_uid   the UID of the helper pod nkvm created (start-up recovery deletes only pods whose
--                UID it recorded)
--   cluster      the identity of the cluster connection the run used (history, downloads and the
--                live panel are scoped to it)
--
-- This file is applied once and recorded in `_sqlx_migrations` with its checksum: never edit it,
-- add `0004_*.sql` instead.

ALTER TABLE runs ADD COLUMN destination TEXT CHECK (destination IS NULL OR destination <> '');
ALTER TABLE runs ADD COLUMN object_key TEXT CHECK (object_key IS NULL OR object_key <> '');
ALTER TABLE runs ADD COLUMN helper_uid TEXT;
ALTER TABLE runs ADD COLUMN cluster TEXT;

-- Retention and downloads look archives up by destination.
CREATE INDEX runs_destination ON runs (destination);
