//! Webhook notifications: a JSON body POSTed to each configured receiver whose events and
//! schedules match, signed with HMAC-SHA256 over the exact body bytes (`X-Nkvm-Signature-256:
//! sha256=<hex>`, the scheme GitHub uses), retried with exponential backoff on transport errors,
//! 408, 429 and 5xx. Receivers come from a YAML file (`--notifications FILE`); their secrets only by
//! reference (`secret_env` / `secret_file`), read when a notification is sent, never logged.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::auth::oidc::http::HttpClient;
use crate::destination::secret::{Secret, SecretRef};
use crate::schedule::STARTED_BY_PREFIX;
use crate::store::RunRecord;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Nkvm-Signature-256";
/// The event header (`backup.failed`, `backup.succeeded`, `pvc.overdue`).
pub const EVENT_HEADER: &str = "X-Nkvm-Event";
/// A unique id per notification (the same across its retries).
pub const DELIVERY_HEADER: &str = "X-Nkvm-Delivery";

crate::text_enum! {
    /// What a receiver can be told about.
    pub enum EventKind("notification event") {
        /// A backup run failed (or was interrupted or cancelled).
        Failure => "failure",
        /// A PVC covered by a schedule became overdue.
        Overdue => "overdue",
        /// A backup run succeeded.
        Success => "success",
    }
}

impl EventKind {
    /// The name in the body and the event header.
    #[must_use]
    pub fn event_name(self) -> &'static str {
        match self {
            Self::Failure => "backup.failed",
            Self::Overdue => "pvc.overdue",
            Self::Success => "backup.succeeded",
        }
    }
}

/// One receiver.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub name: String,
    pub url: url::Url,
    pub secret: SecretRef,
    pub events: Vec<EventKind>,
    /// Only events of these schedules (empty: every event, runs started by hand included).
    pub schedules: Vec<String>,
    /// Attempts per notification (at least 1).
    pub attempts: u32,
    /// Delay before the first retry (doubled each time).
    pub backoff: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    webhooks: Vec<RawWebhook>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    name: String,
    url: String,
    #[serde(default)]
    secret: Option<serde_yaml::Value>,
    #[serde(default)]
    secret_env: Option<String>,
    #[serde(default)]
    secret_file: Option<std::path::PathBuf>,
    #[serde(default)]
    events: Option<Vec<EventKind>>,
    #[serde(default)]
    schedules: Vec<String>,
    #[serde(default)]
    attempts: Option<u32>,
    #[serde(default)]
    backoff_seconds: Option<f64>,
}

/// Parses the notifications file's text; relative `secret_file` paths are read from `base`.
pub fn parse_config(text: &str, base: &Path) -> Result<Vec<Webhook>, String> {
    let raw: RawFile = serde_yaml::from_str(text)
        .map_err(|e| format!("{e} (expected `webhooks:` with a list)"))?;
    let mut hooks: Vec<Webhook> = Vec::new();
    for (index, hook) in raw.webhooks.into_iter().enumerate() {
        let at = |message: String| format!("webhook #{} ({}): {message}", index + 1, hook.name);
        crate::destination::config::validate_name(&hook.name).map_err(at)?;
        if hooks.iter().any(|h| h.name == hook.name) {
            return Err(at("the name is used twice".to_owned()));
        }
        if hook.secret.is_some() {
            return Err(at(
                "`secret` would hold the secret inline, which is refused: use secret_env or \
                 secret_file"
                    .to_owned(),
            ));
        }
        let url = url::Url::parse(&hook.url).map_err(|e| at(format!("url: {e}")))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(at("url: use an http(s) URL".to_owned()));
        }
        let secret = match (hook.secret_env, hook.secret_file) {
            (Some(env), None) if !env.is_empty() => SecretRef::Env(env),
            (None, Some(file)) => SecretRef::File(base.join(file)),
            (Some(_), Some(_)) => {
                return Err(at("give secret_env or secret_file, not both".into()));
            }
            _ => {
                return Err(at(
                    "the signing secret is missing: give secret_env (an environment variable) or \
                     secret_file (a file)"
                        .to_owned(),
                ));
            }
        };
        let backoff = hook.backoff_seconds.unwrap_or(1.0);
        if !(0.0..=3600.0).contains(&backoff) {
            return Err(at("backoff_seconds must be between 0 and 3600".to_owned()));
        }
        hooks.push(Webhook {
            name: hook.name,
            url,
            secret,
            events: hook
                .events
                .unwrap_or_else(|| vec![EventKind::Failure, EventKind::Overdue]),
            schedules: hook.schedules,
            attempts: hook.attempts.unwrap_or(5).clamp(1, 20),
            backoff: Duration::from_secs_f64(backoff),
        });
    }
    Ok(hooks)
}

/// Reads and parses a notifications file.
pub fn load_config(path: &Path) -> Result<Vec<Webhook>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the notifications file {}: {e}", path.display()))?;
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    parse_config(&text, base).map_err(|e| format!("{}: {e}", path.display()))
}

/// A run as a notification describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    pub run_id: String,
    pub namespace: String,
    pub pvc: String,
    pub status: String,
    pub stage: Option<String>,
    pub message: Option<String>,
    pub started_by: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub bytes: Option<u64>,
    pub sha256: Option<String>,
}

/// An overdue PVC as a notification describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverdueInfo {
    pub namespace: String,
    pub pvc: String,
    pub last_success_at: Option<String>,
    pub rpo_seconds: i64,
    pub schedules: Vec<String>,
}

