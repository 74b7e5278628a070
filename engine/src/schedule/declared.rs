//! Schedules declared on the objects themselves, for GitOps: `nkvm.io/*` annotations on a PVC
//! (schedule `@NS/PVC`, that PVC) or on a namespace (schedule `@NS`, the namespace's PVCs, narrowed
//! by `nkvm.io/selector` and `nkvm.io/owner-kind`). Read from what the inventory lists (PVC
//! annotations) and, when the credentials allow it, from a LIST of namespaces' metadata; a refused
//! namespace list is reported, never fatal. Every invalid annotation becomes a [`Problem`] shown on
//! the Schedules page and logged: never silently ignored.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};

use super::Definition;
use super::retention::Retention;
use crate::domain::PvcRecord;
use crate::kubeapi::{self, Call};

/// Prefix of nkvm's annotations.
pub const ANNOTATION_PREFIX: &str = "nkvm.io/";

/// Cron fields of the declared schedule (required to declare one).
pub const SCHEDULE: &str = "nkvm.io/schedule";
pub const TIMEZONE: &str = "nkvm.io/timezone";
pub const DESTINATION: &str = "nkvm.io/destination";
pub const KEEP_LAST: &str = "nkvm.io/keep-last";
pub const KEEP_DAILY: &str = "nkvm.io/keep-daily";
pub const KEEP_WEEKLY: &str = "nkvm.io/keep-weekly";
pub const KEEP_MONTHLY: &str = "nkvm.io/keep-monthly";
/// Recovery point objective as a duration (`36h`, `1d 12h`).
pub const RPO: &str = "nkvm.io/rpo";
pub const CONCURRENCY: &str = "nkvm.io/concurrency";
/// Namespaces only: a label selector over the namespace's PVCs.
pub const SELECTOR: &str = "nkvm.io/selector";
/// Namespaces only: only PVCs one of whose owners has this kind.
pub const OWNER_KIND: &str = "nkvm.io/owner-kind";

const COMMON: [&str; 9] = [
    SCHEDULE,
    TIMEZONE,
    DESTINATION,
    KEEP_LAST,
    KEEP_DAILY,
    KEEP_WEEKLY,
    KEEP_MONTHLY,
    RPO,
    CONCURRENCY,
];

/// An annotation that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `PVC shop/data` or `namespace shop`.
    pub object: String,
    pub message: String,
}

/// What the annotations declare.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Declared {
    /// Valid definitions, with the object that declares each.
    pub definitions: Vec<(Definition, String)>,
    pub problems: Vec<Problem>,
    /// Why namespace annotations could not be read, when they could not.
    pub namespaces_unread: Option<String>,
}

/// The annotations of one object as a definition named `name`, or why not (`None`: the object
/// declares nothing). `namespace`: `Some(ns)` for a namespace (selector keys allowed), `None` for
/// a PVC.
fn definition(
    name: &str,
    annotations: &BTreeMap<String, String>,
    pvc: Option<&str>,
    namespace: &str,
    destinations: Option<&[String]>,
) -> Option<Result<Definition, String>> {
    // Other `nkvm.io/*` keys belong to other features (`nkvm.io/restored-from`): only schedule
    // keys, and keys so close to one that they are likely typos of it, are ours.
    let schedule_keys = known_keys(true);
    let ours: BTreeMap<&str, &str> = annotations
        .iter()
        .filter(|(k, _)| {
            k.starts_with(ANNOTATION_PREFIX)
                && (schedule_keys.contains(&k.as_str()) || likely_typo_of(k).is_some())
        })
        .map(|(k, v)| (k.as_str(), v.trim()))
        .collect();
    if ours.is_empty() {
        return None;
    }
    Some(parse(name, &ours, pvc, namespace, destinations))
}

/// The schedule keys allowed on a namespace (`true`) or a PVC.
fn known_keys(namespace: bool) -> Vec<&'static str> {
    let mut keys = COMMON.to_vec();
    if namespace {
        keys.extend([SELECTOR, OWNER_KIND]);
    }
    keys
}

