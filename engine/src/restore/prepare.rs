//! The stages of a restore that decide and prepare, before anything is written: verify (pass one
//! over the archive and the pre-scan), pre-flight (the target and, in place, the workloads using
//! it) and scale-down.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::ListParams;

use super::RestoreTarget;
use super::check::{CheckError, Decoded, PassConfig};
use super::error::RestoreError;
use super::run::Job;
use super::scale::{self, Workload};
use super::source::{self, Sources};
use crate::backup::artifact::Manifest;
use crate::backup::preflight;
use crate::backup::tarcheck::TarError;
use crate::domain::format::format_bytes_exact;
use crate::domain::{RestoreMode, RestoreStage};
use crate::download::DownloadKind;
use crate::kubeapi::{self, Call, timed};
use crate::objects::summarize;
use crate::store::VerificationUpdate;

/// What pass one established.
pub(super) struct Verified {
    pub(super) decoded: Decoded,
    pub(super) manifest: Option<Manifest>,
}

/// What pre-flight established.
pub(super) struct Plan {
    /// UID of the existing target PVC (in place).
    pub(super) pvc_uid: Option<String>,
    pub(super) size: String,
    pub(super) storage_class: Option<String>,
    pub(super) access_modes: Vec<String>,
    pub(super) workloads: Vec<Workload>,
    /// Pods using the claim now.
    pub(super) users: Vec<String>,
}

/// The pods mounting `target` now and the workloads an in-place restore scales down (or why it
/// cannot), through the inventory's owner mapping.
pub(super) async fn users_and_workloads(
    client: &kube::Client,
    target: &crate::backup::PvcRef,
    timeout: std::time::Duration,
) -> Result<(Vec<String>, Result<Vec<Workload>, String>), String> {
    let ns = &target.namespace;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = timed(timeout, pods.list(&ListParams::default()))
        .await
        .map_err(|err| {
            format!(
                "could not list the pods using PVC {target}: {}",
                kubeapi::advice(&err, Call::new("list", "pods", ns))
            )
        })?;
    let users = scale::users_of(&list.items, &target.name);
    let owners = preflight::resolve_owners(client, ns, &list.items, &users, timeout).await;
    Ok((users, scale::plan(ns, &owners)))
}

/// The PVC `target`, or `None` when there is none. It is read with a LIST narrowed to its name
/// (as every single object nkvm reads), so a refusal asks for `list`, not `get`.
pub(super) async fn read_pvc(
    api: &Api<PersistentVolumeClaim>,
    target: &crate::backup::PvcRef,
    timeout: std::time::Duration,
) -> Result<Option<PersistentVolumeClaim>, String> {
    timed(timeout, crate::backup::lookup::object(api, &target.name))
        .await
        .map_err(|err| {
            format!(
                "could not read PVC {target}: {}",
                kubeapi::advice(
                    &err,
                    Call::new("list", "persistentvolumeclaims", &target.namespace)
                )
            )
        })
}

