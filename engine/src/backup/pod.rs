//! The backup helper pod as a pure function of its inputs: name, labels, security settings, node
//! pinning and the user/group to run as, derived from the consumer pod.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec,
    ResourceRequirements, SeccompProfile, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Label on every pod nkvm creates.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY: &str = "nkvm";
/// Label naming the helper's role.
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// Value of [`LABEL_COMPONENT`] on backup helpers.
pub const COMPONENT_BACKUP: &str = "backup-helper";
/// Label holding the run id.
pub const LABEL_RUN_ID: &str = "nkvm.io/run-id";
/// Label holding the UID of the PVC being backed up.
pub const LABEL_PVC_UID: &str = "nkvm.io/pvc-uid";
/// Label naming the nkvm instance (data directory) that created the helper, so that start-up recovery
/// of one instance never deletes the helpers of another.
pub const LABEL_INSTANCE: &str = "nkvm.io/instance";
/// Prefix of helper pod names.
pub const NAME_PREFIX: &str = "nkvm-backup-";
/// Name of the helper container (exec target).
pub const CONTAINER: &str = "helper";
/// Where the claim is mounted (read-only) in the helper.
pub const MOUNT_PATH: &str = "/data";
const VOLUME: &str = "data";
/// The one capability of a root helper: read every file and directory whatever its mode. It would
/// also let root write any file, but the claim is mounted read-only and so is the root filesystem.
/// Not `DAC_READ_SEARCH`: that one also enables `open_by_handle_at` (and container runtimes'
/// `RuntimeDefault` seccomp profiles let the call through when the capability is there), with
/// which a process opens any file of the node's filesystem by a forged handle — the "shocker"
/// container escape (`engine/tests/helper_escape_cluster.rs` proves it on the test cluster). The
/// kernel grants `open_by_handle_at` only with `DAC_READ_SEARCH` (or `SYS_ADMIN`), never for
/// `DAC_OVERRIDE`.
pub const CAP_DAC_OVERRIDE: &str = "DAC_OVERRIDE";

/// The user and groups of a consumer pod, when its security context names them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunAs {
    pub uid: Option<i64>,
    pub gid: Option<i64>,
    pub fs_group: Option<i64>,
}

impl RunAs {
    fn is_empty(&self) -> bool {
        self.uid.is_none() && self.gid.is_none() && self.fs_group.is_none()
    }
}

/// The user/group/fsGroup of a pod: the first container's `runAsUser`/`runAsGroup` over the pod's,
/// and the pod's `fsGroup`. `None` when none is set.
pub fn run_as_of(pod: &Pod) -> Option<RunAs> {
    let spec = pod.spec.as_ref()?;
    let pod_ctx = spec.security_context.as_ref();
    let container_ctx = spec
        .containers
        .first()
        .and_then(|c| c.security_context.as_ref());
    let run_as = RunAs {
        uid: container_ctx
            .and_then(|c| c.run_as_user)
            .or_else(|| pod_ctx.and_then(|p| p.run_as_user)),
        gid: container_ctx
            .and_then(|c| c.run_as_group)
            .or_else(|| pod_ctx.and_then(|p| p.run_as_group)),
        fs_group: pod_ctx.and_then(|p| p.fs_group),
    };
    (!run_as.is_empty()).then_some(run_as)
}

/// Requests and limits of the helper container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperResources {
    pub cpu_request: String,
    pub cpu_limit: String,
    pub memory_request: String,
    pub memory_limit: String,
}

impl Default for HelperResources {
    fn default() -> Self {
        Self {
            cpu_request: "100m".to_owned(),
            cpu_limit: "1".to_owned(),
            memory_request: "64Mi".to_owned(),
            memory_limit: "256Mi".to_owned(),
        }
    }
}

/// Largest helper CPU limit nkvm accepts, in millicores (64 CPUs).
const MAX_CPU_LIMIT_MILLIS: u64 = 64_000;
/// Largest helper memory limit nkvm accepts (64 GiB).
const MAX_MEMORY_LIMIT_BYTES: u64 = 64 << 30;

