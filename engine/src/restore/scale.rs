//! In-place restores stop the workloads using the claim first: which ones ([`plan`], pure, from
//! the inventory's owner mapping of the claim's consumer pods), scaling a Deployment, StatefulSet
//! or ReplicaSet to 0 after recording its replica count in an annotation on the object itself
//! ([`scale_down`], one optimistic-concurrency patch), waiting until no pod mounts the claim
//! ([`wait_unmounted`]), and scaling back to the recorded count ([`scale_up`]) — also at start-up,
//! for workloads a crashed nkvm left scaled down ([`scaled_down_by`]). Consumers that cannot be
//! scaled (bare pods, DaemonSets, Jobs) refuse the restore with what to do.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::domain::Owner;
use crate::kubeapi::{self, Call, http_status, timed};
use crate::objects::{is_nkvm_helper, is_terminated, mounts_claim, name_of};

/// Annotation holding what a restore changed: `{"restore_id": "...", "replicas": N}`.
pub const ANNOTATION_SCALED_DOWN: &str = "nkvm.io/restore-scaled-down";
/// Label marking a workload scaled down by a restore; its value is the nkvm instance.
pub const LABEL_SCALED_DOWN_BY: &str = "nkvm.io/scaled-down-by";

crate::text_enum! {
    /// The workloads a restore can scale.
    #[derive(PartialOrd, Ord)]
    pub enum WorkloadKind("workload kind") {
        Deployment => "Deployment",
        StatefulSet => "StatefulSet",
        ReplicaSet => "ReplicaSet",
    }
}

impl WorkloadKind {
    fn resource(self) -> ApiResource {
        match self {
            Self::Deployment => ApiResource::erase::<Deployment>(&()),
            Self::StatefulSet => ApiResource::erase::<StatefulSet>(&()),
            Self::ReplicaSet => ApiResource::erase::<ReplicaSet>(&()),
        }
    }
}

/// A workload to scale down for an in-place restore.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub name: String,
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// A workload that was scaled to 0, with the replica count to give back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaledDown {
    pub workload: Workload,
    pub replicas: i32,
}

/// What the annotation records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    restore_id: String,
    replicas: i32,
}

/// The workloads to scale for an in-place restore, from the owners of the claim's consumer pods;
/// refused (with what to do) when one of them cannot be scaled.
pub fn plan(namespace: &str, owners: &[Owner]) -> Result<Vec<Workload>, String> {
    let mut workloads = Vec::new();
    let mut refusals = Vec::new();
    for owner in owners {
        let name = &owner.name;
        match owner.kind.parse::<WorkloadKind>() {
            Ok(kind) => workloads.push(Workload {
                kind,
                name: name.clone(),
            }),
            Err(_) => refusals.push(match owner.kind.as_str() {
                "Pod" => format!(
                    "pod {name} is not managed by a controller nkvm can scale: delete it \
                     (`kubectl delete pod -n {namespace} {name}`) or stop using the claim in it"
                ),
                "DaemonSet" => format!(
                    "DaemonSet {name} cannot be scaled to 0: delete it, or give it a nodeSelector \
                     that matches no node, until the restore is done"
                ),
                "Job" | "CronJob" => format!(
                    "{} {name} runs pods that mount the claim: wait for them to finish, or \
                     suspend or delete it",
                    owner.kind
                ),
                _ => format!(
                    "{} {name} is not a Deployment, StatefulSet or ReplicaSet that nkvm can \
                     scale: stop the pods it runs on the claim",
                    owner.kind
                ),
            }),
        }
    }
    if refusals.is_empty() {
        workloads.sort();
        workloads.dedup();
        Ok(workloads)
    } else {
        Err(format!(
            "an in-place restore needs every pod using the claim stopped, and {}; then retry (or \
             restore into a new PVC instead)",
            refusals.join("; ")
        ))
    }
}

fn api(client: &Client, namespace: &str, kind: WorkloadKind) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &kind.resource())
}

fn replicas_of(object: &DynamicObject) -> i32 {
    object
        .data
        .get("spec")
        .and_then(|s| s.get("replicas"))
        .and_then(serde_json::Value::as_i64)
        .and_then(|r| i32::try_from(r).ok())
        .unwrap_or(1)
}

