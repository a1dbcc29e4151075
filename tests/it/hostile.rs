//! Over a thousand malformed or hostile requests, sent as raw bytes to a real server: path
//! tricks, bad encodings, bad resume points and tokens, broken and oversized bodies, unknown
//! methods, huge or broken heads, garbage that is not HTTP at all, and heads and bodies that
//! arrive a byte at a time or never. Every one is answered with a 4xx (a problem document
//! whenever the request reached the application) or, for bytes that are not HTTP, closed;
//! never a 5xx, a panic or a hang. Nothing is started, and the server serves normally after.

use crate::common;

use std::time::Duration;

use common::TestApp;
use futures::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What an answer must be.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// A 4xx problem document: the request reached the application.
    Problem,
    /// A 4xx of any shape (hyper answers requests it cannot parse with an empty 400 or 431).
    ClientError,
    /// A 4xx, or the connection closed without an answer (bytes that are not HTTP).
    ClientErrorOrClosed,
}

struct Case {
    what: String,
    bytes: Vec<u8>,
    expect: Expect,
}

fn get(target: &str, headers: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{headers}\r\n").into_bytes()
}

fn post(target: &str, content_type: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut bytes = format!("POST {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n").into_bytes();
    if let Some(t) = content_type {
        bytes.extend_from_slice(format!("Content-Type: {t}\r\n").as_bytes());
    }
    bytes.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    bytes.extend_from_slice(body);
    bytes
}

