//! NAT discovery and hole-punch priming, done from the very UDP port SRT will bind, before SRT
//! binds it (a port cannot be shared with SRT: each function closes its socket when it returns).
//!
//! * [`discover`]: STUN Binding requests to the server's primary and alternate STUN ports. The
//!   first answer is the port's public (mapped) address; comparing it with the second tells an
//!   endpoint-independent mapping (rendezvous works) from an endpoint-dependent one (relay).
//! * [`prime`]: a few datagrams with a small TTL towards the peer's public address. They open
//!   our own NAT's mapping and die before the peer's router, so that a router without an input
//!   firewall does not create a conntrack entry that steals the peer's port.

use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::protocol::stun::{
    BindingResponse, TransactionId, binding_request, parse_binding_success,
};
use crate::protocol::{Endpoint, NatMapping, NatReport};

/// Priming defaults: TTL 2 leaves the host, crosses its NAT router and dies at the next hop,
/// before the peer's router (`docs/srt-notes.md`, section 4); three datagrams 5 ms apart (the first one opens the
/// mapping; the others are there in case it is lost).
pub const PRIME_TTL: u32 = 2;
pub const PRIME_COUNT: usize = 3;
pub const PRIME_GAP: Duration = Duration::from_millis(5);

/// How often an unanswered Binding request is repeated.
const RETRANSMIT: Duration = Duration::from_millis(200);

/// What STUN discovery found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Discovery {
    /// The STUN server probed (the address relayed streams are sent to).
    pub server: SocketAddr,
    /// The public address of the probed local port (from the primary STUN port).
    pub mapped: SocketAddr,
    /// Public address seen by the alternate STUN port, when it answered.
    pub mapped_alt: Option<SocketAddr>,
}

impl Discovery {
    pub fn mapping(&self) -> NatMapping {
        match self.mapped_alt {
            Some(alt) if alt == self.mapped => NatMapping::EndpointIndependent,
            Some(_) => NatMapping::EndpointDependent,
            None => NatMapping::Unknown,
        }
    }

    pub fn report(&self) -> NatReport {
        NatReport {
            mapped: Some(Endpoint {
                ip: self.mapped.ip().to_string(),
                port: self.mapped.port(),
            }),
            mapping: self.mapping(),
        }
    }
}

fn transaction_id() -> TransactionId {
    let mut tid = [0u8; 12];
    for chunk in tid.chunks_mut(8) {
        // RandomState is seeded from the OS per instance: unpredictable enough for STUN ids.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        let bytes = h.finish().to_be_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
    tid
}

/// One Binding transaction, retransmitted until answered or `timeout`.
async fn binding(
    socket: &UdpSocket,
    server: SocketAddr,
    timeout: Duration,
    tag: Option<&str>,
) -> Option<BindingResponse> {
    let tid = transaction_id();
    let request = binding_request(&tid, tag);
    let mut buf = [0u8; 576];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return None;
        }
        socket.send_to(&request, server).await.ok()?;
        let answer = async {
            loop {
                let (n, from) = socket.recv_from(&mut buf).await.ok()?;
                if from.ip() == server.ip()
                    && let Some(r) = parse_binding_success(&buf[..n], &tid)
                {
                    return Some(r);
                }
            }
        };
        if let Ok(Some(r)) = tokio::time::timeout(RETRANSMIT.min(deadline - now), answer).await {
            return Some(r);
        }
    }
}

/// Why discovery found nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryError {
    /// The STUN service never answered (as opposed to a local failure: a port that cannot be
    /// bound, a name that does not resolve): what says UDP to the server is blocked.
    pub unanswered: bool,
    pub message: String,
}

