//! Scheduled backups: schedules stored by admins or declared by annotations on PVCs and namespaces,
//! their cron times in a time zone ([`cron`]), which PVCs they cover ([`Target`], label
//! [`selector`]s), retention of their backups ([`retention`], executed by [`prune`]), freshness
//! (RPO, `overdue`/`unscheduled` flags: [`freshness`]) and the runtime that starts their runs inside
//! `nkvm serve` ([`Scheduler`]).
//!
//! A schedule is a plain [`Definition`] (what the CLI, the web UI and annotations give, stored as
//! is) compiled into a [`Schedule`] (parsed cron, target, state). Runs of a schedule are ordinary
//! backups started through [`crate::backup::BackupEngine::start`] with `started_by` =
//! `schedule:NAME`, so they share admission (one run per PVC), history, audit and the live panel.

mod cluster;
pub mod cron;
pub mod declared;
pub mod freshness;
pub mod manage;
pub mod prune;
pub mod retention;
mod runner;
pub mod selector;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

pub use self::cluster::ClusterBackend;
pub use self::cron::{CronError, CronSpec, Due};
pub use self::manage::Summary;
pub use self::retention::Retention;
pub use self::runner::{Backend, Fired, Scan, Scheduler, SchedulerOptions, TickReport};
pub use self::selector::{LabelSelector, SelectorError};
use crate::domain::names::{NameError, check_namespace, is_dns1123_label};
use crate::domain::{PvcRecord, PvcRef};
use crate::store::{Store, StoreError};

/// Prefix of a schedule's runs' `started_by`.
pub const STARTED_BY_PREFIX: &str = "schedule:";

/// Most runs one schedule starts at once.
pub const MAX_CONCURRENCY: u16 = 64;

/// A schedule as given by a person or an annotation (serialised as is for declared schedules).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Definition {
    /// A DNS label for stored schedules; `@NS` or `@NS/PVC` for declared ones.
    pub name: String,
    /// Five cron fields.
    pub cron: String,
    /// IANA time zone the cron fields are read in.
    pub timezone: String,
    /// Explicit PVCs (`NS/PVC`); when empty, the selector below applies.
    #[serde(default)]
    pub pvcs: Vec<String>,
    /// Namespaces of the selector (empty: every namespace nkvm may read).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Label selector of the selector (empty: any labels).
    #[serde(default)]
    pub selector: String,
    /// Only PVCs one of whose owners has this kind (`Deployment`, `StatefulSet`, …).
    #[serde(default)]
    pub owner_kind: Option<String>,
    /// Destination name (`None`: the server's default destination).
    #[serde(default)]
    pub destination: Option<String>,
    /// Runs of this schedule at the same time (at least 1).
    pub concurrency: u16,
    #[serde(default)]
    pub retention: Retention,
    /// Recovery point objective in seconds (`None`: twice the interval).
    #[serde(default)]
    pub rpo_seconds: Option<u64>,
}

impl Definition {
    /// A definition with defaults: UTC, concurrency 1, no retention rule, default RPO.
    #[must_use]
    pub fn new(name: &str, cron: &str) -> Self {
        Self {
            name: name.to_owned(),
            cron: cron.to_owned(),
            timezone: "UTC".to_owned(),
            pvcs: Vec::new(),
            namespaces: Vec::new(),
            selector: String::new(),
            owner_kind: None,
            destination: None,
            concurrency: 1,
            retention: Retention::default(),
            rpo_seconds: None,
        }
    }

    /// The `started_by` of this schedule's runs.
    #[must_use]
    pub fn started_by(&self) -> String {
        format!("{STARTED_BY_PREFIX}{}", self.name)
    }

    /// Checks every field and parses the cron expression and target.
    pub fn compile(&self) -> Result<(CronSpec, Target), ScheduleError> {
        if !is_dns1123_label(&self.name) && !is_declared_name(&self.name) {
            return Err(ScheduleError::Name(self.name.clone()));
        }
        let cron = CronSpec::parse(&self.cron, &self.timezone)?;
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY {
            return Err(ScheduleError::Concurrency(self.concurrency));
        }
        if let Some(destination) = &self.destination {
            crate::destination::config::validate_name(destination)
                .map_err(ScheduleError::Destination)?;
        }
        if self.rpo_seconds == Some(0) {
            return Err(ScheduleError::Rpo);
        }
        let target = if self.pvcs.is_empty() {
            for namespace in &self.namespaces {
                check_namespace(namespace)?;
            }
            let owner_kind = self.owner_kind.clone().filter(|k| !k.trim().is_empty());
            if let Some(kind) = &owner_kind
                && !kind.bytes().all(|b| b.is_ascii_alphanumeric())
            {
                return Err(ScheduleError::OwnerKind(kind.clone()));
            }
            Target::Selector {
                namespaces: self.namespaces.clone(),
                labels: LabelSelector::parse(&self.selector)?,
                owner_kind,
            }
        } else {
            if !self.namespaces.is_empty() || !self.selector.trim().is_empty() {
                return Err(ScheduleError::BothTargets);
            }
            let mut pvcs = self
                .pvcs
                .iter()
                .map(|p| p.parse::<PvcRef>())
                .collect::<Result<Vec<_>, _>>()?;
            pvcs.sort();
            pvcs.dedup();
            Target::Pvcs(pvcs)
        };
        Ok((cron, target))
    }
}

