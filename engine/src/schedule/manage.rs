//! Managing stored schedules, for the CLI and the web UI alike: create (validated, the destination
//! must be configured), pause, resume and remove, each audited; schedules declared by annotations
//! are read-only here. Also the [`Summary`] both show.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{Definition, Retention, Schedule, ScheduleError, Source, is_declared_name};
use crate::audit::{AuditAction, AuditOutcome};
use crate::backup::Requester;
use crate::store::Store;

/// A schedule as people see it (`nkvm schedule list --output json`, the Schedules page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub name: String,
    /// `stored` or `annotation`.
    pub source: String,
    /// The annotated object (`namespace shop`, `PVC shop/data`) for declared schedules.
    pub declared_on: Option<String>,
    pub created_by: Option<String>,
    pub cron: String,
    pub timezone: String,
    /// What `cron` means, in English.
    pub cron_description: String,
    /// `shop/data, shop/logs` or `namespaces shop; labels app=db`.
    pub target: String,
    pub pvcs: Vec<String>,
    pub namespaces: Vec<String>,
    pub selector: String,
    pub owner_kind: Option<String>,
    pub destination: Option<String>,
    pub concurrency: u16,
    pub retention: Retention,
    /// The effective RPO in seconds (given, or twice the interval).
    pub rpo_seconds: Option<i64>,
    pub paused: bool,
    /// RFC 3339 UTC; null while paused.
    pub next_run: Option<String>,
    /// The scheduled time of the latest firing handled.
    pub last_scheduled_at: Option<String>,
}

impl Schedule {
    /// The summary at `now`.
    #[must_use]
    pub fn summary(&self, now: Timestamp) -> Summary {
        let d = &self.definition;
        let (source, declared_on, created_by) = match &self.source {
            Source::Stored { created_by } => ("stored", None, Some(created_by.clone())),
            Source::Annotation { object } => ("annotation", Some(object.clone()), None),
        };
        Summary {
            name: d.name.clone(),
            source: source.to_owned(),
            declared_on,
            created_by,
            cron: d.cron.clone(),
            timezone: self.cron.zone_name().to_owned(),
            cron_description: self.cron.describe(),
            target: self.target.describe(),
            pvcs: d.pvcs.clone(),
            namespaces: d.namespaces.clone(),
            selector: d.selector.clone(),
            owner_kind: d.owner_kind.clone(),
            destination: d.destination.clone(),
            concurrency: d.concurrency,
            retention: d.retention,
            rpo_seconds: self.rpo(now).map(|r| r.as_secs()),
            paused: self.paused,
            next_run: self.next_run(now).map(crate::timestamp::rfc3339),
            last_scheduled_at: self.last_scheduled_at.map(crate::timestamp::rfc3339),
        }
    }
}

async fn audit(
    store: &Store,
    who: &Requester,
    target: &str,
    outcome: AuditOutcome,
    detail: String,
) {
    let event = who
        .audit_event(AuditAction::ScheduleChanged, outcome)
        .with_target(format!("schedule {target}"))
        .with_detail(detail);
    store.audit(&event).await;
}

/// Stores `definition` for `who` after checking it (and that its destination is one of
/// `destinations`); audited, refusals included.
pub async fn create(
    store: &Store,
    definition: &Definition,
    destinations: &[String],
    who: &Requester,
) -> Result<(), ScheduleError> {
    let checked = check_new(definition, destinations);
    let result = match checked {
        Err(error) => Err(error),
        Ok(()) => match store
            .insert_schedule(definition, &who.actor, Timestamp::now())
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(ScheduleError::Exists(definition.name.clone())),
            Err(error) => Err(ScheduleError::Store(error)),
        },
    };
    let (outcome, detail) = match &result {
        Ok(()) => (
            AuditOutcome::Success,
            format!("created: {} {}", definition.cron, definition.timezone),
        ),
        Err(error) => (AuditOutcome::Failure, format!("create refused: {error}")),
    };
    audit(store, who, &definition.name, outcome, detail).await;
    result
}

fn check_new(definition: &Definition, destinations: &[String]) -> Result<(), ScheduleError> {
    if is_declared_name(&definition.name) {
        return Err(ScheduleError::Declared(definition.name.clone()));
    }
    definition.compile()?;
    if let Some(name) = &definition.destination
        && !destinations.contains(name)
    {
        return Err(ScheduleError::Destination(format!(
            "no destination is named {name:?} (configured: {})",
            destinations.join(", ")
        )));
    }
    Ok(())
}

