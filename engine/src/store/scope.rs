//! Which runs one cluster connection's web sessions may see: [`RunScope`], and the SQL condition
//! that applies it to `runs` and `restores` (both have a `cluster` column, migration 0003/0004).

use sqlx::{QueryBuilder, Sqlite};

/// The runs (backups and restores) of one cluster connection: those recorded with its identity
/// ([`crate::connection::connection_identity`]) and, when `unrecorded` is set, those recorded
/// without one (before identities were recorded, migration 0008). The web server sets
/// `unrecorded` for its default connection's cluster only; the CLI reads without a scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunScope {
    pub cluster: String,
    pub unrecorded: bool,
}

impl RunScope {
    /// Whether a run recorded with `cluster` is in this scope.
    #[must_use]
    pub fn contains(&self, cluster: Option<&str>) -> bool {
        match cluster {
            Some(cluster) => cluster == self.cluster,
            None => self.unrecorded,
        }
    }

    /// Appends `(cluster = ? [OR cluster IS NULL])` to `query`.
    pub(super) fn push_condition(&self, query: &mut QueryBuilder<Sqlite>) {
        query.push("(cluster = ");
        query.push_bind(self.cluster.clone());
        if self.unrecorded {
            query.push(" OR cluster IS NULL");
        }
        query.push(")");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{RestoreMode, RunStatus};
    use crate::store::{NewRestore, NewRun, RestoreFilter, RunFilter, RunUpdate, Store};

    const A: &str = "https://10.0.0.1:6443 ca-sha256:aa";
    const B: &str = "https://10.0.0.2:6443 ca-sha256:bb";

    fn scope(cluster: &str, unrecorded: bool) -> RunScope {
        RunScope {
            cluster: cluster.to_owned(),
            unrecorded,
        }
    }

    /// Runs `a` (cluster A), `b` (cluster B) and `old` (no cluster: recorded before identities),
    /// each succeeded, and a restore of each.
    async fn history() -> Store {
        let store = Store::open_in_memory().await.unwrap();
        for (run_id, cluster) in [("old", None), ("a", Some(A)), ("b", Some(B))] {
            let id = store
                .insert_run(&NewRun {
                    run_id: run_id.to_owned(),
                    pvc_uid: format!("uid-{run_id}"),
                    namespace: "shop".to_owned(),
                    pvc: "data".to_owned(),
                    started_by: "test".to_owned(),
                    started_at: jiff::Timestamp::now(),
                    cluster: cluster.map(str::to_owned),
                })
                .await
                .unwrap();
            let done = RunUpdate {
                status: Some(RunStatus::Succeeded),
                ..RunUpdate::default()
            };
            store.update_run(id, &done).await.unwrap();
            store
                .insert_restore(&NewRestore {
                    restore_id: format!("restore-{run_id}"),
                    run_id: run_id.to_owned(),
                    mode: RestoreMode::NewPvc,
                    wipe: false,
                    source_namespace: "shop".to_owned(),
                    source_pvc: "data".to_owned(),
                    target_namespace: "shop".to_owned(),
                    target_pvc: "copy".to_owned(),
                    started_by: "test".to_owned(),
                    started_at: jiff::Timestamp::now(),
                    cluster: cluster.map(str::to_owned),
                })
                .await
                .unwrap();
        }
        store
    }

    async fn run_ids(store: &Store, scope: Option<RunScope>) -> Vec<String> {
        let filter = RunFilter {
            scope,
            ..RunFilter::default()
        };
        let mut ids: Vec<String> = (store.recent_runs(&filter).await.unwrap())
            .into_iter()
            .map(|r| r.run_id)
            .collect();
        ids.sort();
        ids
    }

    async fn restore_ids(store: &Store, scope: Option<RunScope>) -> Vec<String> {
        let filter = RestoreFilter {
            scope,
            ..RestoreFilter::default()
        };
        let mut ids: Vec<String> = (store.recent_restores(&filter).await.unwrap())
            .into_iter()
            .map(|r| r.restore_id)
            .collect();
        ids.sort();
        ids
    }

    #[tokio::test]
    async fn runs_are_filtered_by_the_cluster_they_were_recorded_with() {
        let store = history().await;
        // The CLI: no scope, every run.
        assert_eq!(run_ids(&store, None).await, ["a", "b", "old"]);
        // The default connection's cluster also sees runs recorded without an identity.
        assert_eq!(run_ids(&store, Some(scope(A, true))).await, ["a", "old"]);
        // Any other cluster sees only its own.
        assert_eq!(run_ids(&store, Some(scope(B, false))).await, ["b"]);
        assert!(
            run_ids(&store, Some(scope("https://c:443 ca:system", false)))
                .await
                .is_empty()
        );
        // Combined with other filters.
        let filter = RunFilter {
            run_id: Some("b".to_owned()),
            scope: Some(scope(A, true)),
            ..RunFilter::default()
        };
        assert!(store.recent_runs(&filter).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn restores_are_filtered_by_the_cluster_they_were_recorded_with() {
        let store = history().await;
        assert_eq!(restore_ids(&store, None).await.len(), 3);
        assert_eq!(
            restore_ids(&store, Some(scope(A, true))).await,
            ["restore-a", "restore-old"]
        );
        assert_eq!(
            restore_ids(&store, Some(scope(B, false))).await,
            ["restore-b"]
        );
    }

    #[test]
    fn contains_follows_the_identity_and_the_unrecorded_flag() {
        assert!(scope(A, false).contains(Some(A)));
        assert!(!scope(A, true).contains(Some(B)));
        assert!(scope(A, true).contains(None));
        assert!(!scope(A, false).contains(None));
    }
}