/// Whether `name` has the form of a declared schedule's name (`@NS` or `@NS/PVC`).
#[must_use]
pub fn is_declared_name(name: &str) -> bool {
    name.strip_prefix('@')
        .is_some_and(|rest| match rest.split_once('/') {
            Some((ns, pvc)) => format!("{ns}/{pvc}").parse::<PvcRef>().is_ok(),
            None => is_dns1123_label(rest),
        })
}

/// What a schedule backs up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// These PVCs.
    Pvcs(Vec<PvcRef>),
    /// Every PVC in `namespaces` (empty: every namespace nkvm may read) whose labels match and,
    /// when `owner_kind` is set, one of whose owners has that kind.
    Selector {
        namespaces: Vec<String>,
        labels: LabelSelector,
        owner_kind: Option<String>,
    },
}

impl Target {
    /// Whether the target covers the inventory record.
    #[must_use]
    pub fn matches(&self, record: &PvcRecord) -> bool {
        match self {
            Self::Pvcs(pvcs) => pvcs
                .iter()
                .any(|p| p.namespace == record.pvc.namespace && p.name == record.pvc.name),
            Self::Selector {
                namespaces,
                labels,
                owner_kind,
            } => {
                (namespaces.is_empty() || namespaces.contains(&record.pvc.namespace))
                    && labels.matches(&record.labels)
                    && owner_kind
                        .as_ref()
                        .is_none_or(|kind| record.owners.iter().any(|o| &o.kind == kind))
            }
        }
    }

    /// `shop/data, shop/logs` or `namespaces shop, web; labels app=db; owner StatefulSet`.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::Pvcs(pvcs) => pvcs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            Self::Selector {
                namespaces,
                labels,
                owner_kind,
            } => {
                let mut parts = vec![if namespaces.is_empty() {
                    "all namespaces".to_owned()
                } else {
                    format!("namespaces {}", namespaces.join(", "))
                }];
                if !labels.is_empty() {
                    parts.push(format!("labels {labels}"));
                }
                if let Some(kind) = owner_kind {
                    parts.push(format!("owner {kind}"));
                }
                parts.join("; ")
            }
        }
    }
}

/// Where a schedule comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// Managed with `nkvm schedule` or the Schedules page.
    Stored { created_by: String },
    /// Declared by `nkvm.io/*` annotations on this object (`namespace shop`, `PVC shop/data`);
    /// read-only in nkvm.
    Annotation { object: String },
}

/// A schedule ready to run: its definition, parsed, with its state.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub definition: Definition,
    pub cron: CronSpec,
    pub target: Target,
    pub source: Source,
    pub paused: bool,
    /// When it began to exist: no firing before it is due.
    pub since: Timestamp,
    /// The scheduled time of the latest firing handled.
    pub last_scheduled_at: Option<Timestamp>,
}

impl Schedule {
    /// Compiles `definition`.
    pub fn new(
        definition: Definition,
        source: Source,
        paused: bool,
        since: Timestamp,
        last_scheduled_at: Option<Timestamp>,
    ) -> Result<Self, ScheduleError> {
        let (cron, target) = definition.compile()?;
        Ok(Self {
            definition,
            cron,
            target,
            source,
            paused,
            since,
            last_scheduled_at,
        })
    }

    #[must_use]
    pub fn name(&self) -> &str {
        &self.definition.name
    }

    /// The time up to which firings are handled.
    #[must_use]
    pub fn handled_until(&self) -> Timestamp {
        self.last_scheduled_at
            .map_or(self.since, |last| last.max(self.since))
    }

    /// The next scheduled time after `now` (`None` while paused).
    #[must_use]
    pub fn next_run(&self, now: Timestamp) -> Option<Timestamp> {
        if self.paused {
            return None;
        }
        self.cron.next_after(now.max(self.handled_until()))
    }

    /// The firing due at `now`, if any (never while paused).
    #[must_use]
    pub fn due(&self, now: Timestamp) -> Option<Due> {
        if self.paused {
            return None;
        }
        self.cron.due(self.handled_until(), now)
    }

    /// The recovery point objective: the definition's, else twice the usual interval.
    #[must_use]
    pub fn rpo(&self, now: Timestamp) -> Option<SignedDuration> {
        match self.definition.rpo_seconds {
            Some(seconds) => i64::try_from(seconds).ok().map(SignedDuration::from_secs),
            None => self.cron.interval(now).map(|i| i * 2),
        }
    }

