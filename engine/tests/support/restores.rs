//! Fixtures of the restore tests on the real cluster: backup and restore engines on a fresh data
//! directory ([`Engines`]), a backup that must succeed ([`backed_up`]), restore requests, workloads
//! (Deployments, StatefulSets) and their replica counts, owner and hard-link snapshots of a volume,
//! and crafted backups (an archive built byte by byte, with its sidecar, manifest and a succeeded
//! history row) for the safety checks.
#![allow(dead_code, reason = "each test crate uses some of the shared fixtures")]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::PostParams;
use kube::{Api, Client};
use nkvm_engine::backup::artifact::{self, ArchiveInfo, Manifest};
use nkvm_engine::backup::tarcheck::TarChecker;
use nkvm_engine::backup::{BackupEngine, BackupOptions, BackupResult, ResultStatus};
use nkvm_engine::destination::ArtifactKeys;
use nkvm_engine::domain::{PvcSummary, RunStatus};
use nkvm_engine::restore::{RestoreEngine, RestoreOptions, RestoreRequest, RestoreTarget, Rules};
use nkvm_engine::store::{NewRun, RunUpdate, Store};
use serde_json::json;
use sha2::Digest;

use super::cluster::{Cluster, WORKLOAD_IMAGE, backup_one, engine, engine_options, unique};
use super::wait_for;

/// A backup engine on a fresh data directory (the test options, changed by `adjust`) and the
/// restore engine over it. The directory is removed when this is dropped.
pub struct Engines {
    pub data: tempfile::TempDir,
    pub backups: BackupEngine,
    pub restoring: RestoreEngine,
}

/// [`Engines`] on `cluster`.
pub async fn engines(
    cluster: &Cluster,
    adjust: impl FnOnce(BackupOptions) -> BackupOptions,
) -> Engines {
    let data = tempfile::tempdir().unwrap();
    let options = adjust(engine_options(data.path(), &unique("i")));
    let backups = engine(cluster, data.path(), options).await;
    let restoring = restore_engine(backups.clone());
    Engines {
        data,
        backups,
        restoring,
    }
}

/// Backs up `ns`/`pvc`, which must succeed: the result and its run id.
pub async fn backed_up(backups: &BackupEngine, ns: &str, pvc: &str) -> (BackupResult, String) {
    let backup = backup_one(backups, ns, pvc).await;
    assert_eq!(backup.status, ResultStatus::Succeeded, "{backup:#?}");
    let run_id = backup.run_id.clone().unwrap();
    (backup, run_id)
}

/// A restore engine over `backups` with short waits.
pub fn restore_engine(backups: BackupEngine) -> RestoreEngine {
    RestoreEngine::new(
        backups,
        RestoreOptions {
            scale_down_timeout: Duration::from_mins(2),
            helper_gone_timeout: Duration::from_mins(1),
        },
    )
}

/// A restore of `run_id` into a new PVC.
pub fn into_new(run_id: &str, name: &str, namespace: Option<&str>) -> RestoreRequest {
    RestoreRequest {
        run_id: run_id.to_owned(),
        target: RestoreTarget::NewPvc {
            name: name.to_owned(),
            namespace: namespace.map(str::to_owned),
            storage_class: None,
            size: None,
        },
        rules: Rules::default(),
        keep_failed_pvc: false,
    }
}

/// An in-place restore of `run_id`.
pub fn in_place(run_id: &str, wipe: bool) -> RestoreRequest {
    RestoreRequest {
        run_id: run_id.to_owned(),
        target: RestoreTarget::InPlace { wipe },
        rules: Rules::default(),
        keep_failed_pvc: false,
    }
}

/// Path → (uid, gid) of everything under `root` (symlinks not followed).
pub fn ownership(root: &Path) -> BTreeMap<String, (u32, u32)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path.clone());
            }
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            out.insert(rel, (meta.uid(), meta.gid()));
        }
    }
    out
}

/// The groups of paths under `root` that are one file (hard links), each sorted.
pub fn hard_link_groups(root: &Path) -> BTreeSet<Vec<String>> {
    let mut by_inode: HashMap<u64, Vec<String>> = HashMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path.clone());
            } else if meta.is_file() && meta.nlink() > 1 {
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                by_inode.entry(meta.ino()).or_default().push(rel);
            }
        }
    }
    by_inode
        .into_values()
        .map(|mut group| {
            group.sort();
            group
        })
        .collect()
}

