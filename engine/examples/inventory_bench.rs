//! Inventory benchmark driver (run by `bench/inventory.sh`): creates the large fixture on a real cluster
//! and measures the predecessor's owner-lookup method (one GET per owner) as the baseline.
//!
//! `inventory_bench setup`    — namespace `nkvm-bench`: 1,000 Deployments (1 replica, own PVC) and 800
//!                              StatefulSets (5 replicas, volumeClaimTemplate) → 5,000 PVCs, 5,000 pods,
//!                              1,000 ReplicaSets; pods bound to a Node object no kubelet serves.
//! `inventory_bench baseline` — the predecessor's method: list PVCs and pods, then GET every owner of
//!                              every consumer pod, one request at a time; prints time and requests.
//! `inventory_bench scan`     — nkvm's engine scan in-process (fresh client); prints time and requests.
//! `inventory_bench teardown` — deletes the namespace.
//! Reads the kubeconfig from `KUBECONFIG`. `NKVM_BENCH_SCALE=N` (1–10, default 1) multiplies the
//! fixture: N × 1,000 Deployments and N × 800 StatefulSets (`NKVM_BENCH_SCALE=4`: 20,000 PVCs and pods).

use std::{collections::BTreeMap, time::Instant};

use futures::{StreamExt, stream};
use k8s_openapi::{
    api::{
        apps::v1::{Deployment, ReplicaSet, StatefulSet},
        core::v1::{Namespace, Node, PersistentVolumeClaim, Pod},
    },
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, PostParams},
};
use serde_json::json;

const NS: &str = "nkvm-bench";
const DEPLOYMENTS: usize = 1000;
const STATEFULSETS: usize = 800;
const MAX_SCALE: usize = 10;
const STS_REPLICAS: usize = 5;
const NOWHERE: &str = "nkvm-bench-no-such-node";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let cmd = std::env::args().nth(1).unwrap_or_default();
    let scale = match std::env::var("NKVM_BENCH_SCALE") {
        Err(_) => 1,
        Ok(value) => match value.parse::<usize>() {
            Ok(n) if (1..=MAX_SCALE).contains(&n) => n,
            _ => return Err(format!("NKVM_BENCH_SCALE={value}: expected 1 to {MAX_SCALE}").into()),
        },
    };
    let client = Client::try_default().await?;
    match cmd.as_str() {
        "setup" => setup(client, scale).await,
        "baseline" => baseline(client).await,
        "scan" => scan(client).await,
        "teardown" => {
            let api: Api<Namespace> = Api::all(client.clone());
            if let Err(err) = api.delete(NS, &DeleteParams::background()).await {
                eprintln!("delete namespace {NS}: {err}");
            }
            if let Err(err) = Api::<Node>::all(client)
                .delete(NOWHERE, &DeleteParams::background())
                .await
            {
                eprintln!("delete node {NOWHERE}: {err}");
            }
            Ok(())
        }
        _ => Err("usage: inventory_bench setup|baseline|scan|teardown".into()),
    }
}

fn pod_template(labels: &serde_json::Value, volumes: &serde_json::Value) -> serde_json::Value {
    json!({
        "metadata": {"labels": labels},
        "spec": {
            "nodeName": NOWHERE,
            "terminationGracePeriodSeconds": 0,
            // The fake node never reports: tolerate its taints so the pods are not evicted.
            "tolerations": [{"operator": "Exists", "effect": "NoExecute"}],
            "containers": [{"name": "main", "image": "nkvm.local/workload:1", "imagePullPolicy": "Never",
                            "command": ["sleep", "3600"], "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": volumes
        }
    })
}

async fn setup(client: Client, scale: usize) -> Result<(), BoxError> {
    let (deployments_n, statefulsets_n) = (DEPLOYMENTS * scale, STATEFULSETS * scale);
    let started = Instant::now();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NS}}))?;
    match namespaces.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(err) => return Err(err.into()),
    }
    // A Node object with no kubelet behind it: pods bound to it never run, and the pod garbage
    // collector does not delete them as it would for pods bound to a node that does not exist.
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": NOWHERE,
        "labels": {"kubernetes.io/hostname": NOWHERE}}}))?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(err) => return Err(err.into()),
    }
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let claim_spec =
        json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}});

    let mut jobs: Vec<serde_json::Value> = Vec::new();
    for i in 0..deployments_n {
        jobs.push(json!({"kind": "pvc", "name": format!("dep-{i}")}));
        jobs.push(json!({"kind": "deploy", "name": format!("dep-{i}")}));
    }
    for i in 0..statefulsets_n {
        jobs.push(json!({"kind": "sts", "name": format!("sts-{i}")}));
    }
    let results: Vec<Result<(), kube::Error>> = stream::iter(jobs)
        .map(|job| {
            let (pvcs, deployments, statefulsets) =
                (pvcs.clone(), deployments.clone(), statefulsets.clone());
            let claim_spec = claim_spec.clone();
            async move {
                let name = job["name"].as_str().unwrap_or_default().to_string();
                let labels = json!({"app": name});
                let pp = PostParams::default();
                let created = match job["kind"].as_str() {
                    Some("pvc") => {
                        let pvc = serde_json::from_value(
                            json!({"metadata": {"name": name}, "spec": claim_spec}),
                        )
                        .map_err(kube::Error::SerdeError)?;
                        pvcs.create(&pp, &pvc).await.map(|_| ())
                    }
                    Some("deploy") => {
                        let volumes = json!([{"name": "data", "persistentVolumeClaim": {"claimName": name}}]);
                        let d = serde_json::from_value(json!({
                            "metadata": {"name": name},
                            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                                     "template": pod_template(&labels, &volumes)}
                        }))
                        .map_err(kube::Error::SerdeError)?;
                        deployments.create(&pp, &d).await.map(|_| ())
                    }
                    _ => {
                        let s = serde_json::from_value(json!({
                            "metadata": {"name": name},
                            "spec": {"replicas": STS_REPLICAS, "serviceName": "bench",
                                     "podManagementPolicy": "Parallel",
                                     "selector": {"matchLabels": labels},
                                     "template": pod_template(&labels, &json!([])),
                                     "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": claim_spec}]}
                        }))
                        .map_err(kube::Error::SerdeError)?;
                        statefulsets.create(&pp, &s).await.map(|_| ())
                    }
                };
                match created {
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                    other => other,
                }
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    if let Some(err) = results.into_iter().find_map(Result::err) {
        return Err(err.into());
    }
    eprintln!(
        "objects submitted in {:.1}s; waiting for controllers",
        started.elapsed().as_secs_f64()
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let want = deployments_n + statefulsets_n * STS_REPLICAS;
    loop {
        let n_pods = count(&pods).await?;
        let n_pvcs = count(&pvcs).await?;
        eprintln!("  pods {n_pods}/{want}, pvcs {n_pvcs}/{want}");
        if n_pods >= want && n_pvcs >= want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    }
    eprintln!("fixture ready in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

async fn count<K>(api: &Api<K>) -> Result<usize, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut n = 0;
    let mut lp = ListParams::default().limit(2000);
    loop {
        let page = api.list_metadata(&lp).await?;
        n += page.items.len();
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => lp = lp.continue_token(&token),
            _ => return Ok(n),
        }
    }
}

