//! Tests of the inventory: the pure join, history flags, scope rules, and scans against a mock apiserver.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use k8s_openapi::{
    api::core::v1::{
        EphemeralVolumeSource, PersistentVolumeClaimSpec, PersistentVolumeClaimStatus,
        PersistentVolumeClaimVolumeSource, PodSpec, PodStatus, Volume, VolumeResourceRequirements,
    },
    apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::OwnerReference},
};
use kube::client::Body;
use serde_json::{Value, json};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PartialObjectMeta;

use super::*;
use crate::domain::Owner;

// ---------- builders ----------

/// The objects of a fixture as the API server serves them.
#[derive(Debug, Clone, Default)]
struct Objects {
    pvcs: Vec<PersistentVolumeClaim>,
    pods: Vec<Pod>,
    replica_sets: Vec<PartialObjectMeta<ReplicaSet>>,
    jobs: Vec<PartialObjectMeta<Job>>,
    deployments: Vec<PartialObjectMeta<Deployment>>,
    cron_jobs: Vec<PartialObjectMeta<CronJob>>,
}

impl Objects {
    /// What a scan keeps of them.
    fn listed(&self) -> Listed {
        fn facts<K: Clone, F: From<K>>(objects: &[K]) -> Vec<F> {
            objects.iter().cloned().map(F::from).collect()
        }
        Listed {
            pvcs: facts(&self.pvcs),
            pods: facts(&self.pods),
            replica_sets: facts(&self.replica_sets),
            jobs: facts(&self.jobs),
            deployments: facts(&self.deployments),
            cron_jobs: facts(&self.cron_jobs),
        }
    }
}

fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(namespace.to_owned()),
        name: Some(name.to_owned()),
        uid: Some(format!("uid-{namespace}-{name}")),
        ..ObjectMeta::default()
    }
}

fn api_version_of(kind: &str) -> &'static str {
    match kind {
        "ReplicaSet" | "Deployment" | "StatefulSet" | "DaemonSet" => "apps/v1",
        "Job" | "CronJob" => "batch/v1",
        _ => "v1",
    }
}

fn ctrl(kind: &str, name: &str) -> OwnerReference {
    OwnerReference {
        api_version: api_version_of(kind).to_owned(),
        kind: kind.to_owned(),
        name: name.to_owned(),
        uid: format!("uid-{kind}-{name}"),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

struct PvcBuilder(PersistentVolumeClaim);

fn pvc(namespace: &str, name: &str) -> PvcBuilder {
    PvcBuilder(PersistentVolumeClaim {
        metadata: meta(namespace, name),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity("1Gi".to_owned()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: Some(PersistentVolumeClaimStatus {
            phase: Some("Pending".to_owned()),
            ..PersistentVolumeClaimStatus::default()
        }),
    })
}

impl PvcBuilder {
    fn bound(mut self, volume: &str, capacity: &str) -> Self {
        let spec = self.0.spec.as_mut().unwrap();
        spec.volume_name = Some(volume.to_owned());
        spec.storage_class_name = Some("standard".to_owned());
        let status = self.0.status.as_mut().unwrap();
        status.phase = Some("Bound".to_owned());
        status.capacity = Some(BTreeMap::from([(
            "storage".to_owned(),
            Quantity(capacity.to_owned()),
        )]));
        self
    }
    fn modes(mut self, modes: &[&str]) -> Self {
        self.0.spec.as_mut().unwrap().access_modes =
            Some(modes.iter().map(|m| (*m).to_owned()).collect());
        self
    }
    fn build(self) -> PersistentVolumeClaim {
        self.0
    }
}

struct PodBuilder(Pod);

fn pod(namespace: &str, name: &str) -> PodBuilder {
    PodBuilder(Pod {
        metadata: meta(namespace, name),
        spec: Some(PodSpec {
            node_name: Some("node-a".to_owned()),
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".to_owned()),
            ..PodStatus::default()
        }),
    })
}

impl PodBuilder {
    fn claim(mut self, claim: &str) -> Self {
        let volumes = self
            .0
            .spec
            .as_mut()
            .unwrap()
            .volumes
            .get_or_insert_with(Vec::new);
        volumes.push(Volume {
            name: format!("vol-{claim}"),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.to_owned(),
                read_only: None,
            }),
            ..Volume::default()
        });
        self
    }
    fn ephemeral(mut self, volume: &str) -> Self {
        let volumes = self
            .0
            .spec
            .as_mut()
            .unwrap()
            .volumes
            .get_or_insert_with(Vec::new);
        volumes.push(Volume {
            name: volume.to_owned(),
            ephemeral: Some(EphemeralVolumeSource::default()),
            ..Volume::default()
        });
        self
    }
    fn owned_by(mut self, kind: &str, name: &str) -> Self {
        self.0
            .metadata
            .owner_references
            .get_or_insert_with(Vec::new)
            .push(ctrl(kind, name));
        self
    }
    fn phase(mut self, phase: &str) -> Self {
        self.0.status.as_mut().unwrap().phase = Some(phase.to_owned());
        self
    }
    fn node(mut self, node: &str) -> Self {
        self.0.spec.as_mut().unwrap().node_name = Some(node.to_owned());
        self
    }
    fn build(self) -> Pod {
        self.0
    }
}

fn partial<K>(namespace: &str, name: &str, owner: Option<(&str, &str)>) -> PartialObjectMeta<K> {
    let mut metadata = meta(namespace, name);
    metadata.owner_references = owner.map(|(kind, name)| vec![ctrl(kind, name)]);
    PartialObjectMeta {
        types: None,
        metadata,
        _phantom: std::marker::PhantomData,
    }
}

fn owner(kind: &str, name: &str) -> Owner {
    Owner::new(kind, name)
}

fn find<'a>(records: &'a [PvcRecord], namespace: &str, name: &str) -> &'a PvcRecord {
    records
        .iter()
        .find(|r| r.pvc.namespace == namespace && r.pvc.name == name)
        .unwrap_or_else(|| panic!("no record {namespace}/{name}"))
}

