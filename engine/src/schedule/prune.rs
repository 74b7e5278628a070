//! Retention, executed: [`plan`] decides for every successful, not yet pruned backup which policy
//! applies (the retention of the schedule that made it, else the server's default; a backup under
//! no policy is not considered) and whether it is kept; [`execute`] deletes the archive, sidecar and
//! manifest of each backup to delete at its destination, marks its history row as pruned (kept for
//! the record) and audits every deletion. The newest successful and the newest verified backup of
//! each PVC are never deleted, whatever the policy says.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;

use super::retention::{self, Backup, KeepReason, Retention};
use super::{STARTED_BY_PREFIX, Schedule};
use crate::audit::{AuditAction, AuditEvent, AuditOutcome};
use crate::destination::{Destination, DestinationError, Destinations, DestinationsConfig};
use crate::store::{RunRecord, Store, StoreError};

/// The policy name of backups under the server's default retention.
pub const DEFAULT_POLICY: &str = "default";

/// What happens (or happened) to one backup. Serialises to `nkvm prune --output json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PruneItem {
    pub run_id: String,
    /// History row id.
    pub id: i64,
    pub namespace: String,
    pub pvc: String,
    pub finished_at: String,
    /// Destination name (`null`: a local archive recorded before destinations existed).
    pub destination: Option<String>,
    /// Path or URI of the archive.
    pub artifact: Option<String>,
    /// The schedule whose retention applies, or `default`.
    pub policy: String,
    /// The rules of that retention (`last 7, daily 14`).
    pub retention: String,
    /// `keep` or `delete`.
    pub action: PruneAction,
    /// Why it is kept (empty for deletions).
    pub reasons: Vec<String>,
    /// `kept`, `planned` (dry run), `deleted` or `failed`.
    pub status: PruneStatus,
    /// Why a deletion failed.
    pub message: Option<String>,
}

crate::text_enum! {
    /// What retention decided for a backup.
    pub enum PruneAction("prune action") {
        Keep => "keep",
        Delete => "delete",
    }
}

crate::text_enum! {
    /// Where a decision stands.
    pub enum PruneStatus("prune status") {
        Kept => "kept",
        /// A deletion a dry run would make.
        Planned => "planned",
        Deleted => "deleted",
        Failed => "failed",
    }
}

/// The policy that applies to a run: `(name, retention, zone)`.
fn policy_of<'a>(
    run: &RunRecord,
    schedules: &'a [Schedule],
    default: &'a Retention,
) -> Option<(&'a str, &'a Retention, TimeZone)> {
    let own = run
        .started_by
        .strip_prefix(STARTED_BY_PREFIX)
        .and_then(|name| schedules.iter().find(|s| s.name() == name))
        .filter(|s| s.definition.retention.is_set());
    match own {
        Some(schedule) => Some((
            schedule.name(),
            &schedule.definition.retention,
            TimeZone::get(&schedule.definition.timezone).unwrap_or(TimeZone::UTC),
        )),
        None if default.is_set() => Some((DEFAULT_POLICY, default, TimeZone::UTC)),
        None => None,
    }
}