impl HelperResources {
    /// The CPU limit in whole CPUs, rounded up (at least 1); `None` when there is none or it does
    /// not parse (`"1"`, `"1.5"`, `"500m"`).
    #[must_use]
    pub fn cpu_limit_cores(&self) -> Option<usize> {
        let millis = cpu_millis(&self.cpu_limit).filter(|&m| m > 0)?;
        usize::try_from(millis.div_ceil(1000))
            .ok()
            .map(|c| c.max(1))
    }

    /// Checks a helper CPU limit given by the operator (`2`, `1.5`, `500m`): a CPU quantity no
    /// smaller than the helper's request and at most 64 CPUs. Returns it trimmed, or why not.
    pub fn check_cpu_limit(text: &str) -> Result<String, String> {
        let text = text.trim();
        let request = cpu_millis(&Self::default().cpu_request).unwrap_or(0);
        match cpu_millis(text) {
            Some(m) if (request..=MAX_CPU_LIMIT_MILLIS).contains(&m) => Ok(text.to_owned()),
            Some(_) => Err(format!(
                "a helper CPU limit must be between {} and 64 CPUs, got {text:?}",
                Self::default().cpu_request
            )),
            None => Err(format!(
                "{text:?} is not a CPU quantity: give CPUs (`2`, `1.5`) or millicores (`500m`)"
            )),
        }
    }

    /// Checks a helper memory limit given by the operator (`256Mi`, `1Gi`): a quantity no smaller
    /// than the helper's request and at most 64 GiB. Returns it trimmed, or why not.
    pub fn check_memory_limit(text: &str) -> Result<String, String> {
        let text = text.trim();
        let request = crate::quantity::parse_bytes(&Self::default().memory_request).unwrap_or(0);
        // `m` (thousandths of a byte) parses but is no sane memory limit.
        let bytes = (!text.ends_with('m'))
            .then(|| crate::quantity::parse_bytes(text))
            .flatten();
        match bytes {
            Some(b) if (request..=MAX_MEMORY_LIMIT_BYTES).contains(&b) => Ok(text.to_owned()),
            Some(_) => Err(format!(
                "a helper memory limit must be between {} and 64Gi, got {text:?}",
                Self::default().memory_request
            )),
            None => Err(format!(
                "{text:?} is not a memory quantity: give bytes with a suffix (`256Mi`, `1Gi`, `512M`)"
            )),
        }
    }
}

/// A CPU quantity in millicores: `"500m"`, or CPUs (`"1"`, `"1.5"`, rounded up); `None` unless it
/// parses.
fn cpu_millis(text: &str) -> Option<u64> {
    let text = text.trim();
    match text.strip_suffix('m') {
        Some(m) if !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()) => m.parse().ok(),
        Some(_) => None,
        None => cores_to_millis(text),
    }
}

/// `"1.5"` CPUs as 1500 millicores (rounded up); `None` unless a positive, finite, sane number.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "checked to be positive and at most 1e6 first"
)]
fn cores_to_millis(text: &str) -> Option<u64> {
    let cores: f64 = text.parse().ok()?;
    (cores.is_finite() && cores > 0.0 && cores <= 1e6).then(|| (cores * 1000.0).ceil() as u64)
}

/// Everything the helper pod depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperPodParams {
    pub run_id: String,
    pub namespace: String,
    pub pvc_name: String,
    pub pvc_uid: String,
    pub image: String,
    /// Pin to this node (the node of a Running consumer of a ReadWriteOnce claim).
    pub node: Option<String>,
    /// Run as the consumer's user/groups; `None`: root with only [`CAP_DAC_OVERRIDE`].
    pub run_as: Option<RunAs>,
    /// `activeDeadlineSeconds`: the pod stops by itself after this long (safety net).
    pub active_deadline: Duration,
    pub resources: HelperResources,
    /// Value of [`LABEL_INSTANCE`], when set.
    pub instance: Option<String>,
}

/// `nkvm-backup-<run_id>`, cut to the 63 characters a pod name (and label value) may have.
pub fn helper_pod_name(run_id: &str) -> String {
    let mut name = format!("{NAME_PREFIX}{run_id}");
    name.truncate(63);
    while name.ends_with('-') || name.ends_with('.') {
        name.pop();
    }
    name
}

