//! The UDP relay for streams that cannot be punched (symmetric NATs, or no direct connection in
//! time). One relay per stream owns two UDP ports: the sender is told to rendezvous with the
//! first, the receiver with the second, and every datagram from one side is sent on to the
//! other. SRT encryption stays end to end: the relay forwards ciphertext.
//!
//! Who gets through: each port locks onto the first datagram from its peer's registered
//! public IP. From then on another address is taken for that side only if its datagram belongs
//! to the SRT connection being relayed (its destination socket ID is the other side's, learnt
//! from that side's handshake): a stranger on the same IP (CGNAT, venue Wi-Fi) is dropped and
//! counted, whatever it sends and however long the real side is quiet.
//!
//! Bounded: relays server-wide, per session and per client address; a bandwidth cap per relay and
//! for all relays; a relay that forwarded nothing for the idle time frees its ports, and the
//! session stops a relay whose both sides have left. When capacity frees, sessions waiting for
//! it are told ([`RelayService::freed`]). Forwarding reuses one buffer per relay.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::limit::{TokenBucket, client_key};
use crate::protocol::srt_packet;

/// Relay settings (`punch serve --relay-*`).
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Most streams relayed at once.
    pub max_relays: usize,
    /// Most streams of one session relayed at once.
    pub per_session: usize,
    /// Most relayed streams with a side at one client address (IPv6: one /64).
    pub per_ip: usize,
    /// Bandwidth cap per relayed stream, bit/s (both directions together).
    pub max_bitrate: u64,
    /// Bandwidth cap for all relays together, bit/s.
    pub max_total_bitrate: u64,
    /// A relay that forwarded nothing for this long (since its start or its last datagram)
    /// frees its ports.
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
            per_session: 16,
            per_ip: 16,
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
    /// Of those, datagrams from addresses that were not (or no longer) a side's.
    pub strangers: AtomicU64,
}

/// Why no relay was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// A limit that frees itself when other relays end (the stream may wait for it), as
    /// opposed to a configuration that will not change (no port range left).
    pub capacity: bool,
    pub message: String,
}

/// A bandwidth cap in bit/s as a token bucket over bytes, with a quarter second of burst.
fn byte_bucket(bits_per_second: u64) -> TokenBucket {
    let rate = bits_per_second as f64 / 8.0;
    TokenBucket::new(rate, rate / 4.0)
}

/// Who holds the relays, for the per-session and per-address limits.
#[derive(Debug, Default)]
struct Holders {
    per_session: HashMap<String, usize>,
    per_ip: HashMap<IpAddr, usize>,
}

/// What one relay counts against.
#[derive(Debug, Clone)]
struct Owner {
    session: String,
    /// The sides' client keys (one if both sides are at one address).
    keys: Vec<IpAddr>,
}

