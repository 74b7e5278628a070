//! The stages of a restore that write and finish: create (new PVC, helper), schedule, exec (wipe,
//! tar), stream (pass two into tar's stdin), finalize (tar's status, the digest again, the spot
//! check, the helper removed), scale-up and record.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};

use super::check::PassConfig;
use super::commands;
use super::error::RestoreError;
use super::pod::{self, NewPvcParams, RestoreHelperParams};
use super::prepare::{Plan, Verified};
use super::run::Job;
use super::scale;
use super::source::{self, Sources};
use super::wsexec::StdinSession;
use crate::backup::cleanup::{self, HelperGuard};
use crate::backup::exec::exec_capture;
use crate::backup::helper;
use crate::domain::{RestoreMode, RestoreStage};
use crate::download::DownloadKind;
use crate::kubeapi::{self, Call, http_status, timed};
use crate::store::RestoreUpdate;

/// How long clearing the volume (`--wipe`) may take.
const WIPE_TIMEOUT: Duration = Duration::from_hours(1);
/// How long tar may take to finish writing after its input ended.
const FINISH_WAIT: Duration = Duration::from_mins(10);

impl Job<'_> {
    /// Create: the new PVC (new-PVC restores and drills), then the helper pod mounting the target.
    pub(super) async fn create(&mut self, plan: &Plan) -> Result<String, RestoreError> {
        self.enter(RestoreStage::Create);
        let options = self.inner.backup_options().clone();
        let ns = self.target.namespace.clone();
        let pvc_uid = match &plan.pvc_uid {
            Some(uid) => uid.clone(),
            None => self.create_pvc(plan).await?,
        };
        let helper_pod = pod::restore_helper_pod(&RestoreHelperParams {
            restore_id: self.id.clone(),
            run_id: self.source.run_id.clone(),
            namespace: ns.clone(),
            pvc_name: self.target.name.clone(),
            pvc_uid,
            image: options.helper_image.clone(),
            active_deadline: options.active_deadline,
            resources: options.resources.clone(),
            instance: options.instance.clone(),
        });
        let name = pod::helper_pod_name(&self.id);
        self.helper_name = Some(name.clone());
        self.helper = Some(HelperGuard::new(
            self.inner.backups.client().clone(),
            &ns,
            &name,
            options.request_timeout,
            self.inner.backups.sweeper().clone(),
        ));
        let api: Api<Pod> = Api::namespaced(self.inner.backups.client().clone(), &ns);
        let retry = self.retry_policy();
        let created = Self::cancellable(&self.cancel, RestoreStage::Create, async {
            helper::create_with_retry(&api, &helper_pod, retry, options.request_timeout)
                .await
                .map_err(|err| RestoreError::Create(err.to_string()))
        })
        .await?;
        // Recovery and the sweeper delete only pods whose UID nkvm recorded.
        cleanup::record_created(self.inner.store(), self.helper.as_mut(), &created, &self.id)
            .await
            .map_err(|err| {
                RestoreError::Create(format!(
                    "could not record helper pod {name} in the history database: {err}; check \
                     that the data directory is writable"
                ))
            })?;
        Ok(name)
    }

    /// The new PVC of a new-PVC restore or a drill; returns its UID.
    async fn create_pvc(&mut self, plan: &Plan) -> Result<String, RestoreError> {
        let options = self.inner.backup_options().clone();
        let ns = self.target.namespace.clone();
        let pvc = pod::new_pvc(&NewPvcParams {
            restore_id: self.id.clone(),
            run_id: self.source.run_id.clone(),
            namespace: ns.clone(),
            name: self.target.name.clone(),
            storage_class: plan.storage_class.clone(),
            size: plan.size.clone(),
            access_modes: plan.access_modes.clone(),
            source: format!("{}/{}", self.source.namespace, self.source.pvc),
            instance: options.instance.clone(),
        });
        let created = timed(
            options.request_timeout,
            self.pvcs().create(&PostParams::default(), &pvc),
        )
        .await
        .map_err(|err| {
            RestoreError::Create(format!(
                "could not create PVC {}: {}",
                self.target,
                kubeapi::advice(&err, Call::new("create", "persistentvolumeclaims", &ns))
            ))
        })?;
        self.pvc_created = true;
        let uid = created.metadata.uid.unwrap_or_default();
        self.pvc_uid = Some(uid.clone()).filter(|uid| !uid.is_empty());
        if let Some(row) = self.row {
            let _ = self
                .inner
                .store()
                .update_restore(
                    row,
                    &RestoreUpdate {
                        pvc_created: Some(true),
                        ..RestoreUpdate::default()
                    },
                )
                .await;
        }
        // Recovery deletes only incomplete PVCs whose UID nkvm recorded.
        self.inner
            .store()
            .record_restore_pvc(&self.id, &uid)
            .await
            .map_err(|err| {
                RestoreError::Create(format!(
                    "could not record PVC {} in the history database: {err}; check that the \
                     data directory is writable",
                    self.target
                ))
            })?;
        Ok(uid)
    }

    /// Schedule: the helper runs (and a new PVC is bound to it).
    pub(super) async fn schedule(&mut self, name: &str) -> Result<(), RestoreError> {
        self.enter(RestoreStage::Schedule);
        let timeout = self.inner.backup_options().schedule_timeout;
        let api = self.stream_pods();
        Self::cancellable(&self.cancel, RestoreStage::Schedule, async {
            helper::wait_running(&api, name, timeout)
                .await
                .map(|_| ())
                .map_err(|err| RestoreError::Schedule(err.to_string()))
        })
        .await
    }

    /// Exec: clear the volume when asked (`--wipe`), then start GNU tar reading stdin.
    pub(super) async fn exec(&mut self, name: &str) -> Result<StdinSession, RestoreError> {
        self.enter(RestoreStage::Exec);
        let api = self.stream_pods();
        if self.wipe() {
            let output = Self::cancellable(&self.cancel, RestoreStage::Exec, async {
                Ok(exec_capture(
                    &api,
                    name,
                    commands::wipe_command(),
                    64 * 1024,
                    WIPE_TIMEOUT,
                )
                .await)
            })
            .await?;
            if !output.is_some_and(|o| o.contains(commands::WIPE_DONE)) {
                return Err(RestoreError::Exec(format!(
                    "clearing PVC {} before the restore (--wipe) did not complete in helper pod \
                     {name}; the volume may be partly cleared: retry the restore",
                    self.target
                )));
            }
        }
        let retry = self.retry_policy();
        let client = self.inner.backups.stream_client().clone();
        let namespace = self.target.namespace.clone();
        Self::cancellable(&self.cancel, RestoreStage::Exec, async {
            StdinSession::start(
                &client,
                &namespace,
                name,
                commands::extract_command(),
                retry,
            )
            .await
            .map_err(RestoreError::Exec)
        })
        .await
    }

    /// Stream: pass two, each checked piece into tar's stdin.
    pub(super) async fn stream(
        &mut self,
        session: &mut StdinSession,
        verified: &Verified,
    ) -> Result<super::check::PassOutcome, RestoreError> {
        self.enter(RestoreStage::Stream);
        let options = self.inner.backup_options().clone();
        let sources = Sources {
            destinations: self.inner.backups.destinations(),
            allowlist: options.allowlist.as_deref(),
        };
        let archive = source::open_run_file(&sources, &self.source, DownloadKind::Archive)
            .await
            .map_err(|err| RestoreError::Stream(err.to_string()))?;
        let config = PassConfig {
            rules: Some(self.request.rules),
            stall_timeout: options.stall_timeout,
            progress_interval: options.progress_interval,
            hash_to_end: false,
        };
        self.tracker.event.progress.bytes = 0;
        self.tracker.event.progress.files = 0;
        self.tracker.event.progress.total_bytes = Some(verified.decoded.counts.file_bytes);
        let tracker = &mut self.tracker;
        super::stream::into_helper(session, archive.reader, &config, &self.cancel, |p| {
            tracker.update(p);
        })
        .await
    }

    /// Finalize: tar's exit status, pass two's digest, the spot check (and a drill's content
    /// check), `sync`, then the helper removed and gone.
    pub(super) async fn finalize(
        &mut self,
        session: StdinSession,
        streamed: Result<super::check::PassOutcome, RestoreError>,
        verified: &Verified,
        name: &str,
    ) -> Result<(), RestoreError> {
        let wait = if streamed.is_ok() {
            FINISH_WAIT
        } else {
            Duration::from_secs(5)
        };
        let status = session.finish(wait).await;
        let tar_said = super::stream::describe_tar(&status, &verified.decoded, name);
        let outcome = match streamed {
            Err(RestoreError::Cancelled { stage }) => {
                return Err(RestoreError::Cancelled { stage });
            }
            // The connection ended mid-stream without tar's exit status: it was lost, whatever
            // the writer made of it.
            Err(_) if status.connection_lost && status.reported_exit.is_none() => {
                let cause = status
                    .transport_error
                    .as_deref()
                    .map_or(String::new(), |err| format!(" ({err})"));
                return Err(RestoreError::Stream(format!(
                    "lost the connection to the API server while restoring into helper pod \
                     {name}{cause}; what was written is a partial restore: check that the API server \
                     is up and reachable from nkvm, then restore again"
                )));
            }
            Err(err) => {
                return Err(match tar_said {
                    Some(said) => RestoreError::Stream(format!("{err}; {said}")),
                    None => err,
                });
            }
            Ok(outcome) => outcome,
        };
        self.enter(RestoreStage::Finalize);
        if let Some(said) = tar_said {
            return Err(RestoreError::Finalize(said));
        }
        if outcome.sha256 != self.source.sha256.clone().unwrap_or_default() {
            return Err(RestoreError::Finalize(format!(
                "the archive changed between its verification and the restore (sha256 now {}); \
                 the data written passed the safety checks, but may not be the backup: restore \
                 again",
                outcome.sha256
            )));
        }
        let api = self.stream_pods();
        let timeout = self.inner.backup_options().request_timeout;
        let decoded = match outcome.decoded {
            Ok(decoded) => decoded,
            Err(err) => return Err(RestoreError::Finalize(err.to_string())),
        };
        let samples = decoded.samples.clone();
        if !samples.is_empty() {
            let output = exec_capture(
                &api,
                name,
                commands::spot_check_command(&samples),
                64 * 1024,
                timeout.max(Duration::from_mins(1)),
            )
            .await
            .unwrap_or_default();
            let check = commands::judge_spot_check(&samples, &output);
            let summary = check.summary();
            if !check.differences.is_empty() {
                return Err(RestoreError::Finalize(format!(
                    "the data was written, but {summary}; the helper could not set them \
                     (check the Pod Security level and capabilities allowed in namespace {})",
                    self.target.namespace
                )));
            }
            self.spot_check = Some(summary);
        }
        if self.content_check {
            super::drill::check_content(self, &api, name, &decoded).await?;
        }
        let _ = exec_capture(&api, name, vec!["sync".to_owned()], 1024, FINISH_WAIT).await;
        self.written = Some(decoded);
        self.remove_helper().await
    }

    /// Deletes the helper and waits until it is gone (the claim is then free for the workloads).
    pub(super) async fn remove_helper(&mut self) -> Result<(), RestoreError> {
        let Some(helper) = self.helper.take() else {
            return Ok(());
        };
        let name = helper.name().to_owned();
        helper.delete().await.map_err(RestoreError::Finalize)?;
        let gone_timeout = self.inner.options.helper_gone_timeout;
        let client = self.inner.backups.client().clone();
        let ns = self.target.namespace.clone();
        let started = Instant::now();
        loop {
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            if let Ok(None) = timed(
                Duration::from_secs(10),
                crate::backup::lookup::object(&api, &name),
            )
            .await
            {
                return Ok(());
            }
            if started.elapsed() > gone_timeout {
                return Err(RestoreError::Finalize(format!(
                    "helper pod {ns}/{name} is still there {}s after its deletion",
                    gone_timeout.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Scale-up: every scaled-down workload back to its recorded count.
    pub(super) async fn scale_up(&mut self) -> Result<(), RestoreError> {
        if self.scaled.is_empty() {
            return Ok(());
        }
        self.enter(RestoreStage::ScaleUp);
        let errors = self.give_back_replicas().await;
        if errors.is_empty() {
            Ok(())
        } else {
            Err(RestoreError::ScaleUp(format!(
                "the data was restored, but {}",
                errors.join("; ")
            )))
        }
    }

    /// Scales every workload back (once); returns the failures.
    pub(super) async fn give_back_replicas(&mut self) -> Vec<String> {
        let Some(mut guard) = self.scale_guard.take() else {
            return Vec::new();
        };
        let timeout = self.inner.backup_options().request_timeout;
        let client = self.inner.backups.client().clone();
        let mut errors = Vec::new();
        for scaled in &self.scaled {
            match scale::scale_up(&client, &self.target.namespace, &scaled.workload, timeout).await
            {
                Ok(note) => self.warnings.extend(note),
                Err(err) => errors.push(err),
            }
        }
        guard.disarm();
        errors
    }

    /// Record: the restore row says succeeded; a new PVC loses its "incomplete" label.
    pub(super) async fn record(&mut self) -> Result<(), RestoreError> {
        self.enter(RestoreStage::Record);
        if self.pvc_created && self.mode == RestoreMode::NewPvc {
            let patch =
                serde_json::json!({"metadata": {"labels": {pod::LABEL_RESTORE_STATE: null}}});
            timed(
                self.inner.backup_options().request_timeout,
                self.pvcs().patch(
                    &self.target.name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                ),
            )
            .await
            .map_err(|err| {
                RestoreError::Record(format!(
                    "the data was restored, but PVC {} could not be marked complete: {}",
                    self.target,
                    kubeapi::advice(
                        &err,
                        Call::new("patch", "persistentvolumeclaims", &self.target.namespace)
                    )
                ))
            })?;
        }
        Ok(())
    }

    /// Deletes the PVC this restore created (only the one of the UID it was created with);
    /// whether it is gone.
    pub(super) async fn remove_created_pvc(&mut self) -> Result<(), String> {
        let timeout = self.inner.backup_options().request_timeout;
        let params = DeleteParams {
            preconditions: self.pvc_uid.clone().map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        match timed(timeout, self.pvcs().delete(&self.target.name, &params)).await {
            Ok(_) => Ok(()),
            Err(err) if http_status(&err) == Some(404) => Ok(()),
            // The precondition failed: the PVC nkvm created is gone, another has the name.
            Err(err) if self.pvc_uid.is_some() && http_status(&err) == Some(409) => Ok(()),
            Err(err) => Err(kubeapi::advice(
                &err,
                Call::new("delete", "persistentvolumeclaims", &self.target.namespace),
            )),
        }
    }
}
