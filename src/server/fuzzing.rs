//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz): each takes arbitrary bytes as a
//! request brings them, runs the parser that reads them, and checks what must hold of its
//! answer whatever the input (it panics otherwise, which the fuzzer reports). Not an API.

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderName, HeaderValue};

use super::events::{resume_point, EventsQuery};
use super::limits::{parse_networks, ClientLimits, LimitsConfig};
use super::owner::owner_of;
use super::owner_events::parse_cursors;
use crate::jobs::{kinds, KindRegistry};

/// Splits fuzz input in two at its first `\n` (all of it is the first part without one).
fn two(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

fn header(name: &'static str, value: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(value) {
        headers.insert(HeaderName::from_static(name), value);
    }
    headers
}

/// `Last-Event-ID` (before the first `\n`) and `last_event_id`: a resume point is the number
/// that was sent, and only digits are one.
pub fn resume_points(data: &[u8]) {
    let (head, query) = two(data);
    let query = String::from_utf8_lossy(query).into_owned();
    let headers = header("last-event-id", head);
    if let Ok(Some(seq)) = resume_point(&headers, &EventsQuery { last_event_id: Some(query.clone()) }) {
        let said = headers.get("last-event-id").map(|v| v.as_bytes()).filter(|v| !v.is_empty());
        let sent = said.map_or(query.as_bytes(), |v| v);
        assert!(sent.iter().all(u8::is_ascii_digit), "only digits: {sent:?}");
        let number = std::str::from_utf8(sent).ok().and_then(|s| s.parse::<u64>().ok());
        assert_eq!(number, Some(seq), "a resume point is the number as sent");
    }
}

/// `after=JOB:SEQ,...`: every cursor read names a job written there, and there are no more
/// cursors than were written.
pub fn cursors(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(cursors) = parse_cursors(Some(&text)) {
        let lower = text.to_lowercase();
        for job in cursors.keys() {
            assert!(lower.contains(&format!("{job}:")), "{job} is not in {text:?}");
        }
        assert!(cursors.len() <= text.split(',').count());
    }
}

/// `Authorization` (before the first `\n`) and `Cookie`: an owner named by the request has a
/// token of the shape this server gives, and a refusal is only for a bearer token.
pub fn owner(data: &[u8]) {
    let (authorization, cookie) = two(data);
    let mut headers = header("authorization", authorization);
    headers.extend(header("cookie", cookie));
    match owner_of(&headers) {
        Ok(owner) => {
            assert_eq!(owner.token.len(), 64);
            assert!(owner.token.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
            assert_eq!(owner.key.len(), 64);
        }
        Err(_) => assert!(headers.contains_key("authorization")),
    }
}

/// `POST /api/jobs`'s body, read as the route reads it and checked by the kind (nothing is
/// started): no panic, and an accepted kind is one that exists.
pub fn start_body(data: &[u8]) {
    thread_local! {
        static KINDS: KindRegistry = kinds::builtin();
    }
    let Ok(request) = serde_json::from_slice::<super::api::StartRequest>(data) else {
        return;
    };
    KINDS.with(|kinds| {
        if kinds.check_params(&request.kind, request.params).is_some() {
            assert!(kinds.names().contains(&request.kind));
        }
    });
}

/// `X-Forwarded-For` (after the first `\n`) behind the trusted proxies listed before it: the
/// client is the peer or one of the addresses in the header.
pub fn client_address(data: &[u8]) {
    let (trusted, forwarded) = two(data);
    let Ok(trusted_proxies) = parse_networks(&String::from_utf8_lossy(trusted)) else {
        return;
    };
    let limits = ClientLimits::new(LimitsConfig { trusted_proxies, ..LimitsConfig::default() });
    let peer: IpAddr = [10, 0, 0, 1].into();
    let headers = header("x-forwarded-for", forwarded);
    let client = limits.client_of(peer, &headers);
    let text = String::from_utf8_lossy(forwarded);
    let named = text
        .split(',')
        .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
        .any(|a| a == client || matches!(a, IpAddr::V6(v6) if v6.to_ipv4_mapped().map(IpAddr::V4) == Some(client)));
    assert!(client == peer || named, "{client} is neither the peer nor in {text:?}");
}