/// Every owner shape of the issue in namespace `shop`.
fn fixture() -> Objects {
    let ns = "shop";
    Objects {
        pvcs: vec![
            pvc(ns, "web-data").bound("pv-1", "10Gi").build(),
            pvc(ns, "db-data-db-0").bound("pv-2", "5Gi").build(),
            pvc(ns, "agent-cache").bound("pv-3", "1Gi").build(),
            pvc(ns, "report-out").bound("pv-4", "1Gi").build(),
            pvc(ns, "scratch").bound("pv-5", "1Gi").build(),
            pvc(ns, "shared")
                .bound("pv-6", "20Gi")
                .modes(&["ReadWriteMany"])
                .build(),
            pvc(ns, "orphan").build(),
            pvc(ns, "legacy-data").bound("pv-7", "1Gi").build(),
            pvc(ns, "gone-data").bound("pv-8", "1Gi").build(),
            pvc(ns, "exclusive")
                .bound("pv-9", "1Gi")
                .modes(&["ReadWriteOncePod"])
                .build(),
            pvc(ns, "eph-pod-cache").bound("pv-10", "1Gi").build(),
            pvc("other", "web-data").bound("pv-11", "1Gi").build(),
        ],
        pods: vec![
            pod(ns, "web-7d9f-a")
                .claim("web-data")
                .owned_by("ReplicaSet", "web-7d9f")
                .build(),
            pod(ns, "web-7d9f-b")
                .claim("web-data")
                .owned_by("ReplicaSet", "web-7d9f")
                .node("node-b")
                .build(),
            pod(ns, "db-0")
                .claim("db-data-db-0")
                .owned_by("StatefulSet", "db")
                .build(),
            pod(ns, "agent-x1")
                .claim("agent-cache")
                .owned_by("DaemonSet", "agent")
                .build(),
            pod(ns, "report-2900-q")
                .claim("report-out")
                .owned_by("Job", "report-2900")
                .phase("Succeeded")
                .build(),
            pod(ns, "debug").claim("scratch").build(),
            pod(ns, "writer-1-a")
                .claim("shared")
                .owned_by("ReplicaSet", "writer-1")
                .build(),
            pod(ns, "reader-1-a")
                .claim("shared")
                .owned_by("ReplicaSet", "reader-1")
                .build(),
            pod(ns, "legacy-6b8-a")
                .claim("legacy-data")
                .owned_by("ReplicaSet", "legacy-6b8")
                .build(),
            pod(ns, "gone-5c4-a")
                .claim("gone-data")
                .owned_by("ReplicaSet", "gone-5c4")
                .phase("Pending")
                .build(),
            pod(ns, "solo").claim("exclusive").build(),
            pod(ns, "eph-pod").ephemeral("cache").build(),
            pod(ns, "unrelated").build(),
        ],
        replica_sets: vec![
            partial(ns, "web-7d9f", Some(("Deployment", "web"))),
            partial(ns, "writer-1", Some(("Deployment", "writer"))),
            partial(ns, "reader-1", Some(("Deployment", "reader"))),
            partial(ns, "legacy-6b8", None),
        ],
        jobs: vec![partial(ns, "report-2900", Some(("CronJob", "report")))],
        deployments: vec![
            partial(ns, "web", None),
            partial(ns, "writer", None),
            partial(ns, "reader", None),
        ],
        cron_jobs: vec![partial(ns, "report", None)],
    }
}

