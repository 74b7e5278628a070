//! The restore engine: admits restores, verifications and drills (policy: allowlist, one job per
//! target PVC, never while a backup of it runs, audited), bounds how many run at once, cancels
//! them by id, publishes their progress on a broadcast channel, and runs start-up recovery. Uses
//! the backup engine's clients, store, sweeper and settings (helper image, timeouts, instance).

use std::sync::{Arc, Mutex};

use tokio::sync::{Semaphore, broadcast};
use tokio_util::sync::CancellationToken;

use super::recovery::{self, RestoreRecovery};
use super::run::Job;
use super::{
    DrillResult, InPlacePlan, RestoreEvent, RestoreOptions, RestoreRequest, RestoreResult,
    RestoreTarget, ScaledDown, VerifyResult, drill, verify,
};
use crate::audit::{AuditAction, AuditOutcome};
use crate::backup::{BackupEngine, BackupOptions, PvcRef, Requester, new_run_id};
use crate::cancel::{self, Cancellable};
use crate::domain::names::{check_namespace, is_dns1123_subdomain};
use crate::domain::{JobKind, RestoreMode};
use crate::store::{RunRecord, Store, StoreError};

/// Capacity of the progress channel; slow subscribers lose the oldest events.
const EVENT_CAPACITY: usize = 1024;

#[derive(Debug)]
struct Slot {
    id: String,
    kind: JobKind,
    target: PvcRef,
    cancel: CancellationToken,
    latest: Option<RestoreEvent>,
}

impl Cancellable for Slot {
    fn id(&self) -> &str {
        &self.id
    }
    fn token(&self) -> &CancellationToken {
        &self.cancel
    }
}

pub(super) struct Inner {
    pub(super) backups: BackupEngine,
    pub(super) options: RestoreOptions,
    semaphore: Arc<Semaphore>,
    active: Mutex<Vec<Slot>>,
    events: broadcast::Sender<RestoreEvent>,
}

impl Inner {
    pub(super) fn backup_options(&self) -> &BackupOptions {
        self.backups.options()
    }

    pub(super) fn store(&self) -> &Store {
        self.backups.store()
    }

    /// A slot of the concurrency limit (`None` when the engine shuts down).
    pub(super) async fn acquire(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.semaphore.clone().acquire_owned().await.ok()
    }
}

impl super::run::Publish for Inner {
    /// Publishes a job's event and keeps it as the job's latest.
    fn publish(&self, event: &RestoreEvent) {
        if let Ok(mut active) = self.active.lock()
            && let Some(slot) = active.iter_mut().find(|s| s.id == event.id)
        {
            slot.latest = Some(event.clone());
        }
        let _ = self.events.send(event.clone());
    }
}

/// Runs restores, verifications and drills. Cheap to clone.
#[derive(Clone)]
pub struct RestoreEngine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RestoreEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreEngine")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

/// A job that was admitted: its id and its task.
#[derive(Debug)]
pub struct StartedJob<T> {
    pub id: String,
    pub handle: tokio::task::JoinHandle<T>,
}

/// Removes its slot when dropped (also when the task is aborted).
pub(super) struct Ticket {
    inner: Arc<Inner>,
    id: String,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Ok(mut active) = self.inner.active.lock() {
            active.retain(|s| s.id != self.id);
        }
    }
}

impl RestoreEngine {
    /// An engine using `backups`' clients, store and settings.
    pub fn new(backups: BackupEngine, options: RestoreOptions) -> Self {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let slots = backups.options().concurrency.max(1);
        Self {
            inner: Arc::new(Inner {
                backups,
                options,
                semaphore: Arc::new(Semaphore::new(slots)),
                active: Mutex::default(),
                events,
            }),
        }
    }

    pub fn backups(&self) -> &BackupEngine {
        &self.inner.backups
    }

