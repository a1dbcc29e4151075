//! A fault-injecting TCP proxy in the manner of Toxiproxy, between real clients and the real
//! server: every connection through it gets one fault, picked at random, on what the server
//! sends back: a reset after some bytes, a cut after some bytes (mid-event, mid-line), added
//! latency on every write (then a cut), or a blackhole after some bytes (the connection stays
//! open and silent, as after a vanished peer, until the client gives it up). A connection
//! whose stream ends before its fault's moment (the job ended) is passed through unharmed and
//! not counted.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How many of each fault were injected, and how many connections found no server.
#[derive(Debug, Default)]
pub struct FaultCounts {
    pub resets: AtomicU64,
    pub cuts: AtomicU64,
    pub latencies: AtomicU64,
    pub blackholes: AtomicU64,
    pub refused: AtomicU64,
}

impl FaultCounts {
    /// Faults injected (connections refused because the server was down are not counted).
    pub fn injected(&self) -> u64 {
        [&self.resets, &self.cuts, &self.latencies, &self.blackholes].iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Reset {
        after: usize,
    },
    Cut {
        after: usize,
    },
    /// Every write delayed, and the stream cut after some bytes as well (so that no
    /// connection carries a job to its end unharmed).
    Latency {
        each: Duration,
        after: usize,
    },
    Blackhole {
        after: usize,
    },
}

/// A running proxy.
pub struct FaultProxy {
    pub addr: SocketAddr,
    pub counts: Arc<FaultCounts>,
}

impl FaultProxy {
    /// Proxies a free local port to `upstream`, faulting every connection.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let counts = Arc::new(FaultCounts::default());
        let shared = counts.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let counts = shared.clone();
                tokio::spawn(async move { relay(client, upstream, pick(), &counts).await });
            }
        });
        Self { addr, counts }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// A fault at random: most cut the stream in its head or first few events.
fn pick() -> Fault {
    // Anywhere from inside the response head (about 300 bytes) to a few events (about 300
    // bytes each) later.
    let after = fastrand::usize(100..1_500);
    match fastrand::u32(0..100) {
        0..35 => Fault::Reset { after },
        35..75 => Fault::Cut { after },
        75..90 => Fault::Latency { each: Duration::from_millis(fastrand::u64(1..30)), after },
        _ => Fault::Blackhole { after },
    }
}

async fn relay(client: TcpStream, upstream: SocketAddr, fault: Fault, counts: &FaultCounts) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        counts.refused.fetch_add(1, Ordering::Relaxed);
        // As a balancer with no backend would: the client sees its connection reset.
        let _ = client.set_zero_linger();
        return;
    };
    let _ = client.set_nodelay(true);
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    // The request goes through untouched.
    let upward = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
    });
    let mut sent = 0usize;
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let n = match from_server.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Fault::Latency { each, .. } = fault {
            tokio::time::sleep(each).await;
        }
        let (Fault::Reset { after } | Fault::Cut { after } | Fault::Blackhole { after } | Fault::Latency { after, .. }) =
            fault;
        let limit = after;
        let take = n.min(limit.saturating_sub(sent));
        if to_client.write_all(&buffer[..take]).await.is_err() {
            break;
        }
        sent += take;
        if take == n {
            continue;
        }
        // The fault's moment has come.
        match fault {
            Fault::Reset { .. } => {
                counts.resets.fetch_add(1, Ordering::Relaxed);
                // An RST, not a FIN: no shutdown of the write half, and no lingering on close
                // (the socket closes when the read half, in `upward`, is dropped below).
                let _ = to_client.as_ref().set_zero_linger();
                to_client.forget();
            }
            Fault::Cut { .. } => {
                counts.cuts.fetch_add(1, Ordering::Relaxed);
                let _ = to_client.shutdown().await;
            }
            Fault::Latency { .. } => {
                counts.latencies.fetch_add(1, Ordering::Relaxed);
                let _ = to_client.shutdown().await;
            }
            Fault::Blackhole { .. } => {
                counts.blackholes.fetch_add(1, Ordering::Relaxed);
                // Silent from now on; the client must notice by itself. Held at most a minute.
                let _ = tokio::time::timeout(Duration::from_secs(60), std::future::pending::<()>()).await;
            }
        }
        upward.abort();
        return;
    }
    upward.abort();
}
