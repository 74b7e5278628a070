//! The artifact layout and the files put beside an archive: the `sha256sum -c` sidecar and the
//! JSON manifest. Keys are [`crate::destination::ArtifactKeys`]; the `local` destination keeps them
//! under `<data-dir>/artifacts` (or its `path`):
//!
//! ```text
//! <root>/<namespace>/<pvc>/<UTC timestamp>.tar.gz
//! <root>/<namespace>/<pvc>/<UTC timestamp>.tar.gz.sha256
//! <root>/<namespace>/<pvc>/<UTC timestamp>.manifest.json
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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

/// The last `/`-separated part of a key: the archive's file name, as the sidecar names it.
#[must_use]
pub fn file_name(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// The sidecar's content: `<hex>  <file name>\n`, checkable with `sha256sum -c` in its directory.
pub fn sidecar_line(sha256: &str, file_name: &str) -> String {
    format!("{sha256}  {file_name}\n")
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
    /// Who compressed it: `source` (the helper's pigz/gzip) or `server` (nkvm); absent in
    /// manifests written before the choice existed (nkvm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compressed_by: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_the_last_part_of_keys() {
        assert_eq!(
            file_name("shop/data/20261128T231858.123Z.tar.gz"),
            "20261128T231858.123Z.tar.gz"
        );
        assert_eq!(file_name("a.tar.gz"), "a.tar.gz");
    }

    #[test]
    fn timestamps_pad_milliseconds() {
        let at: jiff::Timestamp = "2026-01-02T03:04:05Z".parse().unwrap();
        assert_eq!(timestamp_name(at), "20260102T030405.000Z");
    }

    #[test]
    fn sidecar_passes_sha256sum_check() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.tar.gz");
        std::fs::write(&archive, b"content").unwrap();
        let sha = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(b"content"))
        };
        let sidecar = dir.path().join("a.tar.gz.sha256");
        std::fs::write(&sidecar, sidecar_line(&sha, "a.tar.gz")).unwrap();
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
