//! PVC inventory: lists PVCs, pods and controllers with a few paginated list calls per namespace scope
//! and joins them into one record per PVC with its consumers and owners.
//!
//! Calls per scan: one paginated LIST per kind — PersistentVolumeClaims, Pods (full objects) and
//! ReplicaSets, Jobs, Deployments, CronJobs (metadata only, for the owner walk) — across all namespaces
//! when the scope is unrestricted, else per namespace. The number of requests does not depend on the
//! number of pods. Deployments and CronJobs are listed so that a ReplicaSet or Job pointing at a deleted
//! owner resolves to `Unknown` (see [`crate::owners`]); StatefulSets and DaemonSets end the owner walk
//! and are not listed.
//!
//! Scope ([`resolve_scope`]): the request's namespaces, else the server's allowlist, else all
//! namespaces. Scoped scans are capped at `max_namespaces`; the unrestricted scan is a constant number
//! of calls and is not capped. In a scoped scan a namespace whose lists are forbidden (HTTP 403) becomes
//! a [`NamespaceRefusal`] naming the grants to add and the scan goes on; every other failure (401, 404,
//! 5xx, timeouts, and a 403 on an all-namespaces list) fails the scan with an [`InventoryError`] that
//! names the list, the namespace, the HTTP status and what to do.

use std::{
    collections::{BTreeSet, HashMap},
    fmt::Debug,
    future::Future,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        apps::v1::{Deployment, ReplicaSet},
        batch::v1::{CronJob, Job},
        core::v1::{PersistentVolumeClaim, Pod},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api, Client,
    api::{ListParams, ObjectList, PartialObjectMeta},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::owners::{self, Owner, OwnerIndex};
use crate::quantity;

/// One PVC as operators see it. Serialises to the `nkvm inventory --output json` contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PvcRecord {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub phase: String,
    /// Capacity as Kubernetes prints it (`1Gi`), or the requested size when not yet bound; null if unknown.
    pub capacity: Option<String>,
    /// Capacity in bytes, parsed from `capacity`.
    pub capacity_bytes: Option<u64>,
    pub storage_class: Option<String>,
    pub access_modes: Vec<String>,
    pub volume_name: Option<String>,
    /// The predecessor's display semantics (`Multiple[...]`, `Unknown`, `Pod/<name>`).
    pub owner_kind: String,
    pub owner_name: String,
    /// Every distinct resolved owner, sorted.
    pub owners: Vec<Owner>,
    /// Names of pods (in the PVC's namespace) whose spec mounts the claim, sorted.
    pub consumers: Vec<String>,
    /// Nodes of the Running consumer pods, sorted, deduplicated.
    pub consumer_nodes: Vec<String>,
    /// RFC 3339 UTC time of the last successful backup, if history knows one.
    pub last_success_at: Option<String>,
    /// Operator-facing flags: `unbound`, `no-consumer`, `rwop-in-use`, `never-backed-up`, `stale-backup`.
    pub flags: Vec<String>,
}

/// A namespace the credentials could not read, kept instead of failing the whole inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceRefusal {
    pub namespace: String,
    /// HTTP status from the apiserver (403, 404, …) or null for transport failures.
    pub status: Option<u16>,
    /// What was refused and what to do (e.g. the RBAC verb and resource to grant).
    pub message: String,
}

/// The result of one inventory scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    pub pvcs: Vec<PvcRecord>,
    pub refused: Vec<NamespaceRefusal>,
    /// Number of HTTP requests the scan made (for benchmarks and diagnostics).
    pub api_requests: u64,
}

/// Flag: the PVC is not `Bound`.
pub const FLAG_UNBOUND: &str = "unbound";
/// Flag: no pod mounts the PVC.
pub const FLAG_NO_CONSUMER: &str = "no-consumer";
/// Flag: the PVC is `ReadWriteOncePod` and a pod that has not terminated mounts it (a backup helper
/// cannot mount it alongside).
pub const FLAG_RWOP_IN_USE: &str = "rwop-in-use";
/// Flag: history knows no successful backup of this PVC (by UID).
pub const FLAG_NEVER_BACKED_UP: &str = "never-backed-up";
/// Flag: the last successful backup is older than the configured age.
pub const FLAG_STALE_BACKUP: &str = "stale-backup";

