-- The UID of the PVC a restore created, so that start-up recovery deletes only PVCs nkvm made —
-- never one that merely carries the "incomplete restore" labels (anyone who may label PVCs can add
-- them).
--
--   restores.pvc_uid   metadata.uid of the PVC this restore created (new-PVC restores and drills),
--                      written as soon as the create answers; NULL when it created none, and for
--                      restores recorded before this migration (recovery then leaves their PVCs,
--                      with a warning naming them).
--
-- This file is applied once and recorded in `_sqlx_migrations` with its checksum: never edit it,
-- add `0008_*.sql` instead.

ALTER TABLE restores ADD COLUMN pvc_uid TEXT CHECK (pvc_uid IS NULL OR pvc_uid <> '');
CREATE UNIQUE INDEX restores_pvc_uid ON restores (pvc_uid) WHERE pvc_uid IS NOT NULL;
