//! Restore drills: the newest successful backup of a PVC restored into a throwaway PVC beside it
//! (`nkvm-drill-<id>`, same namespace, the backup's size and storage class), the restored content
//! read back with tar in the helper and compared with what the archive holds (files, bytes,
//! directories, links), the throwaway PVC removed, the result recorded and audited.

use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Api;
use tokio::io::AsyncReadExt;

use super::check::Decoded;
use super::engine::{Inner, RestoreEngine};
use super::error::RestoreError;
use super::run::Job;
use super::{DrillResult, RestoreRequest, RestoreTarget, Rules};
use crate::backup::exec::{TarSession, tar_command};
use crate::backup::tarcheck::{MemberKind, TarChecker, TarCounts};
use crate::backup::{PvcRef, Requester, new_run_id};
use crate::domain::{DrillStatus, RestoreMode, ResultStatus};
use crate::kubeapi::timed;
use crate::timestamp::rfc3339;

/// `nkvm-drill-<id>`.
pub fn throwaway_name(id: &str) -> String {
    let mut name = format!("nkvm-drill-{id}");
    name.truncate(63);
    name
}

/// Runs a drill of `target`.
pub(super) async fn run(
    engine: &RestoreEngine,
    inner: &Inner,
    target: &PvcRef,
    requester: &Requester,
) -> DrillResult {
    let started = jiff::Timestamp::now();
    let id = new_run_id(started);
    let failed = |message: String, run_id: Option<String>| DrillResult {
        status: DrillStatus::Failed,
        run_id,
        message,
        namespace: target.namespace.clone(),
        pvc: target.name.clone(),
        restore_id: None,
        throwaway_pvc: None,
        removed: true,
        files: None,
        bytes: None,
        started_at: rfc3339(started),
        finished_at: rfc3339(jiff::Timestamp::now()),
        stage: Some(crate::domain::RestoreStage::Preflight),
    };
    let result = match newest_backup(engine, inner, target).await {
        Err(message) => failed(message, None),
        Ok(run) => {
            let throwaway = PvcRef::new(&target.namespace, throwaway_name(&id));
            let request = RestoreRequest {
                run_id: run.run_id.clone(),
                target: RestoreTarget::NewPvc {
                    name: throwaway.name.clone(),
                    namespace: Some(throwaway.namespace.clone()),
                    storage_class: None,
                    size: None,
                },
                rules: Rules::default(),
                keep_failed_pvc: false,
            };
            let restored = engine
                .run_job(
                    &id,
                    RestoreMode::Drill,
                    request,
                    run.clone(),
                    throwaway.clone(),
                    requester,
                )
                .await;
            let passed =
                restored.status == ResultStatus::Succeeded && restored.pvc_kept == Some(false);
            DrillResult {
                status: if passed {
                    DrillStatus::Passed
                } else {
                    DrillStatus::Failed
                },
                run_id: Some(run.run_id.clone()),
                message: if passed {
                    format!(
                        "drill passed: backup {} restored into a throwaway PVC, its content \
                         matches the manifest, and the PVC was removed ({})",
                        run.run_id, restored.message
                    )
                } else {
                    format!("drill failed: {}", restored.message)
                },
                namespace: target.namespace.clone(),
                pvc: target.name.clone(),
                restore_id: Some(restored.restore_id.clone()),
                throwaway_pvc: Some(throwaway.name.clone()),
                removed: restored.pvc_kept != Some(true),
                files: restored.files,
                bytes: restored.bytes,
                started_at: rfc3339(started),
                finished_at: restored.finished_at.clone(),
                stage: restored.stage,
            }
        }
    };
    engine.audit_drill(requester, &result).await;
    result
}

/// The newest successful backup of `target` (by the PVC's UID when it exists, else by name).
async fn newest_backup(
    engine: &RestoreEngine,
    inner: &Inner,
    target: &PvcRef,
) -> Result<crate::store::RunRecord, String> {
    if !inner.backup_options().namespace_allowed(&target.namespace) {
        return Err(format!(
            "namespace {:?} is not in this server's namespace allowlist",
            target.namespace
        ));
    }
    let api: Api<PersistentVolumeClaim> =
        Api::namespaced(inner.backups.client().clone(), &target.namespace);
    let timeout = inner.backup_options().request_timeout;
    let uid = timed(timeout, crate::backup::lookup::object(&api, &target.name))
        .await
        .ok()
        .flatten()
        .and_then(|pvc| pvc.metadata.uid);
    let store = inner.store();
    let newest = match uid {
        Some(uid) => store.last_success(&uid).await,
        None => store
            .succeeded_runs_of(&target.namespace, &target.name)
            .await
            .map(|runs| runs.into_iter().next()),
    }
    .map_err(|err| format!("reading the history failed: {err}"))?;
    let run = newest
        .ok_or_else(|| format!("{target} has no successful backup to drill; back it up first"))?;
    engine.restorable_run(&run.run_id).await
}

