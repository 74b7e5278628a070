//! PVC inventory: lists PVCs, pods and controllers with a few paginated list calls per namespace scope
//! (`list`) and joins them into one record per PVC with its consumers and owners (`join`);
//! failures are [`InventoryError`]s (`error`). The web server keeps a [`LiveInventory`] instead
//! (`live`: watches, the same join after each burst of changes); the CLI scans once.
//!
//! Calls per scan: one paginated LIST per kind — PersistentVolumeClaims, Pods (full objects) and
//! ReplicaSets, Jobs, Deployments, CronJobs (metadata only, for the owner walk) — across all namespaces
//! when the scope is unrestricted, else per namespace. The number of requests does not depend on the
//! number of pods. Deployments and CronJobs are listed so that a ReplicaSet or Job pointing at a deleted
//! owner resolves to `Unknown` (see `owners`); StatefulSets and DaemonSets end the owner walk
//! and are not listed.
//!
//! Scope ([`resolve_scope`]): the request's namespaces, else the server's allowlist, else all
//! namespaces. Scoped scans are capped at `max_namespaces`; the unrestricted scan is a constant number
//! of calls and is not capped. In a scoped scan a namespace whose lists are forbidden (HTTP 403) becomes
//! a [`NamespaceRefusal`] naming the grants to add and the scan goes on; every other failure (401, 404,
//! 5xx, timeouts, and a 403 on an all-namespaces list) fails the scan with an [`InventoryError`] that
//! names the list, the namespace, the HTTP status and what to do.

mod error;
mod facts;
mod join;
mod list;
mod live;
mod shared;

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use kube::Client;
use serde::{Deserialize, Serialize};

pub use self::error::{InventoryError, Listing};
pub use self::join::apply_history;
use self::join::build_records;
use self::list::Listed;
use self::list::Lister;
pub use self::live::{LiveInventory, LiveReader, LiveSnapshot, StaleWatch};
pub use self::shared::{SharedLive, SharedResult, SharedScans};
use crate::domain::names::check_namespace;
pub use crate::domain::pvc::{Flag, NamespaceRefusal, PvcRecord};
use crate::kubeapi::{self, Call};
use crate::store::Store;

/// The result of one inventory scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    pub pvcs: Vec<PvcRecord>,
    pub refused: Vec<NamespaceRefusal>,
    /// Number of HTTP requests the scan made (for benchmarks and diagnostics).
    pub api_requests: u64,
}

/// Default page size of list calls. Larger than kubectl's 500 so that the benchmark cluster (5,000
/// PVCs and pods) is read in about 10 requests; a page of 2,000 pods is a few MB of JSON.
pub const DEFAULT_PAGE_SIZE: u32 = 2000;
/// Default cap on the number of namespaces a scoped scan may cover.
pub const DEFAULT_MAX_NAMESPACES: usize = 100;
/// Default timeout of each list request.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Namespaces scanned concurrently in a scoped scan (each runs its six lists concurrently).
const NAMESPACE_CONCURRENCY: usize = 4;

/// What to scan and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryOptions {
    /// Server-side allowlist: when set, only these namespaces may ever be scanned (an empty list allows
    /// none).
    pub allowlist: Option<Vec<String>>,
    /// Per-request filter; empty means every allowed namespace (all namespaces without an allowlist).
    pub namespaces: Vec<String>,
    /// Maximum number of namespaces a scoped scan may cover.
    pub max_namespaces: usize,
    /// Timeout of each list request (each page).
    pub request_timeout: Duration,
    /// Items per list page (`limit`); 0 is treated as 1.
    pub page_size: u32,
}

impl Default for InventoryOptions {
    fn default() -> Self {
        Self {
            allowlist: None,
            namespaces: Vec::new(),
            max_namespaces: DEFAULT_MAX_NAMESPACES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            page_size: DEFAULT_PAGE_SIZE,
        }
    }
}

/// Which namespaces a scan reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One all-namespaces list per kind.
    AllNamespaces,
    /// Per-namespace lists, sorted and deduplicated.
    Namespaces(Vec<String>),
}

/// Decides which namespaces a scan reads: the request's namespaces (each must be in the allowlist when
/// one is set), else the allowlist, else all namespaces; scoped scans are capped at `max_namespaces`.
pub fn resolve_scope(opts: &InventoryOptions) -> Result<Scope, InventoryError> {
    let clean = |names: &[String]| -> Result<Vec<String>, InventoryError> {
        let mut set = BTreeSet::new();
        for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
            check_namespace(name)?;
            set.insert(name.to_owned());
        }
        Ok(set.into_iter().collect())
    };
    let requested = clean(&opts.namespaces)?;
    let namespaces = match &opts.allowlist {
        None if requested.is_empty() => return Ok(Scope::AllNamespaces),
        None => requested,
        Some(allowlist) => {
            let allowed = clean(allowlist)?;
            if requested.is_empty() {
                allowed
            } else {
                if let Some(bad) = requested.iter().find(|ns| !allowed.contains(ns)) {
                    return Err(InventoryError::NamespaceNotAllowed {
                        namespace: bad.clone(),
                        allowed: allowed.join(", "),
                    });
                }
                requested
            }
        }
    };
    if namespaces.len() > opts.max_namespaces {
        return Err(InventoryError::TooManyNamespaces {
            requested: namespaces.len(),
            max: opts.max_namespaces,
        });
    }
    Ok(Scope::Namespaces(namespaces))
}

