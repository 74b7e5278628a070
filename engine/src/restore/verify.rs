//! Verification of a stored backup without restoring it: one streamed pass over the archive
//! ([`super::check::pass`]) and a comparison of what it found with what was recorded when the
//! backup was made — the history row (sha256, size, files, bytes), the `.sha256` sidecar and the
//! manifest (digest, size and every count of the tar stream). [`judge`] is pure; [`verify_run`]
//! reads the files through [`super::source`].

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::check::{self, CheckError, PassConfig, PassOutcome, PassProgress};
use super::run::{NoPublish, Publish, Tracker};
use super::source::{self, Sources};
use crate::audit::{AuditAction, AuditOutcome};
use crate::backup::artifact::Manifest;
use crate::backup::{BackupOptions, PvcRef, Requester};
use crate::domain::format::format_bytes;
use crate::domain::{JobKind, RestoreStage, RunStatus, VerifyStatus};
use crate::download::DownloadKind;
use crate::store::RunRecord;
use crate::store::{Store, VerificationUpdate};

/// One verification's result (`nkvm verify --output json`): `run_id`, `namespace`, `pvc`,
/// `status` (`verified` | `failed`), `message`, `sha256`, `bytes`, `files`, `verified_at`, plus
/// details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyResult {
    pub run_id: String,
    pub namespace: String,
    pub pvc: String,
    pub status: VerifyStatus,
    /// What was checked, or every problem found.
    pub message: String,
    /// The archive's sha256 as computed now (null when it could not be read).
    pub sha256: Option<String>,
    /// Archive size in bytes, as read now.
    pub bytes: Option<u64>,
    /// Regular files in the archive.
    pub files: Option<u64>,
    /// File content bytes in the archive.
    pub file_bytes: Option<u64>,
    /// Tar entries walked.
    pub entries: Option<u64>,
    pub verified_at: String,
    pub verified_by: String,
    /// The history row's id (`/download/<id>/...`).
    pub history_id: i64,
    /// Each problem found (empty when verified).
    pub problems: Vec<String>,
}

/// What one verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub outcome: Option<PassOutcome>,
    /// Empty when the archive is what the backup recorded.
    pub problems: Vec<String>,
}

impl Verdict {
    pub fn status(&self) -> VerifyStatus {
        if self.problems.is_empty() {
            VerifyStatus::Verified
        } else {
            VerifyStatus::Failed
        }
    }

    /// One message for people.
    pub fn message(&self) -> String {
        if !self.problems.is_empty() {
            return format!("verification failed: {}", self.problems.join("; "));
        }
        match self.outcome.as_ref().map(|o| &o.decoded) {
            Some(Ok(decoded)) => format!(
                "verified: the sha256 matches the history and the .sha256 sidecar; the gzip \
                 stream (CRC32 and size) and all {} tar entries are intact; {} files and {} of \
                 content, as in the manifest",
                decoded.counts.entries,
                decoded.counts.regular_files,
                format_bytes(decoded.counts.file_bytes)
            ),
            _ => "verified".to_owned(),
        }
    }
}

