//! Helpers of the CLI's real-cluster tests: the test cluster's kubeconfig and a client, fixtures
//! from JSON, a namespace deleted when the test ends (also on failure), and the `nkvm` binary run
//! against the test cluster.
#![allow(dead_code, reason = "each test crate uses some of the shared helpers")]

use std::process::Command;

use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client, Config,
    api::DeleteParams,
    config::{KubeConfigOptions, Kubeconfig},
};
use serde_json::Value;

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

pub fn nkvm(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nkvm"))
        .args(["--kubeconfig", &kubeconfig_path()])
        .args(args)
        .env_remove("NKVM_IN_CLUSTER")
        .env_remove("NKVM_CONTEXT")
        .output()
        .expect("run nkvm")
}