fn record_of(object: &DynamicObject) -> Option<Record> {
    let text = object
        .metadata
        .annotations
        .as_ref()?
        .get(ANNOTATION_SCALED_DOWN)?;
    serde_json::from_str(text).ok()
}

fn lowercase_plural(kind: WorkloadKind) -> String {
    kind.resource().plural
}

/// Scales `workload` to 0 after recording its replica count (one patch, guarded by the object's
/// resourceVersion; retried on conflicts). A workload already scaled down by an earlier,
/// interrupted restore keeps its first recorded count.
pub async fn scale_down(
    client: &Client,
    namespace: &str,
    workload: &Workload,
    restore_id: &str,
    instance: &str,
    timeout: Duration,
) -> Result<ScaledDown, String> {
    let api = api(client, namespace, workload.kind);
    let plural = lowercase_plural(workload.kind);
    for _attempt in 0..5 {
        let object = timed(timeout, api.get(&workload.name))
            .await
            .map_err(|err| {
                format!(
                    "could not read {workload}: {}",
                    kubeapi::advice(&err, Call::new("get", &plural, namespace))
                )
            })?;
        let replicas = record_of(&object).map_or_else(|| replicas_of(&object), |r| r.replicas);
        let record = serde_json::to_string(&Record {
            restore_id: restore_id.to_owned(),
            replicas,
        })
        .unwrap_or_default();
        let patch = json!({
            "metadata": {
                "resourceVersion": object.metadata.resource_version,
                "labels": {LABEL_SCALED_DOWN_BY: instance},
                "annotations": {ANNOTATION_SCALED_DOWN: record},
            },
            "spec": {"replicas": 0},
        });
        match timed(
            timeout,
            api.patch(
                &workload.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            ),
        )
        .await
        {
            Ok(_) => {
                return Ok(ScaledDown {
                    workload: workload.clone(),
                    replicas,
                });
            }
            Err(err) if http_status(&err) == Some(409) => {}
            Err(err) => {
                return Err(format!(
                    "could not scale {workload} to 0: {}",
                    kubeapi::advice(&err, Call::new("patch", &plural, namespace))
                ));
            }
        }
    }
    Err(format!(
        "could not scale {workload} to 0: it kept changing while nkvm tried (5 conflicts); retry"
    ))
}

/// The replicas `workload` has now (`None` when it cannot be read).
pub async fn replicas(
    client: &Client,
    namespace: &str,
    workload: &Workload,
    timeout: Duration,
) -> Option<i32> {
    let object = timed(
        timeout,
        api(client, namespace, workload.kind).get(&workload.name),
    )
    .await
    .ok()?;
    Some(record_of(&object).map_or_else(|| replicas_of(&object), |r| r.replicas))
}

/// Gives `workload` back its recorded replica count and removes the record. When someone set
/// the replicas to something other than 0 meanwhile, their choice is kept (and said so). A
/// workload without a record (or deleted meanwhile) needs nothing.
pub async fn scale_up(
    client: &Client,
    namespace: &str,
    workload: &Workload,
    timeout: Duration,
) -> Result<Option<String>, String> {
    let api = api(client, namespace, workload.kind);
    let plural = lowercase_plural(workload.kind);
    for _attempt in 0..5 {
        let object = match timed(timeout, api.get(&workload.name)).await {
            Ok(object) => object,
            Err(err) if http_status(&err) == Some(404) => {
                return Ok(Some(format!("{workload} was deleted during the restore")));
            }
            Err(err) => {
                return Err(format!(
                    "could not read {workload} to scale it back: {}",
                    kubeapi::advice(&err, Call::new("get", &plural, namespace))
                ));
            }
        };
        let Some(record) = record_of(&object) else {
            return Ok(None);
        };
        let current = replicas_of(&object);
        let (replicas, note) = if current == 0 {
            (record.replicas, None)
        } else {
            (
                current,
                Some(format!(
                    "{workload} was set to {current} replicas during the restore; left as it is \
                     (it had {})",
                    record.replicas
                )),
            )
        };
        let patch = json!({
            "metadata": {
                "resourceVersion": object.metadata.resource_version,
                "labels": {LABEL_SCALED_DOWN_BY: null},
                "annotations": {ANNOTATION_SCALED_DOWN: null},
            },
            "spec": {"replicas": replicas},
        });
        match timed(
            timeout,
            api.patch(
                &workload.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            ),
        )
        .await
        {
            Ok(_) => return Ok(note),
            Err(err) if http_status(&err) == Some(409) => {}
            Err(err) => {
                return Err(format!(
                    "could not scale {workload} back to {replicas} replicas: {}; scale it by \
                     hand: `kubectl scale -n {namespace} {}/{} --replicas={replicas}`",
                    kubeapi::advice(&err, Call::new("patch", &plural, namespace)),
                    workload.kind.as_str().to_ascii_lowercase(),
                    workload.name
                ));
            }
        }
    }
    Err(format!(
        "could not scale {workload} back: it kept changing while nkvm tried (5 conflicts); check \
         its replicas and the {ANNOTATION_SCALED_DOWN} annotation by hand"
    ))
}

