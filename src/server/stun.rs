//! The STUN service: answers Binding requests (RFC 8489, and RFC 3489's classic form) on two UDP
//! ports, primary and alternate. A peer probes both from the port its SRT socket will use: the
//! mapped address tells the server where that socket is reachable, and whether the two mappings
//! differ tells an endpoint-independent NAT from a symmetric one (OTHER-ADDRESS names the
//! alternate). A request asking for an answer from the other port gets it from there; one asking
//! for another IP gets none, since the service has one address (what RFC 5780 prescribes).
//!
//! Two protections: a request naming a live signalling connection (its USERNAME, the tag the
//! connection's `hello` gave) is noted in the [`Ledger`], so the address a peer then registers
//! can be checked against what was really seen (tags the server did not issue are not noted:
//! nobody can fill the ledger); and each source address (IPv6: its /64) is answered at most
//! `--stun-rate` times a second, so the service cannot be used to reflect floods.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::limit::KeyedLimiter;
use crate::protocol::stun::{CHANGE_IP, CHANGE_PORT, parse_binding_request, write_binding_success};

/// How long a noted observation counts for a registration.
const LEDGER_TTL: Duration = Duration::from_secs(120);
/// Addresses noted per tag (a peer probes from one port, through at most a few paths).
const ADDRESSES_PER_TAG: usize = 8;

/// Counters shown by `/healthz`.
#[derive(Debug, Default)]
pub struct StunStats {
    /// Binding requests answered.
    pub answered: AtomicU64,
    /// Requests dropped because their source asked too often.
    pub limited: AtomicU64,
    /// Sources (IPv6: /64) rate-limited, each counted once per [`LIMITED_WINDOW`] while it
    /// goes on.
    pub limited_sources: AtomicU64,
}

/// A rate-limited source counts again after this long.
const LIMITED_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);
/// Sources remembered per window (more are still dropped, not counted again).
const LIMITED_MEMORY: usize = 4096;

/// Which addresses the service saw requests of each issued tag come from. A tag lives as long
/// as its signalling connection ([`Issued`]), so the ledger holds at most one entry per live
/// connection.
#[derive(Debug, Default)]
pub struct Ledger {
    seen: Mutex<HashMap<String, Sightings>>,
}

/// An issued tag's requests: when the latest came (none yet: `None`), and from where.
type Sightings = (Option<Instant>, Vec<SocketAddr>);

/// A tag given to one signalling connection; retired when dropped.
#[derive(Debug)]
pub struct Issued {
    ledger: std::sync::Arc<Ledger>,
    pub tag: String,
}

impl Drop for Issued {
    fn drop(&mut self) {
        self.ledger.entries().remove(&self.tag);
    }
}

impl Ledger {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Sightings>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new random tag for a connection's `hello`.
    pub fn issue(self: &std::sync::Arc<Self>) -> Issued {
        use rand::Rng;
        let tag: String = rand::rng()
            .sample_iter(&rand::distr::Alphanumeric)
            .take(16)
            .map(char::from)
            .collect();
        self.entries().insert(tag.clone(), (None, Vec::new()));
        Issued {
            ledger: self.clone(),
            tag,
        }
    }

    /// A request carried `tag` and came from `from`; anything but an issued tag is ignored.
    fn note(&self, tag: &str, from: SocketAddr) {
        if let Some((at, addrs)) = self.entries().get_mut(tag) {
            *at = Some(Instant::now());
            if !addrs.contains(&from) && addrs.len() < ADDRESSES_PER_TAG {
                addrs.push(from);
            }
        }
    }

    /// Whether a request of `tag` came from exactly `addr` lately.
    pub fn saw(&self, tag: &str, addr: SocketAddr) -> bool {
        self.entries().get(tag).is_some_and(|(at, addrs)| {
            at.is_some_and(|t| t.elapsed() < LEDGER_TTL) && addrs.contains(&addr)
        })
    }
}