/// Compares what a pass found with the history row, the sidecar and the manifest.
pub fn judge(
    run: &RunRecord,
    sidecar: &Result<String, String>,
    manifest: &Result<Manifest, String>,
    outcome: &PassOutcome,
) -> Vec<String> {
    let mut problems = Vec::new();
    let digest = &outcome.sha256;
    match run.sha256.as_deref() {
        Some(recorded) if recorded == digest => {}
        Some(recorded) => problems.push(format!(
            "TAMPERED OR CORRUPTED: the archive's sha256 is {digest}, but the history recorded \
             {recorded} when the backup was made; the archive changed since then (do not \
             restore it)"
        )),
        None => problems.push("the history row records no sha256 for this backup".to_owned()),
    }
    match sidecar {
        Ok(sum) if sum == digest => {}
        Ok(sum) => problems.push(format!(
            "the .sha256 sidecar says {sum}, not the archive's {digest}"
        )),
        Err(err) => problems.push(format!("the .sha256 sidecar could not be used: {err}")),
    }
    if let Some(recorded) = run.bytes
        && recorded != outcome.archive_bytes
    {
        problems.push(format!(
            "the archive is {} bytes, the history recorded {recorded}",
            outcome.archive_bytes
        ));
    }
    let decoded = match &outcome.decoded {
        Ok(decoded) => decoded,
        Err(err) => {
            problems.push(format!("the archive is damaged: {err}"));
            return problems;
        }
    };
    let counts = &decoded.counts;
    if let Some(files) = run.files
        && files != counts.regular_files
    {
        problems.push(format!(
            "the archive holds {} files, the history recorded {files}",
            counts.regular_files
        ));
    }
    if let Some(bytes) = run.source_bytes
        && bytes != counts.file_bytes
    {
        problems.push(format!(
            "the archive holds {} bytes of files, the history recorded {bytes}",
            counts.file_bytes
        ));
    }
    match manifest {
        Err(err) => problems.push(format!("the manifest could not be used: {err}")),
        Ok(manifest) => {
            if &manifest.archive.sha256 != digest {
                problems.push(format!(
                    "the manifest records sha256 {}, not the archive's {digest}",
                    manifest.archive.sha256
                ));
            }
            if manifest.archive.bytes != outcome.archive_bytes {
                problems.push(format!(
                    "the manifest records an archive of {} bytes, it is {}",
                    manifest.archive.bytes, outcome.archive_bytes
                ));
            }
            let expected = &manifest.contents;
            for (what, recorded, found) in [
                ("entries", expected.entries, counts.entries),
                (
                    "regular files",
                    expected.regular_files,
                    counts.regular_files,
                ),
                (
                    "bytes of file content",
                    expected.file_bytes,
                    counts.file_bytes,
                ),
                ("directories", expected.directories, counts.directories),
                ("symlinks", expected.symlinks, counts.symlinks),
                ("hard links", expected.hard_links, counts.hard_links),
                ("other entries", expected.other, counts.other),
                (
                    "tar stream bytes",
                    expected.stream_bytes,
                    counts.stream_bytes,
                ),
            ] {
                if recorded != found {
                    problems.push(format!(
                        "the manifest records {recorded} {what}, the archive holds {found}"
                    ));
                }
            }
        }
    }
    problems
}

/// Verifies `run`'s archive: reads it once (progress in `progress`, `on_progress` called while
/// reading) and judges it. Reading failures are problems too; only cancellation is an error.
pub async fn verify_run(
    sources: &Sources<'_>,
    run: &RunRecord,
    config: &PassConfig,
    cancel: &CancellationToken,
    progress: Arc<PassProgress>,
    on_progress: impl FnMut(&PassProgress),
) -> Result<Verdict, CheckError> {
    let archive = match source::open_run_file(sources, run, DownloadKind::Archive).await {
        Ok(file) => file,
        Err(err) => {
            return Ok(Verdict {
                outcome: None,
                problems: vec![format!("the archive could not be opened: {err}")],
            });
        }
    };
    let passed = check::pass(archive.reader, config, None, cancel, progress, on_progress).await;
    let outcome = match passed {
        Ok(outcome) => outcome,
        Err(CheckError::Cancelled) => return Err(CheckError::Cancelled),
        Err(err) => {
            return Ok(Verdict {
                outcome: None,
                problems: vec![format!("the archive could not be read to its end: {err}")],
            });
        }
    };
    let sidecar = source::read_sidecar(sources, run).await;
    let manifest = source::read_manifest(sources, run).await;
    let problems = judge(run, &sidecar, &manifest, &outcome);
    Ok(Verdict {
        outcome: Some(outcome),
        problems,
    })
}

