//! The UDP relay for streams that cannot be punched (symmetric NATs, or no direct connection in
//! time). One relay per stream owns two UDP ports: the sender is told to rendezvous with the
//! first, the receiver with the second, and every datagram from one side is sent on to the
//! other. Only the two registered peers are served: each port accepts the first datagrams from
//! its peer's registered public IP and then that one address; everything else is dropped, so it
//! is no open relay. SRT encryption stays end to end: the relay forwards ciphertext.
//!
//! Bounded: a server-wide number of relays, a bandwidth cap per relay and for all relays, and
//! a relay with no traffic for a while frees its ports. Forwarding reuses one buffer per port.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::limit::TokenBucket;

/// Relay settings (`punch serve --relay-*`).
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Most streams relayed at once.
    pub max_relays: usize,
    /// Bandwidth cap per relayed stream, bit/s (each direction counted).
    pub max_bitrate: u64,
    /// Bandwidth cap for all relays together, bit/s.
    pub max_total_bitrate: u64,
    /// A relay that forwarded nothing for this long frees its ports.
    pub idle: Duration,
    /// Ports to take relay sockets from (`None`: any free port).
    pub ports: Option<(u16, u16)>,
    /// Address the relay sockets bind.
    pub bind: IpAddr,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            max_relays: 100,
            max_bitrate: 50_000_000,
            max_total_bitrate: 1_000_000_000,
            idle: Duration::from_secs(60),
            ports: None,
            bind: IpAddr::from([0, 0, 0, 0]),
        }
    }
}

/// Counters shown by `/healthz`.
#[derive(Debug, Default)]
pub struct RelayStats {
    pub active: AtomicUsize,
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    /// Datagrams dropped: from strangers, or over a bandwidth cap.
    pub dropped: AtomicU64,
}

/// A bandwidth cap in bit/s as a token bucket over bytes, with a quarter second of burst.
fn byte_bucket(bits_per_second: u64) -> TokenBucket {
    let rate = bits_per_second as f64 / 8.0;
    TokenBucket::new(rate, rate / 4.0)
}

/// Allocates relays within the server-wide limits.
#[derive(Debug)]
pub struct RelayService {
    config: RelayConfig,
    pub stats: Arc<RelayStats>,
    total: Arc<Mutex<TokenBucket>>,
    next_port: Mutex<u16>,
}

/// A running relay; dropping it stops forwarding and frees its ports.
#[derive(Debug)]
pub struct Relay {
    /// `[sender's port, receiver's port]`.
    pub ports: [u16; 2],
    stop: CancellationToken,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl RelayService {
    pub fn new(config: RelayConfig) -> Self {
        let total = byte_bucket(config.max_total_bitrate);
        let first = config.ports.map(|(lo, _)| lo).unwrap_or(0);
        RelayService {
            config,
            stats: Arc::default(),
            total: Arc::new(Mutex::new(total)),
            next_port: Mutex::new(first),
        }
    }

    /// Starts a relay between a sender at `peer_ips[0]` and a receiver at `peer_ips[1]`.
    /// `on_idle` runs if the relay frees itself for lack of traffic.
    pub async fn allocate(
        &self,
        peer_ips: [IpAddr; 2],
        on_idle: impl FnOnce() + Send + 'static,
    ) -> Result<Relay, String> {
        let active = &self.stats.active;
        if active
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.config.max_relays).then_some(n + 1)
            })
            .is_err()
        {
            return Err(format!(
                "the server already relays {} streams (--relay-max)",
                self.config.max_relays
            ));
        }
        let sockets = match (self.bind().await, self.bind().await) {
            (Ok(a), Ok(b)) => [a, b],
            (Err(e), _) | (_, Err(e)) => {
                active.fetch_sub(1, Ordering::SeqCst);
                return Err(e);
            }
        };
        let ports = [
            sockets[0].local_addr().map(|a| a.port()).unwrap_or(0),
            sockets[1].local_addr().map(|a| a.port()).unwrap_or(0),
        ];
        let stop = CancellationToken::new();
        let forwarder = Forwarder {
            sockets,
            peer_ips,
            learned: [None, None],
            last_heard: [Instant::now(); 2],
            bucket: byte_bucket(self.config.max_bitrate),
            total: self.total.clone(),
            stats: self.stats.clone(),
            idle: self.config.idle,
        };
        tokio::spawn(forwarder.run(stop.clone(), on_idle));
        tracing::info!(?ports, ?peer_ips, "relay started");
        Ok(Relay { ports, stop })
    }

    async fn bind(&self) -> Result<UdpSocket, String> {
        let Some((lo, hi)) = self.config.ports else {
            return UdpSocket::bind(SocketAddr::new(self.config.bind, 0))
                .await
                .map_err(|e| format!("cannot open a relay port: {e}"));
        };
        let span = usize::from(hi - lo) + 1;
        for _ in 0..span {
            let port = {
                let mut next = self.next_port.lock().unwrap_or_else(|e| e.into_inner());
                let port = *next;
                *next = if port >= hi { lo } else { port + 1 };
                port
            };
            if let Ok(s) = UdpSocket::bind(SocketAddr::new(self.config.bind, port)).await {
                return Ok(s);
            }
        }
        Err(format!("no free relay port in {lo}-{hi} (--relay-ports)"))
    }
}