/// Default page size of list calls. Larger than kubectl's 500 so that the benchmark cluster (5,000
/// PVCs and pods) is read in about 10 requests; a page of 2,000 pods is a few MB of JSON.
pub const DEFAULT_PAGE_SIZE: u32 = 2000;
/// Default cap on the number of namespaces a scoped scan may cover.
pub const DEFAULT_MAX_NAMESPACES: usize = 100;
/// Default timeout of each list request.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Namespaces scanned concurrently in a scoped scan (each runs its six lists concurrently).
const NAMESPACE_CONCURRENCY: usize = 4;

/// What to scan and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryOptions {
    /// Server-side allowlist: when set, only these namespaces may ever be scanned (an empty list allows
    /// none).
    pub allowlist: Option<Vec<String>>,
    /// Per-request filter; empty means every allowed namespace (all namespaces without an allowlist).
    pub namespaces: Vec<String>,
    /// Maximum number of namespaces a scoped scan may cover.
    pub max_namespaces: usize,
    /// Timeout of each list request (each page).
    pub request_timeout: Duration,
    /// Items per list page (`limit`); 0 is treated as 1.
    pub page_size: u32,
}

impl Default for InventoryOptions {
    fn default() -> Self {
        Self {
            allowlist: None,
            namespaces: Vec::new(),
            max_namespaces: DEFAULT_MAX_NAMESPACES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            page_size: DEFAULT_PAGE_SIZE,
        }
    }
}

/// Which namespaces a scan reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One all-namespaces list per kind.
    AllNamespaces,
    /// Per-namespace lists, sorted and deduplicated.
    Namespaces(Vec<String>),
}

/// A list call that did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The apiserver answered with an error, or could not be reached.
    #[error(transparent)]
    Api(kube::Error),
    /// No answer within the request timeout.
    #[error("no response from the apiserver within {}s", .0.as_secs_f64())]
    Timeout(Duration),
}

impl ListError {
    /// HTTP status of the apiserver's answer, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api(kube::Error::Api(status)) if status.code != 0 => Some(status.code),
            _ => None,
        }
    }
}

/// Why a scan failed. List variants name the list that failed; their message names the namespace
/// (or all namespaces), the HTTP status and what to do.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error(
        "namespace {namespace:?} is not a valid namespace name (lowercase letters, digits and '-', at most 63)"
    )]
    InvalidNamespace { namespace: String },
    #[error(
        "namespace {namespace:?} is not in the server's namespace allowlist (allowed: {allowed})"
    )]
    NamespaceNotAllowed { namespace: String, allowed: String },
    #[error(
        "{requested} namespaces requested but at most {max} may be scanned at once; narrow the namespace filter or raise the cap (--max-namespaces)"
    )]
    TooManyNamespaces { requested: usize, max: usize },
    #[error("failed to list persistentvolumeclaims {}: {advice}", in_scope(.namespace.as_deref()))]
    ListPvcs {
        namespace: Option<String>,
        status: Option<u16>,
        advice: String,
        #[source]
        source: ListError,
    },
    #[error("failed to list pods {}: {advice}", in_scope(.namespace.as_deref()))]
    ListPods {
        namespace: Option<String>,
        status: Option<u16>,
        advice: String,
        #[source]
        source: ListError,
    },
    #[error("failed to list replicasets {}: {advice}", in_scope(.namespace.as_deref()))]
    ListReplicaSets {
        namespace: Option<String>,
        status: Option<u16>,
        advice: String,
        #[source]
        source: ListError,
    },
    #[error("failed to list jobs {}: {advice}", in_scope(.namespace.as_deref()))]
    ListJobs {
        namespace: Option<String>,
        status: Option<u16>,
        advice: String,
        #[source]
        source: ListError,
    },
    #[error("failed to list deployments {}: {advice}", in_scope(.namespace.as_deref()))]
    ListDeployments {
        namespace: Option<String>,
        status: Option<u16>,
        advice: String,
        #[source]
        source: ListError,
    },
    #[error("failed to list cronjobs {}: {advice}", in_scope(.namespace.as_deref()))]
    ListCronJobs {
        namespace: Option<String>,
        status: Option<u16>,
        advice: String,
        #[source]
        source: ListError,
    },
}

impl InventoryError {
    /// HTTP status of the failed list call, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::ListPvcs { status, .. }
            | Self::ListPods { status, .. }
            | Self::ListReplicaSets { status, .. }
            | Self::ListJobs { status, .. }
            | Self::ListDeployments { status, .. }
            | Self::ListCronJobs { status, .. } => *status,
            _ => None,
        }
    }
}

