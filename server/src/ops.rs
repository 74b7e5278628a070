//! Operations endpoints: `/readyz` (the history database answers and the cluster connection
//! works; `/healthz` stays the liveness check) and `/metrics` (Prometheus/OpenMetrics text). Metrics
//! are never open to every UI user: on the main listener they need `Authorization: Bearer <token>`
//! (`--metrics-token-file` / `NKVM_METRICS_TOKEN`) and are absent without a token; on a separate
//! `--metrics-listen` address they are served to whoever reaches it (the token, when set, is
//! required there too).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use nkvm_engine::destination::secret::Secret;
use nkvm_engine::observe::Metrics;
use nkvm_engine::observe::metrics::CONTENT_TYPE;
use tokio_util::sync::CancellationToken;

use crate::web::WebState;

/// Deadline of the cluster check of `/readyz`.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// Metrics and who may read them.
#[derive(Clone, Default)]
pub struct Ops {
    pub metrics: Option<Metrics>,
    /// The bearer token a scrape must present (`None`: none configured).
    pub token: Option<Secret>,
}

impl std::fmt::Debug for Ops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ops")
            .field("metrics", &self.metrics.is_some())
            .field("token", &self.token.is_some())
            .finish()
    }
}

impl Ops {
    /// Whether the request carries the configured token.
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return false;
        };
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| {
                nkvm_engine::auth::constant_time_eq(
                    given.trim().as_bytes(),
                    token.expose().as_bytes(),
                )
            })
    }

    fn render(&self) -> Response {
        let Some(metrics) = &self.metrics else {
            return (StatusCode::NOT_FOUND, "metrics are not enabled").into_response();
        };
        let mut response = metrics.render().into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        response
    }

    fn refuse() -> Response {
        let mut response = (
            StatusCode::UNAUTHORIZED,
            "metrics need `Authorization: Bearer <token>` (the token of --metrics-token-file)",
        )
            .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"nkvm metrics\""),
        );
        response
    }
}

/// `GET /metrics` on the main listener: only with the token.
pub async fn metrics_main(State(state): State<WebState>, headers: HeaderMap) -> Response {
    let ops = &state.ops;
    if ops.token.is_none() {
        return (
            StatusCode::NOT_FOUND,
            "metrics are served on --metrics-listen, or here with --metrics-token-file",
        )
            .into_response();
    }
    if !ops.authorized(&headers) {
        return Ops::refuse();
    }
    ops.render()
}

/// `GET /readyz`: 200 when the history database answers and the server's cluster connection
/// works, else 503 saying which failed (details in the log).
pub async fn readyz(State(state): State<WebState>) -> Response {
    let workspace = &state.context.workspace;
    let database = workspace.store().ping().await;
    let cluster = workspace
        .default_connection()
        .cluster
        .probe(READY_TIMEOUT)
        .await;
    if let Err(error) = &database {
        tracing::warn!(%error, "not ready: the history database");
    }
    if let Err(error) = &cluster {
        tracing::warn!(%error, "not ready: the cluster connection");
    }
    let word = |ok: bool| if ok { "ok" } else { "failing" };
    let body = format!(
        "database: {}\ncluster: {}\n",
        word(database.is_ok()),
        word(cluster.is_ok())
    );
    let status = if database.is_ok() && cluster.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
}

/// The router of the separate metrics listener: `/metrics` and `/healthz`.
pub fn metrics_router(ops: Ops) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(ops): State<Ops>, headers: HeaderMap| async move {
                if ops.token.is_some() && !ops.authorized(&headers) {
                    return Ops::refuse();
                }
                ops.render()
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .with_state(ops)
}

/// Serves [`metrics_router`] on `listen` until `stop`.
pub async fn serve_metrics(
    listen: SocketAddr,
    ops: Ops,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} for metrics"))?;
    tracing::info!("metrics on http://{}/metrics", listener.local_addr()?);
    axum::serve(listener, metrics_router(ops))
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
        .context("metrics server failed")
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use tower::ServiceExt as _;

    use super::*;

    fn ops(token: Option<&str>) -> Ops {
        let dir = tempfile::tempdir().unwrap();
        let token = token.map(|t| {
            let path = dir.path().join("token");
            std::fs::write(&path, t).unwrap();
            nkvm_engine::destination::secret::SecretRef::File(path)
                .resolve()
                .unwrap()
        });
        let metrics = Metrics::new();
        metrics.set_in_progress(3);
        Ops {
            metrics: Some(metrics),
            token,
        }
    }

    async fn get(router: Router, auth: Option<&str>) -> (StatusCode, String) {
        let mut request = axum::http::Request::builder().uri("/metrics");
        if let Some(value) = auth {
            request = request.header(header::AUTHORIZATION, value);
        }
        let response = router
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn the_metrics_listener_enforces_a_configured_token() {
        let (status, body) = get(metrics_router(ops(None)), None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("nkvm_backup_runs_in_progress 3"), "{body}");
        let with_token = || metrics_router(ops(Some("t0ken")));
        assert_eq!(get(with_token(), None).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(
            get(with_token(), Some("Bearer wrong")).await.0,
            StatusCode::UNAUTHORIZED
        );
        let (status, body) = get(with_token(), Some("Bearer t0ken")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.ends_with("# EOF\n"), "{body}");
    }
}