/// The labels of a helper pod.
pub fn helper_labels(params: &HelperPodParams) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        (LABEL_COMPONENT.to_owned(), COMPONENT_BACKUP.to_owned()),
        (LABEL_RUN_ID.to_owned(), params.run_id.clone()),
        (LABEL_PVC_UID.to_owned(), params.pvc_uid.clone()),
    ]);
    if let Some(instance) = &params.instance {
        labels.insert(LABEL_INSTANCE.to_owned(), instance.clone());
    }
    labels
}

/// The label selector of the backup helpers of an instance (all instances when `None`).
pub fn helper_selector(instance: Option<&str>) -> String {
    let mut selector =
        format!("{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_COMPONENT}={COMPONENT_BACKUP}");
    if let Some(instance) = instance {
        selector.push_str(&format!(",{LABEL_INSTANCE}={instance}"));
    }
    selector
}

/// Builds the helper pod: an idle `sleep` that the backup execs `tar` into, with the claim mounted
/// read-only at [`MOUNT_PATH`].
pub fn helper_pod(params: &HelperPodParams) -> Pod {
    let deadline = i64::try_from(params.active_deadline.as_secs())
        .unwrap_or(i64::MAX)
        .max(1);
    let resources = &params.resources;
    let quantities = |cpu: &str, memory: &str| {
        BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(memory.to_owned())),
        ])
    };

    let consumer = params.run_as.filter(|r| r.uid != Some(0));
    let (container_security, pod_security) = match consumer {
        Some(run_as) => (
            SecurityContext {
                run_as_user: run_as.uid,
                run_as_group: run_as.gid,
                run_as_non_root: run_as.uid.map(|_| true),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".to_owned()]),
                    add: None,
                }),
                ..hardened()
            },
            PodSecurityContext {
                // Group membership without fsGroup: an fsGroup would make the kubelet change the
                // ownership of the volume's files, and a backup never modifies the volume.
                supplemental_groups: run_as.fs_group.map(|g| vec![g]),
                seccomp_profile: Some(runtime_default()),
                ..PodSecurityContext::default()
            },
        ),
        None => (
            SecurityContext {
                run_as_user: Some(0),
                run_as_group: Some(0),
                run_as_non_root: Some(false),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".to_owned()]),
                    add: Some(vec![CAP_DAC_OVERRIDE.to_owned()]),
                }),
                ..hardened()
            },
            PodSecurityContext {
                seccomp_profile: Some(runtime_default()),
                ..PodSecurityContext::default()
            },
        ),
    };

    Pod {
        metadata: ObjectMeta {
            name: Some(helper_pod_name(&params.run_id)),
            namespace: Some(params.namespace.clone()),
            labels: Some(helper_labels(params)),
            annotations: Some(BTreeMap::from([(
                "nkvm.io/pvc".to_owned(),
                params.pvc_name.clone(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Never".to_owned()),
            active_deadline_seconds: Some(deadline),
            termination_grace_period_seconds: Some(1),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            node_name: params.node.clone(),
            security_context: Some(pod_security),
            containers: vec![Container {
                name: CONTAINER.to_owned(),
                image: Some(params.image.clone()),
                image_pull_policy: Some(pull_policy(&params.image).to_owned()),
                command: Some(vec!["sleep".to_owned(), deadline.to_string()]),
                resources: Some(ResourceRequirements {
                    requests: Some(quantities(
                        &resources.cpu_request,
                        &resources.memory_request,
                    )),
                    limits: Some(quantities(&resources.cpu_limit, &resources.memory_limit)),
                    ..ResourceRequirements::default()
                }),
                security_context: Some(container_security),
                volume_mounts: Some(vec![VolumeMount {
                    name: VOLUME.to_owned(),
                    mount_path: MOUNT_PATH.to_owned(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                }]),
                ..Container::default()
            }],
            volumes: Some(vec![Volume {
                name: VOLUME.to_owned(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: params.pvc_name.clone(),
                    read_only: Some(true),
                }),
                ..Volume::default()
            }]),
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// `Never` for images of the local `nkvm.local/` registry (never pullable), else `IfNotPresent`.
fn pull_policy(image: &str) -> &'static str {
    if image.starts_with("nkvm.local/") {
        "Never"
    } else {
        "IfNotPresent"
    }
}

fn hardened() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        seccomp_profile: Some(runtime_default()),
        ..SecurityContext::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        localhost_profile: None,
    }
}

#[cfg(test)]
mod tests;