/// Pauses (`true`) or resumes a stored schedule for `who`; audited.
pub async fn set_paused(
    store: &Store,
    name: &str,
    paused: bool,
    who: &Requester,
) -> Result<(), ScheduleError> {
    let result = if is_declared_name(name) {
        Err(ScheduleError::Declared(name.to_owned()))
    } else {
        match store
            .set_schedule_paused(name, paused, Timestamp::now())
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(ScheduleError::NotFound(name.to_owned())),
            Err(error) => Err(ScheduleError::Store(error)),
        }
    };
    let verb = if paused { "paused" } else { "resumed" };
    let (outcome, detail) = match &result {
        Ok(()) => (AuditOutcome::Success, verb.to_owned()),
        Err(error) => (AuditOutcome::Failure, format!("{verb}: {error}")),
    };
    audit(store, who, name, outcome, detail).await;
    result
}

/// Removes a stored schedule for `who` (its runs stay in the history); audited.
pub async fn remove(store: &Store, name: &str, who: &Requester) -> Result<(), ScheduleError> {
    let result = if is_declared_name(name) {
        Err(ScheduleError::Declared(name.to_owned()))
    } else {
        match store.delete_schedule(name).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(ScheduleError::NotFound(name.to_owned())),
            Err(error) => Err(ScheduleError::Store(error)),
        }
    };
    let (outcome, detail) = match &result {
        Ok(()) => (AuditOutcome::Success, "removed".to_owned()),
        Err(error) => (AuditOutcome::Failure, format!("remove: {error}")),
    };
    audit(store, who, name, outcome, detail).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditFilter;

    #[tokio::test]
    async fn stored_schedules_are_managed_and_audited() {
        let store = Store::open_in_memory().await.unwrap();
        let who = Requester::cli(Some("ada"));
        let known = vec!["local".to_owned()];
        let mut d = Definition::new("nightly", "0 3 * * *");
        d.namespaces = vec!["shop".into()];
        d.retention.keep_last = Some(7);
        d.destination = Some("local".into());
        create(&store, &d, &known, &who).await.unwrap();
        assert!(matches!(
            create(&store, &d, &known, &who).await,
            Err(ScheduleError::Exists(_))
        ));
        let mut elsewhere = d.clone();
        elsewhere.name = "offsite".into();
        elsewhere.destination = Some("offsite".into());
        let error = create(&store, &elsewhere, &known, &who).await.unwrap_err();
        assert!(
            error.to_string().contains("no destination is named"),
            "{error}"
        );
        let mut declared = d.clone();
        declared.name = "@shop".into();
        assert!(matches!(
            create(&store, &declared, &known, &who).await,
            Err(ScheduleError::Declared(_))
        ));

        set_paused(&store, "nightly", true, &who).await.unwrap();
        let (schedules, broken) = crate::schedule::catalog(&store, None, Timestamp::now())
            .await
            .unwrap();
        assert!(broken.is_empty());
        let summary = schedules[0].summary(Timestamp::now());
        assert!(summary.paused);
        assert_eq!(summary.next_run, None);
        assert_eq!(summary.created_by.as_deref(), Some("cli:ada"));
        assert_eq!(summary.retention.keep_last, Some(7));
        assert_eq!(summary.rpo_seconds, Some(2 * 24 * 3600));
        set_paused(&store, "nightly", false, &who).await.unwrap();
        assert!(matches!(
            set_paused(&store, "nope", true, &who).await,
            Err(ScheduleError::NotFound(_))
        ));
        assert!(matches!(
            remove(&store, "@shop/data", &who).await,
            Err(ScheduleError::Declared(_))
        ));
        remove(&store, "nightly", &who).await.unwrap();
        assert!(store.stored_schedules().await.unwrap().is_empty());

        let events = store
            .audit_events(&AuditFilter {
                action: Some(AuditAction::ScheduleChanged),
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        let outcomes: Vec<(AuditOutcome, String)> = events
            .iter()
            .rev()
            .map(|e| (e.outcome, e.detail.clone().unwrap_or_default()))
            .collect();
        assert_eq!(outcomes.len(), 9, "{outcomes:?}");
        assert_eq!(
            outcomes[0],
            (AuditOutcome::Success, "created: 0 3 * * * UTC".to_owned())
        );
        assert!(events.iter().all(|e| e.actor == "cli:ada"));
    }
}