/// Creates a Deployment (`kind` "Deployment") or a StatefulSet whose pods mount `claim` (for a
/// StatefulSet: a volumeClaimTemplate named `claim`, so its first PVC is `<claim>-<name>-0`), and
/// waits until `replicas` pods are ready.
pub async fn workload(
    client: &Client,
    ns: &str,
    kind: &str,
    name: &str,
    claim: &str,
    replicas: i32,
) {
    let pod = json!({
        "metadata": {"labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "main", "image": WORKLOAD_IMAGE, "imagePullPolicy": "Never",
                "command": ["sleep", "100000"],
                "volumeMounts": [{"name": claim, "mountPath": "/data"}],
            }],
        },
    });
    if kind == "Deployment" {
        let mut template = pod;
        template["spec"]["volumes"] =
            json!([{"name": claim, "persistentVolumeClaim": {"claimName": claim}}]);
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": template},
        }))
        .unwrap();
        Api::<Deployment>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &deployment)
            .await
            .expect("create deployment");
    } else {
        let set: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"replicas": replicas, "serviceName": name,
                     "selector": {"matchLabels": {"app": name}}, "template": pod,
                     "volumeClaimTemplates": [{"metadata": {"name": claim},
                        "spec": {"accessModes": ["ReadWriteOnce"],
                                 "resources": {"requests": {"storage": "1Gi"}}}}]},
        }))
        .unwrap();
        Api::<StatefulSet>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &set)
            .await
            .expect("create statefulset");
    }
    wait_ready(client, ns, kind, name, replicas).await;
}

/// (spec replicas, ready replicas) of a Deployment or StatefulSet.
pub async fn replicas(client: &Client, ns: &str, kind: &str, name: &str) -> (i32, i32) {
    if kind == "Deployment" {
        let d = Api::<Deployment>::namespaced(client.clone(), ns)
            .get(name)
            .await
            .expect("get deployment");
        (
            d.spec.and_then(|s| s.replicas).unwrap_or(1),
            d.status.and_then(|s| s.ready_replicas).unwrap_or(0),
        )
    } else {
        let s = Api::<StatefulSet>::namespaced(client.clone(), ns)
            .get(name)
            .await
            .expect("get statefulset");
        (
            s.spec.and_then(|s| s.replicas).unwrap_or(1),
            s.status.and_then(|s| s.ready_replicas).unwrap_or(0),
        )
    }
}

pub async fn wait_ready(client: &Client, ns: &str, kind: &str, name: &str, want: i32) {
    wait_for(
        &format!("{kind} {ns}/{name} with {want} ready replicas"),
        Duration::from_millis(500),
        || async move {
            let (spec, ready) = replicas(client, ns, kind, name).await;
            (spec == want && ready == want).then_some(())
        },
    )
    .await;
}

/// Records the replica counts of a workload every 200 ms until the returned sender is dropped.
pub fn watch_replicas(
    client: Client,
    ns: String,
    kind: &'static str,
    name: String,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Vec<i32>>,
) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        let mut seen: Vec<i32> = Vec::new();
        loop {
            let (spec, _) = replicas(&client, &ns, kind, &name).await;
            if seen.last() != Some(&spec) {
                seen.push(spec);
            }
            tokio::select! {
                _ = &mut stopped => return seen,
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    });
    (stop, handle)
}

pub async fn pvc_exists(client: &Client, ns: &str, name: &str) -> bool {
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .expect("get pvc")
        .is_some_and(|p| p.metadata.deletion_timestamp.is_none())
}

/// One member of a crafted archive.
pub struct Entry<'a> {
    pub name: &'a str,
    pub typeflag: u8,
    pub mode: u32,
    pub link: &'a str,
    pub data: &'a [u8],
}

impl<'a> Entry<'a> {
    pub fn file(name: &'a str, mode: u32, data: &'a [u8]) -> Self {
        Self {
            name,
            typeflag: b'0',
            mode,
            link: "",
            data,
        }
    }

    pub fn dir(name: &'a str) -> Self {
        Self {
            name,
            typeflag: b'5',
            mode: 0o755,
            link: "",
            data: b"",
        }
    }

    pub fn special(name: &'a str, typeflag: u8, link: &'a str) -> Self {
        Self {
            name,
            typeflag,
            mode: 0o644,
            link,
            data: b"",
        }
    }
}