fn in_scope(namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("in namespace {ns:?}"),
        None => "in all namespaces".to_owned(),
    }
}

/// The kinds a scan lists, in the order errors are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listing {
    Pvcs,
    Pods,
    ReplicaSets,
    Jobs,
    Deployments,
    CronJobs,
}

impl Listing {
    /// Resource name as RBAC rules and `kubectl create role --resource` spell it.
    fn rbac_resource(self) -> &'static str {
        match self {
            Self::Pvcs => "persistentvolumeclaims",
            Self::Pods => "pods",
            Self::ReplicaSets => "replicasets.apps",
            Self::Jobs => "jobs.batch",
            Self::Deployments => "deployments.apps",
            Self::CronJobs => "cronjobs.batch",
        }
    }

    fn api_version(self) -> &'static str {
        match self {
            Self::Pvcs | Self::Pods => "v1",
            Self::ReplicaSets | Self::Deployments => "apps/v1",
            Self::Jobs | Self::CronJobs => "batch/v1",
        }
    }

    fn error(self, namespace: Option<&str>, source: ListError) -> InventoryError {
        let status = source.status();
        let advice = advice(self, namespace, &source);
        let namespace = namespace.map(str::to_owned);
        match self {
            Self::Pvcs => InventoryError::ListPvcs {
                namespace,
                status,
                advice,
                source,
            },
            Self::Pods => InventoryError::ListPods {
                namespace,
                status,
                advice,
                source,
            },
            Self::ReplicaSets => InventoryError::ListReplicaSets {
                namespace,
                status,
                advice,
                source,
            },
            Self::Jobs => InventoryError::ListJobs {
                namespace,
                status,
                advice,
                source,
            },
            Self::Deployments => InventoryError::ListDeployments {
                namespace,
                status,
                advice,
                source,
            },
            Self::CronJobs => InventoryError::ListCronJobs {
                namespace,
                status,
                advice,
                source,
            },
        }
    }
}

/// What an operator should do about a failed list call.
fn advice(listing: Listing, namespace: Option<&str>, failure: &ListError) -> String {
    let resource = listing.rbac_resource();
    match (failure, failure.status()) {
        (ListError::Timeout(_), _) => {
            "no response in time; check that the apiserver is reachable and \
             not overloaded, then retry (or raise the request timeout)"
                .to_owned()
        }
        (_, Some(401)) => {
            "HTTP 401 Unauthorized: the credentials are expired or invalid; refresh the \
             kubeconfig's token or certificate (or the service account token)"
                .to_owned()
        }
        (_, Some(403)) => match namespace {
            Some(ns) => format!("HTTP 403 Forbidden: grant list on {resource} in namespace {ns}"),
            None => format!(
                "HTTP 403 Forbidden: grant list on {resource} cluster-wide (a ClusterRole), or pass \
                 -n NAMESPACE to scan only namespaces you may read"
            ),
        },
        (_, Some(404)) => format!(
            "HTTP 404 Not Found: the apiserver does not serve {resource} ({}); check the cluster \
             version and that the API is enabled",
            listing.api_version()
        ),
        (_, Some(410)) => {
            "HTTP 410 Gone: the list expired while paging through it; retry".to_owned()
        }
        (_, Some(429)) => {
            "HTTP 429 Too Many Requests: the apiserver is throttling; retry later".to_owned()
        }
        (_, Some(code @ 500..=599)) => format!(
            "HTTP {code}: the apiserver failed; retry, and check the apiserver's health and logs if it \
             persists"
        ),
        (_, Some(code)) => format!("unexpected HTTP {code} from the apiserver"),
        (_, None) => {
            "could not reach or understand the apiserver; check the server address, network \
             and TLS settings, then retry"
                .to_owned()
        }
    }
}

