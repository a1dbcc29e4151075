//! The accept loop. Each connection is served by hyper, except one whose first request opens an
//! event stream (`GET /api/jobs/{id}/events`, `GET /api/events`): that request goes through the
//! same router (and so the same middleware, checks and errors), and its stream is then written
//! straight to the socket, each event in one write, until the stream ends or the client leaves.
//!
//! Why: an idle stream costs what its connection holds. Through hyper that is a read buffer and
//! a write buffer of at least 8 KiB each (16-24 KiB in all, measured with heaptrack), kept for
//! the stream's whole life though a stream never reads again and writes a few hundred bytes at
//! a time. Here it is the socket, the stream's own state and a task.
//!
//! Only a complete, well-formed `GET` with no body takes that path, and it is looked at with
//! `peek` first, so anything else (another method or path, a malformed or oversized head, a
//! head that is slow to arrive) reaches hyper untouched and gets hyper's answer. Later requests
//! on a kept-alive connection are hyper's too. A stream served here is close-delimited (no
//! chunked framing; HTTP/1.1 allows it, and `EventSource` reads it as any other).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::task::Poll;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};

use super::sse;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// The longest request head a stream request served here may have (hyper's buffer size).
const MAX_HEAD: usize = 8 * 1024;
/// The longest request head hyper reads (about what nginx takes, `large_client_header_buffers`).
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// How long the head of a new connection's first request may take to arrive before the
/// connection is handed to hyper as it is; and then how long hyper waits for a head.
const HEAD_WAIT: Duration = Duration::from_secs(5);
/// The kernel send buffer of a stream's socket (Linux doubles it for its own bookkeeping).
/// Without it, loopback and LAN autotuning let the kernel hold up to 4 MiB for a reader that
/// does not read (`net.ipv4.tcp_wmem`); a stream sends a few hundred bytes at a time, and 32
/// KiB in flight covers 100 ms of round trip at 2.6 Mbit/s.
const STREAM_SEND_BUFFER: usize = 32 * 1024;
/// The longest error or empty answer to a stream request (they are problem documents).
const MAX_ANSWER: usize = 64 * 1024;
/// How long what the server sent may stay unacknowledged before the kernel gives the
/// connection up. A client that vanished without closing (a pulled cable, a sleeping laptop, a
/// NAT that forgot it) is then noticed at most this long after the next event or keep-alive
/// (every 10 s), and its stream released; without it, TCP retries for about 15 minutes.
const UNACKNOWLEDGED: Duration = Duration::from_secs(30);
/// For a connection with nothing to send: TCP keep-alive probes after this much silence, a
/// few seconds apart, and the connection is dropped after three go unanswered.
const KEEPALIVE: socket2::TcpKeepalive = socket2::TcpKeepalive::new()
    .with_time(Duration::from_secs(20))
    .with_interval(Duration::from_secs(5))
    .with_retries(3);

/// What the accept loop serves: the whole application as one service (a `Router`, or a
/// `Router` inside layers that must see its every answer).
pub trait App:
    tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + 'static
{
}

impl<S> App for S where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send + 'static>
        + Clone
        + Send
        + 'static
{
}

/// Accepts connections on `listener` and serves `app` on them until `shutdown` completes; then
/// stops accepting and waits for the connections to finish (streams end as the engine shuts
/// down; idle kept-alive connections are closed).
pub async fn serve(listener: TcpListener, app: impl App, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let streams = TaskTracker::new();
    let mut builder = Builder::new(TokioExecutor::new());
    // A request head that is slow to arrive (a slowloris) is given up after this long, on a
    // first request and on a kept-alive connection's next one alike.
    // A head longer than `MAX_HEAD_BYTES` gets `431` (hyper's default takes 400 KB).
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEAD_WAIT).max_buf_size(MAX_HEAD_BYTES);
    builder.http2().timer(TokioTimer::new());
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: the connections already open go on, and
                    // new ones wait a moment rather than spin.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Every event goes out at once, not when the previous one is acknowledged.
        let _ = tcp.set_nodelay(true);
        let socket = socket2::SockRef::from(&tcp);
        let _ = socket.set_tcp_user_timeout(Some(UNACKNOWLEDGED));
        let _ = socket.set_tcp_keepalive(&KEEPALIVE);
        let app = app.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        streams.spawn(async move {
            if let Some(head_len) = stream_request(&tcp).await {
                serve_stream(tcp, head_len, peer, app).await;
            } else {
                // Each request learns where it came from, as `axum::serve` tells it.
                let app = tower::service_fn(move |mut request: Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    app.clone().oneshot(request.map(Body::new))
                });
                let connection =
                    builder.serve_connection_with_upgrades(TokioIo::new(tcp), TowerToHyperService::new(app));
                if let Err(e) = watcher.watch(connection.into_owned()).await {
                    tracing::debug!(error = %e, "a connection ended with an error");
                }
            }
        });
    }
    drop(listener);
    streams.close();
    graceful.shutdown().await;
    streams.wait().await;
    Ok(())
}

