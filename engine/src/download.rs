//! Opening the files of a backup (archive, `.sha256` sidecar, manifest) for reading, whatever the
//! destination holding them: found through the run's history row (never through a path or key
//! taken from a request), only for a succeeded run, streamed from the destination with no
//! temporary copy.
//!
//! - [`open`]`(&destinations, &run, kind)` opens one file of a history row: the destination named
//!   by `run.destination` and the key derived from `run.object_key`; rows recorded before
//!   destinations existed (no destination) hold a local path, which must resolve inside
//!   `<data-dir>/artifacts` (or a `local` destination's directory). This is the one way to read
//!   a run's archive: downloads, verify and restore use it.
//! - [`open_by_id`] adds what a download request needs: the history lookup, the namespace
//!   allowlist and the caller's cluster connection ([`Reach`]).

use std::io;
use std::path::{Path, PathBuf};

use crate::destination::{ArtifactKeys, DestinationError, Destinations, ObjectReader};
use crate::domain::RunStatus;
use crate::store::{RunRecord, RunScope, Store, StoreError};

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

    /// The key of this kind among a backup's keys.
    fn key(self, keys: &ArtifactKeys) -> &str {
        match self {
            Self::Archive => &keys.archive,
            Self::Checksum => &keys.sidecar,
            Self::Manifest => &keys.manifest,
        }
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
        "the {kind} file of run {id} is missing at its destination; it was deleted or moved (the \
         history row remains)"
    )]
    Missing { id: i64, kind: DownloadKind },
    #[error("the {kind} file of run {id} is outside the artifacts directory; refusing to serve it")]
    Outside { id: i64, kind: DownloadKind },
    #[error(
        "run {id} was written to destination {destination:?}, which is no longer configured; add \
         it back to the destinations file to read its archive"
    )]
    UnknownDestination { id: i64, destination: String },
    #[error("reading the {kind} file of run {id} failed: {source}")]
    Destination {
        id: i64,
        kind: DownloadKind,
        #[source]
        source: DestinationError,
    },
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
    /// without files, 502 when the destination failed, 500 for server-side faults.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::NotFound(_) | Self::NotAllowed(_) | Self::Missing { .. } => 404,
            Self::NotSucceeded(_) => 409,
            Self::Destination { .. } => 502,
            Self::Outside { .. }
            | Self::UnknownDestination { .. }
            | Self::Store(_)
            | Self::Open { .. } => 500,
        }
    }
}

/// An opened file of a backup, ready to stream.
#[derive(Debug)]
pub struct Download {
    /// The file's bytes, streamed from its destination.
    pub reader: ObjectReader,
    /// Its size, when the destination says.
    pub len: Option<u64>,
    /// The file's own name (for `Content-Disposition`).
    pub file_name: String,
    pub kind: DownloadKind,
    pub run: RunRecord,
}

/// What a download request may reach: the namespaces this server may serve (`None`: all) and the
/// runs of the caller's cluster connection (`None`: every run).
#[derive(Debug, Clone, Copy, Default)]
pub struct Reach<'a> {
    pub namespaces: Option<&'a [String]>,
    pub scope: Option<&'a RunScope>,
}

/// Opens file `kind` of history row `id`, if `reach` covers it; a run of another cluster
/// connection is [`DownloadError::NotFound`], like an unknown id.
pub async fn open_by_id(
    store: &Store,
    destinations: &Destinations,
    id: i64,
    kind: DownloadKind,
    reach: Reach<'_>,
) -> Result<Download, DownloadError> {
    let run = store
        .get_run(id)
        .await?
        .filter(|run| {
            reach
                .scope
                .is_none_or(|s| s.contains(run.cluster.as_deref()))
        })
        .ok_or(DownloadError::NotFound(id))?;
    let allowed = reach.namespaces;
    if let Some(allowed) = allowed
        && !allowed.contains(&run.namespace)
    {
        return Err(DownloadError::NotAllowed(id));
    }
    open(destinations, &run, kind).await
}

/// Opens file `kind` of a succeeded run wherever its destination keeps it (see the module's
/// documentation). The caller applies its own policy (roles, allowlist) first.
pub async fn open(
    destinations: &Destinations,
    run: &RunRecord,
    kind: DownloadKind,
) -> Result<Download, DownloadError> {
    let id = run.id;
    if run.status != RunStatus::Succeeded {
        return Err(DownloadError::NotSucceeded(id));
    }
    let (reader, file_name) =
        if let (Some(name), Some(object_key)) = (&run.destination, &run.object_key) {
            let destination =
                destinations
                    .get(name)
                    .map_err(|_| DownloadError::UnknownDestination {
                        id,
                        destination: name.clone(),
                    })?;
            let keys =
                ArtifactKeys::for_archive(object_key).ok_or(DownloadError::Outside { id, kind })?;
            let key = kind.key(&keys);
            let reader = destination.open_read(key).await.map_err(|e| match e {
                DestinationError::NotFound { .. } => DownloadError::Missing { id, kind },
                source => DownloadError::Destination { id, kind, source },
            })?;
            (reader, crate::backup::artifact::file_name(key).to_owned())
        } else {
            let archive = run
                .artifact
                .as_deref()
                .map(PathBuf::from)
                .ok_or(DownloadError::NotSucceeded(id))?;
            open_legacy(destinations, &archive, id, kind).await?
        };
    Ok(Download {
        len: reader.size,
        reader,
        file_name,
        kind,
        run: run.clone(),
    })
}