// ---------- pure join ----------

#[test]
fn records_resolve_every_owner_shape() {
    let records = build_records(&fixture().listed());
    let shown = |name: &str| {
        let r = find(&records, "shop", name);
        (r.owner_kind.as_str(), r.owner_name.as_str())
    };
    assert_eq!(shown("web-data"), ("Deployment", "web"));
    assert_eq!(shown("db-data-db-0"), ("StatefulSet", "db"));
    assert_eq!(shown("agent-cache"), ("DaemonSet", "agent"));
    assert_eq!(shown("report-out"), ("CronJob", "report"));
    assert_eq!(shown("scratch"), ("Pod", "debug"));
    assert_eq!(shown("shared"), ("Multiple[Deployment]", "reader, writer"));
    assert_eq!(shown("orphan"), ("Unknown", "Unknown"));
    assert_eq!(shown("legacy-data"), ("ReplicaSet", "legacy-6b8"));
    assert_eq!(shown("gone-data"), ("Unknown", "ReplicaSet/gone-5c4"));
    assert_eq!(shown("eph-pod-cache"), ("Pod", "eph-pod"));
    assert_eq!(
        find(&records, "shop", "shared").owners,
        vec![owner("Deployment", "reader"), owner("Deployment", "writer")]
    );
    assert!(find(&records, "shop", "orphan").owners.is_empty());
    // The same claim name in another namespace is not mounted by shop's pods.
    assert_eq!(
        find(&records, "other", "web-data").consumers,
        Vec::<String>::new()
    );
}

#[test]
fn records_list_consumers_and_running_nodes() {
    let records = build_records(&fixture().listed());
    let web = find(&records, "shop", "web-data");
    assert_eq!(web.consumers, ["web-7d9f-a", "web-7d9f-b"]);
    assert_eq!(web.consumer_nodes, ["node-a", "node-b"]);
    let gone = find(&records, "shop", "gone-data");
    assert_eq!(gone.consumers, ["gone-5c4-a"]);
    assert!(
        gone.consumer_nodes.is_empty(),
        "a Pending pod is not Running"
    );
    assert_eq!(
        find(&records, "shop", "eph-pod-cache").consumers,
        ["eph-pod"]
    );
}

#[test]
fn records_carry_pvc_fields() {
    let records = build_records(&fixture().listed());
    let web = find(&records, "shop", "web-data");
    assert_eq!(web.pvc.uid, "uid-shop-web-data");
    assert_eq!(web.pvc.phase, "Bound");
    assert_eq!(web.pvc.capacity.as_deref(), Some("10Gi"));
    assert_eq!(web.pvc.capacity_bytes, Some(10 << 30));
    assert_eq!(web.pvc.storage_class.as_deref(), Some("standard"));
    assert_eq!(web.pvc.access_modes, ["ReadWriteOnce"]);
    assert_eq!(web.pvc.volume_name.as_deref(), Some("pv-1"));
    assert_eq!(web.last_success_at, None);
    let orphan = find(&records, "shop", "orphan");
    assert_eq!(orphan.pvc.phase, "Pending");
    assert_eq!(
        orphan.pvc.capacity.as_deref(),
        Some("1Gi"),
        "falls back to the request"
    );
    assert_eq!(orphan.pvc.volume_name, None);
    assert_eq!(orphan.pvc.storage_class, None);
}

#[test]
fn records_are_sorted_by_namespace_then_name() {
    let records = build_records(&fixture().listed());
    let keys: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (r.pvc.namespace.as_str(), r.pvc.name.as_str()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted);
    assert_eq!(keys.first(), Some(&("other", "web-data")));
}

#[test]
fn flags_unbound_no_consumer_and_rwop_in_use() {
    let records = build_records(&fixture().listed());
    let flags = |name: &str| {
        let record = find(&records, "shop", name);
        record.flags.iter().map(|f| f.as_str()).collect::<Vec<_>>()
    };
    assert_eq!(flags("orphan"), ["unbound", "no-consumer"]);
    assert!(flags("web-data").is_empty());
    assert_eq!(flags("exclusive"), ["rwop-in-use"]);
}

#[test]
fn rwop_with_only_finished_consumers_is_not_in_use() {
    let listed = Objects {
        pvcs: vec![
            pvc("ns", "x")
                .bound("pv", "1Gi")
                .modes(&["ReadWriteOncePod"])
                .build(),
        ],
        pods: vec![pod("ns", "done").claim("x").phase("Succeeded").build()],
        ..Objects::default()
    };
    let records = build_records(&listed.listed());
    assert!(records[0].flags.is_empty(), "{:?}", records[0].flags);
    assert_eq!(records[0].consumers, ["done"]);
}

