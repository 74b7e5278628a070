//! Helpers shared by the binary's real-cluster tests: the test cluster's kubeconfig
//! (`NKVM_TEST_KUBECONFIG`, never another), a client, JSON fixtures, namespaces deleted when
//! their guard drops (also when an assertion failed), claims, and the `nkvm` binary run against the
//! test cluster without inheriting nkvm's settings from the environment ([`nkvm_command`]);
//! [`process`]: child processes killed when dropped, free ports.
#![allow(
    dead_code,
    reason = "each test binary uses a part of the shared helpers"
)]

pub mod process;

use std::process::Command;

use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim};
use kube::{
    Api, Client, Config,
    api::{DeleteParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use serde_json::{Value, json};

pub fn kubeconfig_path() -> String {
    std::env::var("NKVM_TEST_KUBECONFIG").expect(
        "NKVM_TEST_KUBECONFIG must point at the test cluster's kubeconfig \
         (scripts/test-all.sh sets it after end2end/cluster/up)",
    )
}

pub async fn client() -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig_path()).expect("read kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    Client::try_from(config).expect("client")
}

pub fn from_json<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("fixture json")
}

/// Deletes the namespace when dropped, also when an assertion failed. It builds its own client on its
/// own runtime: the test's client is bound to the test runtime, which is blocked while dropping.
pub struct NamespaceGuard(pub String);

impl Drop for NamespaceGuard {
    fn drop(&mut self) {
        let name = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(async {
                let _ = Api::<Namespace>::all(client().await)
                    .delete(&name, &DeleteParams::background())
                    .await;
            });
        })
        .join();
    }
}

/// A fresh namespace `<prefix>-<millis>`, deleted when the guard drops.
pub async fn fixture_namespace(client: &Client, prefix: &str) -> (String, NamespaceGuard) {
    let ns = format!(
        "{prefix}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis()
    );
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &from_json(json!({"metadata": {"name": ns}})),
        )
        .await
        .expect("create namespace");
    let guard = NamespaceGuard(ns.clone());
    (ns, guard)
}

pub async fn create_claim(client: &Client, ns: &str, name: &str, mode: &str) {
    create_claim_of(client, ns, name, mode, "1Gi").await;
}

/// A claim of `size` (a Kubernetes quantity).
pub async fn create_claim_of(client: &Client, ns: &str, name: &str, mode: &str, size: &str) {
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .create(
            &PostParams::default(),
            &from_json(json!({"metadata": {"name": name}, "spec": {
                "accessModes": [mode], "resources": {"requests": {"storage": size}}}})),
        )
        .await
        .expect("create pvc");
}

/// Settings of nkvm a test must not inherit from the environment it runs in.
const NKVM_SETTINGS: &[&str] = &[
    "NKVM_IN_CLUSTER",
    "NKVM_CONTEXT",
    "NKVM_DATA_DIR",
    "NKVM_HELPER_IMAGE",
    "NKVM_NAMESPACE_ALLOWLIST",
];

/// The `nkvm` binary on the test cluster (`--kubeconfig`), none of nkvm's settings inherited from
/// this process's environment; add the arguments.
pub fn nkvm_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_nkvm"));
    command.args(["--kubeconfig", &kubeconfig_path()]);
    for setting in NKVM_SETTINGS {
        command.env_remove(setting);
    }
    command
}

/// Runs `nkvm` on the test cluster with `args`.
pub fn nkvm(args: &[&str]) -> std::process::Output {
    nkvm_command().args(args).output().expect("run nkvm")
}
