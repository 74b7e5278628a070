//! The objects a restore creates, as pure functions of their inputs: the restore helper pod (the
//! backup helper's hardening, with the claim mounted read-write and only the capabilities that
//! extracting owners and modes needs) and the new PVC of a new-PVC restore or a drill, with the
//! labels start-up recovery finds them by.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Capabilities, PersistentVolumeClaim, PersistentVolumeClaimSpec, Pod, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::backup::pod::{
    self as backup_pod, HelperPodParams, HelperResources, LABEL_COMPONENT, LABEL_INSTANCE,
    LABEL_MANAGED_BY, MANAGED_BY,
};

/// Value of [`LABEL_COMPONENT`] on restore helpers.
pub const COMPONENT_RESTORE: &str = "restore-helper";
/// Prefix of restore helper pod names.
pub const NAME_PREFIX: &str = "nkvm-restore-";
/// Label on PVCs nkvm created for a restore: the restore's id.
pub const LABEL_RESTORE_ID: &str = "nkvm.io/restore-id";
/// Label on a PVC nkvm created whose restore has not succeeded yet; start-up recovery deletes
/// such PVCs of its instance (they hold partial data).
pub const LABEL_RESTORE_STATE: &str = "nkvm.io/restore-state";
/// Value of [`LABEL_RESTORE_STATE`] until the restore succeeded.
pub const STATE_INCOMPLETE: &str = "incomplete";
/// Annotation naming the backup run a PVC or helper restores.
pub const ANNOTATION_RESTORED_FROM: &str = "nkvm.io/restored-from";

/// Capabilities of the restore helper (root): set owners (`CHOWN`), write into directories
/// whatever their modes (`DAC_OVERRIDE`), set modes and times of files it does not own
/// (`FOWNER`), and keep setgid bits whose group it is not in (`FSETID`). All are allowed at the
/// `baseline` Pod Security level.
pub const RESTORE_CAPABILITIES: [&str; 4] = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"];

/// Everything the restore helper depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreHelperParams {
    pub restore_id: String,
    /// The backup run restored.
    pub run_id: String,
    pub namespace: String,
    pub pvc_name: String,
    pub pvc_uid: String,
    pub image: String,
    pub active_deadline: Duration,
    pub resources: HelperResources,
    pub instance: Option<String>,
}

/// `nkvm-restore-<restore id>`, cut to 63 characters.
pub fn helper_pod_name(restore_id: &str) -> String {
    let mut name = format!("{NAME_PREFIX}{restore_id}");
    name.truncate(63);
    while name.ends_with('-') || name.ends_with('.') {
        name.pop();
    }
    name
}

/// The label selector of the restore helpers of an instance (all instances when `None`).
pub fn helper_selector(instance: Option<&str>) -> String {
    let mut selector =
        format!("{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_COMPONENT}={COMPONENT_RESTORE}");
    if let Some(instance) = instance {
        selector.push_str(&format!(",{LABEL_INSTANCE}={instance}"));
    }
    selector
}

/// The label selector of the PVCs an instance created for restores that did not succeed.
pub fn incomplete_pvc_selector(instance: Option<&str>) -> String {
    let mut selector =
        format!("{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_RESTORE_STATE}={STATE_INCOMPLETE}");
    if let Some(instance) = instance {
        selector.push_str(&format!(",{LABEL_INSTANCE}={instance}"));
    }
    selector
}

