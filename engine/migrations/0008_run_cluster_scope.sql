-- Tenant isolation of the web UI: every backup and restore run records the identity of the cluster
-- connection it used in `runs.cluster` / `restores.cluster` (columns of migrations 0003 and 0004,
-- filled from this version on): the API server's address and the SHA-256 fingerprint of the CA the
-- client trusts, e.g. `https://10.0.0.1:6443 ca-sha256:<64 hex>` (`ca:system` without a CA of its
-- own). The web UI shows a session only the runs of its connection's identity.
--
--   cluster IS NULL    a run recorded before this migration (no identity was written then). The
--                      web UI treats it as a run of the server's default connection: it is shown
--                      to sessions whose connection has the default connection's identity, and to
--                      no other. The CLI (`nkvm history`, `nkvm restore`, `nkvm verify`) is the data
--                      directory's owner and sees every run.
--
-- This file is applied once and recorded in `_sqlx_migrations` with its checksum: never edit it,
-- add `0009_*.sql` instead.

-- The history page and the live panel read one cluster's runs, newest first.
CREATE INDEX runs_cluster_started_at ON runs (cluster, started_at);
CREATE INDEX restores_cluster_started_at ON restores (cluster, started_at);
