//! Local artifact layout and the files written beside an archive: the `sha256sum -c` sidecar and the
//! JSON manifest, each written to a `.partial` file, synced and renamed.
//!
//! ```text
//! <data-dir>/artifacts/<namespace>/<pvc>/<UTC timestamp>.tar.gz
//! <data-dir>/artifacts/<namespace>/<pvc>/<UTC timestamp>.tar.gz.sha256
//! <data-dir>/artifacts/<namespace>/<pvc>/<UTC timestamp>.manifest.json
//! ```

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::stream::{partial_path_of, sync_dir};
use super::tarcheck::TarCounts;
use crate::domain::{Owner, PvcSummary};

/// Directory of the artifacts under a data directory.
pub fn artifacts_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("artifacts")
}

/// `20261128T231858.123Z`: UTC, millisecond precision, safe in file names.
pub fn timestamp_name(at: jiff::Timestamp) -> String {
    at.strftime("%Y%m%dT%H%M%S%.3fZ").to_string()
}

/// Paths of one backup's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactPaths {
    pub dir: PathBuf,
    pub archive: PathBuf,
    pub sidecar: PathBuf,
    pub manifest: PathBuf,
}

impl ArtifactPaths {
    pub fn new(artifacts_dir: &Path, namespace: &str, pvc: &str, at: jiff::Timestamp) -> Self {
        let dir = artifacts_dir.join(namespace).join(pvc);
        let stamp = timestamp_name(at);
        Self {
            archive: dir.join(format!("{stamp}.tar.gz")),
            sidecar: dir.join(format!("{stamp}.tar.gz.sha256")),
            manifest: dir.join(format!("{stamp}.manifest.json")),
            dir,
        }
    }

    /// The archive's file name (as the sidecar names it).
    pub fn archive_file_name(&self) -> String {
        self.archive
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// The sidecar's content: `<hex>  <file name>\n`, checkable with `sha256sum -c` in its directory.
pub fn sidecar_line(sha256: &str, file_name: &str) -> String {
    format!("{sha256}  {file_name}\n")
}

/// Writes `bytes` to `path` through `<path>.partial`: write, fsync, rename, fsync of the directory.
pub async fn write_file_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let partial = partial_path_of(path);
    let result = async {
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&partial)
            .await?;
        file.write_all(bytes).await?;
        file.flush().await?;
        file.sync_all().await?;
        drop(file);
        tokio::fs::rename(&partial, path).await?;
        sync_dir(path).await
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&partial).await;
    }
    result
}

/// Version of the manifest's layout.
pub const MANIFEST_FORMAT: &str = "nkvm.backup.manifest/v1";

/// What a backup holds and how it was made; written beside the archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub nkvm_version: String,
    pub run_id: String,
    pub started_by: String,
    pub started_at: String,
    pub finished_at: String,
    pub pvc: PvcSummary,
    /// The predecessor's display of the owner (`Deployment`/`web`, `Multiple[...]`, `Unknown`).
    pub owner_kind: String,
    pub owner_name: String,
    pub owners: Vec<Owner>,
    pub consumers: Vec<String>,
    /// Node the helper ran on.
    pub node: Option<String>,
    pub helper_pod: String,
    pub helper_image: String,
    pub archive: ArchiveInfo,
    pub contents: TarCounts,
}

/// The archive file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveInfo {
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
    /// `tar+gzip`: GNU tar stream (`tar -cf - -C <volume> .`) compressed with gzip.
    pub format: String,
    pub gzip_level: u32,
    /// Files of the volume (regular files in the archive).
    pub files: u64,
    /// Bytes of file content read from the volume.
    pub source_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_follows_the_contract() {
        let at: jiff::Timestamp = "2026-11-28T23:18:58.123456Z".parse().unwrap();
        let paths = ArtifactPaths::new(Path::new("/d/artifacts"), "shop", "data", at);
        assert_eq!(paths.dir, Path::new("/d/artifacts/shop/data"));
        assert_eq!(
            paths.archive,
            Path::new("/d/artifacts/shop/data/20261128T231858.123Z.tar.gz")
        );
        assert_eq!(
            paths.sidecar,
            Path::new("/d/artifacts/shop/data/20261128T231858.123Z.tar.gz.sha256")
        );
        assert_eq!(
            paths.manifest,
            Path::new("/d/artifacts/shop/data/20261128T231858.123Z.manifest.json")
        );
        assert_eq!(paths.archive_file_name(), "20261128T231858.123Z.tar.gz");
    }

    #[test]
    fn timestamps_pad_milliseconds() {
        let at: jiff::Timestamp = "2026-01-02T03:04:05Z".parse().unwrap();
        assert_eq!(timestamp_name(at), "20260102T030405.000Z");
    }

    #[tokio::test]
    async fn sidecar_passes_sha256sum_check() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.tar.gz");
        std::fs::write(&archive, b"content").unwrap();
        let sha = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(b"content"))
        };
        let sidecar = dir.path().join("a.tar.gz.sha256");
        write_file_atomic(&sidecar, sidecar_line(&sha, "a.tar.gz").as_bytes())
            .await
            .unwrap();
        assert!(!partial_path_of(&sidecar).exists());
        let status = std::process::Command::new("sha256sum")
            .arg("-c")
            .arg("--status")
            .arg("a.tar.gz.sha256")
            .current_dir(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
    }
}
