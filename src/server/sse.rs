//! The wire side of Server-Sent Events: each event framed once into the bytes that go out,
//! and the response body that carries a stream of them, with a `retry:` hint first, a
//! keep-alive comment while idle, and an early end when the server shuts down.
//!
//! Why not axum's `Sse`: it builds every event in a growing buffer (and a `String` for its
//! `id`), and it resets its keep-alive timer on every event, a timer-wheel update and a clock
//! read per event per stream. Here an event is one allocation of its exact size, and the
//! keep-alive timer is touched once per [`KEEP_ALIVE`] whatever the rate of events.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures::stream::BoxStream;
use futures::StreamExt;
use hyper::body::Frame;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// How often an idle stream sends a comment, so proxies do not time it out (at most 15 s).
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);
/// The reconnection delay suggested to `EventSource` clients.
pub const RETRY_HINT: Duration = Duration::from_secs(2);
/// The keep-alive comment.
const COMMENT: &[u8] = b":\n\n";

/// One event as it goes out: an `id:` line (unless `id` is `None`, which leaves a client's
/// resume point where it was), `event:` and `data:` lines and the blank line that ends it.
///
/// `data` is JSON as serde_json writes it, which never holds a line break (they are escaped
/// inside strings), so it is one `data:` line as it is, not scanned and split.
pub fn frame(id: Option<&str>, event: &str, data: &str) -> Bytes {
    debug_assert!(!data.contains(['\n', '\r']), "a data line holds a line break: {data:?}");
    let id_len = id.map_or(0, |id| id.len() + 5);
    let mut out = Vec::with_capacity(id_len + event.len() + data.len() + 16);
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data.as_bytes());
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// An event stream response: `frames` (each made by [`frame`]) after a `retry:` hint, with the
/// headers that keep caches and proxies from holding it back; it ends when `frames` does or
/// when `shutdown` is cancelled (clients then reconnect, elsewhere or later).
///
/// The stream is also in the response's extensions as [`Direct`], for the connection layer to
/// write it itself.
pub fn response(frames: BoxStream<'static, Bytes>, shutdown: &CancellationToken) -> Response {
    let token = shutdown.child_token();
    let body = SseBody {
        hint: Some(Bytes::from(format!("retry: {}\n\n", RETRY_HINT.as_millis()))),
        frames,
        wait: Box::pin(token.clone().cancelled_owned()),
        shutdown: token,
        registered: None,
        timer_armed: false,
        last_sent: Instant::now(),
        keep_alive: Box::pin(tokio::time::sleep(KEEP_ALIVE)),
        done: false,
    };
    // Boxed, so that what stays behind once the stream is taken is small.
    let direct = Direct(Arc::new(Mutex::new(Some(Box::new(body)))));
    let mut response = (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::HeaderName::from_static("x-accel-buffering"), HeaderValue::from_static("no")),
        ],
        Body::new(Deferred { slot: direct.clone(), body: None }),
    )
        .into_response();
    response.extensions_mut().insert(direct);
    response
}

/// The stream of a [`response`], for a connection that writes it straight to its socket: the
/// response's body is then left unpolled (and held, with whatever the layers around it hold,
/// such as a permit, until the stream ends), so an event does not pass through a poll of
/// every layer's body (six, a fifth of a stream's work per event, measured with callgrind).
#[derive(Clone)]
pub struct Direct(Arc<Mutex<Option<Box<SseBody>>>>);

impl Direct {
    /// The stream, unless the body or another caller has taken it.
    pub fn take(&self) -> Option<Box<SseBody>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// The body of a [`response`]: its stream, unless [`Direct`] took it (then it is empty).
struct Deferred {
    slot: Direct,
    body: Option<Box<SseBody>>,
}

impl hyper::body::Body for Deferred {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.body.is_none() {
            let Some(body) = this.slot.take() else { return Poll::Ready(None) };
            this.body = Some(body);
        }
        this.body.as_mut().map_or(Poll::Ready(None), |body| Pin::new(body).poll_frame(cx))
    }
}

/// An event stream's body: the hint, the frames, keep-alive comments, and its end at shutdown.
///
/// Polled once per event or more, so each poll must be cheap. The shutdown token is one of its
/// own (every stream locking the server's one token contended for it: 6 % of the server's
/// samples with 1,000 streams of one job). The shutdown wait is polled again only when the
/// stream is polled by another task than before (otherwise it is registered already, and only
/// the token's flag is read), the keep-alive timer only when it fired or was set again.
pub struct SseBody {
    hint: Option<Bytes>,
    frames: BoxStream<'static, Bytes>,
    shutdown: CancellationToken,
    wait: Pin<Box<WaitForCancellationFutureOwned>>,
    /// The waker the shutdown wait was last polled with.
    registered: Option<Waker>,
    /// Whether the keep-alive timer was polled (so registered) with that waker since it was
    /// last set.
    timer_armed: bool,
    /// When the last bytes went out (the hint, an event or a comment).
    last_sent: Instant,
    /// Fires [`KEEP_ALIVE`] after the last bytes went out, or earlier: it is moved only when
    /// it fires, not on every event.
    keep_alive: Pin<Box<Sleep>>,
    done: bool,
}