/// The pods (not nkvm helpers, not terminated) that mount `claim`, sorted.
pub fn users_of(pods: &[Pod], claim: &str) -> Vec<String> {
    let mut names: Vec<String> = pods
        .iter()
        .filter(|p| mounts_claim(p, claim) && !is_terminated(p) && !is_nkvm_helper(p))
        .map(|p| name_of(&p.metadata).to_owned())
        .collect();
    names.sort();
    names
}

/// Waits until no pod (nkvm helpers aside) mounts `claim`, polling every second.
pub async fn wait_unmounted(
    client: &Client,
    namespace: &str,
    claim: &str,
    timeout: Duration,
    request_timeout: Duration,
) -> Result<(), String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let started = Instant::now();
    loop {
        let list = timed(request_timeout, pods.list(&ListParams::default()))
            .await
            .map_err(|err| {
                format!(
                    "could not list pods while waiting for them to stop: {}",
                    kubeapi::advice(&err, Call::new("list", "pods", namespace))
                )
            })?;
        let users = users_of(&list.items, claim);
        if users.is_empty() {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            return Err(format!(
                "pod(s) {} still mount the claim {}s after scaling down (a HorizontalPodAutoscaler \
                 or another controller may keep them running); stop them and retry",
                users.join(", "),
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Workloads an nkvm `instance` left scaled down (label [`LABEL_SCALED_DOWN_BY`]), per namespace
/// (`None`: all), with the restore that did it.
pub async fn scaled_down_by(
    client: &Client,
    namespaces: Option<&[String]>,
    instance: &str,
    timeout: Duration,
) -> (Vec<(String, Workload, String)>, Vec<String>) {
    let selector = format!("{LABEL_SCALED_DOWN_BY}={instance}");
    let mut found = Vec::new();
    let mut warnings = Vec::new();
    for kind in WorkloadKind::ALL {
        let resource = kind.resource();
        let apis: Vec<(Option<&str>, Api<DynamicObject>)> = match namespaces {
            None => vec![(None, Api::all_with(client.clone(), &resource))],
            Some(list) => list
                .iter()
                .map(|ns| (Some(ns.as_str()), api(client, ns, *kind)))
                .collect(),
        };
        for (namespace, api) in apis {
            match timed(timeout, api.list(&ListParams::default().labels(&selector))).await {
                Ok(list) => {
                    for object in list.items {
                        let ns = object.metadata.namespace.clone().unwrap_or_default();
                        let restore = record_of(&object).map(|r| r.restore_id).unwrap_or_default();
                        found.push((
                            ns,
                            Workload {
                                kind: *kind,
                                name: object.metadata.name.clone().unwrap_or_default(),
                            },
                            restore,
                        ));
                    }
                }
                Err(err) => warnings.push(format!(
                    "could not list {} scaled down by nkvm in {}: {}",
                    resource.plural,
                    namespace.unwrap_or("all namespaces"),
                    kubeapi::advice(
                        &err,
                        Call {
                            verb: "list",
                            resource: &resource.plural,
                            namespace,
                        }
                    )
                )),
            }
        }
    }
    (found, warnings)
}

/// Scales workloads back when dropped while armed (a restore task aborted or panicking); the
/// normal paths scale them back themselves and disarm it.
pub struct ScaleGuard {
    client: Client,
    namespace: String,
    workloads: Vec<Workload>,
    timeout: Duration,
    armed: bool,
}

impl ScaleGuard {
    pub fn new(client: Client, namespace: &str, timeout: Duration) -> Self {
        Self {
            client,
            namespace: namespace.to_owned(),
            workloads: Vec::new(),
            timeout,
            armed: true,
        }
    }

    /// Adds a workload that was scaled down.
    pub fn add(&mut self, workload: Workload) {
        self.workloads.push(workload);
    }

    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for ScaleGuard {
    fn drop(&mut self) {
        if !self.armed || self.workloads.is_empty() {
            return;
        }
        let (client, namespace, workloads, timeout) = (
            self.client.clone(),
            self.namespace.clone(),
            std::mem::take(&mut self.workloads),
            self.timeout,
        );
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                for workload in workloads {
                    if let Err(err) = scale_up(&client, &namespace, &workload, timeout).await {
                        tracing::warn!(%workload, error = %err, "scaling back after an aborted restore failed (start-up recovery retries)");
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(kind: &str, name: &str) -> Owner {
        Owner::new(kind, name)
    }

    #[test]
    fn scalable_owners_make_the_plan() {
        let plan = plan(
            "shop",
            &[
                owner("StatefulSet", "db"),
                owner("Deployment", "web"),
                owner("Deployment", "web"),
                owner("ReplicaSet", "bare-rs"),
            ],
        )
        .unwrap();
        assert_eq!(
            plan.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["Deployment/web", "StatefulSet/db", "ReplicaSet/bare-rs"]
        );
        assert!(super::plan("shop", &[]).unwrap().is_empty());
    }

    #[test]
    fn unscalable_consumers_refuse_with_what_to_do() {
        let cases = [
            (owner("Pod", "debug"), "kubectl delete pod -n shop debug"),
            (owner("DaemonSet", "agent"), "nodeSelector"),
            (owner("Job", "migrate"), "wait for them to finish"),
            (owner("CronJob", "nightly"), "suspend or delete"),
            (owner("Unknown", "ReplicaSet/gone"), "stop the pods"),
            (
                owner("Rollout", "canary"),
                "not a Deployment, StatefulSet or ReplicaSet",
            ),
        ];
        for (bad, advice) in cases {
            let err = plan("shop", &[owner("Deployment", "web"), bad.clone()]).unwrap_err();
            assert!(err.contains(advice), "{bad:?}: {err}");
            assert!(err.contains(&bad.name), "{err}");
            assert!(err.contains("new PVC"), "{err}");
        }
    }

    #[test]
    fn the_record_round_trips_and_replicas_default_to_one() {
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "annotations": {
                ANNOTATION_SCALED_DOWN: "{\"restore_id\":\"r1\",\"replicas\":3}"}},
            "spec": {"replicas": 0},
        }))
        .unwrap();
        assert_eq!(
            record_of(&object),
            Some(Record {
                restore_id: "r1".to_owned(),
                replicas: 3
            })
        );
        assert_eq!(replicas_of(&object), 0);
        let unset: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {},
        }))
        .unwrap();
        assert_eq!(replicas_of(&unset), 1);
        assert_eq!(record_of(&unset), None);
    }

    #[test]
    fn users_are_running_non_helper_pods_of_the_claim() {
        let pod = |name: &str, phase: &str, helper: bool| -> Pod {
            let mut value = json!({
                "metadata": {"name": name},
                "spec": {"containers": [{"name": "c"}], "volumes": [
                    {"name": "v", "persistentVolumeClaim": {"claimName": "data"}}]},
                "status": {"phase": phase},
            });
            if helper {
                value["metadata"]["labels"] = json!({"app.kubernetes.io/managed-by": "nkvm"});
            }
            serde_json::from_value(value).unwrap()
        };
        let pods = [
            pod("web-1", "Running", false),
            pod("done", "Succeeded", false),
            pod("nkvm-restore-x", "Running", true),
            pod("pending", "Pending", false),
        ];
        assert_eq!(users_of(&pods, "data"), ["pending", "web-1"]);
        assert!(users_of(&pods, "other").is_empty());
    }
}
