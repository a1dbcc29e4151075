//! What one client may do at once. Anyone can start jobs without an account, so the server
//! bounds, per client address: how many jobs it starts per minute (a token bucket, with a
//! burst), and how many event streams it holds open; and per owner: how many event streams it
//! holds open. Past a bound the answer is `429 Too Many Requests` with `Retry-After` and a
//! problem document that says which bound and how big it is. Nothing already running is cut.
//!
//! The client address is the connection's peer, or, when the peer is a trusted proxy
//! (`SSE_PROGRESS_TRUSTED_PROXIES`), the nearest address in `X-Forwarded-For` that is not a
//! trusted proxy itself (a client can write anything into that header; only what trusted
//! proxies appended counts). IPv6 clients are counted by their /64, the block one subscriber
//! gets. Addresses in `SSE_PROGRESS_LIMIT_EXEMPT` (loopback by default: scripts, health checks
//! and benchmarks on the same machine) are not limited.
//!
//! The bounds are per instance: with several instances behind a balancer, a client may reach
//! each of them.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;
use leptos::server_fn::ServerFn;

use super::owner::Owner;
use super::AppError;

/// The client addresses not limited unless configured otherwise: this machine's own.
pub const DEFAULT_EXEMPT: &str = "127.0.0.0/8, ::1";

pub use super::error::STREAMS_RETRY;

/// The bounds, as configured (see `server::config`).
#[derive(Debug, Clone, PartialEq)]
pub struct LimitsConfig {
    /// Jobs one client address may start per minute, on average.
    pub starts_per_minute: NonZeroU32,
    /// Jobs one client address may start at once after a quiet spell.
    pub start_burst: NonZeroU32,
    /// Event streams one client address may hold open at once.
    pub streams_per_address: usize,
    /// Event streams one owner may hold open at once.
    pub streams_per_owner: usize,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Client addresses that are not limited.
    pub exempt: Vec<IpNet>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            starts_per_minute: NonZeroU32::new(60).expect("not zero"),
            start_burst: NonZeroU32::new(20).expect("not zero"),
            streams_per_address: 256,
            streams_per_owner: 64,
            trusted_proxies: Vec::new(),
            exempt: parse_networks(DEFAULT_EXEMPT).expect("the default parses"),
        }
    }
}

/// Parses a comma-separated list of addresses and networks (`10.0.0.1, 10.1.0.0/16, ::1`).
pub fn parse_networks(text: &str) -> Result<Vec<IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.parse::<IpNet>()
                .or_else(|_| part.parse::<IpAddr>().map(IpNet::from))
                .map(|n| n.trunc())
                .map_err(|_| format!("{part:?} is not an IP address or network (such as 10.0.0.1 or 10.0.0.0/8)"))
        })
        .collect()
}

/// The open streams, counted by address and by owner.
#[derive(Default)]
struct OpenStreams {
    by_address: HashMap<IpAddr, usize>,
    by_owner: HashMap<Arc<str>, usize>,
}

/// The limits and what they count. Shared by every request.
pub struct ClientLimits {
    config: LimitsConfig,
    starts: DefaultKeyedRateLimiter<IpAddr>,
    streams: Arc<Mutex<OpenStreams>>,
}

impl std::fmt::Debug for ClientLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientLimits").field("config", &self.config).finish_non_exhaustive()
    }
}

/// An open stream, counted until it is dropped (with the stream's body).
pub struct StreamPermit {
    address: IpAddr,
    owner: Option<Arc<str>>,
    streams: Arc<Mutex<OpenStreams>>,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self.streams.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        release(&mut open.by_address, &self.address);
        if let Some(owner) = &self.owner {
            release(&mut open.by_owner, owner);
        }
    }
}

fn release<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = counts.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            counts.remove(key);
        }
    }
}

impl ClientLimits {
    /// Limits with these bounds.
    pub fn new(config: LimitsConfig) -> Self {
        let quota = Quota::per_minute(config.starts_per_minute).allow_burst(config.start_burst);
        Self { config, starts: RateLimiter::keyed(quota), streams: Arc::default() }
    }

    /// The bounds.
    pub fn config(&self) -> &LimitsConfig {
        &self.config
    }

