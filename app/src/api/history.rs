//! `list_history`: one page of backup runs from the history database, filtered, for the history
//! page. Only namespaces of the server's allowlist, and runs of the session's cluster connection
//! ([`nkvm_engine::store::RunScope`]), are shown.

use leptos::prelude::*;

use crate::model::{HistoryPage, HistoryQuery};

/// Rows per history page.
pub const HISTORY_PAGE_ROWS: u32 = 50;

/// Parses a `YYYY-MM-DD` filter date as the start of that UTC day.
#[cfg(feature = "ssr")]
fn day_start(text: &str, field: &str) -> Result<jiff::Timestamp, ServerFnError> {
    let date: jiff::civil::Date = text
        .trim()
        .parse()
        .map_err(|_| ServerFnError::new(format!("{field}: expected a date like 2026-11-29")))?;
    date.to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp())
        .map_err(|_| ServerFnError::new(format!("{field}: date out of range")))
}

/// Runs matching `query`, newest first, [`HISTORY_PAGE_ROWS`] per page.
#[server(endpoint = "history")]
pub async fn list_history(query: HistoryQuery) -> Result<HistoryPage, ServerFnError> {
    use nkvm_engine::auth::Role as RoleNeeded;
    use nkvm_engine::domain::RunStatus;
    use nkvm_engine::store::RunFilter;

    crate::ssr::require(RoleNeeded::Viewer, "the history").await?;
    let (ctx, _, connection) = crate::ssr::session_connection()?;
    let text = |value: &Option<String>| {
        value
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let status = match text(&query.status) {
        None => None,
        Some(value) => Some(
            value
                .parse::<RunStatus>()
                .map_err(|error| ServerFnError::new(format!("status: {error}")))?,
        ),
    };
    let since = text(&query.from)
        .map(|d| day_start(&d, "from"))
        .transpose()?;
    let until = text(&query.to)
        .map(|d| day_start(&d, "to").map(|t| t + jiff::SignedDuration::from_hours(24)))
        .transpose()?;
    let page = query.page.unwrap_or(1).clamp(1, 100_000);
    let filter = RunFilter {
        namespace: text(&query.namespace),
        namespaces: ctx.allowlist().map(<[String]>::to_vec),
        pvc: text(&query.pvc),
        status,
        since,
        until,
        // One more than a page tells whether there is a next page.
        limit: HISTORY_PAGE_ROWS + 1,
        offset: (page - 1) * HISTORY_PAGE_ROWS,
        scope: Some(connection.scope()),
        ..RunFilter::default()
    };
    let mut rows = ctx
        .workspace
        .store()
        .recent_runs(&filter)
        .await
        .map_err(|error| crate::ssr::AppError::internal("reading the backup history", error))?;
    let has_more = rows.len() > HISTORY_PAGE_ROWS as usize;
    rows.truncate(HISTORY_PAGE_ROWS as usize);
    Ok(HistoryPage {
        rows: rows.into_iter().map(Into::into).collect(),
        page,
        per_page: HISTORY_PAGE_ROWS,
        has_more,
    })
}