/// Tokens that have broken servers before, percent-encoded where a URL needs it.
fn hostile_tokens() -> Vec<String> {
    let mut tokens: Vec<String> = [
        "..",
        "%2e%2e",
        "..%2f..%2f..%2fetc%2fpasswd",
        "%2e%2e%5c%2e%2e%5cwindows",
        "%00",
        "a%00b",
        "%ff%fe%fd",
        "%c0%af",
        "%e2%80%ae",
        "%",
        "%zz",
        "%u0000",
        "%0d%0aSet-Cookie:%20x=1",
        "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "'%20OR%201=1--",
        "%22%3B%20DROP%20TABLE%20jobs%3B--",
        "-1",
        "+1",
        "1e3",
        "0x10",
        "18446744073709551616",
        "99999999999999999999999999999",
        "null",
        "undefined",
        "NaN",
        "%5B%5D",
        "%7B%7D",
        "00000000-0000-0000-0000-000000000000",
        "67e55044-10b1-426f-9247-bb680e5fe0c8",
        "67E55044-10B1-426F-9247-BB680E5FE0C8",
        "%7B67e55044-10b1-426f-9247-bb680e5fe0c8%7D",
        "urn:uuid:67e55044-10b1-426f-9247-bb680e5fe0c8",
        "67e55044-10b1-426f-9247-bb680e5fe0c8:1",
        "67e55044-10b1-426f-9247-bb680e5fe0c8:-1",
        "67e55044-10b1-426f-9247-bb680e5fe0c8:99999999999999999999",
        ":",
        ",,,",
        "%20",
        "%09",
        "\u{7f}",
        "%F0%9F%92%A9",
        "%ED%A0%80",
        "..;",
        "~",
        "%2f",
        "%2F%2F",
        "*",
        "?",
        "#",
        "a;b=c",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    tokens.push("a".repeat(5_000));
    tokens.push("%41".repeat(2_000));
    tokens.push("..%2f".repeat(500));
    tokens
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let job = "67e55044-10b1-426f-9247-bb680e5fe0c8";
    let routes = [
        "/api/jobs/{x}",
        "/api/jobs/{x}/events",
        "/api/jobs/{x}/result",
        "/api/jobs/{x}/logs",
        "/api/{x}",
        "/api/jobs/{x}/events/{x}",
        "/api/events?after={x}",
        "/api/jobs/JOB/events?last_event_id={x}",
        "/api/jobs/JOB/logs?after={x}",
        "/api/job-kinds/{x}",
        "/api/jobs?{x}",
    ];
    for route in routes {
        for token in hostile_tokens() {
            if route.starts_with("/api/events") && (token.starts_with('#') || token.ends_with(":1")) {
                // A fragment is not sent, and a cursor of a job that is not there is valid:
                // both open the owner's stream.
                continue;
            }
            let target = route.replace("JOB", job).replace("{x}", &token);
            // Bytes outside what a request line may carry are hyper's to refuse.
            let expect =
                if target.bytes().all(|b| b.is_ascii_graphic()) { Expect::Problem } else { Expect::ClientError };
            // `/api/jobs?...` is a route with no GET: 405.
            cases.push(Case { what: format!("GET {route} with {token:.40}"), bytes: get(&target, ""), expect });
        }
    }
    // Resume points and tokens in headers.
    for token in hostile_tokens() {
        let value: String = token.chars().filter(|c| c.is_ascii_graphic() || *c == ' ').collect();
        let expect = Expect::Problem;
        cases.push(Case {
            what: format!("Last-Event-ID {value:.40}"),
            bytes: get(&format!("/api/jobs/{job}/events"), &format!("Last-Event-ID: {value}x\r\n")),
            expect,
        });
        cases.push(Case {
            what: format!("bearer {value:.40}"),
            bytes: get(&format!("/api/jobs/{job}"), &format!("Authorization: Bearer {value}\r\n")),
            expect,
        });
        cases.push(Case {
            what: format!("cookie {value:.40}"),
            bytes: get(&format!("/api/jobs/{job}"), &format!("Cookie: sse_progress_owner={value}; a=b\r\n")),
            expect,
        });
    }
    // Bodies.
    let mut bodies: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), b"".to_vec()),
        ("not JSON".into(), b"kind=ticker".to_vec()),
        ("truncated".into(), br#"{"kind": "tick"#.to_vec()),
        ("invalid UTF-8".into(), b"{\"kind\": \"\xff\xfe\"}".to_vec()),
        ("a lone surrogate".into(), br#"{"kind": "\ud800"}"#.to_vec()),
        ("a NUL in the kind".into(), br#"{"kind": "ticker\u0000"}"#.to_vec()),
        ("an array".into(), b"[]".to_vec()),
        ("a string".into(), br#""ticker""#.to_vec()),
        ("null".into(), b"null".to_vec()),
        ("no kind".into(), br#"{"params": {}}"#.to_vec()),
        ("an unknown kind".into(), br#"{"kind": "rm -rf /"}"#.to_vec()),
        ("an unknown field".into(), br#"{"kind": "ticker", "admin": true}"#.to_vec()),
        ("params as an array".into(), br#"{"kind": "ticker", "params": [1, 2]}"#.to_vec()),
        ("params as a string".into(), br#"{"kind": "ticker", "params": "steps=5"}"#.to_vec()),
        ("a huge number".into(), br#"{"kind": "ticker", "params": {"steps": 1e400}}"#.to_vec()),
        ("a negative count".into(), br#"{"kind": "ticker", "params": {"steps": -5}}"#.to_vec()),
        ("a fraction".into(), br#"{"kind": "ticker", "params": {"steps": 2.5}}"#.to_vec()),
        ("too many steps".into(), br#"{"kind": "ticker", "params": {"steps": 4294967296}}"#.to_vec()),
        ("an unknown param".into(), br#"{"kind": "ticker", "params": {"sleep": 1}}"#.to_vec()),
        ("duplicate keys".into(), br#"{"kind": "ticker", "kind": "nope"}"#.to_vec()),
        ("a kind that is an object".into(), br#"{"kind": {"$ne": null}}"#.to_vec()),
        ("trailing garbage".into(), br#"{"kind": "nope"} {"kind": "ticker"}"#.to_vec()),
        ("a BOM".into(), b"\xef\xbb\xbf{\"kind\": \"nope\"}".to_vec()),
        ("deep nesting".into(), format!("{}{}", "[".repeat(20_000), "]".repeat(20_000)).into_bytes()),
        (
            "deep objects".into(),
            format!("{{\"kind\": \"nope\", \"params\": {}1{}}}", "{\"a\":".repeat(5_000), "}".repeat(5_000))
                .into_bytes(),
        ),
        ("over the size limit".into(), format!(r#"{{"kind": "{}"}}"#, "x".repeat(70_000)).into_bytes()),
    ];
    for n in [1, 2, 7, 100, 1_000] {
        bodies.push((format!("{n} zero bytes"), vec![0; n]));
    }
    for (what, body) in &bodies {
        for target in ["/api/jobs", "/api/jobs?stream=true", "/api/jobs?stream=maybe", "/api/jobs?stream=true&x=%ff"] {
            cases.push(Case {
                what: format!("POST {target} {what}"),
                bytes: post(target, Some("application/json"), body),
                expect: Expect::Problem,
            });
        }
        for content_type in ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=\u{1}"] {
            let expect = if content_type.contains('\u{1}') { Expect::ClientError } else { Expect::Problem };
            cases.push(Case {
                what: format!("POST {what} as {content_type:?}"),
                bytes: post("/api/jobs", Some(content_type), body),
                expect,
            });
        }
        cases.push(Case {
            what: format!("POST {what} with no content type"),
            bytes: post("/api/jobs", None, body),
            expect: Expect::Problem,
        });
    }
    // Methods a route does not take, and made-up ones.
    for method in ["PUT", "PATCH", "TRACE", "OPTIONS", "PROPFIND", "FOO", "DELETE"] {
        for target in ["/api/jobs", "/api/job-kinds", &format!("/api/jobs/{job}/events"), "/api/events", "/metrics"] {
            let mut bytes =
                format!("{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").into_bytes();
            if method == "DELETE" && target.ends_with("/events") {
                bytes = format!("DELETE {target}x HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").into_bytes();
            }
            cases.push(Case { what: format!("{method} {target}"), bytes, expect: Expect::Problem });
        }
    }
    // Heads hyper must refuse.
    let big = "b".repeat(100_000);
    let many: String = (0..500).map(|i| format!("X-H{i}: v\r\n")).collect();
    for (what, bytes) in [
        ("a 100 KB header", get("/api/job-kinds", &format!("X-Big: {big}\r\n"))),
        ("500 headers", get("/api/job-kinds", &many)),
        ("a 100 KB request line", get(&format!("/api/jobs/{big}"), "")),
        ("a control byte in a header", get("/api/job-kinds", "X-A: a\u{1}b\r\n")),
        ("a header without a colon", get("/api/job-kinds", "Nonsense\r\n")),
        ("two content lengths", b"POST /api/jobs HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}".to_vec()),
        ("a bad content length", b"POST /api/jobs HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n".to_vec()),
        ("a bad chunk", b"POST /api/jobs HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n".to_vec()),
        ("an invalid UTF-8 path", b"GET /api/jobs/\xff\xfe HTTP/1.1\r\nHost: t\r\n\r\n".to_vec()),
        ("an invalid UTF-8 stream path", b"GET /api/jobs/\xff/events HTTP/1.1\r\nHost: t\r\n\r\n".to_vec()),
    ] {
        cases.push(Case { what: what.into(), bytes, expect: Expect::ClientError });
    }
    // Bytes that are not HTTP.
    for (what, bytes) in [
        ("a TLS hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec()),
        ("HTTP/9.9", b"GET / HTTP/9.9\r\n\r\n".to_vec()),
        ("an empty head", b"\r\n\r\n".to_vec()),
        ("random bytes", (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()),
        ("a stream request cut short", b"GET /api/events HTTP/1.1\r\nHost: t\r\n".to_vec()),
    ] {
        cases.push(Case { what: what.into(), bytes, expect: Expect::ClientErrorOrClosed });
    }
    cases
}

/// Sends `bytes` on a new connection and reads until the server closes it (at most 20 s):
/// the status and the body, or `None` for a connection closed without an answer.
async fn send(addr: std::net::SocketAddr, bytes: &[u8]) -> Result<Option<(u16, String, Vec<u8>)>, String> {
    let mut tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    // The server may answer (and close) before it has read everything: that is allowed.
    let _ = tcp.write_all(bytes).await;
    let mut answer = Vec::new();
    match tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut answer)).await {
        Err(_) => return Err(format!("no end after 20 s; got {:?}", String::from_utf8_lossy(&answer))),
        // A reset after the answer (the server closed with our bytes unread) still has it.
        Ok(_) if answer.is_empty() => return Ok(None),
        Ok(_) => {}
    }
    let text = String::from_utf8_lossy(&answer);
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or(format!("no status line: {text:.200}"))?;
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").map_or(answer.len(), |p| p + 4);
    let head = String::from_utf8_lossy(&answer[..split]).to_lowercase();
    Ok(Some((status, head, answer[split..].to_vec())))
}

fn check(expect: Expect, answer: Option<(u16, String, Vec<u8>)>) -> Result<u16, String> {
    let Some((status, head, body)) = answer else {
        return if expect == Expect::ClientErrorOrClosed { Ok(0) } else { Err("closed without an answer".into()) };
    };
    if !(400..500).contains(&status) {
        return Err(format!("status {status}: {}", String::from_utf8_lossy(&body)));
    }
    if expect == Expect::Problem {
        if !head.contains("content-type: application/problem+json") {
            return Err(format!("{status} is not a problem document: {head}"));
        }
        let problem: Value = serde_json::from_slice(&body).map_err(|e| format!("{status}: body is not JSON: {e}"))?;
        if problem["status"] != status || problem["detail"].as_str().is_none_or(str::is_empty) {
            return Err(format!("{status}: {problem}"));
        }
    }
    Ok(status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_a_client_error_never_a_server_error_or_a_hang() {
    let app = TestApp::spawn().await;
    let addr = app.addr;
    let cases = cases();
    assert!(cases.len() >= 1_000, "{} cases", cases.len());

    // The slow ones, alongside: a head that never ends, and a body that never comes.
    let slow_head = async {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        let started = tokio::time::Instant::now();
        for byte in b"GET /api/job-kinds HTTP/1.1\r\nX-Slow: ".iter().chain(std::iter::repeat(&b'a')) {
            if tcp.write_all(&[*byte]).await.is_err() || started.elapsed() > Duration::from_secs(30) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        started.elapsed()
    };
    let slow_body = async {
        let head = "POST /api/jobs HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"kind\"";
        let started = tokio::time::Instant::now();
        let answer = send(addr, head.as_bytes()).await;
        (started.elapsed(), answer)
    };

    let results = futures::stream::iter(cases.iter())
        .map(|case| async move { (case, send(addr, &case.bytes).await) })
        .buffer_unordered(16)
        .collect::<Vec<_>>();
    let (results, head_took, (body_took, body_answer)) = tokio::join!(results, slow_head, slow_body);

    let mut failures = Vec::new();
    let mut by_status = std::collections::BTreeMap::<u16, usize>::new();
    for (case, answer) in results {
        match answer.and_then(|a| check(case.expect, a)) {
            Ok(status) => *by_status.entry(status).or_default() += 1,
            Err(why) => failures.push(format!("{}: {why}", case.what)),
        }
    }
    eprintln!("{} hostile requests; answers by status (0: closed): {by_status:?}", cases.len());
    assert!(failures.is_empty(), "{} of {} went wrong:\n{}", failures.len(), cases.len(), failures.join("\n"));

    assert!(head_took < Duration::from_secs(20), "a head sent a byte at a time was cut off after {head_took:?}");
    let body_answer = body_answer.expect("answered").expect("an answer");
    assert_eq!(check(Expect::Problem, Some(body_answer.clone())), Ok(408));
    assert!(String::from_utf8_lossy(&body_answer.2).contains("body_timeout"));
    assert!(body_took < Duration::from_secs(15), "{body_took:?}");

    // Nothing was started, and the server serves as before.
    assert_eq!(app.engine.job_count(), 0);
    let kinds = app.client.get(app.url("/api/job-kinds")).send().await.expect("get");
    assert_eq!(kinds.status(), 200);
    let started = app
        .client
        .post(app.url("/api/jobs"))
        .json(&serde_json::json!({"kind": "ticker", "params": {"steps": 1, "interval_ms": 1}}))
        .send()
        .await
        .expect("post");
    assert_eq!(started.status(), 202);
}