/// The predecessor: list everything, then one GET per owner hop per pod, sequentially.
async fn baseline(client: Client) -> Result<(), BoxError> {
    let started = Instant::now();
    let mut requests = 0u64;
    let pvcs: Vec<PersistentVolumeClaim> =
        list_all(&Api::all(client.clone()), &mut requests).await?;
    let pods: Vec<Pod> = list_all(&Api::all(client.clone()), &mut requests).await?;
    let mut owners: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for pod in &pods {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let claims: Vec<String> = pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .filter_map(|v| {
                v.persistent_volume_claim
                    .as_ref()
                    .map(|c| c.claim_name.clone())
            })
            .collect();
        if claims.is_empty() {
            continue;
        }
        let refs = pod.metadata.owner_references.clone().unwrap_or_default();
        let first = refs
            .iter()
            .find(|r| r.controller == Some(true))
            .or(refs.first())
            .cloned();
        let owner = match first {
            None => format!("Pod/{}", pod.metadata.name.clone().unwrap_or_default()),
            Some(r) => walk(&client, &ns, r, &mut requests).await,
        };
        for claim in claims {
            owners
                .entry((ns.clone(), claim))
                .or_default()
                .push(owner.clone());
        }
    }
    let resolved = pvcs.iter().filter(|p| {
        let key = (
            p.metadata.namespace.clone().unwrap_or_default(),
            p.metadata.name.clone().unwrap_or_default(),
        );
        owners.contains_key(&key)
    });
    println!(
        "baseline pvcs={} with_owner={} pods={} requests={} seconds={:.3}",
        pvcs.len(),
        resolved.count(),
        pods.len(),
        requests,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn walk(client: &Client, ns: &str, mut r: OwnerReference, requests: &mut u64) -> String {
    for _ in 0..5 {
        *requests += 1;
        let next = match r.kind.as_str() {
            "ReplicaSet" => Api::<ReplicaSet>::namespaced(client.clone(), ns)
                .get(&r.name)
                .await
                .map(|o| o.metadata.owner_references),
            "StatefulSet" => Api::<StatefulSet>::namespaced(client.clone(), ns)
                .get(&r.name)
                .await
                .map(|o| o.metadata.owner_references),
            "Deployment" => Api::<Deployment>::namespaced(client.clone(), ns)
                .get(&r.name)
                .await
                .map(|o| o.metadata.owner_references),
            _ => return format!("{}/{}", r.kind, r.name),
        };
        match next {
            Err(_) => return format!("Unknown/{}/{}", r.kind, r.name),
            Ok(refs) => match refs.and_then(|v| v.into_iter().find(|x| x.controller == Some(true)))
            {
                Some(up) => r = up,
                None => return format!("{}/{}", r.kind, r.name),
            },
        }
    }
    "Unknown".to_string()
}

async fn list_all<K>(api: &Api<K>, requests: &mut u64) -> Result<Vec<K>, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut out = Vec::new();
    let mut lp = ListParams::default().limit(500);
    loop {
        *requests += 1;
        let page = api.list(&lp).await?;
        out.extend(page.items);
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => lp = lp.continue_token(&token),
            _ => return Ok(out),
        }
    }
}

async fn scan(client: Client) -> Result<(), BoxError> {
    let started = Instant::now();
    let inv = nkvm_engine::inventory::scan(
        &client,
        &nkvm_engine::inventory::InventoryOptions::default(),
    )
    .await?;
    println!(
        "nkvm-scan pvcs={} requests={} seconds={:.3}",
        inv.pvcs.len(),
        inv.api_requests,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