/// One verification as a job: progress events, the check, the history row updated.
pub(super) async fn verify_job(
    store: &Store,
    options: &BackupOptions,
    sink: &dyn Publish,
    id: &str,
    run: &RunRecord,
    requester: &Requester,
    cancel: &CancellationToken,
) -> VerifyResult {
    let mut tracker = Tracker::new(
        sink,
        id,
        JobKind::Verify,
        &run.run_id,
        &PvcRef::new(&run.namespace, &run.pvc),
    );
    tracker.event.stage = RestoreStage::Verify;
    tracker.event.progress.total_bytes = run.source_bytes;
    tracker.event.progress.total_files = run.files;
    tracker.emit();
    let destinations = options.destinations();
    let sources = Sources {
        destinations: &destinations,
        allowlist: options.allowlist.as_deref(),
    };
    let config = PassConfig {
        rules: None,
        stall_timeout: options.stall_timeout,
        progress_interval: options.progress_interval,
        hash_to_end: true,
    };
    let progress = Arc::new(PassProgress::default());
    let verdict = verify_run(&sources, run, &config, cancel, progress, |p| {
        tracker.update(p);
    })
    .await;
    let at = jiff::Timestamp::now();
    let (status, message, outcome) = match verdict {
        Ok(verdict) => (verdict.status(), verdict.message(), Some(verdict)),
        Err(_) => (
            VerifyStatus::Failed,
            "verification was cancelled before it finished".to_owned(),
            None,
        ),
    };
    let cancelled = outcome.is_none();
    let mut message = message;
    if !cancelled
        && let Err(err) = store
            .record_verification(
                run.id,
                &VerificationUpdate {
                    at,
                    status,
                    by: requester.started_by.clone(),
                    message: message.clone(),
                },
            )
            .await
    {
        message = format!("{message}; warning: the result could not be recorded: {err}");
    }
    let decoded = outcome
        .as_ref()
        .and_then(|v| v.outcome.as_ref())
        .and_then(|o| o.decoded.as_ref().ok());
    let read = outcome.as_ref().and_then(|v| v.outcome.as_ref());
    tracker.finish(
        if status == VerifyStatus::Verified {
            RunStatus::Succeeded
        } else if cancelled {
            RunStatus::Cancelled
        } else {
            RunStatus::Failed
        },
        &message,
    );
    let result = VerifyResult {
        run_id: run.run_id.clone(),
        namespace: run.namespace.clone(),
        pvc: run.pvc.clone(),
        status,
        sha256: read.map(|o| o.sha256.clone()),
        bytes: read.map(|o| o.archive_bytes),
        files: decoded.map(|d| d.counts.regular_files),
        file_bytes: decoded.map(|d| d.counts.file_bytes),
        entries: decoded.map(|d| d.counts.entries),
        verified_at: crate::timestamp::rfc3339(at),
        verified_by: requester.started_by.clone(),
        history_id: run.id,
        problems: outcome.map(|v| v.problems).unwrap_or_default(),
        message,
    };
    let outcome = match result.status {
        VerifyStatus::Verified => AuditOutcome::Success,
        VerifyStatus::Failed => AuditOutcome::Failure,
    };
    super::audit(
        store,
        requester,
        AuditAction::Verify,
        outcome,
        &format!("{}/{} run {}", result.namespace, result.pvc, result.run_id),
        Some(result.message.clone()),
    )
    .await;
    result
}

/// The backup run `run_id`, if it may be restored or verified here: it exists (in the engine's
/// [`BackupOptions::scope`], when it has one), is in an allowed namespace, and succeeded.
pub async fn restorable_run(
    store: &Store,
    options: &BackupOptions,
    run_id: &str,
) -> Result<RunRecord, String> {
    let unknown = || format!("no backup run has id {run_id:?}; `nkvm history` lists them");
    let run = store
        .run_by_run_id(run_id)
        .await
        .map_err(|err| format!("reading the history failed: {err}"))?
        .ok_or_else(unknown)?;
    // A run of another cluster connection is answered like an unknown one.
    if let Some(scope) = &options.scope
        && !scope.contains(run.cluster.as_deref())
    {
        return Err(unknown());
    }
    if !options.namespace_allowed(&run.namespace) {
        return Err(format!(
            "run {run_id} is a backup of namespace {:?}, which is not in this server's namespace \
             allowlist",
            run.namespace
        ));
    }
    if run.status != RunStatus::Succeeded {
        return Err(format!(
            "run {run_id} did not succeed ({}), so it has no archive to restore or verify",
            run.status
        ));
    }
    Ok(run)
}

