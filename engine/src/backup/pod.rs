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
/// Linux capability that lets root read every file without being able to write any.
pub const CAP_DAC_READ_SEARCH: &str = "DAC_READ_SEARCH";

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
    /// Run as the consumer's user/groups; `None`: root with only `DAC_READ_SEARCH`.
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
                    add: Some(vec![CAP_DAC_READ_SEARCH.to_owned()]),
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
mod tests {
    use super::*;
    use serde_json::json;

    fn params() -> HelperPodParams {
        HelperPodParams {
            run_id: "20261128t231858-3f9a1c".to_owned(),
            namespace: "shop".to_owned(),
            pvc_name: "data".to_owned(),
            pvc_uid: "0b5c-uid".to_owned(),
            image: "registry.example/helper@sha256:abc".to_owned(),
            node: None,
            run_as: None,
            active_deadline: Duration::from_hours(6),
            resources: HelperResources::default(),
            instance: Some("i-1".to_owned()),
        }
    }

    fn container(pod: &Pod) -> &Container {
        &pod.spec.as_ref().unwrap().containers[0]
    }

    #[test]
    fn names_are_unique_per_run_and_valid() {
        assert_eq!(
            helper_pod_name("20261128t231858-3f9a1c"),
            "nkvm-backup-20261128t231858-3f9a1c"
        );
        let long = helper_pod_name(&format!("{}-x", "a".repeat(49)));
        assert_eq!(long.len(), 63);
        let cut = helper_pod_name(&format!("{}-bcd", "a".repeat(50)));
        assert!(cut.len() <= 63 && !cut.ends_with('-'), "{cut}");
    }

    #[test]
    fn metadata_labels_and_lifecycle() {
        let pod = helper_pod(&params());
        assert_eq!(
            pod.metadata.name.as_deref(),
            Some("nkvm-backup-20261128t231858-3f9a1c")
        );
        assert_eq!(pod.metadata.namespace.as_deref(), Some("shop"));
        let labels = pod.metadata.labels.clone().unwrap();
        assert_eq!(labels[LABEL_MANAGED_BY], "nkvm");
        assert_eq!(labels[LABEL_COMPONENT], "backup-helper");
        assert_eq!(labels[LABEL_RUN_ID], "20261128t231858-3f9a1c");
        assert_eq!(labels[LABEL_PVC_UID], "0b5c-uid");
        assert_eq!(labels[LABEL_INSTANCE], "i-1");
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(spec.active_deadline_seconds, Some(21600));
        assert_eq!(spec.termination_grace_period_seconds, Some(1));
        assert_eq!(spec.automount_service_account_token, Some(false));
        assert_eq!(spec.enable_service_links, Some(false));
        assert_eq!(spec.node_name, None);
        let c = container(&pod);
        assert_eq!(c.name, CONTAINER);
        assert_eq!(
            c.image.as_deref(),
            Some("registry.example/helper@sha256:abc")
        );
        assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
        assert_eq!(
            c.command.clone().unwrap(),
            ["sleep".to_owned(), "21600".to_owned()]
        );
    }

    #[test]
    fn resources_are_bounded() {
        let pod = helper_pod(&params());
        let value = serde_json::to_value(&container(&pod).resources).unwrap();
        assert_eq!(
            value,
            json!({"requests": {"cpu": "100m", "memory": "64Mi"},
                   "limits": {"cpu": "1", "memory": "256Mi"}})
        );
    }

    #[test]
    fn claim_is_mounted_read_only_twice_over() {
        let pod = helper_pod(&params());
        let spec = pod.spec.as_ref().unwrap();
        let volume = &spec.volumes.as_ref().unwrap()[0];
        let claim = volume.persistent_volume_claim.as_ref().unwrap();
        assert_eq!(claim.claim_name, "data");
        assert_eq!(claim.read_only, Some(true));
        let mount = &container(&pod).volume_mounts.as_ref().unwrap()[0];
        assert_eq!(mount.name, volume.name);
        assert_eq!(mount.mount_path, "/data");
        assert_eq!(mount.read_only, Some(true));
    }