    /// Progress events of every job from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<RestoreEvent> {
        self.inner.events.subscribe()
    }

    /// The latest event of every job waiting or running.
    pub fn active(&self) -> Vec<RestoreEvent> {
        self.inner
            .active
            .lock()
            .map(|active| active.iter().filter_map(|s| s.latest.clone()).collect())
            .unwrap_or_default()
    }

    /// Cancels a job by id for `requester` (audited); false when no such job is active.
    pub async fn cancel_for(&self, id: &str, requester: &Requester) -> bool {
        let cancelled = self.cancel(id);
        let target = format!("job {id}");
        cancel::audited(
            self.inner.store(),
            requester,
            AuditAction::RestoreCancelled,
            target,
            cancelled,
        )
        .await
    }

    /// Cancels a job by id; false when no such job is active.
    pub fn cancel(&self, id: &str) -> bool {
        (self.inner.active.lock()).is_ok_and(|active| cancel::cancel_one(active.iter(), id))
    }

    /// Cancels every active job; returns how many.
    pub fn cancel_all(&self) -> usize {
        (self.inner.active.lock()).map_or(0, |active| cancel::cancel_every(active.iter()))
    }

    /// Start-up recovery of restores (see `recovery`), sparing this engine's active jobs.
    pub async fn recover(
        &self,
        namespaces: Option<&[String]>,
    ) -> Result<RestoreRecovery, StoreError> {
        let active: Vec<String> = self
            .inner
            .active
            .lock()
            .map(|a| a.iter().map(|s| s.id.clone()).collect())
            .unwrap_or_default();
        recovery::recover(&self.inner, namespaces, &active).await
    }

    async fn audit(
        &self,
        requester: &Requester,
        action: AuditAction,
        outcome: AuditOutcome,
        target: &str,
        detail: Option<String>,
    ) {
        super::audit(
            self.inner.store(),
            requester,
            action,
            outcome,
            target,
            detail,
        )
        .await;
    }

    /// The backup run `run_id`, if it may be restored or verified here.
    pub async fn restorable_run(&self, run_id: &str) -> Result<RunRecord, String> {
        verify::restorable_run(self.inner.store(), self.inner.backup_options(), run_id).await
    }

    /// Registers a job on `target`, refused when another job or a backup uses that PVC.
    fn register(
        &self,
        id: &str,
        kind: JobKind,
        target: &PvcRef,
        exclusive: bool,
    ) -> Result<(Ticket, CancellationToken), String> {
        let mut active = self
            .inner
            .active
            .lock()
            .map_err(|_| "the engine's job registry is unusable".to_owned())?;
        if exclusive {
            if let Some(slot) = active
                .iter()
                .find(|s| s.target == *target && s.kind != JobKind::Verify)
            {
                return Err(format!(
                    "a {} of {target} is already running ({}); wait for it to finish or cancel it",
                    slot.kind, slot.id
                ));
            }
            if self.inner.backups.is_active(target) {
                return Err(format!(
                    "a backup of {target} is running; wait for it to finish or cancel it"
                ));
            }
        }
        let cancel = CancellationToken::new();
        active.push(Slot {
            id: id.to_owned(),
            kind,
            target: target.clone(),
            cancel: cancel.clone(),
            latest: None,
        });
        Ok((
            Ticket {
                inner: self.inner.clone(),
                id: id.to_owned(),
            },
            cancel,
        ))
    }

    /// Admits a restore for `requester` and starts it in a task (it waits for a slot there).
    /// Refused with a failed result when the run cannot be restored here, a name is invalid, the
    /// target namespace is outside the allowlist, or the target PVC is busy. Every start and
    /// refusal is audited.
    pub async fn start_restore(
        &self,
        request: RestoreRequest,
        requester: &Requester,
    ) -> Result<StartedJob<RestoreResult>, Box<RestoreResult>> {
        let now = jiff::Timestamp::now();
        let id = new_run_id(now);
        let admitted = self.admit_restore(&id, &request).await;
        let (run, target, mode) = match admitted {
            Ok(admitted) => admitted,
            Err((target, message)) => {
                let target_text = target
                    .as_ref()
                    .map_or_else(|| request.run_id.clone(), ToString::to_string);
                self.audit(
                    requester,
                    AuditAction::RestoreStarted,
                    AuditOutcome::Failure,
                    &target_text,
                    Some(format!("run {}: {message}", request.run_id)),
                )
                .await;
                return Err(Box::new(RestoreResult::refused(
                    &id,
                    &request,
                    target.as_ref(),
                    now,
                    &message,
                )));
            }
        };
        let (ticket, cancel) = match self.register(&id, JobKind::Restore, &target, true) {
            Ok(registered) => registered,
            Err(message) => {
                self.audit(
                    requester,
                    AuditAction::RestoreStarted,
                    AuditOutcome::Failure,
                    &target.to_string(),
                    Some(format!("run {}: {message}", request.run_id)),
                )
                .await;
                return Err(Box::new(RestoreResult::refused(
                    &id,
                    &request,
                    Some(&target),
                    now,
                    &message,
                )));
            }
        };
        self.audit(
            requester,
            AuditAction::RestoreStarted,
            AuditOutcome::Success,
            &target.to_string(),
            Some(format!(
                "restore {id} of run {} ({}/{}) {mode}{}",
                run.run_id,
                run.namespace,
                run.pvc,
                if matches!(request.target, RestoreTarget::InPlace { wipe: true }) {
                    ", replacing the contents"
                } else {
                    ""
                }
            )),
        )
        .await;
        let inner = self.inner.clone();
        let started_by = requester.started_by.clone();
        let job_id = id.clone();
        let handle = tokio::spawn(async move {
            let job = Job::new(
                &inner, &job_id, mode, request, run, target, cancel, started_by,
            );
            let result = job.run().await;
            drop(ticket);
            result
        });
        Ok(StartedJob { id, handle })
    }

    /// Runs a restore to its end.
    pub async fn restore(&self, request: RestoreRequest, requester: &Requester) -> RestoreResult {
        match self.start_restore(request.clone(), requester).await {
            Err(refused) => *refused,
            Ok(job) => {
                let id = job.id.clone();
                job.handle.await.unwrap_or_else(|err| {
                    RestoreResult::refused(
                        &id,
                        &request,
                        None,
                        jiff::Timestamp::now(),
                        &format!("the restore task ended abnormally ({err}); see the logs"),
                    )
                })
            }
        }
    }

    /// The run, target PVC and mode of a restore request, or why it is refused.
    async fn admit_restore(
        &self,
        id: &str,
        request: &RestoreRequest,
    ) -> Result<(RunRecord, PvcRef, RestoreMode), (Option<PvcRef>, String)> {
        let run = self
            .restorable_run(&request.run_id)
            .await
            .map_err(|m| (None, m))?;
        if run.sha256.is_none() {
            return Err((
                None,
                format!(
                    "run {} records no sha256, so its archive cannot be checked",
                    run.run_id
                ),
            ));
        }
        let (target, mode) = match &request.target {
            RestoreTarget::InPlace { .. } => {
                (PvcRef::new(&run.namespace, &run.pvc), RestoreMode::InPlace)
            }
            RestoreTarget::NewPvc {
                name,
                namespace,
                storage_class,
                size,
            } => {
                let namespace = namespace.clone().unwrap_or_else(|| run.namespace.clone());
                check_namespace(&namespace).map_err(|e| (None, e.to_string()))?;
                if !is_dns1123_subdomain(name) {
                    return Err((
                        None,
                        crate::domain::NameError::Pvc(name.clone()).to_string(),
                    ));
                }
                if let Some(class) = storage_class
                    && !is_dns1123_subdomain(class)
                {
                    return Err((None, format!("invalid storage class name {class:?}")));
                }
                if let Some(size) = size
                    && crate::quantity::parse_bytes(size).is_none_or(|b| b == 0)
                {
                    return Err((
                        None,
                        format!("invalid size {size:?}: give a Kubernetes quantity like 10Gi"),
                    ));
                }
                (PvcRef::new(namespace, name.clone()), RestoreMode::NewPvc)
            }
        };
        if !self
            .inner
            .backup_options()
            .namespace_allowed(&target.namespace)
        {
            return Err((
                Some(target.clone()),
                format!(
                    "namespace {:?} is not in this server's namespace allowlist",
                    target.namespace
                ),
            ));
        }
        tracing::debug!(restore = id, %target, %mode, "restore admitted");
        Ok((run, target, mode))
    }

    /// Verifies run `run_id`'s archive for `requester` and records the result (time, who, what)
    /// in its history row, with progress events; audited. Refused (an error message) when the run
    /// cannot be verified here.
    pub async fn verify(
        &self,
        run_id: &str,
        requester: &Requester,
    ) -> Result<VerifyResult, String> {
        let store = self.inner.store();
        let options = self.inner.backup_options();
        let run = match verify::restorable_run(store, options, run_id).await {
            Ok(run) => run,
            Err(message) => {
                verify::audit_refusal(store, requester, run_id, &message).await;
                return Err(message);
            }
        };
        let id = new_run_id(jiff::Timestamp::now());
        let target = PvcRef::new(&run.namespace, &run.pvc);
        let (ticket, cancel) = self.register(&id, JobKind::Verify, &target, false)?;
        let result =
            verify::verify_job(store, options, &*self.inner, &id, &run, requester, &cancel).await;
        drop(ticket);
        Ok(result)
    }

    /// What an in-place restore of run `run_id` would do now: the pods using the PVC and the
    /// workloads that would be scaled down (with their replicas), or why it is refused.
    pub async fn plan_in_place(&self, run_id: &str) -> Result<InPlacePlan, String> {
        let run = self.restorable_run(run_id).await?;
        let target = PvcRef::new(&run.namespace, &run.pvc);
        let client = self.inner.backups.client();
        let timeout = self.inner.backup_options().request_timeout;
        let (users, workloads) =
            super::prepare::users_and_workloads(client, &target, timeout).await?;
        let (workloads, refusal) = match workloads {
            Ok(workloads) => (workloads, None),
            Err(refusal) => (Vec::new(), Some(refusal)),
        };
        let mut planned = Vec::new();
        for workload in workloads {
            let replicas =
                super::scale::replicas(client, &target.namespace, &workload, timeout).await;
            planned.push(ScaledDown {
                workload,
                replicas: replicas.unwrap_or(-1),
            });
        }
        Ok(InPlacePlan {
            run_id: run.run_id,
            namespace: target.namespace,
            pvc: target.name,
            users,
            workloads: planned,
            refusal,
        })
    }

    /// Runs a restore drill of `target` (its newest successful backup into a throwaway PVC,
    /// checked against the manifest, removed); audited.
    pub async fn drill(&self, target: &PvcRef, requester: &Requester) -> DrillResult {
        drill::run(self, &self.inner, target, requester).await
    }

    /// For the drill: registers and runs a job like [`RestoreEngine::start_restore`] without
    /// its audit (the drill audits itself).
    pub(super) async fn run_job(
        &self,
        id: &str,
        mode: RestoreMode,
        request: RestoreRequest,
        run: RunRecord,
        target: PvcRef,
        requester: &Requester,
    ) -> RestoreResult {
        let now = jiff::Timestamp::now();
        let (ticket, cancel) = match self.register(id, JobKind::Drill, &target, true) {
            Ok(registered) => registered,
            Err(message) => {
                return RestoreResult::refused(id, &request, Some(&target), now, &message);
            }
        };
        let job = Job::new(
            &self.inner,
            id,
            mode,
            request,
            run,
            target,
            cancel,
            requester.started_by.clone(),
        );
        let result = job.run().await;
        drop(ticket);
        result
    }

    pub(super) async fn audit_drill(&self, requester: &Requester, result: &DrillResult) {
        let outcome = match result.status {
            crate::domain::DrillStatus::Passed => AuditOutcome::Success,
            crate::domain::DrillStatus::Failed => AuditOutcome::Failure,
        };
        self.audit(
            requester,
            AuditAction::DrillStarted,
            outcome,
            &format!("{}/{}", result.namespace, result.pvc),
            Some(result.message.clone()),
        )
        .await;
    }
}