/// Audits a verification refused before it started.
pub(super) async fn audit_refusal(
    store: &Store,
    requester: &Requester,
    run_id: &str,
    message: &str,
) {
    super::audit(
        store,
        requester,
        AuditAction::Verify,
        AuditOutcome::Failure,
        &format!("run {run_id}"),
        Some(message.to_owned()),
    )
    .await;
}

/// Verifies run `run_id`'s archive without a cluster (the CLI): the check, the result recorded in
/// the history row, audited. Refused (an error message) when the run cannot be verified here.
pub async fn verify_stored(
    store: &Store,
    options: &BackupOptions,
    run_id: &str,
    requester: &Requester,
    cancel: &CancellationToken,
) -> Result<VerifyResult, String> {
    let run = match restorable_run(store, options, run_id).await {
        Ok(run) => run,
        Err(message) => {
            audit_refusal(store, requester, run_id, &message).await;
            return Err(message);
        }
    };
    let id = crate::backup::new_run_id(jiff::Timestamp::now());
    Ok(verify_job(store, options, &NoPublish, &id, &run, requester, cancel).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::artifact::ArchiveInfo;
    use crate::backup::tarcheck::TarCounts;
    use crate::domain::{PvcSummary, RunStatus};
    use crate::restore::check::Decoded;

    const SUM: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const OTHER: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn counts() -> TarCounts {
        TarCounts {
            entries: 5,
            regular_files: 3,
            file_bytes: 300,
            directories: 1,
            symlinks: 1,
            hard_links: 0,
            other: 0,
            stream_bytes: 10_240,
        }
    }

    fn run() -> RunRecord {
        serde_json::from_value(serde_json::json!({
            "id": 4, "run_id": "r", "pvc_uid": "u", "namespace": "shop", "pvc": "data",
            "status": RunStatus::Succeeded, "stage": null, "message": null, "started_by": "t",
            "started_at": "2026-11-28T23:18:58.123456Z", "finished_at": null, "bytes": 100,
            "source_bytes": 300, "files": 3, "sha256": SUM, "artifact": null, "helper_pod": null,
            "node": null, "destination": null, "object_key": null, "helper_uid": null,
            "cluster": null,
        }))
        .unwrap()
    }

    fn manifest() -> Manifest {
        Manifest {
            format: crate::backup::artifact::MANIFEST_FORMAT.to_owned(),
            nkvm_version: "0".to_owned(),
            run_id: "r".to_owned(),
            started_by: "t".to_owned(),
            started_at: String::new(),
            finished_at: String::new(),
            pvc: PvcSummary {
                namespace: "shop".to_owned(),
                name: "data".to_owned(),
                uid: "u".to_owned(),
                phase: "Bound".to_owned(),
                capacity: Some("1Gi".to_owned()),
                capacity_bytes: Some(1 << 30),
                storage_class: None,
                access_modes: vec![],
                volume_name: None,
            },
            owner_kind: "Unknown".to_owned(),
            owner_name: "Unknown".to_owned(),
            owners: vec![],
            consumers: vec![],
            node: None,
            helper_pod: "h".to_owned(),
            helper_image: "i".to_owned(),
            archive: ArchiveInfo {
                file: "x.tar.gz".to_owned(),
                bytes: 100,
                sha256: SUM.to_owned(),
                format: "tar+gzip".to_owned(),
                gzip_level: 6,
                files: 3,
                source_bytes: 300,
                compressed_by: None,
            },
            contents: counts(),
        }
    }

    fn outcome(sha: &str, decoded: Result<Decoded, CheckError>) -> PassOutcome {
        PassOutcome {
            sha256: sha.to_owned(),
            archive_bytes: 100,
            decoded,
        }
    }

    fn intact() -> Decoded {
        Decoded {
            tar_bytes: 10_240,
            counts: counts(),
            samples: vec![],
        }
    }

    #[test]
    fn an_intact_archive_is_verified() {
        let problems = judge(
            &run(),
            &Ok(SUM.to_owned()),
            &Ok(manifest()),
            &outcome(SUM, Ok(intact())),
        );
        assert!(problems.is_empty(), "{problems:?}");
        let verdict = Verdict {
            outcome: Some(outcome(SUM, Ok(intact()))),
            problems,
        };
        assert_eq!(verdict.status(), VerifyStatus::Verified);
        assert!(
            verdict.message().contains("all 5 tar entries are intact"),
            "{}",
            verdict.message()
        );
    }

    #[test]
    fn a_tampered_archive_says_so() {
        let problems = judge(
            &run(),
            &Ok(SUM.to_owned()),
            &Ok(manifest()),
            &outcome(OTHER, Ok(intact())),
        );
        let verdict = Verdict {
            outcome: None,
            problems,
        };
        assert_eq!(verdict.status(), VerifyStatus::Failed);
        let message = verdict.message();
        assert!(message.contains("TAMPERED OR CORRUPTED"), "{message}");
        assert!(message.contains("sidecar says"), "{message}");
        assert!(message.contains("manifest records sha256"), "{message}");
    }

    #[test]
    fn every_recorded_fact_is_compared() {
        let mut other = counts();
        other.symlinks = 2;
        other.file_bytes = 301;
        let problems = judge(
            &run(),
            &Err("missing".to_owned()),
            &Ok(manifest()),
            &outcome(
                SUM,
                Ok(Decoded {
                    tar_bytes: 10_240,
                    counts: other,
                    samples: vec![],
                }),
            ),
        );
        let text = problems.join("\n");
        assert!(
            text.contains("sidecar could not be used: missing"),
            "{text}"
        );
        assert!(
            text.contains("301 bytes of files, the history recorded 300"),
            "{text}"
        );
        assert!(text.contains("1 symlinks, the archive holds 2"), "{text}");
        let damaged = judge(
            &run(),
            &Ok(SUM.to_owned()),
            &Err("gone".to_owned()),
            &outcome(SUM, Err(CheckError::Cancelled)),
        );
        assert_eq!(damaged, ["the archive is damaged: cancelled"]);
    }

    #[tokio::test]
    async fn a_run_of_another_cluster_is_not_restorable_and_reads_as_unknown() {
        let store = Store::open_in_memory().await.unwrap();
        for (run_id, cluster) in [
            ("mine", "https://a:443 ca:system"),
            ("theirs", "https://b:443 ca:system"),
        ] {
            let id = store
                .insert_run(&crate::store::NewRun {
                    run_id: run_id.to_owned(),
                    pvc_uid: format!("uid-{run_id}"),
                    namespace: "shop".to_owned(),
                    pvc: "data".to_owned(),
                    started_by: "t".to_owned(),
                    started_at: jiff::Timestamp::now(),
                    cluster: Some(cluster.to_owned()),
                })
                .await
                .unwrap();
            let done = crate::store::RunUpdate {
                status: Some(RunStatus::Succeeded),
                ..Default::default()
            };
            store.update_run(id, &done).await.unwrap();
        }
        let scoped = BackupOptions {
            scope: Some(crate::store::RunScope {
                cluster: "https://a:443 ca:system".to_owned(),
                unrecorded: true,
            }),
            ..BackupOptions::default()
        };
        assert_eq!(
            restorable_run(&store, &scoped, "mine")
                .await
                .unwrap()
                .run_id,
            "mine"
        );
        let refused = restorable_run(&store, &scoped, "theirs").await.unwrap_err();
        let unknown = restorable_run(&store, &scoped, "nope").await.unwrap_err();
        assert_eq!(refused.replace("theirs", "nope"), unknown);
        // Without a scope (the CLI) every run is restorable.
        let cli = BackupOptions::default();
        restorable_run(&store, &cli, "theirs").await.unwrap();
    }
}