    #[test]
    fn root_helper_keeps_only_dac_read_search() {
        let pod = helper_pod(&params());
        let spec = pod.spec.as_ref().unwrap();
        let pod_ctx = spec.security_context.as_ref().unwrap();
        assert_eq!(
            pod_ctx.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
        assert_eq!(pod_ctx.supplemental_groups, None);
        assert_eq!(pod_ctx.fs_group, None);
        let ctx = container(&pod).security_context.as_ref().unwrap();
        assert_eq!(ctx.run_as_user, Some(0));
        assert_eq!(ctx.run_as_non_root, Some(false));
        assert_eq!(ctx.allow_privilege_escalation, Some(false));
        assert_eq!(ctx.privileged, Some(false));
        assert_eq!(ctx.read_only_root_filesystem, Some(true));
        assert_eq!(
            ctx.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
        let caps = ctx.capabilities.as_ref().unwrap();
        assert_eq!(caps.drop.clone().unwrap(), ["ALL"]);
        assert_eq!(caps.add.clone().unwrap(), ["DAC_READ_SEARCH"]);
    }

    #[test]
    fn consumer_user_runs_non_root_without_capabilities() {
        let pod = helper_pod(&HelperPodParams {
            run_as: Some(RunAs {
                uid: Some(1000),
                gid: Some(3000),
                fs_group: Some(2000),
            }),
            ..params()
        });
        let ctx = container(&pod).security_context.as_ref().unwrap();
        assert_eq!(ctx.run_as_user, Some(1000));
        assert_eq!(ctx.run_as_group, Some(3000));
        assert_eq!(ctx.run_as_non_root, Some(true));
        assert_eq!(ctx.read_only_root_filesystem, Some(true));
        assert_eq!(ctx.allow_privilege_escalation, Some(false));
        let caps = ctx.capabilities.as_ref().unwrap();
        assert_eq!(caps.drop.clone().unwrap(), ["ALL"]);
        assert_eq!(caps.add, None);
        let pod_ctx = pod
            .spec
            .as_ref()
            .unwrap()
            .security_context
            .as_ref()
            .unwrap();
        assert_eq!(pod_ctx.supplemental_groups, Some(vec![2000]));
        assert_eq!(pod_ctx.fs_group, None, "never chown the volume");
    }

    #[test]
    fn consumer_group_only_does_not_claim_non_root() {
        let pod = helper_pod(&HelperPodParams {
            run_as: Some(RunAs {
                uid: None,
                gid: None,
                fs_group: Some(2000),
            }),
            ..params()
        });
        let ctx = container(&pod).security_context.as_ref().unwrap();
        assert_eq!(ctx.run_as_user, None);
        assert_eq!(ctx.run_as_non_root, None);
        assert_eq!(ctx.capabilities.as_ref().unwrap().add, None);
    }

    #[test]
    fn consumer_running_as_root_gets_the_root_helper() {
        let pod = helper_pod(&HelperPodParams {
            run_as: Some(RunAs {
                uid: Some(0),
                gid: Some(0),
                fs_group: None,
            }),
            ..params()
        });
        let ctx = container(&pod).security_context.as_ref().unwrap();
        assert_eq!(ctx.run_as_user, Some(0));
        assert_eq!(
            ctx.capabilities.as_ref().unwrap().add.clone().unwrap(),
            ["DAC_READ_SEARCH"]
        );
    }

    #[test]
    fn node_pinning() {
        let pod = helper_pod(&HelperPodParams {
            node: Some("node-7".to_owned()),
            ..params()
        });
        assert_eq!(
            pod.spec.as_ref().unwrap().node_name.as_deref(),
            Some("node-7")
        );
    }

    #[test]
    fn local_images_are_never_pulled() {
        let pod = helper_pod(&HelperPodParams {
            image: "nkvm.local/helper:1".to_owned(),
            ..params()
        });
        assert_eq!(container(&pod).image_pull_policy.as_deref(), Some("Never"));
    }

    #[allow(
        clippy::needless_pass_by_value,
        reason = "test builders take inline json! values"
    )]
    fn consumer(value: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": value,
        }))
        .unwrap()
    }

    #[test]
    fn run_as_prefers_the_container_over_the_pod() {
        let pod = consumer(json!({
            "securityContext": {"runAsUser": 1, "runAsGroup": 2, "fsGroup": 3},
            "containers": [
                {"name": "a", "securityContext": {"runAsUser": 10}},
                {"name": "b", "securityContext": {"runAsUser": 20, "runAsGroup": 21}},
            ],
        }));
        assert_eq!(
            run_as_of(&pod),
            Some(RunAs {
                uid: Some(10),
                gid: Some(2),
                fs_group: Some(3)
            })
        );
    }

    #[test]
    fn run_as_of_a_pod_without_settings_is_none() {
        let pod = consumer(json!({"containers": [{"name": "a"}]}));
        assert_eq!(run_as_of(&pod), None);
        let pod = consumer(json!({
            "securityContext": {"fsGroup": 5},
            "containers": [{"name": "a"}],
        }));
        assert_eq!(
            run_as_of(&pod),
            Some(RunAs {
                uid: None,
                gid: None,
                fs_group: Some(5)
            })
        );
    }

    #[test]
    fn selector_scopes_to_the_instance() {
        assert_eq!(
            helper_selector(None),
            "app.kubernetes.io/managed-by=nkvm,app.kubernetes.io/component=backup-helper"
        );
        assert_eq!(
            helper_selector(Some("abc")),
            "app.kubernetes.io/managed-by=nkvm,app.kubernetes.io/component=backup-helper,\
             nkvm.io/instance=abc"
        );
    }
}