/// The JSON body of a notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    /// `backup.failed`, `backup.succeeded` or `pvc.overdue`.
    pub event: String,
    pub delivery: String,
    /// RFC 3339 UTC.
    pub sent_at: String,
    /// The schedule concerned (`null`: a run started by hand).
    pub schedule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub run: Option<RunInfo>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pvc: Option<OverdueInfo>,
}

/// `sha256=<hex HMAC-SHA256 of body under secret>`.
#[must_use]
pub fn signature(secret: &Secret, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.expose().as_bytes());
    format!(
        "sha256={}",
        hex::encode(ring::hmac::sign(&key, body).as_ref())
    )
}

/// Sends notifications to the configured receivers, in the background. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Notifier {
    hooks: std::sync::Arc<Vec<Webhook>>,
    client: Option<HttpClient>,
}

impl Notifier {
    /// A notifier for `hooks` (none: it does nothing).
    pub fn new(hooks: Vec<Webhook>) -> Result<Self, String> {
        let client = if hooks.is_empty() {
            None
        } else {
            let need_tls = hooks.iter().any(|h| h.url.scheme() == "https");
            Some(HttpClient::new(need_tls).map_err(|e| format!("no TLS roots for webhooks: {e}"))?)
        };
        Ok(Self {
            hooks: std::sync::Arc::new(hooks),
            client,
        })
    }

    /// Whether any receiver is configured.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.hooks.is_empty()
    }

    /// Notifies about a finished run (failure always; success to receivers that ask for it).
    pub fn run_finished(&self, run: &RunRecord) {
        if !run.status.is_finished() {
            return;
        }
        let kind = if run.status == crate::domain::RunStatus::Succeeded {
            EventKind::Success
        } else {
            EventKind::Failure
        };
        let schedule = run
            .started_by
            .strip_prefix(STARTED_BY_PREFIX)
            .map(str::to_owned);
        let info = RunInfo {
            run_id: run.run_id.clone(),
            namespace: run.namespace.clone(),
            pvc: run.pvc.clone(),
            status: run.status.as_str().to_owned(),
            stage: run.stage.map(|s| s.as_str().to_owned()),
            message: run.message.clone(),
            started_by: run.started_by.clone(),
            started_at: run.started_at.clone(),
            finished_at: run.finished_at.clone(),
            bytes: run.bytes,
            sha256: run.sha256.clone(),
        };
        let schedules: Vec<String> = schedule.iter().cloned().collect();
        self.send(kind, &schedules, |delivery, sent_at| Payload {
            event: kind.event_name().to_owned(),
            delivery,
            sent_at,
            schedule: schedule.clone(),
            run: Some(info.clone()),
            pvc: None,
        });
    }

    /// Notifies that a covered PVC became overdue.
    pub fn overdue(&self, info: &OverdueInfo) {
        self.send(EventKind::Overdue, &info.schedules, |delivery, sent_at| {
            Payload {
                event: EventKind::Overdue.event_name().to_owned(),
                delivery,
                sent_at,
                schedule: info.schedules.first().cloned(),
                run: None,
                pvc: Some(info.clone()),
            }
        });
    }

    fn send(
        &self,
        kind: EventKind,
        schedules: &[String],
        payload: impl Fn(String, String) -> Payload,
    ) {
        let Some(client) = &self.client else { return };
        for hook in self.hooks.iter() {
            let wanted = hook.events.contains(&kind)
                && (hook.schedules.is_empty()
                    || schedules.iter().any(|s| hook.schedules.contains(s)));
            if !wanted {
                continue;
            }
            let delivery = crate::auth::random_hex::<12>().unwrap_or_else(|_| "0".repeat(24));
            let body = payload(
                delivery.clone(),
                crate::timestamp::rfc3339(jiff::Timestamp::now()),
            );
            let Ok(body) = serde_json::to_vec(&body) else {
                continue;
            };
            let (client, hook) = (client.clone(), hook.clone());
            tokio::spawn(async move {
                if let Err(error) =
                    deliver(&client, &hook, kind, &delivery, Bytes::from(body)).await
                {
                    tracing::warn!(webhook = %hook.name, event = kind.event_name(), %delivery, %error, "notification not delivered");
                }
            });
        }
    }
}

/// Sends one notification with retries; the error says what the receiver answered.
async fn deliver(
    client: &HttpClient,
    hook: &Webhook,
    kind: EventKind,
    delivery: &str,
    body: Bytes,
) -> Result<(), String> {
    let secret = hook.secret.resolve()?;
    let headers = [
        (SIGNATURE_HEADER, signature(&secret, &body)),
        (EVENT_HEADER, kind.event_name().to_owned()),
        (DELIVERY_HEADER, delivery.to_owned()),
        ("User-Agent", format!("nkvm/{}", env!("CARGO_PKG_VERSION"))),
    ];
    let mut delay = hook.backoff;
    for attempt in 1..=hook.attempts {
        let outcome = client
            .post(&hook.url, "application/json", &headers, body.clone())
            .await;
        let (retry, error) = match outcome {
            Ok(answer) if answer.status.is_success() => {
                tracing::debug!(webhook = %hook.name, %delivery, attempt, "notification delivered");
                return Ok(());
            }
            Ok(answer) => {
                let status = answer.status.as_u16();
                (
                    status == 408 || status == 429 || answer.status.is_server_error(),
                    format!("the receiver answered HTTP {status}"),
                )
            }
            Err(error) => (true, error.to_string()),
        };
        if !retry || attempt == hook.attempts {
            return Err(format!("{error} (after {attempt} attempt(s))"));
        }
        tokio::time::sleep(delay).await;
        delay = delay.saturating_mul(2);
    }
    Err("no attempt was made".to_owned())
}

#[cfg(test)]
mod tests;
