//! `deploy/` names the helper image so that an overlay pins it by digest, exactly like nkvm's own
//! image: `deploy/base` makes `NKVM_HELPER_IMAGE` a kustomize image (`nkvm.local/nkvm-helper`), and
//! an `images:` entry with a `digest:` turns it into `REGISTRY/IMAGE@sha256:…`. Rendered with the
//! test cluster's `kubectl kustomize` (no cluster needed). Run with `--include-ignored`.

mod support;

use std::path::Path;
use std::process::Command;

/// `kubectl kustomize dir`.
fn render(dir: &Path) -> String {
    let out = Command::new(support::kubectl_path())
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("run kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The value of the env var `name` in rendered manifests.
fn env_value(manifests: &str, name: &str) -> String {
    let mut lines = manifests.lines();
    while let Some(line) = lines.next() {
        if line.trim() == format!("- name: {name}") {
            let value = lines.next().expect("a value line");
            return value.trim().trim_start_matches("value: ").to_owned();
        }
    }
    panic!("no env var {name} in:\n{manifests}")
}

#[test]
#[ignore = "needs the test cluster's kubectl"]
fn an_overlay_pins_the_helper_image_by_digest() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    assert_eq!(
        env_value(&render(&deploy.join("base")), "NKVM_HELPER_IMAGE"),
        "nkvm.local/nkvm-helper:0.1.0"
    );
    // kustomize takes bases by relative path only: the overlay lives beside deploy/base.
    let overlay = tempfile::Builder::new()
        .prefix(".pin-test-")
        .tempdir_in(&deploy)
        .unwrap();
    let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
    std::fs::write(
        overlay.path().join("kustomization.yaml"),
        format!(
            "resources: [../base]\nimages:\n\
             - {{name: nkvm.local/nkvm, newName: registry.example.com/nkvm, digest: \"{digest}\"}}\n\
             - {{name: nkvm.local/nkvm-helper, newName: registry.example.com/nkvm-helper, \
             digest: \"{digest}\"}}\n"
        ),
    )
    .unwrap();
    let pinned = render(overlay.path());
    assert_eq!(
        env_value(&pinned, "NKVM_HELPER_IMAGE"),
        format!("registry.example.com/nkvm-helper@{digest}")
    );
    assert!(
        pinned.contains(&format!("image: registry.example.com/nkvm@{digest}")),
        "{pinned}"
    );
    // Only the helper's value changed among the env values.
    assert!(!pinned.contains("nkvm.local/"), "{pinned}");
}