/// The restore helper: the backup helper's pod (no service-account token, read-only root
/// filesystem, seccomp `RuntimeDefault`, no privilege escalation, resource limits, a deadline) as
/// root with [`RESTORE_CAPABILITIES`] only, and the claim mounted read-write at `/data`.
pub fn restore_helper_pod(params: &RestoreHelperParams) -> Pod {
    let mut pod = backup_pod::helper_pod(&HelperPodParams {
        run_id: params.restore_id.clone(),
        namespace: params.namespace.clone(),
        pvc_name: params.pvc_name.clone(),
        pvc_uid: params.pvc_uid.clone(),
        image: params.image.clone(),
        node: None,
        run_as: None,
        active_deadline: params.active_deadline,
        resources: params.resources.clone(),
        instance: params.instance.clone(),
    });
    pod.metadata.name = Some(helper_pod_name(&params.restore_id));
    if let Some(labels) = pod.metadata.labels.as_mut() {
        labels.insert(LABEL_COMPONENT.to_owned(), COMPONENT_RESTORE.to_owned());
    }
    if let Some(annotations) = pod.metadata.annotations.as_mut() {
        annotations.insert(ANNOTATION_RESTORED_FROM.to_owned(), params.run_id.clone());
    }
    if let Some(spec) = pod.spec.as_mut() {
        for volume in spec.volumes.iter_mut().flatten() {
            if let Some(claim) = volume.persistent_volume_claim.as_mut() {
                claim.read_only = Some(false);
            }
        }
        for container in &mut spec.containers {
            for mount in container.volume_mounts.iter_mut().flatten() {
                mount.read_only = Some(false);
            }
            if let Some(security) = container.security_context.as_mut() {
                security.capabilities = Some(Capabilities {
                    drop: Some(vec!["ALL".to_owned()]),
                    add: Some(RESTORE_CAPABILITIES.map(str::to_owned).to_vec()),
                });
            }
        }
    }
    pod
}

/// What the new PVC of a restore looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPvcParams {
    pub restore_id: String,
    pub run_id: String,
    pub namespace: String,
    pub name: String,
    /// `None`: the cluster's default storage class.
    pub storage_class: Option<String>,
    /// The requested size (a Kubernetes quantity).
    pub size: String,
    pub access_modes: Vec<String>,
    /// `NS/PVC` the backup was taken of.
    pub source: String,
    pub instance: Option<String>,
}

