//! A PVC as nkvm describes it everywhere: the summary of its spec and status ([`PvcSummary`], kept
//! in manifests and used by pre-flight), the inventory record that adds owners, consumers, backup
//! freshness and flags ([`PvcRecord`], the `nkvm inventory --output json` contract and the web
//! table's row), the workloads that own it ([`Owner`], with the predecessor's display rules in
//! [`display_owners`]), and a namespace the credentials could not read ([`NamespaceRefusal`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// The kind (and name) shown when no owner is known.
pub const UNKNOWN: &str = "Unknown";

/// Maximum number of owner names shown in a `Multiple[...]` display name.
pub const MAX_DISPLAY_NAMES: usize = 3;

/// Kubernetes' access mode that lets one pod only use a claim.
pub const READ_WRITE_ONCE_POD: &str = "ReadWriteOncePod";
/// Kubernetes' access mode that lets the pods of one node use a claim.
pub const READ_WRITE_ONCE: &str = "ReadWriteOnce";

/// What nkvm keeps about a PVC's spec and status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PvcSummary {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// `Bound`, `Pending`, `Lost`, or `Unknown` when the status says nothing.
    pub phase: String,
    /// Capacity as Kubernetes prints it (`1Gi`), or the requested size when not yet bound; null if
    /// unknown.
    pub capacity: Option<String>,
    /// Capacity in bytes, parsed from `capacity`.
    pub capacity_bytes: Option<u64>,
    pub storage_class: Option<String>,
    pub access_modes: Vec<String>,
    pub volume_name: Option<String>,
}

impl PvcSummary {
    /// Whether the claim is `ReadWriteOncePod`.
    #[must_use]
    pub fn is_read_write_once_pod(&self) -> bool {
        self.access_modes.iter().any(|m| m == READ_WRITE_ONCE_POD)
    }

    /// Whether the claim is `ReadWriteOnce` (a helper must run on its consumer's node).
    #[must_use]
    pub fn is_read_write_once(&self) -> bool {
        self.access_modes.iter().any(|m| m == READ_WRITE_ONCE)
    }
}

crate::text_enum! {
    /// What the inventory points out about a PVC.
    #[derive(PartialOrd, Ord)]
    pub enum Flag("flag") {
        /// The PVC is not `Bound`.
        Unbound => "unbound",
        /// No pod mounts the PVC.
        NoConsumer => "no-consumer",
        /// The PVC is `ReadWriteOncePod` and a pod that has not terminated mounts it (a backup
        /// helper cannot mount it alongside).
        RwopInUse => "rwop-in-use",
        /// History knows no successful backup of this PVC (by UID).
        NeverBackedUp => "never-backed-up",
        /// The last successful backup is older than the configured age.
        StaleBackup => "stale-backup",
        /// A schedule covers the PVC and its last successful backup is older than the schedule's
        /// RPO (twice its interval unless set).
        Overdue => "overdue",
        /// No schedule covers the PVC (its backups depend on someone starting them).
        Unscheduled => "unscheduled",
    }
}

/// One PVC as operators see it. Serialises to the `nkvm inventory --output json` contract: the
/// summary's fields, then owners, consumers, freshness and flags, all at the top level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PvcRecord {
    #[serde(flatten)]
    pub pvc: PvcSummary,
    /// The predecessor's display semantics (`Multiple[...]`, `Unknown`, a pod's own name).
    pub owner_kind: String,
    pub owner_name: String,
    /// Every distinct resolved owner, sorted.
    pub owners: Vec<Owner>,
    /// Names of pods (in the PVC's namespace, nkvm's helpers excluded) whose spec mounts the
    /// claim, sorted.
    pub consumers: Vec<String>,
    /// Nodes of the Running consumer pods, sorted, deduplicated.
    pub consumer_nodes: Vec<String>,
    /// RFC 3339 UTC time of the last successful backup, if history knows one.
    pub last_success_at: Option<String>,
    /// RFC 3339 UTC time of the last passed verification of one of its backups, if any.
    #[serde(default)]
    pub last_verified_at: Option<String>,
    pub flags: Vec<Flag>,
    /// The PVC's labels (schedule selectors match them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The PVC's `nkvm.io/*` annotations (schedules declared on the PVC).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl PvcRecord {
    /// Whether the record carries `flag`.
    #[must_use]
    pub fn has_flag(&self, flag: Flag) -> bool {
        self.flags.contains(&flag)
    }
}

/// A namespace the credentials could not read, kept instead of failing the whole inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceRefusal {
    pub namespace: String,
    /// HTTP status from the apiserver (403, 404, …) or null for transport failures.
    pub status: Option<u16>,
    /// What was refused and what to do (e.g. the RBAC verb and resource to grant).
    pub message: String,
}

