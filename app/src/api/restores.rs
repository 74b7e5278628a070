//! Restore server functions: the restore page's source backup, the plan of an in-place restore,
//! starting a restore (into a new PVC, or in place after the PVC's name was typed), verifying a
//! backup, starting a drill, and cancelling. Policy (allowlist, audit, busy targets) is the
//! engine's; these check the role and the typed confirmation. Progress arrives on the runs
//! websocket like backups'.

use leptos::prelude::*;

use crate::model::{InPlacePlanView, RestoreForm, RestoreSourceView, StartOutcome, VerifyView};

/// The backup a restore page restores.
#[server(endpoint = "restores/source")]
pub async fn restore_source(run_id: String) -> Result<RestoreSourceView, ServerFnError> {
    crate::ssr::require(nkvm_engine::auth::Role::Viewer, "the restore page").await?;
    let (ctx, _, connection) = crate::ssr::session_connection()?;
    let run = connection
        .restores
        .restorable_run(&run_id)
        .await
        .map_err(crate::ssr::AppError::Shown)?;
    let sources = nkvm_engine::restore::source::Sources {
        destinations: connection.backups.destinations(),
        allowlist: ctx.allowlist(),
    };
    let manifest = nkvm_engine::restore::source::read_manifest(&sources, &run)
        .await
        .ok();
    Ok(RestoreSourceView {
        capacity: manifest.as_ref().and_then(|m| m.pvc.capacity.clone()),
        storage_class: manifest.and_then(|m| m.pvc.storage_class),
        verify_status: run
            .verification
            .verify_status
            .map(|s| s.as_str().to_owned()),
        verified_at: run.verification.verified_at,
        run_id: run.run_id,
        namespace: run.namespace,
        pvc: run.pvc,
        finished_at: run.finished_at,
        bytes: run.bytes,
        source_bytes: run.source_bytes,
        files: run.files,
        sha256: run.sha256,
    })
}

/// What an in-place restore of `run_id` would do now.
#[server(endpoint = "restores/plan")]
pub async fn restore_plan(run_id: String) -> Result<InPlacePlanView, ServerFnError> {
    crate::ssr::require(nkvm_engine::auth::Role::Operator, "planning a restore").await?;
    let (_, _, connection) = crate::ssr::session_connection()?;
    let plan = connection
        .restores
        .plan_in_place(&run_id)
        .await
        .map_err(crate::ssr::AppError::Shown)?;
    Ok(InPlacePlanView {
        namespace: plan.namespace,
        pvc: plan.pvc,
        users: plan.users,
        workloads: plan
            .workloads
            .into_iter()
            .map(|s| (s.workload.to_string(), s.replicas))
            .collect(),
        refusal: plan.refusal,
    })
}

/// Starts a restore; its progress follows on the runs websocket. An in-place restore needs the
/// PVC's name typed into `confirm`.
#[server(endpoint = "restores/start")]
pub async fn start_restore(form: RestoreForm) -> Result<StartOutcome, ServerFnError> {
    use nkvm_engine::backup::Requester;
    use nkvm_engine::restore::{RestoreRequest, RestoreTarget, Rules};

    let caller = crate::ssr::require(nkvm_engine::auth::Role::Operator, "restoring").await?;
    let (_, _, connection) = crate::ssr::session_connection()?;
    let text = |value: &str| Some(value.trim().to_owned()).filter(|v| !v.is_empty());
    let target = if form.in_place {
        let run = connection
            .restores
            .restorable_run(&form.run_id)
            .await
            .map_err(crate::ssr::AppError::Shown)?;
        if form.confirm.trim() != run.pvc {
            return Err(ServerFnError::new(format!(
                "type the PVC's name ({}) to confirm an in-place restore",
                run.pvc
            )));
        }
        RestoreTarget::InPlace { wipe: form.wipe }
    } else {
        RestoreTarget::NewPvc {
            name: text(&form.to_pvc)
                .ok_or_else(|| ServerFnError::new("give the new PVC's name"))?,
            namespace: text(&form.to_namespace),
            storage_class: text(&form.storage_class),
            size: text(&form.size),
        }
    };
    let request = RestoreRequest {
        run_id: form.run_id.clone(),
        target,
        rules: Rules {
            allow_setuid: form.allow_setuid,
            allow_escaping_symlinks: form.allow_escaping_symlinks,
        },
        keep_failed_pvc: false,
    };
    let requester = Requester::web(&caller.user, &caller.source);
    Ok(
        match connection.restores.start_restore(request, &requester).await {
            Ok(job) => StartOutcome {
                target: form.run_id,
                run_id: Some(job.id),
                error: None,
            },
            Err(refused) => StartOutcome {
                target: form.run_id,
                run_id: None,
                error: Some(refused.message),
            },
        },
    )
}

/// Verifies a backup's archive and records the result (who, when, what) in its history row.
#[server(endpoint = "restores/verify")]
pub async fn verify_backup(run_id: String) -> Result<VerifyView, ServerFnError> {
    use nkvm_engine::backup::Requester;

    let caller =
        crate::ssr::require(nkvm_engine::auth::Role::Operator, "verifying a backup").await?;
    let (_, _, connection) = crate::ssr::session_connection()?;
    let requester = Requester::web(&caller.user, &caller.source);
    let result = connection
        .restores
        .verify(&run_id, &requester)
        .await
        .map_err(crate::ssr::AppError::Shown)?;
    Ok(VerifyView {
        run_id: result.run_id,
        status: result.status.as_str().to_owned(),
        message: result.message,
        verified_at: result.verified_at,
    })
}

/// Starts a restore drill of `namespace/pvc`; its progress follows on the runs websocket.
#[server(endpoint = "restores/drill")]
pub async fn start_drill(target: String) -> Result<(), ServerFnError> {
    use nkvm_engine::backup::{PvcRef, Requester};

    let caller =
        crate::ssr::require(nkvm_engine::auth::Role::Operator, "running a restore drill").await?;
    let (_, _, connection) = crate::ssr::session_connection()?;
    let target: PvcRef = target
        .parse()
        .map_err(|err: nkvm_engine::domain::NameError| ServerFnError::new(err.to_string()))?;
    let requester = Requester::web(&caller.user, &caller.source);
    let engine = connection.restores.clone();
    tokio::spawn(async move {
        let result = engine.drill(&target, &requester).await;
        tracing::info!(pvc = %target, status = %result.status, "restore drill finished");
    });
    Ok(())
}

/// Cancels a running restore, verification or drill; false when no such job is active.
#[server(endpoint = "restores/cancel")]
pub async fn cancel_restore(id: String) -> Result<bool, ServerFnError> {
    use nkvm_engine::backup::Requester;

    let caller =
        crate::ssr::require(nkvm_engine::auth::Role::Operator, "cancelling restores").await?;
    let (_, _, connection) = crate::ssr::session_connection()?;
    if !nkvm_engine::backup::is_run_id(&id) {
        return Err(ServerFnError::new("not a restore id"));
    }
    let requester = Requester::web(&caller.user, &caller.source);
    Ok(connection.restores.cancel_for(&id, &requester).await)
}
