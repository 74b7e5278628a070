//! Which file a download of a backup serves: found through the run's history row (never through a
//! path taken from a request), only for a succeeded run in an allowed namespace, and only when the
//! file resolves inside the artifacts directory.

use std::io;
use std::path::{Path, PathBuf};

use crate::domain::RunStatus;
use crate::store::{RunRecord, Store, StoreError};

crate::text_enum! {
    /// The files of one backup.
    pub enum DownloadKind("file kind") {
        /// `<stamp>.tar.gz`
        Archive => "archive",
        /// `<stamp>.tar.gz.sha256` (`sha256sum -c` format)
        Checksum => "sha256",
        /// `<stamp>.manifest.json`
        Manifest => "manifest",
    }
}

impl DownloadKind {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Archive => "application/gzip",
            Self::Checksum => "text/plain; charset=utf-8",
            Self::Manifest => "application/json",
        }
    }

    /// The file of this kind beside `archive`.
    fn path_for(self, archive: &Path) -> Option<PathBuf> {
        let name = archive.file_name()?.to_str()?;
        let file = match self {
            Self::Archive => name.to_owned(),
            Self::Checksum => format!("{name}.sha256"),
            Self::Manifest => format!("{}.manifest.json", name.strip_suffix(".tar.gz")?),
        };
        Some(archive.with_file_name(file))
    }
}

/// Why a download is refused.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("no backup run has id {0}")]
    NotFound(i64),
    #[error("run {0} is in a namespace this server may not serve")]
    NotAllowed(i64),
    #[error("run {0} did not succeed, so it has no archive")]
    NotSucceeded(i64),
    #[error(
        "the {kind} file of run {id} is missing on disk; it was deleted or moved (the history row \
         remains)"
    )]
    Missing { id: i64, kind: DownloadKind },
    #[error("the {kind} file of run {id} is outside the artifacts directory; refusing to serve it")]
    Outside { id: i64, kind: DownloadKind },
    #[error("reading the history failed: {0}")]
    Store(#[from] StoreError),
    #[error("opening the {kind} file of run {id} failed: {source}")]
    Open {
        id: i64,
        kind: DownloadKind,
        #[source]
        source: io::Error,
    },
}

impl DownloadError {
    /// The HTTP status that fits: 404 for what does not exist (or may not be seen), 409 for a run
    /// without files, 500 for server-side faults.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::NotFound(_) | Self::NotAllowed(_) | Self::Missing { .. } => 404,
            Self::NotSucceeded(_) => 409,
            Self::Outside { .. } | Self::Store(_) | Self::Open { .. } => 500,
        }
    }
}

/// An opened file, ready to stream.
#[derive(Debug)]
pub struct Download {
    pub file: tokio::fs::File,
    pub len: u64,
    /// The file's own name (for `Content-Disposition`).
    pub file_name: String,
    pub kind: DownloadKind,
    pub run: RunRecord,
}