/// A resolved workload owning a PVC through one of its consumer pods.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Owner {
    pub kind: String,
    pub name: String,
}

impl Owner {
    /// An owner of the given kind and name.
    pub fn new(kind: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            name: name.into(),
        }
    }

    /// A pod without owner references owns itself: kind `Pod`, name = the pod's name.
    pub fn pod(name: impl Into<String>) -> Self {
        Self::new("Pod", name)
    }

    /// An owner that could not be resolved: kind `Unknown`, name `<Kind>/<name>`.
    #[must_use]
    pub fn unknown(kind: &str, name: &str) -> Self {
        Self::new(UNKNOWN, format!("{kind}/{name}"))
    }
}

/// The predecessor's `(owner_kind, owner_name)` display of a PVC's owners (duplicates are
/// ignored): no owner → `Unknown`/`Unknown`; one → its kind and name; several → kind
/// `Multiple[<distinct kinds sorted, joined by ",">]` and name = the distinct owner names sorted,
/// the first 3 joined by `", "`, plus `", ..."` when there are more.
#[must_use]
pub fn display_owners(owners: &[Owner]) -> (String, String) {
    let distinct: BTreeSet<&Owner> = owners.iter().collect();
    let mut iter = distinct.iter();
    match (iter.next(), iter.next()) {
        (None, _) => (UNKNOWN.to_owned(), UNKNOWN.to_owned()),
        (Some(only), None) => (only.kind.clone(), only.name.clone()),
        (Some(_), Some(_)) => {
            let kinds: BTreeSet<&str> = distinct.iter().map(|o| o.kind.as_str()).collect();
            let names: BTreeSet<&str> = distinct.iter().map(|o| o.name.as_str()).collect();
            let kind = format!(
                "Multiple[{}]",
                kinds.into_iter().collect::<Vec<_>>().join(",")
            );
            let mut name = names
                .iter()
                .take(MAX_DISPLAY_NAMES)
                .copied()
                .collect::<Vec<_>>()
                .join(", ");
            if names.len() > MAX_DISPLAY_NAMES {
                name.push_str(", ...");
            }
            (kind, name)
        }
    }
}