/// Decides which namespaces a scan reads: the request's namespaces (each must be in the allowlist when
/// one is set), else the allowlist, else all namespaces; scoped scans are capped at `max_namespaces`.
pub fn resolve_scope(opts: &InventoryOptions) -> Result<Scope, InventoryError> {
    let clean = |names: &[String]| -> Result<Vec<String>, InventoryError> {
        let mut set = BTreeSet::new();
        for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
            if !crate::store::names::is_dns1123_label(name) {
                return Err(InventoryError::InvalidNamespace {
                    namespace: name.to_owned(),
                });
            }
            set.insert(name.to_owned());
        }
        Ok(set.into_iter().collect())
    };
    let requested = clean(&opts.namespaces)?;
    let namespaces = match &opts.allowlist {
        None if requested.is_empty() => return Ok(Scope::AllNamespaces),
        None => requested,
        Some(allowlist) => {
            let allowed = clean(allowlist)?;
            if requested.is_empty() {
                allowed
            } else {
                if let Some(bad) = requested.iter().find(|ns| !allowed.contains(ns)) {
                    return Err(InventoryError::NamespaceNotAllowed {
                        namespace: bad.clone(),
                        allowed: allowed.join(", "),
                    });
                }
                requested
            }
        }
    };
    if namespaces.len() > opts.max_namespaces {
        return Err(InventoryError::TooManyNamespaces {
            requested: namespaces.len(),
            max: opts.max_namespaces,
        });
    }
    Ok(Scope::Namespaces(namespaces))
}

/// Everything one scope's lists returned.
#[derive(Debug, Default)]
struct Listed {
    pvcs: Vec<PersistentVolumeClaim>,
    pods: Vec<Pod>,
    replica_sets: Vec<PartialObjectMeta<ReplicaSet>>,
    jobs: Vec<PartialObjectMeta<Job>>,
    deployments: Vec<PartialObjectMeta<Deployment>>,
    cron_jobs: Vec<PartialObjectMeta<CronJob>>,
}

impl Listed {
    fn extend(&mut self, other: Listed) {
        self.pvcs.extend(other.pvcs);
        self.pods.extend(other.pods);
        self.replica_sets.extend(other.replica_sets);
        self.jobs.extend(other.jobs);
        self.deployments.extend(other.deployments);
        self.cron_jobs.extend(other.cron_jobs);
    }
}

/// Issues paginated list calls and counts them.
struct Lister<'a> {
    client: &'a Client,
    page_size: u32,
    timeout: Duration,
    requests: AtomicU64,
}

impl Lister<'_> {
    fn api<K>(&self, namespace: Option<&str>) -> Api<K>
    where
        K: kube::Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }

    /// Follows `continue` tokens until the last page; each page is one request under the timeout.
    async fn pages<T, F, Fut>(&self, mut list: F) -> Result<Vec<T>, ListError>
    where
        T: Clone,
        F: FnMut(ListParams) -> Fut,
        Fut: Future<Output = kube::Result<ObjectList<T>>>,
    {
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut params = ListParams::default().limit(self.page_size.max(1));
            if let Some(token) = &token {
                params = params.continue_token(token);
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            let page = tokio::time::timeout(self.timeout, list(params))
                .await
                .map_err(|_elapsed| ListError::Timeout(self.timeout))?
                .map_err(ListError::Api)?;
            items.extend(page.items);
            match page.metadata.continue_ {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => return Ok(items),
            }
        }
    }

    async fn full<K>(&self, namespace: Option<&str>) -> Result<Vec<K>, ListError>
    where
        K: kube::Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        let api = self.api::<K>(namespace);
        self.pages(|params| {
            let api = api.clone();
            async move { api.list(&params).await }
        })
        .await
    }

    async fn metadata<K>(
        &self,
        namespace: Option<&str>,
    ) -> Result<Vec<PartialObjectMeta<K>>, ListError>
    where
        K: kube::Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        let api = self.api::<K>(namespace);
        self.pages(|params| {
            let api = api.clone();
            async move { api.list_metadata(&params).await }
        })
        .await
    }

    /// Runs the six lists of one scope concurrently; returns what succeeded and every failure.
    async fn fetch(&self, namespace: Option<&str>) -> (Listed, Vec<(Listing, ListError)>) {
        let (pvcs, pods, replica_sets, jobs, deployments, cron_jobs) = futures::join!(
            self.full::<PersistentVolumeClaim>(namespace),
            self.full::<Pod>(namespace),
            self.metadata::<ReplicaSet>(namespace),
            self.metadata::<Job>(namespace),
            self.metadata::<Deployment>(namespace),
            self.metadata::<CronJob>(namespace),
        );
        let mut failures = Vec::new();
        let mut listed = Listed::default();
        match pvcs {
            Ok(items) => listed.pvcs = items,
            Err(err) => failures.push((Listing::Pvcs, err)),
        }
        match pods {
            Ok(items) => listed.pods = items,
            Err(err) => failures.push((Listing::Pods, err)),
        }
        match replica_sets {
            Ok(items) => listed.replica_sets = items,
            Err(err) => failures.push((Listing::ReplicaSets, err)),
        }
        match jobs {
            Ok(items) => listed.jobs = items,
            Err(err) => failures.push((Listing::Jobs, err)),
        }
        match deployments {
            Ok(items) => listed.deployments = items,
            Err(err) => failures.push((Listing::Deployments, err)),
        }
        match cron_jobs {
            Ok(items) => listed.cron_jobs = items,
            Err(err) => failures.push((Listing::CronJobs, err)),
        }
        (listed, failures)
    }
}

