//! Why an inventory scan failed: a scope that may not be scanned, or a list call that failed
//! ([`InventoryError::List`], naming the list, the namespace, the HTTP status and what to do).

use crate::kubeapi::{self, Call};

crate::text_enum! {
    /// The kinds a scan lists (in the order errors are reported), by the resource name RBAC rules
    /// and `kubectl create role --resource` use.
    pub enum Listing("listing") {
        Pvcs => "persistentvolumeclaims",
        Pods => "pods",
        ReplicaSets => "replicasets.apps",
        Jobs => "jobs.batch",
        Deployments => "deployments.apps",
        CronJobs => "cronjobs.batch",
    }
}

impl Listing {
    /// The resource's plural name (`replicasets`), as in `kubectl get`.
    #[must_use]
    pub fn plural(self) -> &'static str {
        let rbac = self.as_str();
        rbac.split_once('.').map_or(rbac, |(plural, _group)| plural)
    }
}

/// Why a scan failed.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error(transparent)]
    InvalidNamespace(#[from] crate::domain::NameError),
    #[error(
        "namespace {namespace:?} is not in the server's namespace allowlist (allowed: {allowed})"
    )]
    NamespaceNotAllowed { namespace: String, allowed: String },
    #[error(
        "{requested} namespaces requested but at most {max} may be scanned at once; narrow the namespace filter or raise the cap (--max-namespaces)"
    )]
    TooManyNamespaces { requested: usize, max: usize },
    /// A list call failed: which list, where, with the apiserver's status and what to do.
    #[error("failed to list {} {}: {advice}", .listing.plural(), in_scope(.namespace.as_deref()))]
    List {
        listing: Listing,
        namespace: Option<String>,
        status: Option<u16>,
        advice: String,
        #[source]
        source: kube::Error,
    },
    /// A watch of the live inventory could not list PVCs or pods at all (it is retried).
    #[error("failed to watch {} {}: {message}", .listing.plural(), in_scope(.namespace.as_deref()))]
    Watch {
        listing: Listing,
        namespace: Option<String>,
        status: Option<u16>,
        message: String,
    },
    /// The client for the live inventory's watches could not be built.
    #[error("building the client for the inventory's watches failed: {0}")]
    WatchClient(#[source] kube::Error),
    /// The live inventory's first lists did not complete in time.
    #[error(
        "the inventory is still being read from the cluster after {}s; reload in a moment (a slow or overloaded API server, or a very large cluster)",
        .waited.as_secs()
    )]
    NotReady { waited: std::time::Duration },
    /// The backup history could not be read for the freshness columns.
    #[error("reading the backup history failed: {0}")]
    History(#[source] crate::store::StoreError),
}

impl InventoryError {
    /// The error of a failed list call of `listing` in `namespace` (`None`: all namespaces).
    #[must_use]
    pub fn list(listing: Listing, namespace: Option<&str>, source: kube::Error) -> Self {
        let call = Call {
            verb: "list",
            resource: listing.as_str(),
            namespace,
        };
        Self::List {
            listing,
            namespace: namespace.map(str::to_owned),
            status: kubeapi::http_status(&source),
            advice: kubeapi::advice(&source, call),
            source,
        }
    }

    /// HTTP status of the failed list call, if any.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::List { status, .. } | Self::Watch { status, .. } => *status,
            _ => None,
        }
    }
}

fn in_scope(namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("in namespace {ns:?}"),
        None => "in all namespaces".to_owned(),
    }
}