/// A GNU tar stream of `entries`, byte by byte (names and links as given, `..` and `/` included),
/// padded to a 10 KiB record like `tar -c` writes it.
pub fn raw_tar(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in entries {
        let mut block = [0u8; 512];
        block[..entry.name.len()].copy_from_slice(entry.name.as_bytes());
        block[100..108].copy_from_slice(format!("{:07o}\0", entry.mode).as_bytes());
        block[108..116].copy_from_slice(b"0000000\0");
        block[116..124].copy_from_slice(b"0000000\0");
        block[124..136].copy_from_slice(format!("{:011o}\0", entry.data.len()).as_bytes());
        block[136..148].copy_from_slice(b"00000000000\0");
        block[156] = entry.typeflag;
        block[157..157 + entry.link.len()].copy_from_slice(entry.link.as_bytes());
        block[257..265].copy_from_slice(b"ustar  \0");
        block[148..156].copy_from_slice(b"        ");
        let sum: u32 = block.iter().map(|b| u32::from(*b)).sum();
        block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&block);
        out.extend_from_slice(entry.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out.resize(out.len().div_ceil(10_240) * 10_240, 0);
    out
}

/// A succeeded backup of `ns/pvc` whose archive is `tar`, gzipped, with its sidecar and manifest in
/// `data_dir` and its history row in `store`; returns the run id and the archive's path.
pub async fn crafted_backup(
    store: &Store,
    data_dir: &Path,
    ns: &str,
    pvc: &str,
    tar: &[u8],
) -> (String, std::path::PathBuf) {
    let started = jiff::Timestamp::now();
    let run_id = nkvm_engine::backup::new_run_id(started);
    let keys = ArtifactKeys::new(ns, pvc, started);
    let root = artifact::artifacts_dir(data_dir);
    let archive_path = root.join(&keys.archive);
    let archive_name = artifact::file_name(&keys.archive).to_owned();
    std::fs::create_dir_all(archive_path.parent().unwrap()).unwrap();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    encoder.write_all(tar).unwrap();
    let archive = encoder.finish().unwrap();
    std::fs::write(&archive_path, &archive).unwrap();
    let sha = hex::encode(sha2::Sha256::digest(&archive));
    std::fs::write(
        root.join(&keys.sidecar),
        artifact::sidecar_line(&sha, &archive_name),
    )
    .unwrap();
    // Counts as the backup would have recorded them (zero for archives the checker refuses).
    let mut checker = TarChecker::new();
    let counts = checker
        .feed(tar)
        .ok()
        .and_then(|()| checker.finish().ok())
        .unwrap_or_default();
    let manifest = Manifest {
        format: artifact::MANIFEST_FORMAT.to_owned(),
        nkvm_version: "test".to_owned(),
        run_id: run_id.clone(),
        started_by: "test".to_owned(),
        started_at: started.to_string(),
        finished_at: started.to_string(),
        pvc: PvcSummary {
            namespace: ns.to_owned(),
            name: pvc.to_owned(),
            uid: format!("crafted-{run_id}"),
            phase: "Bound".to_owned(),
            capacity: Some("1Gi".to_owned()),
            capacity_bytes: Some(1 << 30),
            storage_class: None,
            access_modes: vec!["ReadWriteOnce".to_owned()],
            volume_name: None,
        },
        owner_kind: "Unknown".to_owned(),
        owner_name: "Unknown".to_owned(),
        owners: vec![],
        consumers: vec![],
        node: None,
        helper_pod: "crafted".to_owned(),
        helper_image: "crafted".to_owned(),
        archive: ArchiveInfo {
            file: archive_name.clone(),
            bytes: archive.len() as u64,
            sha256: sha.clone(),
            format: "tar+gzip".to_owned(),
            gzip_level: 6,
            files: counts.regular_files,
            source_bytes: counts.file_bytes,
            compressed_by: None,
        },
        contents: counts,
    };
    std::fs::write(
        root.join(&keys.manifest),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    let id = store
        .insert_run(&NewRun {
            run_id: run_id.clone(),
            pvc_uid: format!("crafted-{run_id}"),
            namespace: ns.to_owned(),
            pvc: pvc.to_owned(),
            started_by: "test".to_owned(),
            started_at: started,
            cluster: None,
        })
        .await
        .unwrap();
    store
        .update_run(
            id,
            &RunUpdate {
                status: Some(RunStatus::Succeeded),
                finished_at: Some(jiff::Timestamp::now()),
                bytes: Some(archive.len() as u64),
                source_bytes: Some(counts.file_bytes),
                files: Some(counts.regular_files),
                sha256: Some(sha),
                artifact: Some(archive_path.display().to_string()),
                destination: Some("local".to_owned()),
                object_key: Some(keys.archive.clone()),
                ..RunUpdate::default()
            },
        )
        .await
        .unwrap();
    (run_id, archive_path)
}