    /// Whether it comes from an annotation (read-only in nkvm).
    #[must_use]
    pub fn is_declared(&self) -> bool {
        matches!(self.source, Source::Annotation { .. })
    }
}

/// A schedule that is known but cannot run (it no longer compiles), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub name: String,
    pub message: String,
}

/// Every schedule nkvm knows at `now`: the stored ones, and the declared ones — `declared` as seen
/// now in the annotations (with their state from the database), or, when `None`, as the server last
/// saw them. Sorted by name; schedules that no longer compile come back as [`Broken`].
pub async fn catalog(
    store: &Store,
    declared: Option<&[(Definition, String)]>,
    now: Timestamp,
) -> Result<(Vec<Schedule>, Vec<Broken>), StoreError> {
    let mut schedules = Vec::new();
    let mut broken = Vec::new();
    let mut keep = |name: &str, built: Result<Schedule, ScheduleError>| match built {
        Ok(schedule) => schedules.push(schedule),
        Err(error) => broken.push(Broken {
            name: name.to_owned(),
            message: error.to_string(),
        }),
    };
    for stored in store.stored_schedules().await? {
        let name = stored.definition.name.clone();
        keep(
            &name,
            Schedule::new(
                stored.definition,
                Source::Stored {
                    created_by: stored.created_by,
                },
                stored.paused,
                stored.since,
                stored.last_scheduled_at,
            ),
        );
    }
    let states = store.declared_schedules().await?;
    match declared {
        Some(seen) => {
            for (definition, object) in seen {
                let state = states.iter().find(|s| s.definition.name == definition.name);
                let name = definition.name.clone();
                keep(
                    &name,
                    Schedule::new(
                        definition.clone(),
                        Source::Annotation {
                            object: object.clone(),
                        },
                        false,
                        state.map_or(now, |s| s.since),
                        state.and_then(|s| s.last_scheduled_at),
                    ),
                );
            }
        }
        None => {
            for state in states {
                let name = state.definition.name.clone();
                let object = declared_object(&name);
                keep(
                    &name,
                    Schedule::new(
                        state.definition,
                        Source::Annotation { object },
                        false,
                        state.since,
                        state.last_scheduled_at,
                    ),
                );
            }
        }
    }
    schedules.sort_by(|a, b| a.name().cmp(b.name()));
    Ok((schedules, broken))
}

/// `namespace shop` for `@shop`, `PVC shop/data` for `@shop/data`.
fn declared_object(name: &str) -> String {
    let rest = name.trim_start_matches('@');
    if rest.contains('/') {
        format!("PVC {rest}")
    } else {
        format!("namespace {rest}")
    }
}

/// Why a schedule was refused. The texts say what to do.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "invalid schedule name {0:?}: use 1-63 lower-case letters, digits and `-`, starting and \
         ending with a letter or digit"
    )]
    Name(String),
    #[error(transparent)]
    Cron(#[from] CronError),
    #[error(transparent)]
    Selector(#[from] SelectorError),
    #[error(transparent)]
    PvcName(#[from] NameError),
    #[error("concurrency {0} is out of range: use 1 to {MAX_CONCURRENCY}")]
    Concurrency(u16),
    #[error("destination: {0}")]
    Destination(String),
    #[error("owner kind {0:?} is not a Kubernetes kind (letters and digits, like `StatefulSet`)")]
    OwnerKind(String),
    #[error("the RPO must be at least one second")]
    Rpo,
    #[error(
        "give either PVCs (--pvc NS/PVC) or a selector (--namespace, --selector, --owner-kind), \
         not both"
    )]
    BothTargets,
    #[error("a schedule named {0:?} already exists; pick another name or remove it first")]
    Exists(String),
    #[error("no schedule is named {0:?}")]
    NotFound(String),
    #[error(
        "schedule {0:?} is declared by annotations in the cluster and is read-only here: change \
         the annotations instead"
    )]
    Declared(String),
    #[error("the schedules database failed: {0}")]
    Store(#[from] crate::store::StoreError),
}

#[cfg(test)]
mod tests;

/// A bound PVC `ns/name` with `labels` and `annotations`, as the inventory lists it (tests).
#[cfg(test)]
pub(crate) fn test_record(
    ns: &str,
    name: &str,
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
) -> PvcRecord {
    let map = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    PvcRecord {
        pvc: crate::domain::PvcSummary {
            namespace: ns.into(),
            name: name.into(),
            uid: format!("{ns}-{name}"),
            phase: "Bound".into(),
            capacity: None,
            capacity_bytes: None,
            storage_class: None,
            access_modes: vec![],
            volume_name: None,
        },
        owner_kind: crate::domain::pvc::UNKNOWN.into(),
        owner_name: crate::domain::pvc::UNKNOWN.into(),
        owners: vec![],
        consumers: vec![],
        consumer_nodes: vec![],
        last_success_at: None,
        last_verified_at: None,
        flags: vec![],
        labels: map(labels),
        annotations: map(annotations),
    }
}