#[test]
fn pvc_mounted_twice_by_one_pod_lists_it_once() {
    let listed = Objects {
        pvcs: vec![pvc("ns", "x").bound("pv", "1Gi").build()],
        pods: vec![pod("ns", "p").claim("x").claim("x").build()],
        ..Objects::default()
    };
    assert_eq!(build_records(&listed.listed())[0].consumers, ["p"]);
}

#[test]
fn missing_deployment_and_cronjob_are_detected_because_they_are_listed() {
    let listed = Objects {
        pvcs: vec![
            pvc("ns", "a").bound("pv", "1Gi").build(),
            pvc("ns", "b").bound("pv", "1Gi").build(),
        ],
        pods: vec![
            pod("ns", "a-1")
                .claim("a")
                .owned_by("ReplicaSet", "rs")
                .build(),
            pod("ns", "b-1").claim("b").owned_by("Job", "job").build(),
        ],
        replica_sets: vec![partial("ns", "rs", Some(("Deployment", "deleted")))],
        jobs: vec![partial("ns", "job", Some(("CronJob", "deleted")))],
        ..Objects::default()
    };
    let records = build_records(&listed.listed());
    assert_eq!(
        (
            records[0].owner_kind.as_str(),
            records[0].owner_name.as_str()
        ),
        ("Unknown", "Deployment/deleted")
    );
    assert_eq!(
        (
            records[1].owner_kind.as_str(),
            records[1].owner_name.as_str()
        ),
        ("Unknown", "CronJob/deleted")
    );
}

#[test]
fn record_json_has_the_contract_fields() {
    let records = build_records(&fixture().listed());
    let value = serde_json::to_value(find(&records, "shop", "orphan")).unwrap();
    for field in [
        "namespace",
        "name",
        "uid",
        "phase",
        "capacity",
        "storage_class",
        "access_modes",
        "volume_name",
        "owner_kind",
        "owner_name",
        "owners",
        "consumers",
        "last_success_at",
    ] {
        assert!(value.get(field).is_some(), "missing {field}: {value}");
    }
    assert_eq!(value["last_success_at"], Value::Null);
    assert_eq!(value["owners"], json!([]));
    let shared = serde_json::to_value(find(&records, "shop", "shared")).unwrap();
    assert_eq!(
        shared["owners"],
        json!([{"kind": "Deployment", "name": "reader"}, {"kind": "Deployment", "name": "writer"}])
    );
}

// ---------- history ----------

fn ts(text: &str) -> jiff::Timestamp {
    text.parse().unwrap()
}

#[test]
fn apply_history_sets_times_and_flags() {
    let mut records = build_records(&fixture().listed());
    let now = ts("2025-06-10T12:00:00Z");
    let history = HashMap::from([
        ("uid-shop-web-data".to_owned(), ts("2025-06-10T11:00:00Z")),
        (
            "uid-shop-db-data-db-0".to_owned(),
            ts("2025-06-01T00:00:00Z"),
        ),
    ]);
    let day = Duration::from_hours(24);
    apply_history(&mut records, &history, Some(day), now);
    let web = find(&records, "shop", "web-data");
    assert_eq!(web.last_success_at.as_deref(), Some("2025-06-10T11:00:00Z"));
    assert!(web.flags.is_empty(), "{:?}", web.flags);
    let db = find(&records, "shop", "db-data-db-0");
    assert_eq!(db.last_success_at.as_deref(), Some("2025-06-01T00:00:00Z"));
    assert_eq!(db.flags, [Flag::StaleBackup]);
    let orphan = find(&records, "shop", "orphan");
    assert_eq!(orphan.last_success_at, None);
    assert_eq!(
        orphan.flags,
        [Flag::Unbound, Flag::NoConsumer, Flag::NeverBackedUp]
    );
}

#[test]
fn apply_history_without_age_limit_never_flags_stale_and_is_idempotent() {
    let mut records = build_records(&fixture().listed());
    let history = HashMap::from([(
        "uid-shop-db-data-db-0".to_owned(),
        ts("2000-01-01T00:00:00Z"),
    )]);
    let now = ts("2025-06-10T12:00:00Z");
    apply_history(&mut records, &history, None, now);
    apply_history(&mut records, &history, None, now);
    assert!(find(&records, "shop", "db-data-db-0").flags.is_empty());
    assert_eq!(
        find(&records, "shop", "web-data").flags,
        [Flag::NeverBackedUp]
    );
}