struct Forwarder {
    /// `[sender side, receiver side]`.
    sockets: [UdpSocket; 2],
    peer_ips: [IpAddr; 2],
    learned: [Option<SocketAddr>; 2],
    last_heard: [Instant; 2],
    bucket: TokenBucket,
    total: Arc<Mutex<TokenBucket>>,
    stats: Arc<RelayStats>,
    idle: Duration,
}

/// A peer that went quiet this long may re-appear from another port (its NAT mapping changed).
const RELEARN_AFTER: Duration = Duration::from_secs(2);

impl Forwarder {
    async fn run(mut self, stop: CancellationToken, on_idle: impl FnOnce()) {
        let mut buf = [0u8; 2048];
        // Idleness is checked now and then, not with a timer re-armed per datagram.
        let mut idle_check = tokio::time::interval((self.idle / 4).min(Duration::from_secs(1)));
        idle_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let idled = loop {
            let side = tokio::select! {
                _ = stop.cancelled() => break false,
                _ = idle_check.tick() => {
                    let quiet_since = self.last_heard[0].max(self.last_heard[1]);
                    // Until a first datagram, a tool being set up by hand gets ten times longer.
                    let heard = self.learned.iter().any(Option::is_some);
                    let limit = if heard { self.idle } else { self.idle * 10 };
                    if quiet_since.elapsed() >= limit {
                        tracing::info!(learned = ?self.learned, "relay idle; freeing its ports");
                        break true;
                    }
                    continue;
                }
                r = self.sockets[0].readable() => { if r.is_err() { continue } 0 }
                r = self.sockets[1].readable() => { if r.is_err() { continue } 1 }
            };
            // Everything that is queued, without going back to the reactor per datagram.
            loop {
                match self.sockets[side].try_recv_from(&mut buf) {
                    Ok((len, from)) => self.forward(side, &buf[..len], from),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => break,
                }
            }
        };
        self.stats.active.fetch_sub(1, Ordering::SeqCst);
        drop(self.sockets);
        if idled {
            on_idle();
        }
    }