    /// The client address of a request from `peer` with these headers (see the module's
    /// documentation).
    pub fn client_of(&self, peer: IpAddr, headers: &axum::http::HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.config.trusted_proxies.iter().any(|n| n.contains(&peer)) {
            return peer;
        }
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Ok(address) = hop.parse::<IpAddr>().map(canonical) else {
                // Garbage where an address should be: the last trusted hop is the client.
                break;
            };
            client = address;
            if !self.config.trusted_proxies.iter().any(|n| n.contains(&address)) {
                break;
            }
        }
        client
    }

    /// Whether `client` is not limited.
    pub fn is_exempt(&self, client: IpAddr) -> bool {
        self.config.exempt.iter().any(|n| n.contains(&client))
    }

    /// Counts one job start by `client`, or says how long it must wait.
    pub fn start(&self, client: IpAddr) -> Result<(), AppError> {
        if self.starts.len() > 10_000 {
            // Forget the clients whose bucket is full again, so that many addresses passing
            // by do not grow the table without end.
            self.starts.retain_recent();
        }
        self.starts.check_key(&key(client)).map_err(|not_until| AppError::TooManyStarts {
            per_minute: self.config.starts_per_minute.get(),
            burst: self.config.start_burst.get(),
            retry_after: not_until.wait_time_from(DefaultClock::default().now()),
        })
    }

    /// Counts one more open stream of `client` and `owner`, or says which bound it would pass.
    pub fn open_stream(&self, client: IpAddr, owner: Option<&Arc<str>>) -> Result<StreamPermit, AppError> {
        let address = key(client);
        let mut open = self.streams.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let by_address = open.by_address.get(&address).copied().unwrap_or(0);
        if by_address >= self.config.streams_per_address {
            return Err(AppError::TooManyStreams { per: "client address", limit: self.config.streams_per_address });
        }
        if let Some(owner) = owner {
            if open.by_owner.get(owner).copied().unwrap_or(0) >= self.config.streams_per_owner {
                return Err(AppError::TooManyStreams { per: "owner", limit: self.config.streams_per_owner });
            }
            *open.by_owner.entry(owner.clone()).or_default() += 1;
        }
        *open.by_address.entry(address).or_default() += 1;
        Ok(StreamPermit { address, owner: owner.cloned(), streams: self.streams.clone() })
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// What a client is counted by: its IPv4 address, or its IPv6 /64.
fn key(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX))),
        v4 => v4,
    }
}

/// Whether a request starts a job: `POST /api/jobs` or the `start_job` server function.
fn starts_a_job(request: &Request) -> bool {
    request.method() == Method::POST
        && matches!(request.uri().path(), "/api/jobs" | <crate::server_fns::StartJob as ServerFn>::PATH)
}

/// Whether a request may open an event stream: a `GET` of a job's or an owner's events, or a
/// synchronous streaming start.
fn may_stream(request: &Request) -> bool {
    let path = request.uri().path();
    match *request.method() {
        Method::GET => super::connections::is_stream_path(path),
        Method::POST => {
            path == "/api/jobs" && request.uri().query().is_some_and(|q| q.split('&').any(|p| p == "stream=true"))
        }
        _ => false,
    }
}