impl Job<'_> {
    /// Verify: pass one over the archive; nothing is written unless it is intact, matches its
    /// history row, and every entry passes the pre-scan.
    pub(super) async fn verify(&mut self) -> Result<Verified, RestoreError> {
        self.enter(RestoreStage::Verify);
        self.tracker.event.progress.total_bytes = self.source.source_bytes;
        self.tracker.event.progress.total_files = self.source.files;
        let options = self.inner.backup_options();
        let sources = Sources {
            destinations: self.inner.backups.destinations(),
            allowlist: options.allowlist.as_deref(),
        };
        let nothing = "nothing was written";
        let archive = source::open_run_file(&sources, &self.source, DownloadKind::Archive)
            .await
            .map_err(|err| RestoreError::Verify(format!("{err}; {nothing}")))?;
        let config = PassConfig {
            rules: Some(self.request.rules),
            stall_timeout: options.stall_timeout,
            progress_interval: options.progress_interval,
            hash_to_end: false,
        };
        let tracker = &mut self.tracker;
        let outcome = super::check::pass(
            archive.reader,
            &config,
            None,
            &self.cancel,
            Arc::default(),
            |p| tracker.update(p),
        )
        .await
        .map_err(|err| match err {
            super::check::CheckError::Cancelled => RestoreError::Cancelled {
                stage: RestoreStage::Verify,
            },
            other => RestoreError::Verify(format!("{other}; {nothing}")),
        })?;
        // An entry the rules refuse: the tar checker's own path rules (absolute, `..`) or the
        // pre-scan's (links, devices, FIFOs, setuid/setgid).
        let refusal = match &outcome.decoded {
            Err(CheckError::Unsafe(refusal)) => Some(refusal.to_string()),
            Err(CheckError::Tar(unsafe_path @ TarError::UnsafePath { .. })) => {
                Some(format!("unsafe archive entry: {unsafe_path}"))
            }
            _ => None,
        };
        if let Some(refusal) = refusal {
            return Err(RestoreError::Verify(format!(
                "refused before anything was written: {refusal}"
            )));
        }
        let sidecar = source::read_sidecar(&sources, &self.source).await;
        let manifest = source::read_manifest(&sources, &self.source).await;
        let problems = super::verify::judge(&self.source, &sidecar, &manifest, &outcome);
        let (Ok(decoded), true) = (&outcome.decoded, problems.is_empty()) else {
            self.note_verification(crate::domain::VerifyStatus::Failed, &problems.join("; "))
                .await;
            return Err(RestoreError::Verify(format!(
                "the archive did not pass verification, {nothing}: {}",
                problems.join("; ")
            )));
        };
        let decoded = decoded.clone();
        self.note_verification(
            crate::domain::VerifyStatus::Verified,
            "verified before a restore",
        )
        .await;
        self.tracker.event.progress.total_bytes = Some(decoded.counts.file_bytes);
        self.tracker.event.progress.total_files = Some(decoded.counts.regular_files);
        Ok(Verified {
            decoded,
            manifest: manifest.ok(),
        })
    }

    /// Records pass one's verdict with the backup's history row (best effort).
    pub(super) async fn note_verification(
        &mut self,
        status: crate::domain::VerifyStatus,
        message: &str,
    ) {
        let update = VerificationUpdate {
            at: jiff::Timestamp::now(),
            status,
            by: self.started_by.clone(),
            message: message.to_owned(),
        };
        if let Err(err) = self
            .inner
            .store()
            .record_verification(self.source.id, &update)
            .await
        {
            tracing::warn!(restore = %self.id, error = %err, "could not record the verification");
        }
    }

    /// Pre-flight: the target (new: absent, sized; in place: Bound, large enough), and for an
    /// in-place restore the pods using it and the workloads to scale.
    pub(super) async fn preflight(&mut self, verified: &Verified) -> Result<Plan, RestoreError> {
        self.enter(RestoreStage::Preflight);
        let timeout = self.inner.backup_options().request_timeout;
        let needed = verified.decoded.counts.file_bytes;
        let existing = read_pvc(&self.pvcs(), &self.target, timeout)
            .await
            .map_err(RestoreError::Preflight)?;
        if self.mode != RestoreMode::InPlace {
            if existing.is_some() {
                return Err(RestoreError::Preflight(format!(
                    "PVC {} already exists; a restore into a new PVC never writes into an existing \
                     one: choose another name (--to-pvc), or restore in place (--in-place) into \
                     the backup's own PVC",
                    self.target
                )));
            }
            let (size, storage_class, access_modes) = self.new_pvc_spec(verified)?;
            let size_bytes = crate::quantity::parse_bytes(&size).unwrap_or(0);
            if size_bytes < needed {
                return Err(RestoreError::Preflight(format!(
                    "the target PVC is too small: {size} ({}) cannot hold the archive's {} of \
                     files; give a larger --size",
                    format_bytes_exact(size_bytes),
                    format_bytes_exact(needed)
                )));
            }
            return Ok(Plan {
                pvc_uid: None,
                size,
                storage_class,
                access_modes,
                workloads: Vec::new(),
                users: Vec::new(),
            });
        }
        let Some(pvc) = existing else {
            return Err(RestoreError::Preflight(format!(
                "PVC {} does not exist any more; restore into a new PVC instead (--to-pvc NAME)",
                self.target
            )));
        };
        let summary = summarize(&pvc);
        if summary.phase != "Bound" {
            return Err(RestoreError::Preflight(format!(
                "PVC {} is {} (not Bound); bind it first, or restore into a new PVC",
                self.target, summary.phase
            )));
        }
        if summary.uid != self.source.pvc_uid {
            self.warnings.push(format!(
                "PVC {} was re-created since the backup (its UID changed)",
                self.target
            ));
        }
        if let Some(capacity) = summary.capacity_bytes
            && capacity < needed
        {
            return Err(RestoreError::Preflight(format!(
                "the target PVC is too small: its capacity {} cannot hold the archive's {} of \
                 files; expand it or restore into a new, larger PVC",
                format_bytes_exact(capacity),
                format_bytes_exact(needed)
            )));
        }
        let (users, workloads) =
            users_and_workloads(self.inner.backups.client(), &self.target, timeout)
                .await
                .map_err(RestoreError::Preflight)?;
        let workloads = workloads.map_err(RestoreError::Preflight)?;
        Ok(Plan {
            pvc_uid: Some(summary.uid),
            size: String::new(),
            storage_class: None,
            access_modes: Vec::new(),
            workloads,
            users,
        })
    }

    /// Size, storage class and access modes of the new PVC: the request's, else the manifest's.
    pub(super) fn new_pvc_spec(
        &self,
        verified: &Verified,
    ) -> Result<(String, Option<String>, Vec<String>), RestoreError> {
        let RestoreTarget::NewPvc {
            storage_class,
            size,
            ..
        } = &self.request.target
        else {
            let manifest_pvc = verified.manifest.as_ref().map(|m| &m.pvc);
            let size = manifest_pvc.and_then(|p| p.capacity.clone());
            return size
                .map(|size| {
                    (
                        size,
                        manifest_pvc.and_then(|p| p.storage_class.clone()),
                        manifest_pvc
                            .map(|p| p.access_modes.clone())
                            .unwrap_or_default(),
                    )
                })
                .ok_or_else(|| {
                    RestoreError::Preflight(
                        "the backup's manifest names no capacity for the throwaway PVC".to_owned(),
                    )
                });
        };
        let manifest_pvc = verified.manifest.as_ref().map(|m| &m.pvc);
        let size = size
            .clone()
            .or_else(|| manifest_pvc.and_then(|p| p.capacity.clone()))
            .ok_or_else(|| {
                RestoreError::Preflight(
                    "the backup's manifest names no capacity; give the new PVC's --size".to_owned(),
                )
            })?;
        Ok((
            size,
            storage_class
                .clone()
                .or_else(|| manifest_pvc.and_then(|p| p.storage_class.clone())),
            manifest_pvc
                .map(|p| p.access_modes.clone())
                .unwrap_or_default(),
        ))
    }

    /// Scale-down: each workload to 0 (its count recorded on it), then no pod may mount the claim.
    pub(super) async fn scale_down(&mut self, plan: &Plan) -> Result<(), RestoreError> {
        self.enter(RestoreStage::ScaleDown);
        let options = self.inner.backup_options();
        let client = self.inner.backups.client().clone();
        let ns = self.target.namespace.clone();
        let instance = options
            .instance
            .clone()
            .unwrap_or_else(|| "nkvm".to_owned());
        self.scale_guard = Some(scale::ScaleGuard::new(
            client.clone(),
            &ns,
            options.request_timeout,
        ));
        for workload in &plan.workloads {
            let scaled = Self::cancellable(&self.cancel, RestoreStage::ScaleDown, async {
                scale::scale_down(
                    &client,
                    &ns,
                    workload,
                    &self.id,
                    &instance,
                    options.request_timeout,
                )
                .await
                .map_err(RestoreError::ScaleDown)
            })
            .await?;
            if let Some(guard) = self.scale_guard.as_mut() {
                guard.add(scaled.workload.clone());
            }
            self.scaled.push(scaled);
        }
        if plan.users.is_empty() && plan.workloads.is_empty() {
            return Ok(());
        }
        let timeout = self.inner.options.scale_down_timeout;
        Self::cancellable(&self.cancel, RestoreStage::ScaleDown, async {
            scale::wait_unmounted(
                &client,
                &ns,
                &self.target.name,
                timeout,
                options.request_timeout,
            )
            .await
            .map_err(RestoreError::ScaleDown)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::json;

    /// Regression: a refused read of the target PVC asked for `get`, but the read is a LIST, so
    /// granting `get` did not help.
    #[tokio::test]
    async fn a_refused_pvc_read_names_the_list_grant() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let server = tokio::spawn(async move {
            let (request, send) = handle.next_request().await.expect("one request");
            let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                              "message": "forbidden", "reason": "Forbidden", "code": 403});
            send.send_response(
                Response::builder()
                    .status(403)
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap(),
            );
            (
                request.method().clone(),
                request.uri().path().to_owned(),
                request.uri().query().unwrap_or_default().to_owned(),
            )
        });
        let api: Api<PersistentVolumeClaim> =
            Api::namespaced(kube::Client::new(service, "default"), "shop");
        let target = crate::backup::PvcRef::new("shop", "data");
        let message = read_pvc(&api, &target, std::time::Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            message.contains("grant list on persistentvolumeclaims in namespace shop"),
            "{message}"
        );
        assert!(
            message.starts_with("could not read PVC shop/data: "),
            "{message}"
        );
        let (method, path, query) = server.await.unwrap();
        assert_eq!(method, http::Method::GET);
        assert_eq!(path, "/api/v1/namespaces/shop/persistentvolumeclaims");
        assert!(
            query.contains("fieldSelector=metadata.name%3Ddata"),
            "{query}"
        );
    }
}
