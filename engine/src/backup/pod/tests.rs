//! Tests of `pod`.

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
fn root_helper_keeps_only_dac_override() {
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
    // Not DAC_READ_SEARCH: it enables open_by_handle_at, the "shocker" escape.
    assert_eq!(caps.add.clone().unwrap(), ["DAC_OVERRIDE"]);
    // DAC_OVERRIDE could write: nothing the helper sees may be writable.
    let mount = &container(&pod).volume_mounts.as_ref().unwrap()[0];
    assert_eq!(mount.read_only, Some(true));
    let claim = spec.volumes.as_ref().unwrap()[0]
        .persistent_volume_claim
        .as_ref()
        .unwrap();
    assert_eq!(claim.read_only, Some(true));
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
        ["DAC_OVERRIDE"]
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

#[test]
fn cpu_limits_round_up_to_whole_cpus() {
    let with = |limit: &str| HelperResources {
        cpu_limit: limit.to_owned(),
        ..HelperResources::default()
    };
    assert_eq!(with("1").cpu_limit_cores(), Some(1));
    assert_eq!(with("2").cpu_limit_cores(), Some(2));
    assert_eq!(with("1.5").cpu_limit_cores(), Some(2));
    assert_eq!(with("500m").cpu_limit_cores(), Some(1));
    assert_eq!(with("2500m").cpu_limit_cores(), Some(3));
    for none in ["", "0", "x", "-1", "0m"] {
        assert_eq!(with(none).cpu_limit_cores(), None, "{none}");
    }
}

#[test]
fn operator_cpu_limits_are_cpu_quantities_between_the_request_and_64_cpus() {
    for ok in ["1", "2", "1.5", "100m", "2500m", " 4 ", "64"] {
        assert_eq!(
            HelperResources::check_cpu_limit(ok).as_deref(),
            Ok(ok.trim()),
            "{ok}"
        );
    }
    for (bad, says) in [
        ("99m", "between 100m and 64 CPUs"),
        ("0m", "between"),
        ("65", "between"),
        ("1e3", "between"),
        ("", "not a CPU quantity"),
        ("1Gi", "not a CPU quantity"),
        ("m", "not a CPU quantity"),
        ("-1m", "not a CPU quantity"),
        ("NaN", "not a CPU quantity"),
    ] {
        let error = HelperResources::check_cpu_limit(bad).expect_err(bad);
        assert!(error.contains(says), "{bad}: {error}");
    }
}

#[test]
fn operator_memory_limits_are_byte_quantities_between_the_request_and_64gi() {
    for ok in ["256Mi", "1Gi", "64Mi", "512M", "64Gi", "1073741824"] {
        assert_eq!(
            HelperResources::check_memory_limit(ok).as_deref(),
            Ok(ok),
            "{ok}"
        );
    }
    for (bad, says) in [
        ("63Mi", "between 64Mi and 64Gi"),
        ("65Gi", "between"),
        ("1", "between"),
        ("256mi", "not a memory quantity"),
        ("300m", "not a memory quantity"),
        ("", "not a memory quantity"),
        ("lots", "not a memory quantity"),
    ] {
        let error = HelperResources::check_memory_limit(bad).expect_err(bad);
        assert!(error.contains(says), "{bad}: {error}");
    }
}