/// Opens file `kind` of history row `id`. `allowed`: the namespaces this server may serve
/// (`None`: all).
pub async fn open(
    store: &Store,
    artifacts_dir: &Path,
    id: i64,
    kind: DownloadKind,
    allowed: Option<&[String]>,
) -> Result<Download, DownloadError> {
    let run = store
        .get_run(id)
        .await?
        .ok_or(DownloadError::NotFound(id))?;
    if let Some(allowed) = allowed
        && !allowed.contains(&run.namespace)
    {
        return Err(DownloadError::NotAllowed(id));
    }
    if run.status != RunStatus::Succeeded {
        return Err(DownloadError::NotSucceeded(id));
    }
    let archive = run
        .artifact
        .as_deref()
        .map(PathBuf::from)
        .ok_or(DownloadError::NotSucceeded(id))?;
    let path = kind
        .path_for(&archive)
        .ok_or(DownloadError::Outside { id, kind })?;
    let missing = |err: io::Error| {
        if err.kind() == io::ErrorKind::NotFound {
            DownloadError::Missing { id, kind }
        } else {
            DownloadError::Open {
                id,
                kind,
                source: err,
            }
        }
    };
    let resolved = tokio::fs::canonicalize(&path).await.map_err(missing)?;
    let root = tokio::fs::canonicalize(artifacts_dir)
        .await
        .map_err(missing)?;
    if !resolved.starts_with(&root) {
        return Err(DownloadError::Outside { id, kind });
    }
    let file = tokio::fs::File::open(&resolved).await.map_err(missing)?;
    let meta = file.metadata().await.map_err(missing)?;
    if !meta.is_file() {
        return Err(DownloadError::Outside { id, kind });
    }
    let file_name = resolved.file_name().map_or_else(
        || format!("nkvm-{id}.{kind}"),
        |n| n.to_string_lossy().into_owned(),
    );
    Ok(Download {
        file,
        len: meta.len(),
        file_name,
        kind,
        run,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewRun, RunUpdate};
    use tokio::io::AsyncReadExt;

    async fn run_with(store: &Store, ns: &str, status: RunStatus, artifact: Option<&Path>) -> i64 {
        let id = store
            .insert_run(&NewRun {
                run_id: format!("r-{ns}-{}", artifact.is_some()),
                pvc_uid: "uid".into(),
                namespace: ns.into(),
                pvc: "data".into(),
                started_by: "test".into(),
                started_at: jiff::Timestamp::now(),
                cluster: None,
            })
            .await
            .unwrap();
        store
            .update_run(
                id,
                &RunUpdate {
                    status: Some(status),
                    artifact: artifact.map(|p| p.display().to_string()),
                    ..RunUpdate::default()
                },
            )
            .await
            .unwrap();
        id
    }

    struct Files {
        dir: tempfile::TempDir,
        archive: PathBuf,
    }

    fn files() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let pvc_dir = dir.path().join("artifacts/shop/data");
        std::fs::create_dir_all(&pvc_dir).unwrap();
        let archive = pvc_dir.join("20261129T010203.456Z.tar.gz");
        std::fs::write(&archive, b"gz").unwrap();
        std::fs::write(pvc_dir.join("20261129T010203.456Z.tar.gz.sha256"), b"sum").unwrap();
        std::fs::write(pvc_dir.join("20261129T010203.456Z.manifest.json"), b"{}").unwrap();
        Files { dir, archive }
    }

    #[tokio::test]
    async fn serves_the_three_files_of_a_succeeded_run() {
        let f = files();
        let store = Store::open_in_memory().await.unwrap();
        let id = run_with(&store, "shop", RunStatus::Succeeded, Some(&f.archive)).await;
        let root = f.dir.path().join("artifacts");
        for (kind, name, body) in [
            ("archive", "20261129T010203.456Z.tar.gz", "gz"),
            ("sha256", "20261129T010203.456Z.tar.gz.sha256", "sum"),
            ("manifest", "20261129T010203.456Z.manifest.json", "{}"),
        ] {
            let kind: DownloadKind = kind.parse().unwrap();
            let mut download = open(&store, &root, id, kind, None).await.unwrap();
            assert_eq!(download.file_name, name);
            assert_eq!(download.len, body.len() as u64);
            let mut text = String::new();
            download.file.read_to_string(&mut text).await.unwrap();
            assert_eq!(text, body);
        }
    }

    #[tokio::test]
    async fn refuses_what_it_must_not_serve() {
        let f = files();
        let store = Store::open_in_memory().await.unwrap();
        let root = f.dir.path().join("artifacts");
        let ok = run_with(&store, "shop", RunStatus::Succeeded, Some(&f.archive)).await;
        let failed = run_with(&store, "shop", RunStatus::Failed, None).await;
        // A row whose artifact points outside the artifacts directory (tampered database).
        let outside = f.dir.path().join("secret.tar.gz");
        std::fs::write(&outside, b"x").unwrap();
        let escaped = run_with(&store, "evil", RunStatus::Succeeded, Some(&outside)).await;
        let traversal = root.join("shop/data/../../../secret.tar.gz");
        let dotdot = run_with(&store, "evil2", RunStatus::Succeeded, Some(&traversal)).await;
        let gone = root.join("shop/data/gone.tar.gz");
        let missing = run_with(&store, "shop2", RunStatus::Succeeded, Some(&gone)).await;

        let err = |r: Result<Download, DownloadError>| r.unwrap_err();
        let e = err(open(&store, &root, 999, DownloadKind::Archive, None).await);
        assert!(matches!(e, DownloadError::NotFound(999)));
        assert_eq!(e.http_status(), 404);
        let e = err(open(&store, &root, failed, DownloadKind::Archive, None).await);
        assert!(matches!(e, DownloadError::NotSucceeded(_)));
        assert_eq!(e.http_status(), 409);
        for id in [escaped, dotdot] {
            let e = err(open(&store, &root, id, DownloadKind::Archive, None).await);
            assert!(matches!(e, DownloadError::Outside { .. }), "{e:?}");
        }
        let e = err(open(&store, &root, missing, DownloadKind::Checksum, None).await);
        assert!(matches!(e, DownloadError::Missing { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "the sha256 file of run 5 is missing on disk; it was deleted or moved (the history row remains)"
        );
        let allowed = vec!["other".to_owned()];
        let e = err(open(&store, &root, ok, DownloadKind::Archive, Some(&allowed)).await);
        assert!(matches!(e, DownloadError::NotAllowed(_)));
        assert!("../x".parse::<DownloadKind>().is_err());
        assert_eq!(DownloadKind::Archive.content_type(), "application/gzip");
    }
}