#[test]
fn apply_history_boundary_is_not_stale() {
    let mut records = build_records(
        &Objects {
            pvcs: vec![pvc("ns", "x").bound("pv", "1Gi").build()],
            pods: vec![pod("ns", "p").claim("x").build()],
            ..Objects::default()
        }
        .listed(),
    );
    let history = HashMap::from([("uid-ns-x".to_owned(), ts("2025-06-09T12:00:00Z"))]);
    apply_history(
        &mut records,
        &history,
        Some(Duration::from_hours(24)),
        ts("2025-06-10T12:00:00Z"),
    );
    assert!(records[0].flags.is_empty());
}

// ---------- scope ----------

fn opts(allowlist: Option<&[&str]>, namespaces: &[&str], max: usize) -> InventoryOptions {
    InventoryOptions {
        allowlist: allowlist.map(|a| a.iter().map(|s| (*s).to_owned()).collect()),
        namespaces: namespaces.iter().map(|s| (*s).to_owned()).collect(),
        max_namespaces: max,
        ..InventoryOptions::default()
    }
}

fn names(list: &[&str]) -> Scope {
    Scope::Namespaces(list.iter().map(|s| (*s).to_owned()).collect())
}

#[test]
fn scope_rules() {
    assert_eq!(
        resolve_scope(&opts(None, &[], 1)).unwrap(),
        Scope::AllNamespaces
    );
    assert_eq!(
        resolve_scope(&opts(None, &["b", "a", "b", " "], 5)).unwrap(),
        names(&["a", "b"])
    );
    assert_eq!(
        resolve_scope(&opts(Some(&["x", "y"]), &[], 5)).unwrap(),
        names(&["x", "y"])
    );
    assert_eq!(
        resolve_scope(&opts(Some(&["x", "y"]), &["y"], 5)).unwrap(),
        names(&["y"])
    );
    assert_eq!(resolve_scope(&opts(Some(&[]), &[], 5)).unwrap(), names(&[]));
}

#[test]
fn scope_errors() {
    let err = resolve_scope(&opts(Some(&["x", "y"]), &["z"], 5)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "namespace \"z\" is not in the server's namespace allowlist (allowed: x, y)"
    );
    let err = resolve_scope(&opts(None, &["a", "b", "c"], 2)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "3 namespaces requested but at most 2 may be scanned at once; narrow the namespace filter \
         or raise the cap (--max-namespaces)"
    );
    let err = resolve_scope(&opts(Some(&["a", "b", "c"]), &[], 2)).unwrap_err();
    assert!(matches!(
        err,
        InventoryError::TooManyNamespaces {
            requested: 3,
            max: 2
        }
    ));
    for bad in ["../kube-system", "UPPER", "-x", "a/b", &"a".repeat(64)] {
        assert!(
            matches!(
                resolve_scope(&opts(None, &[bad], 5)),
                Err(InventoryError::InvalidNamespace { .. })
            ),
            "{bad}"
        );
    }
}

// ---------- mock apiserver ----------

/// How the fake apiserver answers one list.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Status(u16),
    Hang,
    Transport,
}

/// A fake apiserver: serves the [`Objects`] with real pagination (`limit`/`continue`),
/// controllers as `PartialObjectMetadataList` when asked for metadata, and injected faults.
#[derive(Clone, Default)]
struct FakeApi {
    objects: HashMap<&'static str, Vec<Value>>,
    /// (resource, namespace or None for all-namespaces) → fault.
    faults: Vec<(&'static str, Option<String>, Fault)>,
}

const RESOURCES: [&str; 6] = [
    "persistentvolumeclaims",
    "pods",
    "replicasets",
    "jobs",
    "deployments",
    "cronjobs",
];

fn to_values<T: Serialize>(items: &[T]) -> Vec<Value> {
    items
        .iter()
        .map(|i| serde_json::to_value(i).unwrap())
        .collect()
}

impl FakeApi {
    fn new(listed: &Objects) -> Self {
        let mut objects = HashMap::new();
        objects.insert("persistentvolumeclaims", to_values(&listed.pvcs));
        objects.insert("pods", to_values(&listed.pods));
        objects.insert("replicasets", to_values(&listed.replica_sets));
        objects.insert("jobs", to_values(&listed.jobs));
        objects.insert("deployments", to_values(&listed.deployments));
        objects.insert("cronjobs", to_values(&listed.cron_jobs));
        Self {
            objects,
            faults: Vec::new(),
        }
    }

    fn fault(mut self, resource: &'static str, namespace: Option<&str>, fault: Fault) -> Self {
        self.faults
            .push((resource, namespace.map(str::to_owned), fault));
        self
    }