/// Allocates relays within the server-wide limits.
#[derive(Debug)]
pub struct RelayService {
    config: RelayConfig,
    pub stats: Arc<RelayStats>,
    total: Arc<Mutex<TokenBucket>>,
    next_port: Mutex<u16>,
    holders: Arc<Mutex<Holders>>,
    /// Bumped whenever a relay ends.
    freed: Arc<watch::Sender<u64>>,
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
            holders: Arc::default(),
            freed: Arc::new(watch::channel(0).0),
        }
    }

    /// Changes whenever a relay ends, so that streams waiting for capacity try again.
    pub fn freed(&self) -> watch::Receiver<u64> {
        self.freed.subscribe()
    }

    /// Counts a new relay against every limit, or says which is reached.
    fn admit(&self, owner: &Owner) -> Result<(), Refusal> {
        let refuse = |message: String| Refusal {
            capacity: true,
            message,
        };
        let mut h = self.holders.lock().unwrap_or_else(|e| e.into_inner());
        let active = self.stats.active.load(Ordering::SeqCst);
        if active >= self.config.max_relays {
            return Err(refuse(format!(
                "the server already relays {active} streams (--relay-max {})",
                self.config.max_relays
            )));
        }
        let of_session = h.per_session.get(&owner.session).copied().unwrap_or(0);
        if of_session >= self.config.per_session {
            return Err(refuse(format!(
                "session {} already has {of_session} relayed streams (--relay-per-session {})",
                owner.session, self.config.per_session
            )));
        }
        for key in &owner.keys {
            let of_ip = h.per_ip.get(key).copied().unwrap_or(0);
            if of_ip >= self.config.per_ip {
                return Err(refuse(format!(
                    "{key} already has a side in {of_ip} relayed streams (--relay-per-ip {})",
                    self.config.per_ip
                )));
            }
        }
        self.stats.active.fetch_add(1, Ordering::SeqCst);
        *h.per_session.entry(owner.session.clone()).or_default() += 1;
        for key in &owner.keys {
            *h.per_ip.entry(*key).or_default() += 1;
        }
        Ok(())
    }

    /// Starts a relay for a stream of `session` between a sender at `peer_ips[0]` and a receiver
    /// at `peer_ips[1]`. `on_idle` runs if the relay frees itself for lack of traffic, told
    /// whether it had carried anything before.
    pub async fn allocate(
        &self,
        session: &str,
        peer_ips: [IpAddr; 2],
        on_idle: impl FnOnce(bool) + Send + 'static,
    ) -> Result<Relay, Refusal> {
        let mut keys = vec![client_key(peer_ips[0]), client_key(peer_ips[1])];
        keys.dedup();
        let owner = Owner {
            session: session.to_string(),
            keys,
        };
        self.admit(&owner)?;
        let release = Release {
            owner,
            holders: self.holders.clone(),
            stats: self.stats.clone(),
            freed: self.freed.clone(),
        };
        let sockets = match (self.bind().await, self.bind().await) {
            (Ok(a), Ok(b)) => [a, b],
            (Err(e), _) | (_, Err(e)) => {
                drop(release);
                return Err(Refusal {
                    capacity: false,
                    message: e,
                });
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
            socket_ids: [None, None],
            last_heard: Instant::now(),
            carried: false,
            bucket: byte_bucket(self.config.max_bitrate),
            total: self.total.clone(),
            stats: self.stats.clone(),
            idle: self.config.idle,
        };
        tokio::spawn(forwarder.run(stop.clone(), on_idle, release));
        tracing::info!(session, ?ports, ?peer_ips, "relay started");
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

fn decrement<K: Eq + std::hash::Hash>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

/// Takes a relay off the counts when its forwarder ends, and tells the waiting.
struct Release {
    owner: Owner,
    holders: Arc<Mutex<Holders>>,
    stats: Arc<RelayStats>,
    freed: Arc<watch::Sender<u64>>,
}

impl Drop for Release {
    fn drop(&mut self) {
        {
            let mut h = self.holders.lock().unwrap_or_else(|e| e.into_inner());
            decrement(&mut h.per_session, &self.owner.session);
            for key in &self.owner.keys {
                decrement(&mut h.per_ip, key);
            }
            self.stats.active.fetch_sub(1, Ordering::SeqCst);
        }
        self.freed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

struct Forwarder {
    /// `[sender side, receiver side]`.
    sockets: [UdpSocket; 2],
    /// Each side's registered public IP: the only one a port first locks onto.
    peer_ips: [IpAddr; 2],
    /// Each side's current address.
    learned: [Option<SocketAddr>; 2],
    /// Each side's own SRT socket ID, from its handshakes: what the other side's packets are
    /// addressed to.
    socket_ids: [Option<u32>; 2],
    /// When anything was last forwarded (or the relay started).
    last_heard: Instant,
    /// Whether anything was ever forwarded.
    carried: bool,
    bucket: TokenBucket,
    total: Arc<Mutex<TokenBucket>>,
    stats: Arc<RelayStats>,
    idle: Duration,
}

impl Forwarder {
    async fn run(mut self, stop: CancellationToken, on_idle: impl FnOnce(bool), release: Release) {
        let mut buf = [0u8; 2048];
        // Idleness is checked now and then, not with a timer re-armed per datagram.
        let mut idle_check = tokio::time::interval((self.idle / 4).min(Duration::from_secs(1)));
        idle_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let idled = loop {
            let side = tokio::select! {
                _ = stop.cancelled() => break false,
                _ = idle_check.tick() => {
                    if self.last_heard.elapsed() >= self.idle {
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
        drop(self.sockets);
        drop(release);
        if idled {
            on_idle(self.carried);
        }
    }

    /// Whether a datagram from `from` is side `side`'s; learns its address if so.
    fn admit(&mut self, side: usize, datagram: &[u8], from: SocketAddr) -> bool {
        if self.learned[side] == Some(from) {
            return true;
        }
        if from.ip() != self.peer_ips[side] {
            return false;
        }
        let belongs = match self.learned[side] {
            // The first datagram from the registered IP locks the port.
            None => true,
            // Another port of that IP: only a packet of the connection being relayed, addressed
            // to the other side's socket (a side whose NAT mapping changed mid-stream).
            Some(_) => {
                let other = self.socket_ids[1 - side];
                other.is_some() && srt_packet::destination(datagram) == other
            }
        };
        if belongs {
            tracing::info!(side, %from, "relay learnt a peer address");
            self.learned[side] = Some(from);
        }
        belongs
    }

    fn forward(&mut self, side: usize, datagram: &[u8], from: SocketAddr) {
        let now = Instant::now();
        // (On a dual-stack socket IPv4 peers arrive as ::ffff:a.b.c.d.)
        let from = SocketAddr::new(from.ip().to_canonical(), from.port());
        if !self.admit(side, datagram, from) {
            self.stats.strangers.fetch_add(1, Ordering::Relaxed);
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Some(hs) = srt_packet::handshake(datagram) {
            self.socket_ids[side] = Some(hs.socket_id);
        }
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
            self.last_heard = now;
            self.carried = true;
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
    use crate::protocol::srt_packet::tests::{data_packet, handshake_packet};

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    async fn recv(s: &UdpSocket) -> Option<Vec<u8>> {
        let mut buf = [0u8; 128];
        let (n, _) = tokio::time::timeout(Duration::from_millis(500), s.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some(buf[..n].to_vec())
    }

    fn local_service(config: RelayConfig) -> RelayService {
        RelayService::new(RelayConfig {
            bind: LOCAL,
            ..config
        })
    }

    /// Sends `datagram` from `from` until `to` receives one that `pred` accepts.
    async fn deliver(
        from: &UdpSocket,
        port: u16,
        datagram: &[u8],
        to: &UdpSocket,
        pred: impl Fn(&[u8]) -> bool,
    ) -> bool {
        for _ in 0..10 {
            from.send_to(datagram, (LOCAL, port)).await.unwrap();
            while let Some(got) = recv(to).await {
                if pred(&got) {
                    return true;
                }
            }
        }
        false
    }

    #[tokio::test]
    async fn forwards_between_the_two_peers_only() {
        let service = local_service(RelayConfig::default());
        let relay = service.allocate("s", [LOCAL, LOCAL], |_| {}).await.unwrap();
        let a = UdpSocket::bind((LOCAL, 0)).await.unwrap();
        let b = UdpSocket::bind((LOCAL, 0)).await.unwrap();
        // Until b has made itself known, a's datagrams have nowhere to go; like SRT's
        // handshake, a repeats until one arrives.
        b.send_to(b"hello from b", (LOCAL, relay.ports[1]))
            .await
            .unwrap();
        assert!(
            deliver(&a, relay.ports[0], b"hello from a", &b, |d| d
                == b"hello from a")
            .await
        );
        assert!(deliver(&b, relay.ports[1], b"reply", &a, |d| d == b"reply").await);
        // A stranger on a's port is not forwarded while a is active.
        let stranger = UdpSocket::bind((LOCAL, 0)).await.unwrap();
        stranger
            .send_to(b"spoof", (LOCAL, relay.ports[0]))
            .await
            .unwrap();
        assert_eq!(recv(&b).await, None);
        assert!(service.stats.strangers.load(Ordering::Relaxed) >= 1);
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

    /// The review's takeover: the real sender pauses, a stranger on the same IP sends. Only a
    /// packet of the relayed SRT connection may move a side to a new port.
    #[tokio::test]
    async fn a_stranger_on_the_same_ip_cannot_take_a_side_over() {
        let service = local_service(RelayConfig::default());
        let relay = service.allocate("s", [LOCAL, LOCAL], |_| {}).await.unwrap();
        let (a, b) = (
            UdpSocket::bind((LOCAL, 0)).await.unwrap(),
            UdpSocket::bind((LOCAL, 0)).await.unwrap(),
        );
        let (a_id, b_id) = (0x0a0a_0a0a_u32, 0x0b0b_0b0b_u32);
        // Both sides handshake through the relay: it learns their socket IDs.
        b.send_to(&handshake_packet(0, b_id, 0), (LOCAL, relay.ports[1]))
            .await
            .unwrap();
        let hs_a = handshake_packet(0, a_id, 0);
        assert!(deliver(&a, relay.ports[0], &hs_a, &b, |d| d == hs_a.as_slice()).await);
        let hs_b = handshake_packet(a_id, b_id, -1);
        assert!(deliver(&b, relay.ports[1], &hs_b, &a, |d| d == hs_b.as_slice()).await);

        // The real sender goes quiet longer than any re-learning grace; a stranger on its IP
        // sends handshakes and data addressed to nobody in particular.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let stranger = UdpSocket::bind((LOCAL, 0)).await.unwrap();
        let before = service.stats.strangers.load(Ordering::Relaxed);
        for datagram in [
            handshake_packet(0, 0x5555_5555, 1),
            data_packet(0x1234_5678, b"hijack"),
        ] {
            stranger
                .send_to(&datagram, (LOCAL, relay.ports[0]))
                .await
                .unwrap();
        }
        assert_eq!(
            recv(&b).await,
            None,
            "the stranger's datagrams reach nobody"
        );
        assert_eq!(service.stats.strangers.load(Ordering::Relaxed), before + 2);
        // The receiver's answers still go to the real sender, not the stranger.
        let to_a = data_packet(a_id, b"ack");
        assert!(deliver(&b, relay.ports[1], &to_a, &a, |d| d == to_a.as_slice()).await);
        assert_eq!(recv(&stranger).await, None);

        // The real sender's NAT moves it to a new port mid-stream: its data is addressed to the
        // receiver's socket, so the relay follows it.
        let moved = UdpSocket::bind((LOCAL, 0)).await.unwrap();
        let media = data_packet(b_id, b"media");
        assert!(
            deliver(&moved, relay.ports[0], &media, &b, |d| d
                == media.as_slice())
            .await
        );
        let back = data_packet(a_id, b"back");
        assert!(deliver(&b, relay.ports[1], &back, &moved, |d| d == back.as_slice()).await);
    }

    #[tokio::test]
    async fn peers_from_unregistered_addresses_are_ignored_and_limits_hold() {
        let service = local_service(RelayConfig {
            max_relays: 1,
            ..Default::default()
        });
        let registered: IpAddr = "192.0.2.7".parse().unwrap();
        let relay = service
            .allocate("s", [registered, registered], |_| {})
            .await
            .unwrap();
        let a = UdpSocket::bind((LOCAL, 0)).await.unwrap();
        let b = UdpSocket::bind((LOCAL, 0)).await.unwrap();
        b.send_to(b"x", (LOCAL, relay.ports[1])).await.unwrap();
        a.send_to(b"y", (LOCAL, relay.ports[0])).await.unwrap();
        assert_eq!(recv(&b).await, None, "127.0.0.1 is not the registered peer");
        let err = service
            .allocate("t", [LOCAL, LOCAL], |_| {})
            .await
            .unwrap_err();
        assert!(
            err.capacity && err.message.contains("--relay-max"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn relays_are_bounded_per_session_and_per_client_address_and_capacity_is_announced() {
        let service = local_service(RelayConfig {
            per_session: 2,
            per_ip: 3,
            ..Default::default()
        });
        let mut freed = service.freed();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let one = service
            .allocate("a", [ip("192.0.2.1"), ip("198.51.100.1")], |_| {})
            .await
            .unwrap();
        let _two = service
            .allocate("a", [ip("192.0.2.1"), ip("198.51.100.2")], |_| {})
            .await
            .unwrap();
        let e = service
            .allocate("a", [ip("192.0.2.9"), ip("198.51.100.9")], |_| {})
            .await
            .unwrap_err();
        assert!(
            e.capacity && e.message.contains("--relay-per-session"),
            "{e:?}"
        );
        let _three = service
            .allocate("b", [ip("192.0.2.1"), ip("198.51.100.3")], |_| {})
            .await
            .unwrap();
        // 192.0.2.1 has a side in three relays; IPv6 addresses of one /64 count as one client.
        let e = service
            .allocate("c", [ip("192.0.2.1"), ip("198.51.100.4")], |_| {})
            .await
            .unwrap_err();
        assert!(
            e.message.contains("192.0.2.1") && e.message.contains("--relay-per-ip"),
            "{e:?}"
        );
        for n in 1..=3 {
            service
                .allocate(
                    &format!("v6-{n}"),
                    [ip(&format!("2001:db8::{n}")), ip("192.0.2.50")],
                    |_| {},
                )
                .await
                .map(std::mem::forget)
                .unwrap_or_else(|e| panic!("{n}: {e:?}"));
        }
        let e = service
            .allocate("v6-4", [ip("2001:db8::ffff"), ip("192.0.2.51")], |_| {})
            .await
            .unwrap_err();
        assert!(e.message.contains("2001:db8::"), "{e:?}");
        // A relay that ends frees its place and says so.
        drop(one);
        tokio::time::timeout(Duration::from_secs(2), freed.changed())
            .await
            .expect("capacity freed is announced")
            .unwrap();
        service
            .allocate("a", [ip("192.0.2.9"), ip("198.51.100.9")], |_| {})
            .await
            .expect("the session has room again");
    }

    #[tokio::test]
    async fn a_relay_that_carries_nothing_is_freed_after_the_idle_time() {
        let service = local_service(RelayConfig {
            idle: Duration::from_millis(400),
            ..Default::default()
        });
        let (tx, rx) = tokio::sync::oneshot::channel();
        let started = Instant::now();
        let relay = service
            .allocate("s", [LOCAL, LOCAL], move |carried| {
                let _ = tx.send(carried);
            })
            .await
            .unwrap();
        // One side alone sending handshakes carries nothing: the idle time counts all the same.
        let a = UdpSocket::bind((LOCAL, 0)).await.unwrap();
        for _ in 0..3 {
            a.send_to(&handshake_packet(0, 1, 0), (LOCAL, relay.ports[0]))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let carried = tokio::time::timeout(Duration::from_secs(3), rx)
            .await
            .expect("idle callback")
            .unwrap();
        assert!(!carried, "nothing reached the other side");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_millis(1500),
            "freed after {took:?}"
        );
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