/// Reads the restored volume back with tar in the helper and compares what it holds with the
/// archive (a volume's own `lost+found` directory aside).
pub(super) async fn check_content(
    job: &mut Job<'_>,
    api: &Api<Pod>,
    pod: &str,
    expected: &Decoded,
) -> Result<(), RestoreError> {
    let mut session = TarSession::start(api, pod, tar_command(), true, job.retry())
        .await
        .map_err(|err| {
            RestoreError::Finalize(format!("the content check could not start: {err}"))
        })?;
    let stall = job.stall_timeout();
    let mut checker = TarChecker::reporting();
    let mut lost_found = false;
    let mut buf = vec![0u8; 128 * 1024];
    let read: Result<(), String> = async {
        while !checker.is_complete() {
            let n = match tokio::time::timeout(stall, session.stdout().read(&mut buf)).await {
                Err(_) => return Err(format!("no data for {}s", stall.as_secs())),
                Ok(Err(err)) => return Err(err.to_string()),
                Ok(Ok(0)) => break,
                Ok(Ok(n)) => n,
            };
            checker.feed(&buf[..n]).map_err(|e| e.to_string())?;
            for member in checker.take_members() {
                if member.kind == MemberKind::Directory
                    && member.path.trim_end_matches('/') == "./lost+found"
                {
                    lost_found = true;
                }
            }
        }
        Ok(())
    }
    .await;
    let status = session.finish(Duration::from_secs(30)).await;
    let found = read
        .and_then(|()| checker.finish().map_err(|e| e.to_string()))
        .map_err(|err| {
            RestoreError::Finalize(format!("reading the restored content back failed: {err}"))
        })?;
    if !status.succeeded() {
        return Err(RestoreError::Finalize(format!(
            "reading the restored content back failed: tar exited with {:?}: {}",
            status.exit_code(),
            status.stderr
        )));
    }
    let differences = compare(&expected.counts, &found, lost_found);
    if differences.is_empty() {
        Ok(())
    } else {
        Err(RestoreError::Finalize(format!(
            "the restored content differs from the backup: {}",
            differences.join("; ")
        )))
    }
}

/// Differences between the archive's counts and the restored volume's; a `lost+found` directory
/// the volume made itself is not one.
fn compare(expected: &TarCounts, found: &TarCounts, lost_found: bool) -> Vec<String> {
    let mut found = *found;
    if lost_found && found.directories == expected.directories + 1 {
        found.directories -= 1;
        found.entries -= 1;
    }
    let mut differences = Vec::new();
    for (what, want, got) in [
        ("files", expected.regular_files, found.regular_files),
        (
            "bytes of file content",
            expected.file_bytes,
            found.file_bytes,
        ),
        ("directories", expected.directories, found.directories),
        ("symlinks", expected.symlinks, found.symlinks),
        ("hard links", expected.hard_links, found.hard_links),
        ("entries", expected.entries, found.entries),
    ] {
        if want != got {
            differences.push(format!("the backup holds {want} {what}, the volume {got}"));
        }
    }
    differences
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_must_match_but_lost_found_is_forgiven() {
        let expected = TarCounts {
            entries: 4,
            regular_files: 2,
            file_bytes: 10,
            directories: 1,
            symlinks: 1,
            ..TarCounts::default()
        };
        assert!(compare(&expected, &expected, false).is_empty());
        let with_lf = TarCounts {
            entries: 5,
            directories: 2,
            ..expected
        };
        assert!(compare(&expected, &with_lf, true).is_empty());
        assert_eq!(compare(&expected, &with_lf, false).len(), 2);
        let short = TarCounts {
            file_bytes: 9,
            ..expected
        };
        assert_eq!(
            compare(&expected, &short, false),
            ["the backup holds 10 bytes of file content, the volume 9"]
        );
        assert!(throwaway_name(&"x".repeat(80)).len() <= 63);
    }
}