impl DiscoveryError {
    /// A local failure, which says nothing about the network.
    pub fn local(message: impl Into<String>) -> Self {
        DiscoveryError {
            unanswered: false,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Probes the STUN service at `server` (primary port) from `local`, then its alternate port,
/// naming the requests `tag` (the server's `hello.stun_tag`, so it can verify the address the
/// peer registers). Fails when the local port cannot be bound or the primary never answers
/// within `timeout`.
pub async fn discover(
    local: SocketAddr,
    server: SocketAddr,
    timeout: Duration,
    tag: Option<&str>,
) -> Result<Discovery, DiscoveryError> {
    let socket = UdpSocket::bind(local).await.map_err(|e| {
        DiscoveryError::local(format!("cannot bind UDP {local} for STUN discovery: {e}"))
    })?;
    let first = binding(&socket, server, timeout, tag)
        .await
        .ok_or_else(|| DiscoveryError {
            unanswered: true,
            message: format!(
                "no STUN answer from {server} within {} ms (is UDP to the server blocked?)",
                timeout.as_millis()
            ),
        })?;
    let mapped_alt = match first.other {
        Some(other) => {
            // Punch's alternate is the same host on another port; the address in OTHER-ADDRESS
            // is the server's bind address, which may not be reachable (0.0.0.0, a private IP).
            binding(
                &socket,
                SocketAddr::new(server.ip(), other.port()),
                timeout,
                tag,
            )
            .await
            .map(|r| r.mapped)
        }
        None => None,
    };
    Ok(Discovery {
        server,
        mapped: first.mapped,
        mapped_alt,
    })
}

/// [`discover`] against the primary STUN port, and when that gets no answer against the
/// alternate one (from the same local port): only when neither answers is UDP taken to be
/// blocked (`unanswered`).
pub async fn discover_either(
    local: SocketAddr,
    server: SocketAddr,
    alternate: Option<u16>,
    timeout: Duration,
    tag: Option<&str>,
) -> Result<Discovery, DiscoveryError> {
    let first = discover(local, server, timeout, tag).await;
    let (Err(e), Some(alt)) = (&first, alternate) else {
        return first;
    };
    if !e.unanswered {
        return first;
    }
    discover(local, SocketAddr::new(server.ip(), alt), timeout, tag)
        .await
        .map_err(|e| match e.unanswered {
            true => DiscoveryError {
                unanswered: true,
                message: format!(
                    "no STUN answer from {} on port {} or {alt} within {} ms each (is UDP to the server blocked?)",
                    server.ip(),
                    server.port(),
                    timeout.as_millis()
                ),
            },
            false => e,
        })
}

/// Resolves `host` and runs [`discover_either`] from local UDP `local_port` against its STUN port.
pub async fn discover_host(
    host: &str,
    stun_port: u16,
    alternate: Option<u16>,
    local_port: u16,
    timeout: Duration,
) -> Result<Discovery, DiscoveryError> {
    let server = tokio::net::lookup_host((host, stun_port))
        .await
        .map_err(|e| DiscoveryError::local(format!("cannot resolve {host}: {e}")))?
        .next()
        .ok_or_else(|| DiscoveryError::local(format!("{host} has no address")))?;
    let local = any_local(server.ip(), local_port);
    discover_either(local, server, alternate, timeout, None).await
}

/// Sends `count` datagrams with IP TTL `ttl` from `local` to `peer`, `gap` apart.
pub async fn prime(
    local: SocketAddr,
    peer: SocketAddr,
    ttl: u32,
    count: usize,
    gap: Duration,
) -> Result<(), String> {
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| format!("cannot bind UDP {local} for priming: {e}"))?;
    socket
        .set_ttl(ttl)
        .map_err(|e| format!("cannot set TTL {ttl}: {e}"))?;
    for i in 0..count {
        if i > 0 {
            tokio::time::sleep(gap).await;
        }
        socket
            .send_to(b"punch-prime", peer)
            .await
            .map_err(|e| format!("cannot send priming datagram to {peer}: {e}"))?;
    }
    Ok(())
}

/// The unspecified address of `peer`'s family, for binding `port` on every interface.
pub fn any_local(peer: IpAddr, port: u16) -> SocketAddr {
    match peer {
        IpAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], port)),
        IpAddr::V6(_) => SocketAddr::from(([0u16; 8], port)),
    }
}
