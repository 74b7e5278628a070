//! The state of an exec connection as its readers see it: kube's message loop hands stdout over a
//! `tokio::io::simplex` pipe whose writing half, when the loop ends on a transport error (the API
//! server or the network between went away), is dropped without being shut down — the reading
//! half then waits forever instead of ending. [`Link`] watches the connection's status channel
//! (closed without a status = the connection was lost) and [`Guarded`] turns that wait into an
//! [`ConnectionLost`] error as soon as the bytes already received are read.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use tokio::io::{AsyncRead, ReadBuf};

/// The error a [`Guarded`] reader returns once the connection is gone (inside an [`io::Error`] of
/// kind [`io::ErrorKind::ConnectionAborted`]; find it with [`ConnectionLost::in_error`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the exec connection through the API server was lost mid-stream")]
pub struct ConnectionLost;

impl ConnectionLost {
    /// Whether `error` is a lost connection reported by a [`Guarded`] reader.
    #[must_use]
    pub fn in_error(error: &io::Error) -> bool {
        error
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<Self>().is_some())
    }
}

/// How the connection ended, once it did.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// The command's exit status arrived on the status channel.
    Status(Box<Status>),
    /// The connection ended without an exit status: it was lost.
    Lost,
}

#[derive(Debug, Default)]
struct State {
    ending: Option<Ending>,
    wakers: Vec<Waker>,
}

/// Shared view of one exec connection's end.
#[derive(Debug, Clone, Default)]
pub struct Link {
    state: Arc<Mutex<State>>,
}

impl Link {
    /// Records how the connection ended and wakes every reader waiting on it.
    pub fn end(&self, ending: Ending) {
        let wakers = {
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            if state.ending.is_some() {
                return;
            }
            state.ending = Some(ending);
            std::mem::take(&mut state.wakers)
        };
        for waker in wakers {
            waker.wake();
        }
    }

    /// How the connection ended; `None` while it is open.
    #[must_use]
    pub fn ending(&self) -> Option<Ending> {
        self.state.lock().ok().and_then(|s| s.ending.clone())
    }

    /// The exit status, if one arrived.
    #[must_use]
    pub fn status(&self) -> Option<Status> {
        match self.ending()? {
            Ending::Status(status) => Some(*status),
            Ending::Lost => None,
        }
    }

    /// `true` when lost; otherwise remembers `waker` for [`Link::end`].
    fn lost_or_register(&self, waker: &Waker) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        match state.ending {
            Some(Ending::Lost) => true,
            Some(Ending::Status(_)) => false,
            None => {
                if !state.wakers.iter().any(|w| w.will_wake(waker)) {
                    state.wakers.push(waker.clone());
                }
                false
            }
        }
    }
}

/// A reader of one of the connection's streams that fails with [`ConnectionLost`] once the
/// connection is lost and everything received before has been read.
pub struct Guarded<R> {
    inner: R,
    link: Link,
}

impl<R> Guarded<R> {
    pub fn new(inner: R, link: Link) -> Self {
        Self { inner, link }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Guarded<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending => {}
            ready @ Poll::Ready(_) => return ready,
        }
        if this.link.lost_or_register(cx.waker()) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                ConnectionLost,
            )));
        }
        // The connection may have been lost after the read above registered nothing new: the
        // inner reader's own waker fires when data arrives, ours when the link ends.
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn status() -> Status {
        Status {
            status: Some("Success".to_owned()),
            ..Status::default()
        }
    }

    #[tokio::test]
    async fn a_dropped_simplex_writer_alone_never_ends_the_reader() {
        // Why the guard exists: kube's message loop drops the writer on a transport error.
        let (reader, mut writer) = tokio::io::simplex(64);
        writer.write_all(b"abc").await.unwrap();
        drop(writer);
        let mut reader = reader;
        let mut buf = [0u8; 8];
        assert_eq!(reader.read(&mut buf).await.unwrap(), 3);
        let next = tokio::time::timeout(Duration::from_millis(100), reader.read(&mut buf)).await;
        assert!(next.is_err(), "the reader waits forever: {next:?}");
    }

    #[tokio::test]
    async fn a_lost_connection_fails_the_read_after_the_received_bytes() {
        let (reader, mut writer) = tokio::io::simplex(64);
        let link = Link::default();
        let mut guarded = Guarded::new(reader, link.clone());
        writer.write_all(b"abc").await.unwrap();
        drop(writer);
        let waiter = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 8];
            loop {
                match guarded.read(&mut buf).await {
                    Ok(0) => return Ok(got),
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(err) => return Err((got, err)),
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "still open: the reader waits");
        link.end(Ending::Lost);
        let (got, err) = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken at once")
            .unwrap()
            .expect_err("lost");
        assert_eq!(got, b"abc", "what arrived before is delivered first");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
        assert!(ConnectionLost::in_error(&err));
        assert!(!ConnectionLost::in_error(&io::Error::other("other")));
        assert_eq!(link.ending(), Some(Ending::Lost));
        assert_eq!(link.status(), None);
    }

    #[tokio::test]
    async fn an_exit_status_leaves_the_stream_to_end_by_itself() {
        let (reader, mut writer) = tokio::io::simplex(64);
        let link = Link::default();
        let mut guarded = Guarded::new(reader, link.clone());
        link.end(Ending::Status(Box::new(status())));
        // A later loss report does not replace the status.
        link.end(Ending::Lost);
        assert_eq!(link.status(), Some(status()));
        assert_ne!(link.ending(), Some(Ending::Lost));
        writer.write_all(b"xy").await.unwrap();
        writer.shutdown().await.unwrap();
        let mut out = Vec::new();
        guarded.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"xy");
    }
}