/// Scans the PVCs in scope and joins them with their consumer pods and owners (see the module
/// documentation for the calls made and how failures are reported). `last_success_at` is left empty:
/// see [`apply_history`].
pub async fn scan(client: &Client, opts: &InventoryOptions) -> Result<Inventory, InventoryError> {
    let scope = resolve_scope(opts)?;
    let lister = Lister {
        client,
        page_size: opts.page_size,
        timeout: opts.request_timeout,
        requests: AtomicU64::new(0),
    };
    let mut listed = Listed::default();
    let mut refused = Vec::new();
    match scope {
        Scope::AllNamespaces => {
            let (all, failures) = lister.fetch(None).await;
            if let Some((listing, err)) = failures.into_iter().next() {
                return Err(listing.error(None, err));
            }
            listed = all;
        }
        Scope::Namespaces(namespaces) => {
            let lister = &lister;
            let mut results = futures::stream::iter(namespaces)
                .map(|ns| async move {
                    let (data, failures) = lister.fetch(Some(&ns)).await;
                    (ns, data, failures)
                })
                .buffered(NAMESPACE_CONCURRENCY);
            while let Some((ns, data, failures)) = results.next().await {
                if failures.is_empty() {
                    listed.extend(data);
                    continue;
                }
                let mut forbidden = Vec::new();
                for (listing, err) in failures {
                    if err.status() == Some(403) {
                        forbidden.push(listing.rbac_resource());
                    } else {
                        return Err(listing.error(Some(&ns), err));
                    }
                }
                tracing::warn!(namespace = %ns, resources = ?forbidden, "namespace refused");
                refused.push(NamespaceRefusal {
                    message: format!(
                        "HTTP 403 Forbidden: grant list on {} in namespace {ns}",
                        forbidden.join(", ")
                    ),
                    namespace: ns,
                    status: Some(403),
                });
            }
        }
    }
    let pvcs = build_records(&listed);
    Ok(Inventory {
        pvcs,
        refused,
        api_requests: lister.requests.load(Ordering::Relaxed),
    })
}

fn meta_name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

fn meta_namespace(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or_default()
}

fn index_objects<K>(index: &mut OwnerIndex, objects: &[PartialObjectMeta<K>])
where
    K: k8s_openapi::Resource,
{
    index.mark_listed(K::API_VERSION, K::KIND);
    for object in objects {
        index.insert(
            meta_namespace(&object.metadata),
            K::API_VERSION,
            K::KIND,
            meta_name(&object.metadata),
            object.metadata.owner_references.clone().unwrap_or_default(),
        );
    }
}

/// Names of the claims a pod mounts: `persistentVolumeClaim.claimName`, and `<pod>-<volume>` for
/// generic ephemeral volumes (the PVC Kubernetes creates for them).
fn claims_of(pod: &Pod) -> impl Iterator<Item = String> + '_ {
    let pod_name = meta_name(&pod.metadata);
    pod.spec
        .iter()
        .flat_map(|spec| spec.volumes.iter().flatten())
        .filter_map(move |volume| {
            if let Some(claim) = &volume.persistent_volume_claim {
                Some(claim.claim_name.clone())
            } else if volume.ephemeral.is_some() {
                Some(format!("{pod_name}-{}", volume.name))
            } else {
                None
            }
        })
}

fn pod_phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

