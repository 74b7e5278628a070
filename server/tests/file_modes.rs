//! The files and directories the `nkvm` binary creates are readable by its user only, whatever the
//! umask it was started with (archives and the history hold volume data and who did what).

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn data_directory_and_database_are_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A backup run creates the data directory, its instance id and the database before it
    // connects; the kubeconfig does not exist, so it stops right after. The test runs with the
    // usual umask 022, under which the directory would otherwise be 0755 and the files 0644.
    let output = Command::new(env!("CARGO_BIN_EXE_nkvm"))
        .args(["--kubeconfig"])
        .arg(dir.path().join("no-such-kubeconfig"))
        .arg("--data-dir")
        .arg(&data)
        .args(["backup", "shop/data"])
        .env("HOME", dir.path())
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("kubeconfig"), "{stderr}");
    assert_eq!(mode(&data), 0o700, "data directory");
    for file in ["nkvm.db", "instance-id"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
}