/// Binds the STUN sockets: `port` and `port + 1` (both any free port when `port` is 0).
pub async fn bind(addr: SocketAddr) -> std::io::Result<[UdpSocket; 2]> {
    let primary = UdpSocket::bind(addr).await?;
    let alt_port = if addr.port() == 0 {
        0
    } else {
        addr.port().checked_add(1).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the STUN port must leave room for the alternate port above it",
            )
        })?
    };
    let alternate = UdpSocket::bind(SocketAddr::new(addr.ip(), alt_port)).await?;
    Ok([primary, alternate])
}

/// Answers Binding requests on both sockets until `stop`.
pub async fn serve(
    sockets: [UdpSocket; 2],
    stats: std::sync::Arc<StunStats>,
    ledger: std::sync::Arc<Ledger>,
    limiter: KeyedLimiter<IpAddr>,
    stop: CancellationToken,
) {
    let Ok(local) = sockets[0]
        .local_addr()
        .and_then(|a| Ok([a, sockets[1].local_addr()?]))
    else {
        return;
    };
    let mut bufs = [[0u8; 1500], [0u8; 1500]];
    let mut out = Vec::with_capacity(128);
    let mut limited_now = std::collections::HashSet::new();
    let mut window = std::time::Instant::now();
    loop {
        let [buf_a, buf_b] = &mut bufs;
        let (at, got) = tokio::select! {
            _ = stop.cancelled() => return,
            r = sockets[0].recv_from(buf_a) => (0, r),
            r = sockets[1].recv_from(buf_b) => (1, r),
        };
        let Ok((len, from)) = got else { continue };
        // (On a dual-stack socket IPv4 clients arrive as ::ffff:a.b.c.d.)
        let from = SocketAddr::new(from.ip().to_canonical(), from.port());
        let Some(req) = parse_binding_request(&bufs[at][..len]) else {
            continue;
        };
        let key = super::limit::client_key(from.ip());
        if !limiter.allow(key) {
            stats.limited.fetch_add(1, Ordering::Relaxed);
            if window.elapsed() >= LIMITED_WINDOW {
                limited_now.clear();
                window = std::time::Instant::now();
            }
            if limited_now.len() < LIMITED_MEMORY && limited_now.insert(key) {
                stats.limited_sources.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        stats.answered.fetch_add(1, Ordering::Relaxed);
        if let Some(tag) = &req.username {
            ledger.note(tag, from);
        }
        if req.change & CHANGE_IP != 0 {
            continue;
        }
        let answer_from = if req.change & CHANGE_PORT != 0 {
            1 - at
        } else {
            at
        };
        write_binding_success(&mut out, &req, from, local[1 - answer_from]);
        let _ = sockets[answer_from].send_to(&out, from).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn only_issued_tags_are_noted_and_they_go_with_their_connection() {
        let ledger = Arc::new(Ledger::default());
        let from: SocketAddr = "203.0.113.2:24419".parse().unwrap();
        // a flood of made-up tags leaves nothing behind
        for n in 0..10_000 {
            ledger.note(&format!("made-up-{n}"), from);
        }
        assert_eq!(ledger.entries().len(), 0);
        let issued = ledger.issue();
        assert!(!ledger.saw(&issued.tag, from), "not seen before a request");
        ledger.note(&issued.tag, from);
        assert!(ledger.saw(&issued.tag, from));
        assert!(!ledger.saw(&issued.tag, "203.0.113.2:24420".parse().unwrap()));
        // a bounded list of addresses per tag
        for port in 1..100 {
            ledger.note(&issued.tag, SocketAddr::new(from.ip(), port));
        }
        assert_eq!(ledger.entries()[&issued.tag].1.len(), ADDRESSES_PER_TAG);
        let tag = issued.tag.clone();
        drop(issued);
        assert!(!ledger.saw(&tag, from), "retired with its connection");
        assert_eq!(ledger.entries().len(), 0);
    }
}