/// Sorts and deduplicates owners (the `owners` field of an inventory record).
pub fn distinct_sorted(owners: impl IntoIterator<Item = Owner>) -> Vec<Owner> {
    owners
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(kind: &str, name: &str) -> Owner {
        Owner::new(kind, name)
    }

    fn shown(kind: &str, name: &str) -> (String, String) {
        (kind.to_owned(), name.to_owned())
    }

    #[test]
    fn display_follows_the_predecessor() {
        let cases: &[(&[Owner], (String, String))] = &[
            (&[], shown("Unknown", "Unknown")),
            (&[owner("Deployment", "web")], shown("Deployment", "web")),
            (
                &[owner("Deployment", "web"), owner("Deployment", "web")],
                shown("Deployment", "web"),
            ),
            (&[Owner::pod("debug")], shown("Pod", "debug")),
            (
                &[owner("StatefulSet", "db"), owner("Deployment", "web")],
                shown("Multiple[Deployment,StatefulSet]", "db, web"),
            ),
            (
                &[
                    owner("Deployment", "a"),
                    owner("Deployment", "b"),
                    owner("Deployment", "c"),
                    owner("Deployment", "d"),
                ],
                shown("Multiple[Deployment]", "a, b, c, ..."),
            ),
            (
                &[
                    Owner::pod("debug"),
                    owner("Deployment", "web"),
                    owner("StatefulSet", "db"),
                ],
                shown("Multiple[Deployment,Pod,StatefulSet]", "db, debug, web"),
            ),
            (
                &[
                    Owner::unknown("ReplicaSet", "gone"),
                    owner("Deployment", "web"),
                ],
                shown("Multiple[Deployment,Unknown]", "ReplicaSet/gone, web"),
            ),
        ];
        for (owners, expected) in cases {
            assert_eq!(&display_owners(owners), expected, "{owners:?}");
        }
    }

    #[test]
    fn display_no_owner_is_unknown_unknown() {
        assert_eq!(
            display_owners(&[]),
            ("Unknown".to_owned(), "Unknown".to_owned())
        );
    }

    #[test]
    fn display_single_owner() {
        assert_eq!(
            display_owners(&[owner("Deployment", "web")]),
            ("Deployment".to_owned(), "web".to_owned())
        );
        assert_eq!(
            display_owners(&[owner("Pod", "debug")]),
            ("Pod".to_owned(), "debug".to_owned())
        );
        assert_eq!(
            display_owners(&[owner("Unknown", "ReplicaSet/gone")]),
            ("Unknown".to_owned(), "ReplicaSet/gone".to_owned())
        );
    }

    #[test]
    fn display_duplicates_count_once() {
        let owners = [owner("Deployment", "web"), owner("Deployment", "web")];
        assert_eq!(
            display_owners(&owners),
            ("Deployment".to_owned(), "web".to_owned())
        );
    }

    #[test]
    fn display_two_deployments_sharing_a_claim() {
        let owners = [owner("Deployment", "writer"), owner("Deployment", "reader")];
        assert_eq!(
            display_owners(&owners),
            (
                "Multiple[Deployment]".to_owned(),
                "reader, writer".to_owned()
            )
        );
    }

    #[test]
    fn display_mixed_kinds_are_sorted_and_joined() {
        let owners = [
            owner("StatefulSet", "db"),
            owner("Deployment", "web"),
            owner("Pod", "debug"),
        ];
        assert_eq!(
            display_owners(&owners),
            (
                "Multiple[Deployment,Pod,StatefulSet]".to_owned(),
                "db, debug, web".to_owned()
            )
        );
    }

    #[test]
    fn display_more_than_three_names_is_truncated() {
        let owners = [
            owner("Deployment", "d"),
            owner("Deployment", "c"),
            owner("Deployment", "b"),
            owner("Deployment", "a"),
        ];
        assert_eq!(
            display_owners(&owners),
            ("Multiple[Deployment]".to_owned(), "a, b, c, ...".to_owned())
        );
    }

    #[test]
    fn display_exactly_three_names_has_no_ellipsis() {
        let owners = [
            owner("Deployment", "c"),
            owner("Job", "b"),
            owner("Unknown", "ReplicaSet/a"),
        ];
        assert_eq!(
            display_owners(&owners),
            (
                "Multiple[Deployment,Job,Unknown]".to_owned(),
                "ReplicaSet/a, b, c".to_owned()
            )
        );
    }

    #[test]
    fn display_same_name_different_kinds_lists_the_name_once() {
        let owners = [owner("Deployment", "web"), owner("StatefulSet", "web")];
        assert_eq!(
            display_owners(&owners),
            (
                "Multiple[Deployment,StatefulSet]".to_owned(),
                "web".to_owned()
            )
        );
    }

    #[test]
    fn distinct_sorted_orders_by_kind_then_name() {
        let owners = distinct_sorted([
            owner("StatefulSet", "db"),
            owner("Deployment", "web"),
            owner("Deployment", "api"),
            owner("Deployment", "web"),
        ]);
        assert_eq!(
            owners,
            vec![
                owner("Deployment", "api"),
                owner("Deployment", "web"),
                owner("StatefulSet", "db")
            ]
        );
    }

    #[test]
    fn record_serialises_flat_to_the_inventory_contract() {
        let record = PvcRecord {
            pvc: PvcSummary {
                namespace: "shop".into(),
                name: "data".into(),
                uid: "u-1".into(),
                phase: "Bound".into(),
                capacity: Some("1Gi".into()),
                capacity_bytes: Some(1 << 30),
                storage_class: None,
                access_modes: vec![READ_WRITE_ONCE.into()],
                volume_name: Some("pv-1".into()),
            },
            owner_kind: "Deployment".into(),
            owner_name: "web".into(),
            owners: vec![owner("Deployment", "web")],
            consumers: vec!["web-1".into()],
            consumer_nodes: vec!["node-1".into()],
            last_success_at: None,
            last_verified_at: None,
            flags: vec![Flag::NeverBackedUp],
            labels: BTreeMap::from([("app".to_owned(), "web".to_owned())]),
            annotations: BTreeMap::new(),
        };
        let value = serde_json::to_value(&record).unwrap();
        for key in [
            "namespace",
            "name",
            "uid",
            "phase",
            "capacity",
            "storage_class",
            "access_modes",
            "volume_name",
            "owner_kind",
            "owner_name",
            "owners",
            "consumers",
            "last_success_at",
        ] {
            assert!(value.get(key).is_some(), "{key} missing from {value}");
        }
        assert!(value.get("pvc").is_none(), "{value}");
        assert_eq!(value["flags"], serde_json::json!(["never-backed-up"]));
        let back: PvcRecord = serde_json::from_value(value).unwrap();
        assert_eq!(back, record);
        assert!(back.has_flag(Flag::NeverBackedUp));
        assert!(!back.pvc.is_read_write_once_pod());
        assert!(back.pvc.is_read_write_once());
    }
}