/// Decides for every successful, not yet pruned backup in `allowed` namespaces (`None`: all)
/// under `schedules`' retentions and the `default` one. Items come by namespace, PVC, newest first.
pub async fn plan(
    store: &Store,
    schedules: &[Schedule],
    default: &Retention,
    allowed: Option<&[String]>,
) -> Result<Vec<PruneItem>, StoreError> {
    let runs: Vec<RunRecord> = store
        .unpruned_successes()
        .await?
        .into_iter()
        .filter(|r| allowed.is_none_or(|a| a.contains(&r.namespace)))
        .collect();
    let verified = store.newest_verified_by_uid().await?;
    // Rows come by PVC UID, newest first: the first of each UID is its newest success.
    let mut newest: BTreeMap<&str, i64> = BTreeMap::new();
    for run in &runs {
        newest.entry(run.pvc_uid.as_str()).or_insert(run.id);
    }
    let mut groups: BTreeMap<(&str, &str), (Vec<&RunRecord>, &Retention, TimeZone)> =
        BTreeMap::new();
    for run in &runs {
        if let Some((name, retention, zone)) = policy_of(run, schedules, default) {
            groups
                .entry((run.pvc_uid.as_str(), name))
                .or_insert_with(|| (Vec::new(), retention, zone))
                .0
                .push(run);
        }
    }
    let mut items = Vec::new();
    for ((uid, name), (group, retention, zone)) in groups {
        let backups: Vec<Backup> = group
            .iter()
            .filter_map(|r| {
                let finished = r.finished_at.as_deref()?.parse().ok()?;
                Some(Backup {
                    id: r.id,
                    finished_at: finished,
                })
            })
            .collect();
        let mut protected = Vec::new();
        if let Some(id) = newest.get(uid) {
            protected.push((*id, KeepReason::NewestSuccess));
        }
        if let Some(id) = verified.get(uid) {
            protected.push((*id, KeepReason::NewestVerified));
        }
        for decision in retention::select(&backups, retention, &zone, &protected) {
            let Some(run) = group.iter().find(|r| r.id == decision.id) else {
                continue;
            };
            let kept = decision.is_kept();
            items.push(PruneItem {
                run_id: run.run_id.clone(),
                id: run.id,
                namespace: run.namespace.clone(),
                pvc: run.pvc.clone(),
                finished_at: run.finished_at.clone().unwrap_or_default(),
                destination: run.destination.clone(),
                artifact: run.artifact.clone(),
                policy: name.to_owned(),
                retention: retention.to_string(),
                action: if kept {
                    PruneAction::Keep
                } else {
                    PruneAction::Delete
                },
                reasons: decision.keep.iter().map(ToString::to_string).collect(),
                status: if kept {
                    PruneStatus::Kept
                } else {
                    PruneStatus::Planned
                },
                message: None,
            });
        }
    }
    items.sort_by(|a, b| {
        a.namespace
            .cmp(&b.namespace)
            .then_with(|| a.pvc.cmp(&b.pvc))
            .then_with(|| b.finished_at.cmp(&a.finished_at))
            .then_with(|| b.id.cmp(&a.id))
    });
    Ok(items)
}

/// The keys of a backup's three files at its destination: archive, sidecar, manifest.
fn keys_of(archive: &str) -> Option<[String; 3]> {
    let stem = archive.strip_suffix(".tar.gz")?;
    Some([
        archive.to_owned(),
        format!("{archive}.sha256"),
        format!("{stem}.manifest.json"),
    ])
}

/// The key of a local archive recorded before destinations existed, relative to the artifacts
/// directory; `None` when the path lies outside it (a row that must not be trusted).
fn legacy_key(artifact: &str, artifacts_dir: &Path) -> Option<String> {
    let relative = Path::new(artifact).strip_prefix(artifacts_dir).ok()?;
    let parts: Option<Vec<&str>> = relative
        .components()
        .map(|c| match c {
            Component::Normal(part) => part.to_str(),
            _ => None,
        })
        .collect();
    let parts = parts?;
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Where a run's files are: its destination and archive key.
fn locate<'a>(
    run: &PruneItem,
    object_key: Option<&str>,
    destinations: &'a Destinations,
    legacy: &'a Destination,
    artifacts_dir: &Path,
) -> Result<(&'a Destination, String), String> {
    match (&run.destination, object_key) {
        (Some(name), Some(key)) => destinations
            .get(name)
            .map(|d| (d, key.to_owned()))
            .map_err(|e| format!("{e}; configure the destination again to prune this backup")),
        (Some(name), None) => Err(format!(
            "the history row names destination {name:?} but no object key; nothing was deleted"
        )),
        (None, _) => {
            let artifact = run.artifact.as_deref().unwrap_or_default();
            legacy_key(artifact, artifacts_dir)
                .map(|key| (legacy, key))
                .ok_or_else(|| {
                    format!(
                        "the archive {artifact:?} is not inside the artifacts directory {}; \
                         refusing to delete it",
                        artifacts_dir.display()
                    )
                })
        }
    }
}