/// Whether the connection's first request, as far as it has arrived, opens an event stream:
/// the length of its complete head if so.
async fn stream_request(tcp: &TcpStream) -> Option<usize> {
    let deadline = tokio::time::Instant::now() + HEAD_WAIT;
    // Every connection passes here: look at its first bytes on the stack, and make the buffer
    // for a whole head only for one that may be a stream.
    let mut start = [0u8; 9];
    let seen = tokio::time::timeout_at(deadline, tcp.peek(&mut start)).await.ok()?.ok()?;
    if seen == 0 || !might_be_a_stream(&start[..seen]) {
        return None;
    }
    let mut buffer = vec![0; MAX_HEAD];
    let mut pause = Duration::from_millis(1);
    loop {
        let seen = tokio::time::timeout_at(deadline, tcp.peek(&mut buffer)).await.ok()?.ok()?;
        if seen == 0 || !might_be_a_stream(&buffer[..seen]) {
            return None;
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buffer[..seen]) {
            Ok(httparse::Status::Complete(len)) => {
                let has_body = request.headers.iter().any(|h| {
                    h.name.eq_ignore_ascii_case("transfer-encoding")
                        || (h.name.eq_ignore_ascii_case("content-length") && h.value != b"0")
                });
                let stream = request.method == Some("GET") && request.path.is_some_and(is_stream_path);
                return (stream && !has_body).then_some(len);
            }
            Ok(httparse::Status::Partial) if seen < MAX_HEAD => {
                // Not all here yet: look again shortly (peek returns at once while bytes wait).
                tokio::time::sleep_until((tokio::time::Instant::now() + pause).min(deadline)).await;
                if tokio::time::Instant::now() >= deadline {
                    return None;
                }
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            _ => return None,
        }
    }
}

/// A quick look at the first bytes: could this still be a `GET` of a stream?
fn might_be_a_stream(seen: &[u8]) -> bool {
    const START: &[u8] = b"GET /api/";
    let n = seen.len().min(START.len());
    seen[..n] == START[..n]
}

/// `/api/events` or `/api/jobs/{id}/events`, with or without a query.
pub(crate) fn is_stream_path(target: &str) -> bool {
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    path == "/api/events"
        || path
            .strip_prefix("/api/jobs/")
            .and_then(|rest| rest.strip_suffix("/events"))
            .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// Serves a stream request whose head (of `head_len` bytes) is waiting on `tcp`.
async fn serve_stream(mut tcp: TcpStream, head_len: usize, peer: SocketAddr, app: impl App) {
    let mut head = vec![0; head_len];
    if tcp.read_exact(&mut head).await.is_err() {
        return;
    }
    let Some(mut request) = parse_request(&head) else {
        // It parsed when peeked; this cannot happen, and the connection just closes.
        return;
    };
    drop(head);
    request.extensions_mut().insert(ConnectInfo(peer));
    let Ok(response) = app.oneshot(request).await;
    let is_stream = response.status() == StatusCode::OK
        && response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if is_stream {
        write_stream(tcp, response).await;
    } else {
        write_whole(tcp, response).await;
    }
}

/// The request of a complete, well-formed head.
fn parse_request(head: &[u8]) -> Option<Request<Body>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    parsed.parse(head).ok()?;
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(parsed.path?.parse::<Uri>().ok()?)
        .version(if parsed.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 });
    for h in parsed.headers.iter() {
        request =
            request.header(HeaderName::from_bytes(h.name.as_bytes()).ok()?, HeaderValue::from_bytes(h.value).ok()?);
    }
    request.body(Body::empty()).ok()
}

