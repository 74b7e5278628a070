//! The web server's live (watch-based) inventory on the real test cluster: it follows claims and
//! consumers being created and deleted, agrees with a one-shot scan, keeps following after every
//! watch connection was cut (a relay closing them as a killed API server does), and reports a
//! namespace its credentials may not watch as refused and a cluster-wide refusal as its error.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use nkvm_engine::connection::{self, ConnectOptions};
use nkvm_engine::inventory::{self, InventoryError, InventoryOptions, LiveInventory};
use serde_json::json;

use support::cluster::{create_claim, create_consumer, delete_pod_now, in_namespace, unique};
use support::relay::{self, Relay};
use support::wait_for;

const POLL: Duration = Duration::from_millis(50);

async fn config() -> kube::Config {
    let connected =
        connection::connect(&support::test_cluster_source(), &ConnectOptions::default())
            .await
            .expect("connect to the test cluster");
    connected.config().clone()
}

fn scoped(namespaces: &[&str]) -> InventoryOptions {
    InventoryOptions {
        namespaces: namespaces.iter().map(|n| (*n).to_owned()).collect(),
        ..InventoryOptions::default()
    }
}

/// Waits until the live inventory's latest snapshot satisfies `check`; returns how long it took.
async fn until(
    live: &LiveInventory,
    what: &str,
    check: impl Fn(&inventory::LiveSnapshot) -> bool,
) -> Duration {
    let start = Instant::now();
    wait_for(what, POLL, || {
        let ok = check(&live.latest());
        async move { ok.then_some(()) }
    })
    .await;
    start.elapsed()
}