/// Joins listed objects into records sorted by namespace and name.
fn build_records(listed: &Listed) -> Vec<PvcRecord> {
    let mut index = OwnerIndex::new();
    index_objects(&mut index, &listed.replica_sets);
    index_objects(&mut index, &listed.jobs);
    index_objects(&mut index, &listed.deployments);
    index_objects(&mut index, &listed.cron_jobs);

    // (namespace, claim) → consumer pods with their resolved owner.
    let mut consumers: HashMap<(&str, String), Vec<(&Pod, Owner)>> = HashMap::new();
    for pod in &listed.pods {
        let namespace = meta_namespace(&pod.metadata);
        let mut claims: Vec<String> = claims_of(pod).collect();
        if claims.is_empty() {
            continue;
        }
        claims.sort();
        claims.dedup();
        let owner = index.resolve_pod(
            namespace,
            meta_name(&pod.metadata),
            pod.metadata.owner_references.as_deref().unwrap_or_default(),
        );
        for claim in claims {
            consumers
                .entry((namespace, claim))
                .or_default()
                .push((pod, owner.clone()));
        }
    }

    let mut records: Vec<PvcRecord> = listed
        .pvcs
        .iter()
        .map(|pvc| {
            let namespace = meta_namespace(&pvc.metadata);
            let name = meta_name(&pvc.metadata);
            let pods = consumers
                .get(&(namespace, name.to_owned()))
                .map(Vec::as_slice)
                .unwrap_or_default();
            record(pvc, pods)
        })
        .collect();
    records.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    records
}

fn record(pvc: &PersistentVolumeClaim, pods: &[(&Pod, Owner)]) -> PvcRecord {
    let spec = pvc.spec.as_ref();
    let status = pvc.status.as_ref();
    let phase = status
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Unknown".to_owned());
    let capacity = status
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .or_else(|| {
            spec.and_then(|s| s.resources.as_ref())
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage"))
        })
        .map(|q| q.0.clone());
    let access_modes = spec
        .and_then(|s| s.access_modes.clone())
        .unwrap_or_default();

    let mut consumer_names: Vec<String> = pods
        .iter()
        .map(|(pod, _)| meta_name(&pod.metadata).to_owned())
        .collect();
    consumer_names.sort();
    consumer_names.dedup();
    let consumer_nodes: Vec<String> = pods
        .iter()
        .filter(|(pod, _)| pod_phase(pod) == "Running")
        .filter_map(|(pod, _)| pod.spec.as_ref().and_then(|s| s.node_name.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let owners = owners::distinct_sorted(pods.iter().map(|(_, owner)| owner.clone()));
    let (owner_kind, owner_name) = owners::display(&owners);

    let mut flags = Vec::new();
    if phase != "Bound" {
        flags.push(FLAG_UNBOUND.to_owned());
    }
    if pods.is_empty() {
        flags.push(FLAG_NO_CONSUMER.to_owned());
    }
    let active_consumer = pods
        .iter()
        .any(|(pod, _)| !matches!(pod_phase(pod), "Succeeded" | "Failed"));
    if active_consumer && access_modes.iter().any(|m| m == "ReadWriteOncePod") {
        flags.push(FLAG_RWOP_IN_USE.to_owned());
    }

    PvcRecord {
        namespace: meta_namespace(&pvc.metadata).to_owned(),
        name: meta_name(&pvc.metadata).to_owned(),
        uid: pvc.metadata.uid.clone().unwrap_or_default(),
        phase,
        capacity_bytes: capacity.as_deref().and_then(quantity::parse_bytes),
        capacity,
        storage_class: spec.and_then(|s| s.storage_class_name.clone()),
        access_modes,
        volume_name: spec.and_then(|s| s.volume_name.clone()),
        owner_kind,
        owner_name,
        owners,
        consumers: consumer_names,
        consumer_nodes,
        last_success_at: None,
        flags,
    }
}

/// Fills `last_success_at` from backup history (PVC UID → time of the last successful backup) and
/// recomputes the `never-backed-up` / `stale-backup` flags: never backed up when history has no entry
/// for the UID; stale when `stale_after` is set and the last success is older than that at `now`.
pub fn apply_history(
    records: &mut [PvcRecord],
    last_success: &HashMap<String, jiff::Timestamp>,
    stale_after: Option<Duration>,
    now: jiff::Timestamp,
) {
    let stale_after =
        stale_after.map(|d| jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX));
    for record in records {
        record
            .flags
            .retain(|f| f != FLAG_NEVER_BACKED_UP && f != FLAG_STALE_BACKUP);
        match last_success.get(&record.uid) {
            None => {
                record.last_success_at = None;
                record.flags.push(FLAG_NEVER_BACKED_UP.to_owned());
            }
            Some(at) => {
                record.last_success_at = Some(at.to_string());
                if stale_after.is_some_and(|limit| now.duration_since(*at) > limit) {
                    record.flags.push(FLAG_STALE_BACKUP.to_owned());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