    /// `(namespace, resource)` of a list path.
    fn parse_path(path: &str) -> (Option<String>, String) {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let resource = (*parts.last().unwrap()).to_owned();
        let namespace = parts
            .iter()
            .position(|p| *p == "namespaces")
            .map(|i| parts[i + 1].to_owned());
        (namespace, resource)
    }

    fn respond(&self, request: &Request<Body>) -> Option<Result<Response<Body>, Fault>> {
        let (namespace, resource) = Self::parse_path(request.uri().path());
        let query: HashMap<String, String> = url_query(request.uri().query().unwrap_or_default());
        if let Some((_, _, fault)) = self
            .faults
            .iter()
            .find(|(r, ns, _)| *r == resource && *ns == namespace)
        {
            return match fault {
                Fault::Status(code) => Some(Ok(status_response(*code, &resource))),
                Fault::Hang => None,
                Fault::Transport => Some(Err(Fault::Transport)),
            };
        }
        let all = self
            .objects
            .get(resource.as_str())
            .cloned()
            .unwrap_or_default();
        let items: Vec<Value> = all
            .into_iter()
            .filter(|item| {
                namespace
                    .as_deref()
                    .is_none_or(|ns| item["metadata"]["namespace"] == ns)
            })
            .collect();
        let limit: usize = query
            .get("limit")
            .map_or(usize::MAX, |l| l.parse().unwrap());
        let offset: usize = query.get("continue").map_or(0, |c| c.parse().unwrap());
        let end = offset.saturating_add(limit).min(items.len());
        let page = items[offset..end].to_vec();
        let continue_token = if end < items.len() {
            end.to_string()
        } else {
            String::new()
        };
        let metadata_only = request
            .headers()
            .get(http::header::ACCEPT)
            .is_some_and(|a| a.to_str().unwrap().contains("as=PartialObjectMetadataList"));
        let body = if metadata_only {
            json!({
                "apiVersion": "meta.k8s.io/v1",
                "kind": "PartialObjectMetadataList",
                "metadata": {"resourceVersion": "42", "continue": continue_token},
                "items": page.into_iter().map(|i| json!({
                    "apiVersion": "meta.k8s.io/v1",
                    "kind": "PartialObjectMetadata",
                    "metadata": i["metadata"],
                })).collect::<Vec<_>>(),
            })
        } else {
            json!({
                "apiVersion": "v1",
                "kind": "List",
                "metadata": {"resourceVersion": "42", "continue": continue_token},
                "items": page,
            })
        };
        Some(Ok(json_response(StatusCode::OK, &body)))
    }
}

fn url_query(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

fn status_response(code: u16, resource: &str) -> Response<Body> {
    let reason = match code {
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        _ => "InternalError",
    };
    json_response(
        StatusCode::from_u16(code).unwrap(),
        &json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": format!("{resource} is {reason} (test)"),
            "reason": reason,
            "code": code,
        }),
    )
}

/// Requests the fake apiserver saw: URI and Accept header.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// Runs `scan` against the fake apiserver; never hangs (paused-clock tests advance instantly).
async fn scan_with(
    api: FakeApi,
    options: InventoryOptions,
) -> (Result<Inventory, InventoryError>, Seen) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let seen: Seen = Arc::default();
    let server_seen = seen.clone();
    let server = tokio::spawn(async move {
        let mut hung = Vec::new();
        while let Some((request, send)) = handle.next_request().await {
            let accept = request
                .headers()
                .get(http::header::ACCEPT)
                .map(|a| a.to_str().unwrap().to_owned())
                .unwrap_or_default();
            server_seen
                .lock()
                .unwrap()
                .push((request.uri().to_string(), accept));
            match api.respond(&request) {
                Some(Ok(response)) => send.send_response(response),
                Some(Err(_transport)) => send.send_error(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "connection reset by peer",
                )),
                None => hung.push(send),
            }
        }
    });
    let result = tokio::time::timeout(Duration::from_mins(1), scan(&client, &options))
        .await
        .expect("scan must finish (request timeout should fire)");
    drop(client);
    server.abort();
    (result, seen)
}

fn paths(seen: &Seen) -> Vec<String> {
    let mut uris: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(u, _)| u.clone())
        .collect();
    uris.sort();
    uris
}