#[tokio::test]
#[ignore = "needs the test cluster"]
async fn the_live_inventory_follows_claims_and_consumers_and_agrees_with_a_scan() {
    let config = config().await;
    in_namespace("live", |cluster, ns| async move {
        let options = scoped(&[&ns]);
        let live = LiveInventory::start(&config, &options).expect("start");
        let first = live.ready().await.expect("first lists");
        assert!(first.pvcs.is_empty(), "a new namespace has no claims");
        assert!(first.refused.is_empty() && first.stale.is_empty());

        create_claim(&cluster.client, &ns, "data", "ReadWriteOnce", "1Mi").await;
        let seen = until(&live, "the new claim", |s| {
            s.pvcs.iter().any(|r| r.pvc.name == "data")
        })
        .await;
        println!("claim created → in the live inventory after {seen:?}");

        create_consumer(&cluster.client, &ns, "reader", &["data"], None).await;
        let seen = until(&live, "the consumer", |s| {
            s.pvcs.iter().any(|r| {
                // Scheduled too: the consumer's node is part of the record a scan gives.
                r.pvc.name == "data"
                    && r.consumers == ["reader"]
                    && r.pvc.phase == "Bound"
                    && !r.consumer_nodes.is_empty()
            })
        })
        .await;
        println!("consumer running → in the live inventory after {seen:?}");
        let record = live.latest().pvcs[0].clone();
        assert_eq!(
            (record.owner_kind.as_str(), record.owner_name.as_str()),
            ("Pod", "reader")
        );

        // The same records a scan of the same scope gives.
        let scan = inventory::scan(&cluster.client, &options)
            .await
            .expect("scan");
        assert_eq!(live.latest().pvcs, scan.pvcs);

        delete_pod_now(&cluster.client, &ns, "reader").await;
        until(&live, "the consumer gone", |s| {
            s.pvcs.iter().all(|r| r.consumers.is_empty())
        })
        .await;
        Api::<PersistentVolumeClaim>::namespaced(cluster.client.clone(), &ns)
            .delete("data", &DeleteParams::background())
            .await
            .expect("delete claim");
        let seen = until(&live, "the claim gone", |s| s.pvcs.is_empty()).await;
        println!("claim deleted → gone from the live inventory after {seen:?}");
        let last = live.latest();
        assert!(
            last.revision >= 4,
            "every change was published: {}",
            last.revision
        );
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the test cluster"]
async fn the_live_inventory_follows_changes_made_after_its_connections_were_cut() {
    let config = config().await;
    let relay = Relay::start(relay::upstream(&config)).await;
    let relayed = relay.config(&config);
    in_namespace("live-cut", |cluster, ns| async move {
        let options = scoped(&[&ns]);
        let live = LiveInventory::start(&relayed, &options).expect("start");
        live.ready().await.expect("first lists");
        // Every watch goes through the relay; cut them all, as a killed API server does.
        assert!(relay.cut() >= 1, "the watches went through the relay");
        create_claim(&cluster.client, &ns, "after-cut", "ReadWriteOnce", "1Mi").await;
        // Seen, and every kind's watch back (a failed watch is reported stale until re-listed).
        let seen = until(
            &live,
            "the claim created after the cut, nothing stale",
            |s| s.stale.is_empty() && s.pvcs.iter().any(|r| r.pvc.name == "after-cut"),
        )
        .await;
        println!("watches cut, claim created → in the live inventory after {seen:?}");
        let latest = live.latest();
        let scan = inventory::scan(&cluster.client, &options)
            .await
            .expect("scan");
        assert_eq!(latest.pvcs, scan.pvcs);
    })
    .await;
}

/// Creates `json` with `client` (a Role or RoleBinding).
async fn create_rbac(client: &Client, ns: &str, kind: &str, object: serde_json::Value) {
    let resource = kube::discovery::ApiResource {
        group: "rbac.authorization.k8s.io".to_owned(),
        version: "v1".to_owned(),
        api_version: "rbac.authorization.k8s.io/v1".to_owned(),
        kind: kind.to_owned(),
        plural: format!("{}s", kind.to_lowercase()),
    };
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    let object: kube::api::DynamicObject = serde_json::from_value(object).expect("rbac object");
    api.create(&PostParams::default(), &object)
        .await
        .expect("create rbac object");
}

#[tokio::test]
#[ignore = "needs the test cluster"]
async fn namespaces_without_watch_rights_are_refused_and_a_cluster_wide_refusal_is_the_error() {
    let admin = config().await;
    in_namespace("live-rbac", |cluster, ns| async move {
        let user = unique("live-viewer");
        // `user` may list and watch the six kinds in `ns` only.
        let rules = json!([
            {"apiGroups": [""], "resources": ["persistentvolumeclaims", "pods"], "verbs": ["list", "watch"]},
            {"apiGroups": ["apps"], "resources": ["replicasets", "deployments"], "verbs": ["list", "watch"]},
            {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": ["list", "watch"]},
        ]);
        create_rbac(&cluster.client, &ns, "Role", json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "live-viewer"}, "rules": rules,
        }))
        .await;
        create_rbac(&cluster.client, &ns, "RoleBinding", json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "live-viewer"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "live-viewer"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        }))
        .await;
        create_claim(&cluster.client, &ns, "data", "ReadWriteOnce", "1Mi").await;
        let mut as_user = admin.clone();
        as_user.auth_info.impersonate = Some(user.clone());

        // `default` is not readable for the user: refused, `ns` shown. RBAC takes a moment to apply.
        let options = scoped(&[&ns, "default"]);
        let snapshot = wait_for("the role binding in effect", Duration::from_millis(500), || {
            let (as_user, options) = (as_user.clone(), options.clone());
            async move {
                let live = LiveInventory::start(&as_user, &options).expect("start");
                let snapshot = live.ready().await.expect("ready");
                (snapshot.pvcs.len() == 1).then_some(snapshot)
            }
        })
        .await;
        assert_eq!(snapshot.pvcs[0].pvc.name, "data");
        assert_eq!(snapshot.refused.len(), 1, "{:?}", snapshot.refused);
        let refusal = &snapshot.refused[0];
        assert_eq!((refusal.namespace.as_str(), refusal.status), ("default", Some(403)));
        assert!(
            refusal.message.contains(
                "grant list and watch on persistentvolumeclaims, pods, replicasets.apps, \
                 jobs.batch, deployments.apps, cronjobs.batch in namespace default"
            ),
            "{}",
            refusal.message
        );

        // All namespaces: nothing to show, the error names the grant.
        let live = LiveInventory::start(&as_user, &InventoryOptions::default()).expect("start");
        let err = live.ready().await.expect_err("cluster-wide watch refused");
        assert!(matches!(err, InventoryError::Watch { .. }), "{err}");
        assert_eq!(err.status(), Some(403));
        assert!(err.to_string().contains("all namespaces"), "{err}");
        assert!(err.to_string().contains("cluster-wide"), "{err}");
    })
    .await;
}