/// The status line and headers of `response`, for a body delimited by the connection's close
/// (or by `content_length`).
fn head_of<B>(response: &Response<B>, content_length: Option<usize>) -> Vec<u8> {
    let status = response.status();
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(
        format!("HTTP/1.1 {} {}\r\n", status.as_u16(), status.canonical_reason().unwrap_or("")).as_bytes(),
    );
    for (name, value) in response.headers() {
        if [header::CONTENT_LENGTH, header::TRANSFER_ENCODING, header::CONNECTION].contains(name) {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if let Some(length) = content_length {
        head.extend_from_slice(format!("content-length: {length}\r\n").as_bytes());
    }
    head.extend_from_slice(b"connection: close\r\n\r\n");
    head
}

/// Writes an event stream as it comes, until it ends or the client leaves. Events that are
/// ready together (a resumed stream's replay, a reader that fell behind) go out in one write.
async fn write_stream(mut tcp: TcpStream, response: Response<Body>) {
    // A small kernel send buffer: a client that reads slowly then holds up its own stream (which
    // falls behind in the replay log and resumes with a `reset`), not megabytes of kernel memory.
    let _ = socket2::SockRef::from(&tcp).set_send_buffer_size(STREAM_SEND_BUFFER);
    if tcp.write_all(&head_of(&response, None)).await.is_err() {
        return;
    }
    let (parts, body) = response.into_parts();
    // The stream itself when the response offers it; the body, held unpolled meanwhile, is
    // dropped (with what the layers keep in it) when the stream ends. The head is not kept
    // (its headers were about a kilobyte per idle stream).
    let direct = parts.extensions.get::<sse::Direct>().and_then(sse::Direct::take);
    drop(parts);
    match direct {
        Some(stream) => {
            pump(tcp, stream).await;
            drop(body);
        }
        None => pump(tcp, body).await,
    }
}

/// Writes `body` to `tcp` until it ends (then closes the connection) or the client leaves.
async fn pump(mut tcp: TcpStream, mut body: impl hyper::body::Body<Data = Bytes> + Unpin) {
    let mut ready = Vec::new();
    let (mut reader, mut writer) = tcp.split();
    let mut scratch = [0u8; 64];
    loop {
        tokio::select! {
            more = gather(&mut body, &mut ready) => {
                let written = match ready.as_slice() {
                    [] => Ok(()),
                    [one] => writer.write_all(one).await,
                    several => writer.write_all(&several.concat()).await,
                };
                ready.clear();
                if written.is_err() {
                    return;
                }
                // The stream ended (the job did, or the server is stopping), or failed.
                if !more {
                    break;
                }
            },
            // A client sends nothing on a stream: a read only returns when it closed its side
            // or the connection broke. Whatever else it sends is ignored.
            read = reader.read(&mut scratch) => if matches!(read, Ok(0) | Err(_)) {
                return;
            },
        }
    }
    let _ = writer.shutdown().await;
}

/// Waits for the body's next data, then takes all that is ready with it (up to
/// [`STREAM_SEND_BUFFER`] bytes) into `ready`. Whether more may follow: `false` once the body
/// ended or failed.
async fn gather(body: &mut (impl hyper::body::Body<Data = Bytes> + Unpin), ready: &mut Vec<Bytes>) -> bool {
    std::future::poll_fn(|cx| {
        let mut size = 0;
        loop {
            match std::pin::Pin::new(&mut *body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        size += data.len();
                        ready.push(data);
                    }
                    if size >= STREAM_SEND_BUFFER {
                        return Poll::Ready(true);
                    }
                }
                Poll::Ready(Some(Err(_)) | None) => return Poll::Ready(false),
                Poll::Pending if ready.is_empty() => return Poll::Pending,
                Poll::Pending => return Poll::Ready(true),
            }
        }
    })
    .await
}

/// Writes an answer that is not a stream (an error, a `204`) whole, and closes.
async fn write_whole(mut tcp: TcpStream, response: Response<Body>) {
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, MAX_ANSWER).await.unwrap_or_default();
    let response = Response::from_parts(parts, ());
    let no_body = response.status() == StatusCode::NO_CONTENT || response.status() == StatusCode::NOT_MODIFIED;
    let head = head_of(&response, (!no_body).then_some(body.len()));
    if tcp.write_all(&head).await.is_ok() && !no_body {
        let _ = tcp.write_all(&body).await;
    }
    let _ = tcp.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_stream_routes_take_the_lean_path() {
        assert!(is_stream_path("/api/events"));
        assert!(is_stream_path("/api/events?after=x:1"));
        assert!(is_stream_path("/api/jobs/67e55044-10b1-426f-9247-bb680e5fe0c8/events"));
        assert!(is_stream_path("/api/jobs/anything/events?last_event_id=3"));
        assert!(!is_stream_path("/api/jobs//events"));
        assert!(!is_stream_path("/api/jobs/a/b/events"));
        assert!(!is_stream_path("/api/jobs/a/logs"));
        assert!(!is_stream_path("/api/eventsx"));
        assert!(might_be_a_stream(b"GE"));
        assert!(might_be_a_stream(b"GET /api/jobs"));
        assert!(!might_be_a_stream(b"POST /api/jobs"));
        assert!(!might_be_a_stream(b"GET / HTTP/1.1"));
    }

    #[test]
    fn a_head_parses_into_the_request_the_router_sees() {
        let request =
            parse_request(b"GET /api/events?after=a:1 HTTP/1.1\r\nHost: x\r\nCookie: a=b\r\n\r\n").expect("parses");
        assert_eq!(request.uri(), "/api/events?after=a:1");
        assert_eq!(request.headers()["cookie"], "a=b");
        assert_eq!(request.version(), Version::HTTP_11);
        assert!(parse_request(b"GET /api/events HTTP/1.1\r\nBad Header: x\r\n\r\n").is_none());
    }

    #[test]
    fn an_answer_is_close_delimited_or_sized() {
        let response = Response::builder()
            .status(404)
            .header("content-type", "application/problem+json")
            .body(())
            .expect("response");
        let head = String::from_utf8(head_of(&response, Some(12))).expect("text");
        assert_eq!(head, "HTTP/1.1 404 Not Found\r\ncontent-type: application/problem+json\r\ncontent-length: 12\r\nconnection: close\r\n\r\n");
    }
}