/// The new PVC, labelled incomplete until the restore succeeds.
pub fn new_pvc(params: &NewPvcParams) -> PersistentVolumeClaim {
    let mut labels = BTreeMap::from([
        (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        (LABEL_RESTORE_ID.to_owned(), params.restore_id.clone()),
        (LABEL_RESTORE_STATE.to_owned(), STATE_INCOMPLETE.to_owned()),
    ]);
    if let Some(instance) = &params.instance {
        labels.insert(LABEL_INSTANCE.to_owned(), instance.clone());
    }
    let access_modes = if params.access_modes.is_empty() {
        vec!["ReadWriteOnce".to_owned()]
    } else {
        params.access_modes.clone()
    };
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(params.name.clone()),
            namespace: Some(params.namespace.clone()),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([
                (ANNOTATION_RESTORED_FROM.to_owned(), params.run_id.clone()),
                (
                    "nkvm.io/restored-from-pvc".to_owned(),
                    params.source.clone(),
                ),
            ])),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(access_modes),
            storage_class_name: params.storage_class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(params.size.clone()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::pod::{CONTAINER, LABEL_RUN_ID};

    fn params() -> RestoreHelperParams {
        RestoreHelperParams {
            restore_id: "20261128t231858-3f9a1c".to_owned(),
            run_id: "20261127t000000-aaaaaa".to_owned(),
            namespace: "shop".to_owned(),
            pvc_name: "data".to_owned(),
            pvc_uid: "uid-1".to_owned(),
            image: "nkvm.local/helper:1".to_owned(),
            active_deadline: Duration::from_hours(6),
            resources: HelperResources::default(),
            instance: Some("inst".to_owned()),
        }
    }

    #[test]
    fn the_helper_is_hardened_and_writes_with_only_the_needed_capabilities() {
        let pod = restore_helper_pod(&params());
        assert_eq!(
            pod.metadata.name.as_deref(),
            Some("nkvm-restore-20261128t231858-3f9a1c")
        );
        let labels = pod.metadata.labels.clone().unwrap();
        assert_eq!(labels[LABEL_MANAGED_BY], "nkvm");
        assert_eq!(labels[LABEL_COMPONENT], "restore-helper");
        assert_eq!(labels[LABEL_RUN_ID], "20261128t231858-3f9a1c");
        assert_eq!(labels[LABEL_INSTANCE], "inst");
        assert_eq!(
            pod.metadata.annotations.clone().unwrap()[ANNOTATION_RESTORED_FROM],
            "20261127t000000-aaaaaa"
        );
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.automount_service_account_token, Some(false));
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert!(spec.active_deadline_seconds.is_some());
        let claim = spec.volumes.as_ref().unwrap()[0]
            .persistent_volume_claim
            .as_ref()
            .unwrap();
        assert_eq!(claim.claim_name, "data");
        assert_eq!(claim.read_only, Some(false));
        let container = &spec.containers[0];
        assert_eq!(container.name, CONTAINER);
        let mount = &container.volume_mounts.as_ref().unwrap()[0];
        assert_eq!(
            (mount.mount_path.as_str(), mount.read_only),
            ("/data", Some(false))
        );
        let ctx = container.security_context.as_ref().unwrap();
        assert_eq!(ctx.run_as_user, Some(0));
        assert_eq!(ctx.privileged, Some(false));
        assert_eq!(ctx.allow_privilege_escalation, Some(false));
        assert_eq!(ctx.read_only_root_filesystem, Some(true));
        let caps = ctx.capabilities.as_ref().unwrap();
        assert_eq!(caps.drop.clone().unwrap(), ["ALL"]);
        assert_eq!(
            caps.add.clone().unwrap(),
            ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"]
        );
        assert_eq!(spec.node_name, None);
    }

    #[test]
    fn selectors_and_names() {
        assert_eq!(
            helper_selector(Some("i")),
            "app.kubernetes.io/managed-by=nkvm,app.kubernetes.io/component=restore-helper,\
             nkvm.io/instance=i"
        );
        assert_eq!(
            incomplete_pvc_selector(Some("i")),
            "app.kubernetes.io/managed-by=nkvm,nkvm.io/restore-state=incomplete,nkvm.io/instance=i"
        );
        assert!(helper_pod_name(&"x".repeat(80)).len() <= 63);
    }

    #[test]
    fn the_new_pvc_follows_the_manifest_and_is_marked_incomplete() {
        let pvc = new_pvc(&NewPvcParams {
            restore_id: "r".to_owned(),
            run_id: "b".to_owned(),
            namespace: "shop".to_owned(),
            name: "data-copy".to_owned(),
            storage_class: Some("fast".to_owned()),
            size: "2Gi".to_owned(),
            access_modes: vec!["ReadWriteOncePod".to_owned()],
            source: "shop/data".to_owned(),
            instance: Some("i".to_owned()),
        });
        let value = serde_json::to_value(&pvc).unwrap();
        assert_eq!(value["metadata"]["name"], "data-copy");
        assert_eq!(
            value["metadata"]["labels"][LABEL_RESTORE_STATE],
            "incomplete"
        );
        assert_eq!(value["metadata"]["labels"][LABEL_RESTORE_ID], "r");
        assert_eq!(value["metadata"]["labels"][LABEL_INSTANCE], "i");
        assert_eq!(
            value["metadata"]["annotations"][ANNOTATION_RESTORED_FROM],
            "b"
        );
        assert_eq!(value["spec"]["storageClassName"], "fast");
        assert_eq!(value["spec"]["accessModes"][0], "ReadWriteOncePod");
        assert_eq!(value["spec"]["resources"]["requests"]["storage"], "2Gi");
        let default_modes = new_pvc(&NewPvcParams {
            access_modes: vec![],
            storage_class: None,
            ..NewPvcParams {
                restore_id: "r".to_owned(),
                run_id: "b".to_owned(),
                namespace: "shop".to_owned(),
                name: "x".to_owned(),
                storage_class: None,
                size: "1Gi".to_owned(),
                access_modes: vec![],
                source: "shop/data".to_owned(),
                instance: None,
            }
        });
        let spec = default_modes.spec.unwrap();
        assert_eq!(spec.access_modes.unwrap(), ["ReadWriteOnce"]);
        assert_eq!(spec.storage_class_name, None);
    }
}