/// The middleware: finds the client's address and applies the bounds. Runs after
/// `owner::identify`.
pub async fn limit(State(limits): State<Arc<ClientLimits>>, request: Request, next: Next) -> Response {
    let Some(peer) = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()) else {
        // Served without a connection (a test's `oneshot`): nothing to count by.
        return next.run(request).await;
    };
    let client = limits.client_of(peer, request.headers());
    if limits.is_exempt(client) {
        return next.run(request).await;
    }
    if starts_a_job(&request) {
        if let Err(refused) = limits.start(client) {
            tracing::info!(%client, "refused a start: too many");
            return refused.into_response();
        }
    }
    if !may_stream(&request) {
        return next.run(request).await;
    }
    let owner = request.extensions().get::<Owner>().filter(|o| !o.is_new).map(|o| o.key.clone());
    let permit = match limits.open_stream(client, owner.as_ref()) {
        Ok(permit) => permit,
        Err(refused) => {
            tracing::info!(%client, "refused a stream: too many open");
            return refused.into_response();
        }
    };
    let response = next.run(request).await;
    let is_stream =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !is_stream {
        return response;
    }
    // The permit lives as long as the stream's body.
    response.map(|body| {
        axum::body::Body::from_stream(futures::StreamExt::map(body.into_data_stream(), move |chunk| {
            let _held = &permit;
            chunk
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(config: LimitsConfig) -> ClientLimits {
        ClientLimits::new(config)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn the_client_is_the_peer_unless_the_peer_is_a_trusted_proxy() {
        let trusted = parse_networks("10.0.0.0/8, 192.168.1.1").expect("parses");
        let limits = limits(LimitsConfig { trusted_proxies: trusted, ..LimitsConfig::default() });
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.1.2.3".parse().expect("header"));
        // An untrusted peer's header is ignored: anyone can write one.
        assert_eq!(limits.client_of(ip("198.51.100.1"), &headers), ip("198.51.100.1"));
        // Through two trusted proxies: the nearest untrusted hop, not what the client wrote.
        assert_eq!(limits.client_of(ip("192.168.1.1"), &headers), ip("203.0.113.7"));
        assert_eq!(limits.client_of(ip("::ffff:192.168.1.1"), &headers), ip("203.0.113.7"));
        headers.insert("x-forwarded-for", "nonsense, 10.9.9.9".parse().expect("header"));
        assert_eq!(limits.client_of(ip("10.0.0.1"), &headers), ip("10.9.9.9"));
        headers.remove("x-forwarded-for");
        assert_eq!(limits.client_of(ip("10.0.0.1"), &headers), ip("10.0.0.1"));
    }

    #[test]
    fn networks_parse_or_say_what_is_wrong() {
        let parsed = parse_networks(" 127.0.0.0/8 ,::1,,10.1.2.3/16").expect("parses");
        assert_eq!(
            parsed.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["127.0.0.0/8", "::1/128", "10.1.0.0/16"]
        );
        assert_eq!(parse_networks("").expect("empty"), []);
        let err = parse_networks("10.0.0.0/8, localhost").expect_err("a name");
        assert!(err.contains("\"localhost\" is not an IP address or network"), "{err}");
    }

    #[test]
    fn loopback_is_exempt_by_default_and_others_are_not() {
        let limits = limits(LimitsConfig::default());
        assert!(limits.is_exempt(ip("127.0.0.1")));
        assert!(limits.is_exempt(ip("127.9.9.9")));
        assert!(limits.is_exempt(ip("::1")));
        assert!(!limits.is_exempt(ip("203.0.113.7")));
    }

    #[test]
    fn starts_past_the_burst_wait_for_the_refill() {
        let limits = limits(LimitsConfig {
            starts_per_minute: NonZeroU32::new(6).expect("6"),
            start_burst: NonZeroU32::new(2).expect("2"),
            ..LimitsConfig::default()
        });
        let client = ip("203.0.113.7");
        assert!(limits.start(client).is_ok());
        assert!(limits.start(client).is_ok());
        let Err(AppError::TooManyStarts { retry_after, per_minute: 6, burst: 2 }) = limits.start(client) else {
            panic!("the third start in a row is refused");
        };
        assert!(retry_after > Duration::from_secs(8) && retry_after <= Duration::from_secs(10), "{retry_after:?}");
        // Another client has its own bucket.
        assert!(limits.start(ip("203.0.113.8")).is_ok());
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let limits = limits(LimitsConfig {
            starts_per_minute: NonZeroU32::new(1).expect("1"),
            start_burst: NonZeroU32::new(1).expect("1"),
            ..LimitsConfig::default()
        });
        assert!(limits.start(ip("2001:db8:1:2::1")).is_ok());
        assert!(limits.start(ip("2001:db8:1:2:ffff::9")).is_err());
        assert!(limits.start(ip("2001:db8:1:3::1")).is_ok());
    }

    #[test]
    fn open_streams_are_bounded_per_address_and_per_owner_and_released_on_drop() {
        let limits = limits(LimitsConfig { streams_per_address: 3, streams_per_owner: 2, ..LimitsConfig::default() });
        let (a, b) = (ip("203.0.113.7"), ip("203.0.113.8"));
        let owner: Arc<str> = "owner-key".into();
        let first = limits.open_stream(a, Some(&owner)).expect("first");
        let _second = limits.open_stream(b, Some(&owner)).expect("second, from elsewhere");
        let Err(AppError::TooManyStreams { per: "owner", limit: 2 }) = limits.open_stream(a, Some(&owner)) else {
            panic!("a third stream of the owner is refused");
        };
        let _third = limits.open_stream(a, None).expect("no owner");
        let _fourth = limits.open_stream(a, None).expect("the address's third");
        let Err(AppError::TooManyStreams { per: "client address", limit: 3 }) = limits.open_stream(a, None) else {
            panic!("a fourth stream of the address is refused");
        };
        drop(first);
        assert!(limits.open_stream(a, Some(&owner)).is_ok(), "one closed, one may open");
    }
}
