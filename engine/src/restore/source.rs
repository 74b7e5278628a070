//! Where a stored backup's files are read from: [`open_run_file`] is the one place that turns a
//! history row into a stream of its archive, sidecar or manifest, from whichever destination keeps
//! it (through [`crate::download::open`]: only succeeded runs, only in allowed namespaces).

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::backup::artifact::{MANIFEST_FORMAT, Manifest};
use crate::destination::Destinations;
use crate::download::{self, DownloadError, DownloadKind};
use crate::store::RunRecord;

/// Where runs' files are found.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    /// The configured destinations (a run names the one holding its files).
    pub destinations: &'a Destinations,
    /// Namespaces whose runs may be read (`None`: all).
    pub allowlist: Option<&'a [String]>,
}

/// One opened file of a run.
pub struct RunFile {
    pub reader: Box<dyn AsyncRead + Send + Unpin>,
    /// Its size, when the store knows it.
    pub len: Option<u64>,
}

impl std::fmt::Debug for RunFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunFile")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// Why a run's file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0}")]
    Open(#[from] DownloadError),
    #[error("reading the {kind} file of run {run_id} failed: {message}")]
    Read {
        run_id: String,
        kind: DownloadKind,
        message: String,
    },
    #[error("the {kind} file of run {run_id} is larger than {limit} bytes; it is not nkvm's")]
    TooLarge {
        run_id: String,
        kind: DownloadKind,
        limit: u64,
    },
}

/// Opens file `kind` of `run` for streaming, wherever the run's archive is kept.
pub async fn open_run_file(
    sources: &Sources<'_>,
    run: &RunRecord,
    kind: DownloadKind,
) -> Result<RunFile, SourceError> {
    if let Some(allowed) = sources.allowlist
        && !allowed.contains(&run.namespace)
    {
        return Err(DownloadError::NotAllowed(run.id).into());
    }
    let opened = download::open(sources.destinations, run, kind).await?;
    Ok(RunFile {
        reader: Box::new(opened.reader),
        len: opened.len,
    })
}

/// Largest sidecar or manifest read into memory.
const SMALL_FILE_LIMIT: u64 = 1 << 20;

/// Reads a small file of a run (sidecar, manifest) into memory.
async fn read_small(
    sources: &Sources<'_>,
    run: &RunRecord,
    kind: DownloadKind,
) -> Result<Vec<u8>, SourceError> {
    let file = open_run_file(sources, run, kind).await?;
    let mut bytes = Vec::new();
    file.reader
        .take(SMALL_FILE_LIMIT + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|err| SourceError::Read {
            run_id: run.run_id.clone(),
            kind,
            message: err.to_string(),
        })?;
    if bytes.len() as u64 > SMALL_FILE_LIMIT {
        return Err(SourceError::TooLarge {
            run_id: run.run_id.clone(),
            kind,
            limit: SMALL_FILE_LIMIT,
        });
    }
    Ok(bytes)
}

/// The digest the `.sha256` sidecar names (its first field), or why it cannot be used.
pub async fn read_sidecar(sources: &Sources<'_>, run: &RunRecord) -> Result<String, String> {
    let bytes = read_small(sources, run, DownloadKind::Checksum)
        .await
        .map_err(|err| err.to_string())?;
    let text = String::from_utf8_lossy(&bytes);
    let digest = text.split_whitespace().next().unwrap_or_default();
    if digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(digest.to_ascii_lowercase())
    } else {
        Err("the .sha256 sidecar does not start with a sha256 digest".to_owned())
    }
}

/// The run's manifest, or why it cannot be used.
pub async fn read_manifest(sources: &Sources<'_>, run: &RunRecord) -> Result<Manifest, String> {
    let bytes = read_small(sources, run, DownloadKind::Manifest)
        .await
        .map_err(|err| err.to_string())?;
    parse_manifest(&bytes)
}

/// A manifest written by a backup, checked for its format.
pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest, String> {
    let manifest: Manifest =
        serde_json::from_slice(bytes).map_err(|err| format!("the manifest is not valid: {err}"))?;
    if manifest.format == MANIFEST_FORMAT {
        Ok(manifest)
    } else {
        Err(format!(
            "the manifest has format {:?}, this nkvm reads {MANIFEST_FORMAT:?}",
            manifest.format
        ))
    }
}