#[tokio::test]
async fn happy_path_all_namespaces_follows_pagination() {
    let listed = fixture();
    let expected = build_records(&listed.listed());
    let options = InventoryOptions {
        page_size: 5,
        ..InventoryOptions::default()
    };
    let (result, seen) = scan_with(FakeApi::new(&listed), options).await;
    let inventory = result.unwrap();
    assert_eq!(inventory.pvcs, expected);
    assert!(inventory.refused.is_empty());
    // 12 PVCs → 3 pages, 13 pods → 3 pages, and one page for each controller kind.
    assert_eq!(inventory.api_requests, 10);
    assert_eq!(
        paths(&seen),
        [
            "/api/v1/persistentvolumeclaims?&limit=5",
            "/api/v1/persistentvolumeclaims?&limit=5&continue=10",
            "/api/v1/persistentvolumeclaims?&limit=5&continue=5",
            "/api/v1/pods?&limit=5",
            "/api/v1/pods?&limit=5&continue=10",
            "/api/v1/pods?&limit=5&continue=5",
            "/apis/apps/v1/deployments?&limit=5",
            "/apis/apps/v1/replicasets?&limit=5",
            "/apis/batch/v1/cronjobs?&limit=5",
            "/apis/batch/v1/jobs?&limit=5",
        ]
    );
    // Controllers are read as metadata only; PVCs and pods as full objects.
    for (uri, accept) in seen.lock().unwrap().iter() {
        let metadata = accept.contains("PartialObjectMetadataList");
        assert_eq!(metadata, uri.starts_with("/apis/"), "{uri}: {accept}");
    }
}

#[tokio::test]
async fn happy_path_scoped_lists_per_namespace() {
    let listed = fixture();
    let options = InventoryOptions {
        namespaces: vec!["shop".to_owned()],
        ..InventoryOptions::default()
    };
    let (result, seen) = scan_with(FakeApi::new(&listed), options).await;
    let inventory = result.unwrap();
    assert!(inventory.pvcs.iter().all(|r| r.pvc.namespace == "shop"));
    assert_eq!(inventory.pvcs.len(), 11);
    assert_eq!(inventory.api_requests, 6);
    assert_eq!(
        paths(&seen),
        [
            "/api/v1/namespaces/shop/persistentvolumeclaims?&limit=2000",
            "/api/v1/namespaces/shop/pods?&limit=2000",
            "/apis/apps/v1/namespaces/shop/deployments?&limit=2000",
            "/apis/apps/v1/namespaces/shop/replicasets?&limit=2000",
            "/apis/batch/v1/namespaces/shop/cronjobs?&limit=2000",
            "/apis/batch/v1/namespaces/shop/jobs?&limit=2000",
        ]
    );
    let shared = find(&inventory.pvcs, "shop", "shared");
    assert_eq!(shared.owner_kind, "Multiple[Deployment]");
}

/// The resource (plural) of the list a scan error names.
fn variant(err: &InventoryError) -> &'static str {
    match err {
        InventoryError::List { listing, .. } => listing.plural(),
        _ => "other",
    }
}

fn expected_variant(resource: &str) -> &str {
    resource
}

fn rbac(resource: &str) -> &'static str {
    match resource {
        "persistentvolumeclaims" => "persistentvolumeclaims",
        "pods" => "pods",
        "replicasets" => "replicasets.apps",
        "jobs" => "jobs.batch",
        "deployments" => "deployments.apps",
        "cronjobs" => "cronjobs.batch",
        _ => unreachable!(),
    }
}

/// The advice expected after "failed to list <resource> <scope>: ".
fn expected_advice(resource: &str, namespace: Option<&str>, fault: Fault) -> String {
    let grant = rbac(resource);
    match fault {
        Fault::Status(401) => {
            "HTTP 401 Unauthorized: the credentials are expired or invalid; refresh the \
             kubeconfig's token or certificate (or the service account token)"
                .to_owned()
        }
        Fault::Status(403) => match namespace {
            Some(ns) => format!("HTTP 403 Forbidden: grant list on {grant} in namespace {ns}"),
            None => format!(
                "HTTP 403 Forbidden: grant list on {grant} cluster-wide (a ClusterRole), or pass -n \
                 NAMESPACE to scan only namespaces you may read"
            ),
        },
        Fault::Status(404) => format!(
            "HTTP 404 Not Found: the apiserver does not serve {grant}; check the cluster version \
             and that the API is enabled"
        ),
        Fault::Status(500) => {
            "HTTP 500: the apiserver failed; retry, and check the apiserver's health \
             and logs if it persists"
                .to_owned()
        }
        Fault::Hang => {
            "no response in time; check that the apiserver is reachable and not overloaded, \
             then retry (or raise the request timeout)"
                .to_owned()
        }
        Fault::Transport => {
            "could not reach or understand the apiserver; check the server address, network and \
             TLS settings, then retry (connection reset by peer)"
                .to_owned()
        }
        Fault::Status(other) => panic!("no expectation for {other}"),
    }
}