/// The schedule key `key` is most likely a typo of (one or two edits away), if any.
fn likely_typo_of(key: &str) -> Option<&'static str> {
    known_keys(true)
        .into_iter()
        .map(|k| (edit_distance(key, k), k))
        .filter(|(d, _)| (1..=2).contains(d))
        .min()
        .map(|(_, k)| k)
}

/// Levenshtein distance over bytes (keys are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, x) in a.iter().enumerate() {
        let mut current = vec![i + 1];
        for (j, y) in b.iter().enumerate() {
            let cost = usize::from(x != y);
            current.push(
                (previous[j] + cost)
                    .min(previous[j + 1] + 1)
                    .min(current[j] + 1),
            );
        }
        previous = current;
    }
    previous[b.len()]
}

fn parse(
    name: &str,
    ours: &BTreeMap<&str, &str>,
    pvc: Option<&str>,
    namespace: &str,
    destinations: Option<&[String]>,
) -> Result<Definition, String> {
    let allowed_here = |key: &str| {
        COMMON.contains(&key) || (pvc.is_none() && (key == SELECTOR || key == OWNER_KIND))
    };
    if let Some(unknown) = ours.keys().find(|k| !allowed_here(k)) {
        let known = known_keys(pvc.is_none());
        let hint = likely_typo_of(unknown)
            .filter(|k| known.contains(k))
            .map(|k| format!(" (did you mean {k}?)"))
            .unwrap_or_default();
        return Err(format!(
            "unknown annotation {unknown} here{hint}; known: {}",
            known.join(", ")
        ));
    }
    let Some(cron) = ours.get(SCHEDULE) else {
        return Err(format!(
            "has nkvm.io annotations but no {SCHEDULE} (the cron expression that declares the \
             schedule)"
        ));
    };
    let count = |key: &str| -> Result<Option<u32>, String> {
        ours.get(key)
            .map(|v| {
                v.parse::<u32>()
                    .map_err(|_| format!("{key}: {v:?} is not a whole number ≥ 0"))
            })
            .transpose()
    };
    let mut definition = Definition::new(name, cron);
    if let Some(zone) = ours.get(TIMEZONE) {
        (*zone).clone_into(&mut definition.timezone);
    }
    definition.retention = Retention {
        keep_last: count(KEEP_LAST)?,
        keep_daily: count(KEEP_DAILY)?,
        keep_weekly: count(KEEP_WEEKLY)?,
        keep_monthly: count(KEEP_MONTHLY)?,
    };
    if let Some(concurrency) = ours.get(CONCURRENCY) {
        definition.concurrency = concurrency
            .parse()
            .map_err(|_| format!("{CONCURRENCY}: {concurrency:?} is not a number from 1 to 64"))?;
    }
    if let Some(rpo) = ours.get(RPO) {
        let duration: jiff::SignedDuration = rpo
            .parse()
            .map_err(|_| format!("{RPO}: {rpo:?} is not a duration like `36h` or `2d`"))?;
        definition.rpo_seconds = u64::try_from(duration.as_secs()).ok().filter(|s| *s > 0);
        if definition.rpo_seconds.is_none() {
            return Err(format!("{RPO}: {rpo:?} must be positive"));
        }
    }
    if let Some(destination) = ours.get(DESTINATION) {
        if let Some(known) = destinations
            && !known.iter().any(|d| d == destination)
        {
            return Err(format!(
                "{DESTINATION}: no destination is named {destination:?} (configured: {})",
                known.join(", ")
            ));
        }
        definition.destination = Some((*destination).to_owned());
    }
    if let Some(pvc) = pvc {
        definition.pvcs = vec![format!("{namespace}/{pvc}")];
    } else {
        definition.namespaces = vec![namespace.to_owned()];
        if let Some(selector) = ours.get(SELECTOR) {
            (*selector).clone_into(&mut definition.selector);
        }
        definition.owner_kind = ours.get(OWNER_KIND).map(|k| (*k).to_owned());
    }
    definition.compile().map_err(|e| e.to_string())?;
    Ok(definition)
}

