//! `list_audit`: one page of the audit trail (logins, backups started and cancelled, downloads,
//! connection changes, refusals), for administrators. The CSV export is `/audit.csv`.

use leptos::prelude::*;

use crate::model::{AuditPage, AuditQuery};

/// Events per audit page.
pub const AUDIT_PAGE_ROWS: u32 = 100;

/// Audit events matching `query`, newest first. Admin only.
#[server(endpoint = "audit")]
pub async fn list_audit(query: AuditQuery) -> Result<AuditPage, ServerFnError> {
    use nkvm_engine::audit::{AuditAction, AuditFilter};

    crate::ssr::require(nkvm_engine::auth::Role::Admin, "the audit trail").await?;
    let ctx = crate::ssr::app_context()?;
    let action = match query
        .action
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        None => None,
        Some(text) => Some(
            text.parse::<AuditAction>()
                .map_err(|error| ServerFnError::new(format!("action: {error}")))?,
        ),
    };
    let page = query.page.unwrap_or(1).clamp(1, 100_000);
    let mut records = ctx
        .workspace
        .store()
        .audit_events(&AuditFilter {
            actor: query
                .actor
                .map(|a| a.trim().to_owned())
                .filter(|a| !a.is_empty()),
            action,
            limit: AUDIT_PAGE_ROWS + 1,
            offset: (page - 1) * AUDIT_PAGE_ROWS,
            ..AuditFilter::default()
        })
        .await
        .map_err(|error| crate::ssr::AppError::internal("reading the audit trail", error))?;
    let has_more = records.len() > AUDIT_PAGE_ROWS as usize;
    records.truncate(AUDIT_PAGE_ROWS as usize);
    Ok(AuditPage {
        rows: records
            .into_iter()
            .map(|r| crate::model::AuditRow {
                id: r.id,
                at: r.at,
                actor: r.actor,
                action: r.action.as_str().to_owned(),
                target: r.target,
                outcome: r.outcome.as_str().to_owned(),
                detail: r.detail,
                source: r.source,
            })
            .collect(),
        page,
        has_more,
    })
}