impl hyper::body::Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(hint) = this.hint.take() {
            return Poll::Ready(Some(Ok(Frame::data(hint))));
        }
        let fresh = !this.registered.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
        if fresh {
            this.registered = Some(cx.waker().clone());
            this.timer_armed = false;
        }
        let stopping = if fresh { this.wait.as_mut().poll(cx).is_ready() } else { this.shutdown.is_cancelled() };
        if stopping {
            this.done = true;
            return Poll::Ready(None);
        }
        match this.frames.poll_next_unpin(cx) {
            Poll::Ready(Some(bytes)) => {
                this.last_sent = Instant::now();
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            Poll::Ready(None) => {
                this.done = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        if this.timer_armed && !this.keep_alive.is_elapsed() {
            return Poll::Pending;
        }
        loop {
            // With the task's budget spent, a poll returns pending without registering the
            // timer (tokio's cooperative scheduling): then it is not armed yet.
            let registers = tokio::task::coop::has_budget_remaining();
            if this.keep_alive.as_mut().poll(cx).is_pending() {
                this.timer_armed = registers;
                return Poll::Pending;
            }
            let due = this.last_sent + KEEP_ALIVE;
            let now = Instant::now();
            if now >= due {
                this.last_sent = now;
                this.keep_alive.as_mut().reset(now + KEEP_ALIVE);
                this.timer_armed = false;
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(COMMENT)))));
            }
            // Events went out since it was set: wait from the last one.
            this.keep_alive.as_mut().reset(due);
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn an_event_is_framed_as_the_format_asks() {
        assert_eq!(&frame(Some("7"), "progress", r#"{"a":1}"#)[..], b"id: 7\nevent: progress\ndata: {\"a\":1}\n\n");
        assert_eq!(&frame(None, "end", "{}")[..], b"event: end\ndata: {}\n\n");
        // What serde_json makes of a line break inside a string.
        let json = serde_json::to_string("a\nb\r").expect("encodes");
        assert_eq!(&frame(Some("j:3"), "log", &json)[..], b"id: j:3\nevent: log\ndata: \"a\\nb\\r\"\n\n");
    }

    async fn next(body: &mut Body) -> Option<Bytes> {
        body.frame().await.map(|f| f.expect("infallible").into_data().expect("data"))
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_polled_with_the_task_budget_spent_still_keeps_alive() {
        let (_tx, rx) = futures::channel::mpsc::unbounded::<Bytes>();
        let mut body = response(rx.boxed(), &CancellationToken::new()).into_body();
        assert_eq!(next(&mut body).await.expect("hint"), "retry: 2000\n\n");
        // Spend the task's budget, then poll the stream in the same turn.
        std::future::poll_fn(|cx| {
            for _ in 0..10_000 {
                if !tokio::task::coop::has_budget_remaining() {
                    break;
                }
                let _ = std::pin::pin!(tokio::task::coop::consume_budget()).poll(cx);
            }
            assert!(!tokio::task::coop::has_budget_remaining(), "the budget is spent");
            assert!(hyper::body::Body::poll_frame(Pin::new(&mut body), cx).is_pending());
            Poll::Ready(())
        })
        .await;
        let comment = tokio::time::timeout(2 * KEEP_ALIVE, next(&mut body)).await;
        assert_eq!(comment.expect("a comment within the interval").expect("open"), COMMENT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_hints_then_keeps_alive_only_while_idle_and_ends_on_shutdown() {
        let (tx, rx) = futures::channel::mpsc::unbounded::<Bytes>();
        let shutdown = CancellationToken::new();
        let response = response(rx.boxed(), &shutdown);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "text/event-stream");
        let mut body = response.into_body();
        assert_eq!(next(&mut body).await.expect("hint"), "retry: 2000\n\n");
        let start = Instant::now();
        // Events every 4 s: no comment between them.
        for i in 0..5u32 {
            tokio::time::sleep(Duration::from_secs(4)).await;
            let event = frame(Some(&i.to_string()), "progress", "{}");
            tx.unbounded_send(event.clone()).expect("open");
            assert_eq!(next(&mut body).await.expect("event"), event);
        }
        // Then silence: a comment KEEP_ALIVE after the last event, and every KEEP_ALIVE on.
        assert_eq!(next(&mut body).await.expect("comment"), COMMENT);
        assert_eq!(start.elapsed(), Duration::from_secs(20) + KEEP_ALIVE);
        assert_eq!(next(&mut body).await.expect("comment"), COMMENT);
        assert_eq!(start.elapsed(), Duration::from_secs(20) + 2 * KEEP_ALIVE);
        // A shutdown while it waits ends it at once, not at the next comment.
        let server = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            server.cancel();
        });
        assert_eq!(next(&mut body).await, None);
        assert_eq!(start.elapsed(), Duration::from_secs(21) + 2 * KEEP_ALIVE);
    }
}