    fn forward(&mut self, side: usize, datagram: &[u8], from: SocketAddr) {
        let now = Instant::now();
        // (On a dual-stack socket IPv4 peers arrive as ::ffff:a.b.c.d.)
        let from = SocketAddr::new(from.ip().to_canonical(), from.port());
        let known = self.learned[side] == Some(from);
        let may_learn = from.ip() == self.peer_ips[side]
            && (self.learned[side].is_none()
                || now.duration_since(self.last_heard[side]) > RELEARN_AFTER);
        if !known && !may_learn {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if !known {
            tracing::info!(side, %from, "relay learnt a peer address");
            self.learned[side] = Some(from);
        }
        self.last_heard[side] = now;
        let other = 1 - side;
        let Some(to) = self.learned[other] else {
            // The other side has not sent yet; SRT's handshake repeats, so nothing is lost.
            return;
        };
        let bytes = datagram.len() as f64;
        let within = self.bucket.take(bytes, now)
            && self
                .total
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(bytes, now);
        // A full send buffer drops the datagram, as a router would; SRT retransmits.
        if within && self.sockets[other].try_send_to(datagram, to).is_ok() {
            self.stats.packets.fetch_add(1, Ordering::Relaxed);
            self.stats
                .bytes
                .fetch_add(datagram.len() as u64, Ordering::Relaxed);
        } else {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    async fn recv(s: &UdpSocket) -> Option<Vec<u8>> {
        let mut buf = [0u8; 64];
        let (n, _) = tokio::time::timeout(Duration::from_millis(500), s.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some(buf[..n].to_vec())
    }

    #[tokio::test]
    async fn forwards_between_the_two_peers_only() {
        let service = RelayService::new(RelayConfig {
            bind: LOCAL,
            ..Default::default()
        });
        let relay = service.allocate([LOCAL, LOCAL], || {}).await.unwrap();
        let to = |i: usize| SocketAddr::new(LOCAL, relay.ports[i]);
        let a = UdpSocket::bind((LOCAL, 0)).await.unwrap();
        let b = UdpSocket::bind((LOCAL, 0)).await.unwrap();
        // Until b has made itself known, a's datagrams have nowhere to go; like SRT's
        // handshake, a repeats until one arrives.
        b.send_to(b"hello from b", to(1)).await.unwrap();
        let mut arrived = None;
        for _ in 0..10 {
            a.send_to(b"hello from a", to(0)).await.unwrap();
            arrived = recv(&b).await;
            if arrived.is_some() {
                break;
            }
        }
        assert_eq!(arrived.as_deref(), Some(&b"hello from a"[..]));
        b.send_to(b"reply", to(1)).await.unwrap();
        // (b's hello may have reached a too, depending on which datagram the relay read first.)
        let mut got = recv(&a).await;
        if got.as_deref() == Some(&b"hello from b"[..]) {
            got = recv(&a).await;
        }
        assert_eq!(got.as_deref(), Some(&b"reply"[..]));
        // A stranger on a's port is not forwarded while a is active.
        let stranger = UdpSocket::bind((LOCAL, 0)).await.unwrap();
        stranger.send_to(b"spoof", to(0)).await.unwrap();
        assert_eq!(recv(&b).await, None);
        assert!(service.stats.dropped.load(Ordering::Relaxed) >= 1);
        assert_eq!(service.stats.active.load(Ordering::SeqCst), 1);
        drop(relay);
        tokio::time::timeout(Duration::from_secs(2), async {
            while service.stats.active.load(Ordering::SeqCst) != 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the relay stops when dropped");
    }

    #[tokio::test]
    async fn peers_from_unregistered_addresses_are_ignored_and_limits_hold() {
        let service = RelayService::new(RelayConfig {
            bind: LOCAL,
            max_relays: 1,
            ..Default::default()
        });
        let registered: IpAddr = "192.0.2.7".parse().unwrap();
        let relay = service
            .allocate([registered, registered], || {})
            .await
            .unwrap();
        let a = UdpSocket::bind((LOCAL, 0)).await.unwrap();
        let b = UdpSocket::bind((LOCAL, 0)).await.unwrap();
        b.send_to(b"x", (LOCAL, relay.ports[1])).await.unwrap();
        a.send_to(b"y", (LOCAL, relay.ports[0])).await.unwrap();
        assert_eq!(recv(&b).await, None, "127.0.0.1 is not the registered peer");
        let err = service.allocate([LOCAL, LOCAL], || {}).await.unwrap_err();
        assert!(err.contains("--relay-max"), "{err}");
    }

    #[tokio::test]
    async fn an_idle_relay_frees_its_ports_and_says_so() {
        let service = RelayService::new(RelayConfig {
            bind: LOCAL,
            idle: Duration::from_millis(200),
            ..Default::default()
        });
        let (tx, rx) = tokio::sync::oneshot::channel();
        let relay = service
            .allocate([LOCAL, LOCAL], move || {
                let _ = tx.send(());
            })
            .await
            .unwrap();
        // Never used: ten times the idle time (2 s here) before it frees itself.
        tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .expect("idle callback")
            .unwrap();
        assert_eq!(service.stats.active.load(Ordering::SeqCst), 0);
        // Its port is free again.
        UdpSocket::bind((LOCAL, relay.ports[0])).await.unwrap();
    }

    #[test]
    fn bandwidth_cap_allows_a_quarter_second_burst() {
        let mut b = byte_bucket(8_000_000); // 1 MB/s, 250 kB burst
        let start = Instant::now();
        let mut sent = 0;
        while b.take(1000.0, start) {
            sent += 1000;
        }
        assert_eq!(sent, 250_000);
        assert!(b.take(1000.0, start + Duration::from_millis(2)));
    }
}
