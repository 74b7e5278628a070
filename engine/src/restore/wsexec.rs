//! A command in the restore helper whose stdin nkvm writes: the exec websocket is opened through
//! kube's client (`Client::connect`, which negotiates `v5.channel.k8s.io` with the apiserver and
//! falls back to `v4`), and stdin goes out in frames of the writer's size — kube's own exec sends
//! stdin in 4 KiB frames, which halves what a restore can push through the apiserver. stderr is
//! kept (its tail and tar's exit marker), the status channel gives the exit status, and the end
//! of stdin is signalled with the `v5` close frame; on a `v4` connection, which has none, tar
//! still ends by itself at the archive's end-of-archive blocks.

use std::time::Duration;

use futures::{Sink, SinkExt, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::Client;
use kube::api::AttachParams;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::backup::exec::{ExecOutcome, STDERR_TAIL, Tail, parse_exit_marker, without_marker};
use crate::backup::helper::RetryPolicy;
use crate::backup::pod::CONTAINER;
use crate::kubeapi::{self, Call, is_transient};

const STDIN: u8 = 0;
const STDERR: u8 = 2;
const STATUS: u8 = 3;
/// `v5.channel.k8s.io`: closes the channel named by the next byte.
const CLOSE: u8 = 255;

type FrameSink = Box<dyn Sink<Message, Error = tungstenite::Error> + Send + Unpin>;

/// What the reading side saw by the end.
#[derive(Debug, Default)]
struct Ended {
    status: Option<Status>,
    transport_error: Option<String>,
    /// The connection ended without the exit status (a transport error, or closed without it).
    lost: bool,
}

/// A running command with nkvm writing its stdin.
pub struct StdinSession {
    sink: FrameSink,
    reader: tokio::task::JoinHandle<Ended>,
    stderr: Tail,
    marker: watch::Receiver<Option<i64>>,
    closes_stdin: bool,
}

impl std::fmt::Debug for StdinSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdinSession")
            .field("closes_stdin", &self.closes_stdin)
            .finish_non_exhaustive()
    }
}

impl StdinSession {
    /// Starts `command` in the helper container of `pod`, retrying transient connection failures.
    pub async fn start(
        client: &Client,
        namespace: &str,
        pod: &str,
        command: Vec<String>,
        retry: RetryPolicy,
    ) -> Result<Self, String> {
        let params = AttachParams::default()
            .container(CONTAINER)
            .stdin(true)
            .stdout(true)
            .stderr(true)
            .tty(false);
        let pods = kube::core::Request::new(format!("/api/v1/namespaces/{namespace}/pods"));
        let attempts = retry.attempts.max(1);
        let mut attempt = 1;
        let connection = loop {
            let request = pods
                .exec(pod, command.clone(), &params)
                .map_err(|err| format!("could not build the exec request: {err}"))?;
            match client.connect(request).await {
                Ok(connection) => break connection,
                Err(err) if is_transient(&err) && attempt < attempts => {
                    tracing::warn!(pod, attempt, error = %err, "exec failed; retrying");
                    tokio::time::sleep(retry.delay(attempt)).await;
                    attempt += 1;
                }
                Err(err) => {
                    return Err(format!(
                        "could not exec into helper pod {pod}: {}",
                        kubeapi::advice(&err, Call::new("get and create", "pods/exec", namespace))
                    ));
                }
            }
        };
        let closes_stdin = connection.supports_stream_close();
        tracing::debug!(pod, closes_stdin, "exec session for stdin");
        let (sink, mut frames) = connection.into_stream().split();
        let stderr = Tail::new(STDERR_TAIL);
        let tail = stderr.clone();
        let (marker_tx, marker) = watch::channel(None);
        let reader = tokio::spawn(async move {
            let mut ended = Ended::default();
            while let Some(frame) = frames.next().await {
                let bin = match frame {
                    Ok(Message::Binary(bin)) if bin.len() > 1 => bin,
                    Ok(Message::Close(_)) => break,
                    Ok(_) => continue,
                    Err(err) => {
                        ended.transport_error = Some(err.to_string());
                        break;
                    }
                };
                match bin[0] {
                    STDERR => {
                        tail.push(&bin[1..]);
                        if marker_tx.borrow().is_none()
                            && let Some(code) = parse_exit_marker(&tail.text())
                        {
                            let _ = marker_tx.send(Some(code));
                        }
                    }
                    STATUS => {
                        ended.status = serde_json::from_slice(&bin[1..]).ok();
                        break;
                    }
                    // stdout is not used by restore commands; anything else is not ours.
                    _ => {}
                }
            }
            ended.lost = ended.status.is_none();
            // Wake whoever waits for the exit (the connection ended without a marker).
            if marker_tx.borrow().is_none() {
                let _ = marker_tx.send(parse_exit_marker(&tail.text()).or(Some(-1)));
            }
            ended
        });
        Ok(Self {
            sink: Box::new(sink),
            reader,
            stderr,
            marker,
            closes_stdin,
        })
    }

    /// Whether the connection can signal the end of stdin (`v5.channel.k8s.io`).
    pub fn closes_stdin(&self) -> bool {
        self.closes_stdin
    }

    /// Writes `data` to the command's stdin as one frame.
    pub async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        let mut frame = Vec::with_capacity(data.len() + 1);
        frame.push(STDIN);
        frame.extend_from_slice(data);
        self.sink
            .send(Message::binary(frame))
            .await
            .map_err(std::io::Error::other)
    }

    /// Resolves once the command reported its exit code, or the connection ended.
    pub fn exited(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut marker = self.marker.clone();
        async move {
            let _ = marker.wait_for(Option::is_some).await;
        }
    }

    /// Ends stdin (the close frame on `v5`), waits at most `wait` for the exit status, closes.
    pub async fn finish(mut self, wait: Duration) -> ExecOutcome {
        if self.closes_stdin {
            let _ = tokio::time::timeout(
                Duration::from_secs(10),
                self.sink.send(Message::binary(vec![CLOSE, STDIN])),
            )
            .await;
        }
        let ended = match tokio::time::timeout(wait, &mut self.reader).await {
            Ok(Ok(ended)) => ended,
            Ok(Err(err)) => Ended {
                status: None,
                transport_error: Some(err.to_string()),
                lost: false,
            },
            Err(_) => {
                self.reader.abort();
                Ended {
                    status: None,
                    transport_error: Some(format!(
                        "no exit status within {}s after the end of the input",
                        wait.as_secs()
                    )),
                    lost: false,
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), self.sink.close()).await;
        self.outcome(ended)
    }

    /// Drops the connection without waiting (the helper's deletion stops the command).
    pub fn abort(self) -> ExecOutcome {
        self.reader.abort();
        self.outcome(Ended {
            status: None,
            transport_error: Some("aborted by nkvm".to_owned()),
            lost: false,
        })
    }

    fn outcome(&self, ended: Ended) -> ExecOutcome {
        let text = self.stderr.text();
        let reported = (*self.marker.borrow()).filter(|code| *code >= 0);
        ExecOutcome {
            status: ended.status,
            reported_exit: reported.or_else(|| parse_exit_marker(&text)),
            compressor_exit: None,
            stderr: without_marker(&text),
            transport_error: ended.transport_error,
            connection_lost: ended.lost,
        }
    }
}
