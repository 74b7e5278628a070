//! Backups of hostile or awkward volumes on the real test cluster: files nobody may read (the root
//! helper still reads them).
//!
//! Needs `NKVM_TEST_KUBECONFIG`, the images `nkvm.local/helper:1` and `nkvm.local/workload:1`
//! and the storage class `nkvm-local` (hostPath volumes: fixtures are written straight into the
//! volume's directory). Run with `--include-ignored`.

mod support;

use support::cluster::*;

use std::os::unix::fs::chown;
use std::path::Path;
use std::process::Command;

use nkvm_engine::backup::ResultStatus;

/// Extracts `archive` with system tar into a new directory.
fn extract(archive: &Path) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let tar = Command::new("tar")
        .arg("-xzf")
        .arg(archive)
        .arg("-C")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(tar.status.success(), "{tar:?}");
    out
}

/// A root (or unknown) consumer's volume is read whatever its modes: the helper reads files of
/// mode 000 and directories of mode 0700 owned by other users and by root.
#[tokio::test]
#[ignore = "needs the test cluster"]
async fn files_nobody_may_read_are_backed_up() {
    in_namespace("nkvm-bk-unread", |cluster, ns| async move {
        let client = cluster.client.clone();
        let source = bound_claim(&client, &ns, "vol", "ReadWriteOnce", "64Mi").await;
        std::fs::write(source.join("none"), b"mode 000, uid 1234").unwrap();
        chown(source.join("none"), Some(1234), Some(1234)).unwrap();
        set_mode(&source.join("none"), 0o000);
        for (dir, owner) in [("theirs", 42), ("roots", 0)] {
            let path = source.join(dir);
            std::fs::create_dir(&path).unwrap();
            std::fs::write(path.join("inside"), format!("in {dir}")).unwrap();
            set_mode(&path.join("inside"), 0o000);
            chown(path.join("inside"), Some(owner), Some(owner)).unwrap();
            chown(&path, Some(owner), Some(owner)).unwrap();
            set_mode(&path, 0o700);
        }
        let data = tempfile::tempdir().unwrap();
        let engine = engine(
            &cluster,
            data.path(),
            engine_options(data.path(), &unique("i")),
        )
        .await;
        let result = backup_one(&engine, &ns, "vol").await;
        assert_eq!(result.status, ResultStatus::Succeeded, "{result:#?}");
        let out = extract(Path::new(result.artifact.as_deref().unwrap()));
        assert_eq!(snapshot(out.path()), snapshot(&source));
        assert_eq!(
            std::fs::read(out.path().join("theirs/inside")).unwrap(),
            b"in theirs"
        );
        assert_eq!(std::fs::read(out.path().join("none")).unwrap().len(), 18);
    })
    .await;
}