fn expected_status(fault: Fault) -> Option<u16> {
    match fault {
        Fault::Status(code) => Some(code),
        Fault::Hang | Fault::Transport => None,
    }
}

const FAULTS: [Fault; 6] = [
    Fault::Status(401),
    Fault::Status(403),
    Fault::Status(404),
    Fault::Status(500),
    Fault::Hang,
    Fault::Transport,
];

fn fast_timeout(namespaces: &[&str]) -> InventoryOptions {
    InventoryOptions {
        namespaces: namespaces.iter().map(|s| (*s).to_owned()).collect(),
        request_timeout: Duration::from_secs(5),
        ..InventoryOptions::default()
    }
}

#[tokio::test(start_paused = true)]
async fn every_all_namespaces_list_failure_fails_the_scan_with_its_step() {
    let listed = fixture();
    for resource in RESOURCES {
        for fault in FAULTS {
            let api = FakeApi::new(&listed).fault(resource, None, fault);
            let (result, _) = scan_with(api, fast_timeout(&[])).await;
            let err = result.expect_err(&format!("{resource} {fault:?}"));
            assert_eq!(
                variant(&err),
                expected_variant(resource),
                "{resource} {fault:?}"
            );
            assert_eq!(err.status(), expected_status(fault), "{resource} {fault:?}");
            assert_eq!(
                err.to_string(),
                format!(
                    "failed to list {resource} in all namespaces: {}",
                    expected_advice(resource, None, fault)
                )
            );
            if let Fault::Hang = fault {
                assert_eq!(
                    crate::kubeapi::root_cause(&err),
                    "no response from the apiserver within 5s"
                );
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn every_namespaced_list_failure_but_403_fails_the_scan_naming_the_namespace() {
    let listed = fixture();
    for resource in RESOURCES {
        for fault in FAULTS {
            if let Fault::Status(403) = fault {
                continue;
            }
            let api = FakeApi::new(&listed).fault(resource, Some("shop"), fault);
            let (result, _) = scan_with(api, fast_timeout(&["other", "shop"])).await;
            let err = result.expect_err(&format!("{resource} {fault:?}"));
            assert_eq!(
                variant(&err),
                expected_variant(resource),
                "{resource} {fault:?}"
            );
            assert_eq!(err.status(), expected_status(fault));
            assert_eq!(
                err.to_string(),
                format!(
                    "failed to list {resource} in namespace \"shop\": {}",
                    expected_advice(resource, Some("shop"), fault)
                )
            );
        }
    }
}

#[tokio::test]
async fn namespaced_403_on_any_list_records_a_refusal_and_keeps_the_rest() {
    let listed = fixture();
    for resource in RESOURCES {
        let api = FakeApi::new(&listed).fault(resource, Some("shop"), Fault::Status(403));
        let (result, _) = scan_with(api, fast_timeout(&["shop", "other"])).await;
        let inventory = result.unwrap_or_else(|e| panic!("{resource}: {e}"));
        assert_eq!(
            inventory.refused,
            vec![NamespaceRefusal {
                namespace: "shop".to_owned(),
                status: Some(403),
                message: format!(
                    "HTTP 403 Forbidden: grant list on {} in namespace shop",
                    rbac(resource)
                ),
            }]
        );
        let namespaces: Vec<&str> = inventory
            .pvcs
            .iter()
            .map(|r| r.pvc.namespace.as_str())
            .collect();
        assert_eq!(namespaces, ["other"], "{resource}");
    }
}

#[tokio::test]
async fn refusal_names_every_forbidden_list_of_the_namespace() {
    let api = FakeApi::new(&fixture())
        .fault("persistentvolumeclaims", Some("shop"), Fault::Status(403))
        .fault("jobs", Some("shop"), Fault::Status(403));
    let (result, _) = scan_with(api, fast_timeout(&["shop"])).await;
    let inventory = result.unwrap();
    assert!(inventory.pvcs.is_empty());
    assert_eq!(
        inventory.refused[0].message,
        "HTTP 403 Forbidden: grant list on persistentvolumeclaims, jobs.batch in namespace shop"
    );
}

#[tokio::test]
async fn scope_errors_make_no_request() {
    let options = InventoryOptions {
        allowlist: Some(vec!["a".to_owned()]),
        namespaces: vec!["b".to_owned()],
        ..InventoryOptions::default()
    };
    let (result, seen) = scan_with(FakeApi::new(&fixture()), options).await;
    assert!(matches!(
        result,
        Err(InventoryError::NamespaceNotAllowed { .. })
    ));
    assert!(seen.lock().unwrap().is_empty());
}
