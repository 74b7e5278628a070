//! Helpers shared by the engine's real-cluster and real-server integration tests (and the server's,
//! which include this file): the cluster's kubeconfig and kubectl, polling, throwaway namespaces.
#![allow(
    dead_code,
    reason = "each test binary uses a part of the shared helpers"
)]

pub mod cluster;
pub mod relay;
pub mod restores;
pub mod servers;

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nkvm_engine::connection::ConnectionSource;

/// The test cluster's kubeconfig from `NKVM_TEST_KUBECONFIG`; panics with what to do when unset (the
/// real-cluster tests never skip).
pub fn test_cluster_source() -> ConnectionSource {
    let path = std::env::var_os("NKVM_TEST_KUBECONFIG").unwrap_or_else(|| {
        panic!(
            "NKVM_TEST_KUBECONFIG is not set: this test needs the test cluster. Start it and run the \
             repository's test command (scripts/test-all.sh), or export NKVM_TEST_KUBECONFIG=<kubeconfig>"
        )
    });
    ConnectionSource::KubeconfigFile {
        path: Some(PathBuf::from(path)),
        context: None,
    }
}

/// How long a fixture may take to become ready on the test cluster.
pub const READY_TIMEOUT: Duration = Duration::from_mins(4);

/// Polls `check` every `every` until it returns `Some` or `READY_TIMEOUT` passes (then panics, naming
/// `what`).
pub async fn wait_for<T, F, Fut>(what: &str, every: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < READY_TIMEOUT,
            "timed out after {READY_TIMEOUT:?} waiting for {what}"
        );
        tokio::time::sleep(every).await;
    }
}

/// Reads a run's events until one satisfies `until` (each within 2 minutes, else panics) and returns
/// it; `until` may assert on the events it skips.
pub async fn next_event<T: Clone>(
    events: &mut tokio::sync::broadcast::Receiver<T>,
    mut until: impl FnMut(&T) -> bool,
) -> T {
    loop {
        let event = tokio::time::timeout(Duration::from_mins(2), events.recv())
            .await
            .expect("a progress event within 2 minutes")
            .expect("the run's event channel is open");
        if until(&event) {
            return event;
        }
    }
}

/// The test cluster's `kubectl`: `NKVM_TEST_KUBECTL`, else the one the cluster build cached
/// (`$NKVM_CACHE_DIR/k8s-<versions>/bin/kubectl`), else `kubectl` on the PATH.
pub fn kubectl_path() -> PathBuf {
    if let Some(path) = std::env::var_os("NKVM_TEST_KUBECTL") {
        return PathBuf::from(path);
    }
    let versions = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../end2end/cluster/versions.env"
    );
    let text = std::fs::read_to_string(versions).unwrap_or_default();
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_owned)
    };
    let cache = std::env::var_os("NKVM_CACHE_DIR").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/nkvm"),
        PathBuf::from,
    );
    if let (Some(k8s), Some(etcd)) = (value("K8S_VERSION"), value("ETCD_VERSION")) {
        let cached = cache.join(format!("k8s-{k8s}-etcd-{etcd}/bin/kubectl"));
        if cached.is_file() {
            return cached;
        }
    }
    PathBuf::from("kubectl")
}

/// Runs the test cluster's kubectl with `args` (and `stdin` when given); panics with its output
/// when it fails.
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write as _;
    let kubeconfig = std::env::var_os("NKVM_TEST_KUBECONFIG")
        .expect("NKVM_TEST_KUBECONFIG must point at the test cluster's kubeconfig");
    let mut child = std::process::Command::new(kubectl_path())
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run kubectl");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write kubectl's stdin");
    }
    let output = child.wait_with_output().expect("wait for kubectl");
    assert!(
        output.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A namespace of the test cluster, deleted (without waiting) when dropped.
pub struct TestNamespace(pub String);

impl TestNamespace {
    /// Creates `<prefix>-<unique suffix>`.
    pub fn create(prefix: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos();
        let name = format!(
            "{prefix}-{:x}",
            (nanos % 0xff_ffff) ^ u128::from(std::process::id())
        );
        kubectl(&["create", "namespace", &name], None);
        Self(name)
    }

    /// Applies `yaml` in the namespace.
    pub fn apply(&self, yaml: &str) {
        kubectl(&["-n", &self.0, "apply", "-f", "-"], Some(yaml));
    }

    /// PVCs `claims` (`(name, labels as "k: v" flow map)`) and a pod `pod` that mounts them (they
    /// bind on first consumer), waited for until Running.
    pub fn claims_with_consumer(&self, pod: &str, claims: &[(&str, &str)]) {
        let mut yaml = String::new();
        for (name, labels) in claims {
            yaml.push_str(&format!(
                "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}, labels: {{{labels}}}}}\n\
                 spec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 64Mi}}}}}}\n---\n"
            ));
        }
        let volumes: Vec<String> = claims
            .iter()
            .map(|(c, _)| format!("{{name: {c}, persistentVolumeClaim: {{claimName: {c}}}}}"))
            .collect();
        let mounts: Vec<String> = claims
            .iter()
            .map(|(c, _)| format!("{{name: {c}, mountPath: /data/{c}}}"))
            .collect();
        yaml.push_str(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {pod}}}\nspec:\n  terminationGracePeriodSeconds: 0\n  \
             containers:\n  - {{name: main, image: \"nkvm.local/workload:1\", imagePullPolicy: Never, \
             command: [sh, -c, \"for d in /data/*; do echo hello > $d/file.txt; done; sleep 3600\"], \
             volumeMounts: [{}]}}\n  volumes: [{}]\n",
            mounts.join(", "),
            volumes.join(", ")
        ));
        self.apply(&yaml);
        kubectl(
            &[
                "-n",
                &self.0,
                "wait",
                "--for=condition=Ready",
                &format!("pod/{pod}"),
                "--timeout=180s",
            ],
            None,
        );
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let _ = std::process::Command::new(kubectl_path())
            .env(
                "KUBECONFIG",
                std::env::var_os("NKVM_TEST_KUBECONFIG").unwrap_or_default(),
            )
            .args(["delete", "namespace", &self.0, "--wait=false"])
            .output();
    }
}