/// Deletes the three files of one backup; a file already gone is fine.
async fn delete_files(destination: &Destination, archive_key: &str) -> Result<(), String> {
    let keys = keys_of(archive_key)
        .ok_or_else(|| format!("the archive key {archive_key:?} does not end in .tar.gz"))?;
    for key in &keys {
        match destination.delete(key).await {
            Ok(()) | Err(DestinationError::NotFound { .. }) => {}
            Err(error) => return Err(error.to_string()),
        }
    }
    Ok(())
}

/// Deletes what `items` plan to delete (status `planned`), marks each pruned row and audits each
/// deletion as `actor` (`pruned_by`). Items that fail keep their row unpruned (a later pass
/// retries) and carry the reason. `data_dir` locates archives recorded before destinations.
pub async fn execute(
    store: &Store,
    destinations: &Destinations,
    data_dir: &Path,
    items: Vec<PruneItem>,
    actor: &str,
) -> Vec<PruneItem> {
    let artifacts_dir = crate::backup::artifact::artifacts_dir(data_dir);
    let legacy = match Destinations::from_config(&DestinationsConfig::local_only(data_dir)) {
        Ok(local) => local.default_destination().clone(),
        Err(error) => {
            return items
                .into_iter()
                .map(|mut item| {
                    if item.status == PruneStatus::Planned {
                        item.status = PruneStatus::Failed;
                        item.message = Some(format!("the local destination is unusable: {error}"));
                    }
                    item
                })
                .collect();
        }
    };
    let mut done = Vec::with_capacity(items.len());
    for mut item in items {
        if item.status != PruneStatus::Planned {
            done.push(item);
            continue;
        }
        let object_key = match store.get_run(item.id).await {
            Ok(Some(run)) => run.object_key,
            Ok(None) => None,
            Err(error) => {
                item.status = PruneStatus::Failed;
                item.message = Some(format!("reading the history row failed: {error}"));
                done.push(item);
                continue;
            }
        };
        let outcome = match locate(
            &item,
            object_key.as_deref(),
            destinations,
            &legacy,
            &artifacts_dir,
        ) {
            Ok((destination, key)) => delete_files(destination, &key).await,
            Err(message) => Err(message),
        };
        let outcome = match outcome {
            Ok(()) => store
                .mark_pruned(item.id, Timestamp::now(), actor)
                .await
                .map(drop)
                .map_err(|e| {
                    format!("the files were deleted but the history row was not marked: {e}")
                }),
            Err(message) => Err(message),
        };
        let target = format!("{}/{} run {}", item.namespace, item.pvc, item.run_id);
        let event = match &outcome {
            Ok(()) => {
                item.status = PruneStatus::Deleted;
                tracing::info!(run = %item.run_id, pvc = %format!("{}/{}", item.namespace, item.pvc), policy = %item.policy, "backup pruned");
                AuditEvent::new(actor, AuditAction::BackupPruned, AuditOutcome::Success)
                    .with_detail(format!("retention {} ({})", item.policy, item.retention))
            }
            Err(message) => {
                item.status = PruneStatus::Failed;
                item.message = Some(message.clone());
                tracing::warn!(run = %item.run_id, error = %message, "pruning a backup failed");
                AuditEvent::new(actor, AuditAction::BackupPruned, AuditOutcome::Failure)
                    .with_detail(message.clone())
            }
        };
        store.audit(&event.with_target(target)).await;
        done.push(item);
    }
    done
}

#[cfg(test)]
mod tests;