/// Scans the PVCs in scope and joins them with their consumer pods and owners (see the module
/// documentation for the calls made and how failures are reported). `last_success_at` is left empty:
/// see [`apply_history`].
pub async fn scan(client: &Client, opts: &InventoryOptions) -> Result<Inventory, InventoryError> {
    let scope = resolve_scope(opts)?;
    let lister = Lister::new(client, opts.page_size, opts.request_timeout);
    let mut found = Listed::default();
    let mut refused = Vec::new();
    match scope {
        Scope::AllNamespaces => {
            let (all, failures) = lister.fetch(None).await;
            if let Some((listing, err)) = failures.into_iter().next() {
                return Err(InventoryError::list(listing, None, err));
            }
            found = all;
        }
        Scope::Namespaces(namespaces) => {
            let lister = &lister;
            let mut results = futures::stream::iter(namespaces)
                .map(|ns| async move {
                    let (data, failures) = lister.fetch(Some(&ns)).await;
                    (ns, data, failures)
                })
                .buffered(NAMESPACE_CONCURRENCY);
            while let Some((ns, data, failures)) = results.next().await {
                if failures.is_empty() {
                    found.extend(data);
                    continue;
                }
                let mut forbidden = Vec::new();
                for (listing, err) in failures {
                    if kubeapi::http_status(&err) == Some(403) {
                        forbidden.push(listing.as_str());
                    } else {
                        return Err(InventoryError::list(listing, Some(&ns), err));
                    }
                }
                tracing::warn!(namespace = %ns, resources = ?forbidden, "namespace refused");
                let resources = forbidden.join(", ");
                refused.push(NamespaceRefusal {
                    message: format!(
                        "HTTP 403 Forbidden: {}",
                        Call::new("list", &resources, &ns).grant()
                    ),
                    namespace: ns,
                    status: Some(403),
                });
            }
        }
    }
    let pvcs = build_records(&found);
    Ok(Inventory {
        pvcs,
        refused,
        api_requests: lister.requests(),
    })
}

/// How an inventory is joined with the backup history.
#[derive(Debug, Clone, Copy)]
pub struct HistoryJoin<'a> {
    /// The history database; `None` when there is none: backup ages are then unknown (no
    /// `last_success_at`, no freshness flags), never guessed as "never backed up".
    pub store: Option<&'a Store>,
    /// A last success older than this flags the PVC `stale-backup` (`None`: never).
    pub stale_after: Option<Duration>,
    pub now: jiff::Timestamp,
}

/// The inventory as operators see it: [`scan`], then each PVC's last successful backup and
/// freshness flags from the history ([`apply_history`]), and, with a history database, the
/// schedule flags `overdue` and `unscheduled` ([`crate::schedule::freshness::join`]; reading
/// schedules declared on namespaces needs `list namespaces` and is skipped without it), and when
/// one of its backups last passed a verification. Used by the web UI and the CLI alike.
///
/// # Errors
/// The scan's error, or [`InventoryError::History`] when the history cannot be read.
pub async fn scan_with_history(
    client: &Client,
    opts: &InventoryOptions,
    history: HistoryJoin<'_>,
) -> Result<Inventory, InventoryError> {
    let mut inventory = scan(client, opts).await?;
    add_history(client, opts, history, &mut inventory).await?;
    Ok(inventory)
}

/// The second half of [`scan_with_history`]: fills freshness, schedule flags and verification
/// times of an inventory already read (by a scan, or from a [`LiveInventory`] snapshot).
///
/// # Errors
/// [`InventoryError::History`] when the history cannot be read.
pub async fn add_history(
    client: &Client,
    opts: &InventoryOptions,
    history: HistoryJoin<'_>,
    inventory: &mut Inventory,
) -> Result<(), InventoryError> {
    let Some(store) = history.store else {
        return Ok(());
    };
    let last_success = store
        .last_success_by_uid()
        .await
        .map_err(InventoryError::History)?;
    apply_history(
        &mut inventory.pvcs,
        &last_success,
        history.stale_after,
        history.now,
    );
    let scope = match resolve_scope(opts)? {
        Scope::AllNamespaces => None,
        Scope::Namespaces(namespaces) => Some(namespaces),
    };
    crate::schedule::freshness::join(
        client,
        scope.as_deref(),
        opts.request_timeout,
        store,
        &mut inventory.pvcs,
        history.now,
    )
    .await
    .map_err(InventoryError::History)?;
    let verified = store
        .last_verified_by_uid()
        .await
        .map_err(InventoryError::History)?;
    for record in &mut inventory.pvcs {
        record.last_verified_at = verified.get(&record.pvc.uid).map(ToString::to_string);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