/// Collects what the PVCs' annotations (from the inventory) and the namespaces' annotations
/// declare. `destinations`: the configured destination names (`None`: not checked).
#[must_use]
pub fn collect(
    records: &[PvcRecord],
    namespaces: &[(String, BTreeMap<String, String>)],
    destinations: Option<&[String]>,
) -> Declared {
    let mut declared = Declared::default();
    let mut add = |object: String, result: Option<Result<Definition, String>>| match result {
        None => {}
        Some(Ok(definition)) => declared.definitions.push((definition, object)),
        Some(Err(message)) => declared.problems.push(Problem { object, message }),
    };
    for (namespace, annotations) in namespaces {
        add(
            format!("namespace {namespace}"),
            definition(
                &format!("@{namespace}"),
                annotations,
                None,
                namespace,
                destinations,
            ),
        );
    }
    for record in records {
        let (namespace, name) = (&record.pvc.namespace, &record.pvc.name);
        add(
            format!("PVC {namespace}/{name}"),
            definition(
                &format!("@{namespace}/{name}"),
                &record.annotations,
                Some(name),
                namespace,
                destinations,
            ),
        );
    }
    declared.definitions.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    declared
}

/// The `nkvm.io/*` annotations of the namespaces in `scope` (`None`: every namespace), from one
/// LIST of namespace metadata (needs `list namespaces` cluster-wide, an optional grant). The error
/// says what to grant.
pub async fn namespace_annotations(
    client: &kube::Client,
    scope: Option<&[String]>,
    timeout: Duration,
) -> Result<Vec<(String, BTreeMap<String, String>)>, String> {
    let api: Api<Namespace> = Api::all(client.clone());
    let list = kubeapi::timed(timeout, api.list_metadata(&ListParams::default()))
        .await
        .map_err(|error| {
            format!(
                "schedules declared on namespaces are not read: {}",
                kubeapi::advice(&error, Call::cluster_wide("list", "namespaces"))
            )
        })?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|ns| {
            let name = ns.metadata.name?;
            if scope.is_some_and(|allowed| !allowed.contains(&name)) {
                return None;
            }
            let annotations: BTreeMap<String, String> = ns
                .metadata
                .annotations
                .unwrap_or_default()
                .into_iter()
                .filter(|(k, _)| k.starts_with(ANNOTATION_PREFIX))
                .collect();
            Some((name, annotations))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pvc(ns: &str, name: &str, annotations: &[(&str, &str)]) -> PvcRecord {
        crate::schedule::test_record(ns, name, &[], annotations)
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn pvc_and_namespace_annotations_declare_schedules() {
        let records = [
            pvc(
                "shop",
                "data",
                &[
                    (SCHEDULE, "0 3 * * *"),
                    (KEEP_LAST, "7"),
                    (DESTINATION, "offsite"),
                    (TIMEZONE, "Europe/Berlin"),
                    (RPO, "36h"),
                ],
            ),
            pvc("shop", "plain", &[]),
        ];
        let namespaces = [(
            "web".to_owned(),
            map(&[
                (SCHEDULE, "*/30 * * * *"),
                (SELECTOR, "app=db"),
                (OWNER_KIND, "StatefulSet"),
                (KEEP_DAILY, "14"),
            ]),
        )];
        let known = vec!["local".to_owned(), "offsite".to_owned()];
        let declared = collect(&records, &namespaces, Some(&known));
        assert!(declared.problems.is_empty(), "{:?}", declared.problems);
        let names: Vec<&str> = declared
            .definitions
            .iter()
            .map(|(d, _)| d.name.as_str())
            .collect();
        assert_eq!(names, ["@shop/data", "@web"]);
        let (pvc_def, object) = &declared.definitions[0];
        assert_eq!(object, "PVC shop/data");
        assert_eq!(pvc_def.pvcs, ["shop/data"]);
        assert_eq!(pvc_def.retention.keep_last, Some(7));
        assert_eq!(pvc_def.destination.as_deref(), Some("offsite"));
        assert_eq!(pvc_def.timezone, "Europe/Berlin");
        assert_eq!(pvc_def.rpo_seconds, Some(36 * 3600));
        assert_eq!(pvc_def.started_by(), "schedule:@shop/data");
        let (ns_def, _) = &declared.definitions[1];
        assert_eq!(ns_def.namespaces, ["web"]);
        assert_eq!(ns_def.selector, "app=db");
        assert_eq!(ns_def.owner_kind.as_deref(), Some("StatefulSet"));
        assert_eq!(ns_def.retention.keep_daily, Some(14));
        assert!(ns_def.compile().is_ok());
    }

    #[test]
    fn invalid_annotations_are_reported_with_the_object() {
        let records = [
            pvc("a", "bad-cron", &[(SCHEDULE, "every night")]),
            pvc(
                "a",
                "bad-keep",
                &[(SCHEDULE, "0 3 * * *"), (KEEP_LAST, "-1")],
            ),
            pvc("a", "no-cron", &[(KEEP_LAST, "3")]),
            pvc(
                "a",
                "typo",
                &[(SCHEDULE, "0 3 * * *"), ("nkvm.io/keep-lats", "3")],
            ),
            pvc(
                "a",
                "selector",
                &[(SCHEDULE, "0 3 * * *"), (SELECTOR, "app=x")],
            ),
            pvc(
                "a",
                "dest",
                &[(SCHEDULE, "0 3 * * *"), (DESTINATION, "nowhere")],
            ),
            pvc(
                "a",
                "zone",
                &[(SCHEDULE, "0 3 * * *"), (TIMEZONE, "Moon/Base")],
            ),
            pvc("a", "rpo", &[(SCHEDULE, "0 3 * * *"), (RPO, "soon")]),
            pvc("a", "fine", &[(SCHEDULE, "0 3 * * *")]),
            // Other features' annotations are not schedules and not problems.
            pvc(
                "a",
                "restored",
                &[("nkvm.io/restored-from", "run 20261129t030000-3f9a1c")],
            ),
        ];
        let namespaces = [(
            "b".to_owned(),
            map(&[(SCHEDULE, "0 3 * * *"), (SELECTOR, "app in x")]),
        )];
        let known = vec!["local".to_owned()];
        let declared = collect(&records, &namespaces, Some(&known));
        assert_eq!(declared.definitions.len(), 1);
        let problems: Vec<(&str, &str)> = declared
            .problems
            .iter()
            .map(|p| (p.object.as_str(), p.message.as_str()))
            .collect();
        let expect = [
            ("namespace b", "invalid label selector"),
            ("PVC a/bad-cron", "invalid cron expression"),
            (
                "PVC a/bad-keep",
                "nkvm.io/keep-last: \"-1\" is not a whole number",
            ),
            ("PVC a/no-cron", "no nkvm.io/schedule"),
            (
                "PVC a/typo",
                "unknown annotation nkvm.io/keep-lats here (did you mean nkvm.io/keep-last?)",
            ),
            ("PVC a/selector", "unknown annotation nkvm.io/selector"),
            ("PVC a/dest", "no destination is named \"nowhere\""),
            ("PVC a/zone", "unknown time zone"),
            ("PVC a/rpo", "not a duration"),
        ];
        assert_eq!(problems.len(), expect.len(), "{problems:?}");
        for ((object, message), (want_object, want_text)) in problems.iter().zip(expect) {
            assert_eq!(*object, want_object);
            assert!(message.contains(want_text), "{object}: {message}");
        }
    }
}