/// A file of a run recorded before destinations existed: beside the local path in `artifact`,
/// which must resolve inside `<data-dir>/artifacts` or a `local` destination's directory.
async fn open_legacy(
    destinations: &Destinations,
    archive: &Path,
    id: i64,
    kind: DownloadKind,
) -> Result<(ObjectReader, String), DownloadError> {
    let name = archive
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or(DownloadError::Outside { id, kind })?;
    let keys = ArtifactKeys::for_archive(name).ok_or(DownloadError::Outside { id, kind })?;
    let path = archive.with_file_name(kind.key(&keys));
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
    let roots = destinations
        .legacy_dir()
        .into_iter()
        .chain(destinations.iter().filter_map(|d| d.local_root()));
    let mut inside = false;
    for root in roots {
        if let Ok(root) = tokio::fs::canonicalize(root).await
            && resolved.starts_with(&root)
        {
            inside = true;
            break;
        }
    }
    if !inside {
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
    Ok((ObjectReader::new(Some(meta.len()), file), file_name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewRun, RunUpdate};
    use tokio::io::AsyncReadExt;

    async fn run_with(store: &Store, ns: &str, status: RunStatus, update: RunUpdate) -> i64 {
        let id = store
            .insert_run(&NewRun {
                run_id: format!("r-{ns}-{}", update.artifact.is_some()),
                pvc_uid: "uid".into(),
                namespace: ns.into(),
                pvc: "data".into(),
                started_by: "test".into(),
                started_at: jiff::Timestamp::now(),
                cluster: None,
            })
            .await
            .unwrap();
        let update = RunUpdate {
            status: Some(status),
            ..update
        };
        store.update_run(id, &update).await.unwrap();
        id
    }

    /// A row recorded before destinations existed: a local path, no destination.
    fn legacy(artifact: Option<&Path>) -> RunUpdate {
        RunUpdate {
            artifact: artifact.map(|p| p.display().to_string()),
            ..RunUpdate::default()
        }
    }

    fn at(destination: &str, key: &str) -> RunUpdate {
        RunUpdate {
            artifact: Some(format!("somewhere/{key}")),
            destination: Some(destination.into()),
            object_key: Some(key.into()),
            ..RunUpdate::default()
        }
    }

    struct Files {
        dir: tempfile::TempDir,
        archive: PathBuf,
        destinations: Destinations,
    }

    fn files() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let pvc_dir = dir.path().join("artifacts/shop/data");
        std::fs::create_dir_all(&pvc_dir).unwrap();
        let archive = pvc_dir.join("20261129T010203.456Z.tar.gz");
        std::fs::write(&archive, b"gz").unwrap();
        std::fs::write(pvc_dir.join("20261129T010203.456Z.tar.gz.sha256"), b"sum").unwrap();
        std::fs::write(pvc_dir.join("20261129T010203.456Z.manifest.json"), b"{}").unwrap();
        let destinations = Destinations::local_only(dir.path());
        Files {
            dir,
            archive,
            destinations,
        }
    }

    async fn read_all(download: &mut Download) -> String {
        let mut text = String::new();
        download.reader.read_to_string(&mut text).await.unwrap();
        text
    }

    #[tokio::test]
    async fn serves_the_three_files_of_a_succeeded_run_old_rows_and_destination_rows() {
        let f = files();
        let store = Store::open_in_memory().await.unwrap();
        let old = run_with(
            &store,
            "shop",
            RunStatus::Succeeded,
            legacy(Some(&f.archive)),
        )
        .await;
        let new = run_with(
            &store,
            "shop2",
            RunStatus::Succeeded,
            at("local", "shop/data/20261129T010203.456Z.tar.gz"),
        )
        .await;
        for id in [old, new] {
            for (kind, name, body) in [
                ("archive", "20261129T010203.456Z.tar.gz", "gz"),
                ("sha256", "20261129T010203.456Z.tar.gz.sha256", "sum"),
                ("manifest", "20261129T010203.456Z.manifest.json", "{}"),
            ] {
                let kind: DownloadKind = kind.parse().unwrap();
                let mut download = open_by_id(&store, &f.destinations, id, kind, Reach::default())
                    .await
                    .unwrap();
                assert_eq!(download.file_name, name);
                assert_eq!(download.len, Some(body.len() as u64));
                assert_eq!(download.run.id, id);
                assert_eq!(read_all(&mut download).await, body);
            }
        }
    }

    #[tokio::test]
    async fn refuses_what_it_must_not_serve() {
        let f = files();
        let store = Store::open_in_memory().await.unwrap();
        let root = f.dir.path().join("artifacts");
        let d = &f.destinations;
        let ok = run_with(
            &store,
            "shop",
            RunStatus::Succeeded,
            legacy(Some(&f.archive)),
        )
        .await;
        let failed = run_with(&store, "shop", RunStatus::Failed, legacy(None)).await;
        // A row whose artifact points outside the artifacts directory (tampered database).
        let outside = f.dir.path().join("secret.tar.gz");
        std::fs::write(&outside, b"x").unwrap();
        let escaped = run_with(&store, "evil", RunStatus::Succeeded, legacy(Some(&outside))).await;
        let traversal = root.join("shop/data/../../../secret.tar.gz");
        let dotdot = run_with(
            &store,
            "evil2",
            RunStatus::Succeeded,
            legacy(Some(&traversal)),
        )
        .await;
        let gone = root.join("shop/data/gone.tar.gz");
        let missing = run_with(&store, "shop2", RunStatus::Succeeded, legacy(Some(&gone))).await;
        let bad_key = run_with(
            &store,
            "evil3",
            RunStatus::Succeeded,
            at("local", "../x.tar.gz"),
        )
        .await;
        let elsewhere = run_with(
            &store,
            "shop3",
            RunStatus::Succeeded,
            at("offsite", "a/b/c.tar.gz"),
        )
        .await;
        let not_there = run_with(
            &store,
            "shop4",
            RunStatus::Succeeded,
            at("local", "a/b/c.tar.gz"),
        )
        .await;

        let err = |r: Result<Download, DownloadError>| r.unwrap_err();
        let e = err(open_by_id(&store, d, 999, DownloadKind::Archive, Reach::default()).await);
        assert!(matches!(e, DownloadError::NotFound(999)));
        assert_eq!(e.http_status(), 404);
        let e = err(open_by_id(&store, d, failed, DownloadKind::Archive, Reach::default()).await);
        assert!(matches!(e, DownloadError::NotSucceeded(_)));
        assert_eq!(e.http_status(), 409);
        for id in [escaped, dotdot] {
            let e = err(open_by_id(&store, d, id, DownloadKind::Archive, Reach::default()).await);
            assert!(matches!(e, DownloadError::Outside { .. }), "{e:?}");
        }
        let e = err(open_by_id(&store, d, missing, DownloadKind::Checksum, Reach::default()).await);
        assert!(matches!(e, DownloadError::Missing { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "the sha256 file of run 5 is missing at its destination; it was deleted or moved \
             (the history row remains)"
        );
        let e = err(open_by_id(&store, d, bad_key, DownloadKind::Archive, Reach::default()).await);
        assert!(matches!(e, DownloadError::Destination { .. }), "{e:?}");
        assert!(e.to_string().contains("`..`"), "{e}");
        let e = err(open_by_id(
            &store,
            d,
            elsewhere,
            DownloadKind::Archive,
            Reach::default(),
        )
        .await);
        assert!(
            matches!(e, DownloadError::UnknownDestination { .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("\"offsite\""), "{e}");
        let e = err(open_by_id(
            &store,
            d,
            not_there,
            DownloadKind::Manifest,
            Reach::default(),
        )
        .await);
        assert!(matches!(e, DownloadError::Missing { .. }), "{e:?}");
        let allowed = vec!["other".to_owned()];
        let e = err(open_by_id(
            &store,
            d,
            ok,
            DownloadKind::Archive,
            Reach {
                namespaces: Some(&allowed),
                scope: None,
            },
        )
        .await);
        assert!(matches!(e, DownloadError::NotAllowed(_)));
        assert!("../x".parse::<DownloadKind>().is_err());
        assert_eq!(DownloadKind::Archive.content_type(), "application/gzip");
    }

    #[tokio::test]
    async fn a_run_of_another_cluster_reads_as_unknown() {
        let f = files();
        let d = &f.destinations;
        let store = Store::open_in_memory().await.unwrap();
        let ok = run_with(
            &store,
            "shop",
            RunStatus::Succeeded,
            legacy(Some(&f.archive)),
        )
        .await;
        let err = |r: Result<Download, DownloadError>| r.unwrap_err();
        // `ok` was recorded without a cluster: another connection's session finds nothing (the
        // answer of an unknown id); the default connection's cluster reaches it.
        let other = RunScope {
            cluster: "https://10.0.0.2:6443 ca:system".to_owned(),
            unrecorded: false,
        };
        let reach = |scope| Reach {
            namespaces: None,
            scope: Some(scope),
        };
        let e = err(open_by_id(&store, d, ok, DownloadKind::Archive, reach(&other)).await);
        assert!(matches!(e, DownloadError::NotFound(_)), "{e:?}");
        assert_eq!(e.http_status(), 404);
        assert_eq!(e.to_string(), format!("no backup run has id {ok}"));
        let default = RunScope {
            unrecorded: true,
            ..other.clone()
        };
        open_by_id(&store, d, ok, DownloadKind::Archive, reach(&default))
            .await
            .unwrap();
    }
}
