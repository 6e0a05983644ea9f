//! The UDP relay for streams that cannot be punched (symmetric NATs, or no direct connection in
//! time). One relay per stream owns two UDP ports: the sender is told to rendezvous with the
//! first, the receiver with the second, and every datagram from one side is sent on to the
//! other. SRT encryption stays end to end: the relay forwards ciphertext.
//!
//! Who gets through is decided per side in `gate.rs`: a Punch peer's port locks onto its
//! registered IP and moves only with a packet of the relayed connection; a caller device's port
//! (a camera that calls the server) locks onto the caller whose handshake carries the side's
//! stream ID. Strangers are dropped and counted. The forwarding loop is `forward.rs`.
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

pub mod forward;
mod gate;

use forward::Forwarder;
pub use gate::Admission;
use gate::Gate;

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
    /// How long a relay between two Punch peers waits for both to send ([`HEARD_WAIT`]).
    pub heard_wait: Duration,
    /// Datagrams taken or sent per system call, 1 to [`forward::BATCH`] (1: one call per
    /// datagram, as before batching; kept for the benchmark's comparison).
    pub batch: usize,
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
            heard_wait: HEARD_WAIT,
            batch: forward::BATCH,
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

/// What a relay is for.
#[derive(Debug, Clone, PartialEq)]
pub struct RelaySpec {
    /// The session it counts against.
    pub session: String,
    /// Who may use each side, `[sender, receiver]`.
    pub sides: [Admission; 2],
    /// The port each side binds (0: any free one). A caller device's is the one typed into
    /// it, kept across relays and restarts.
    pub ports: [u16; 2],
    /// Whether it frees itself after the idle time without traffic: not a caller device's
    /// relay, which waits for its device for as long as the stream exists.
    pub idles: bool,
    /// Whether it reports a side it never heard from ([`RelayEvent::Unheard`]): for two Punch
    /// peers over UDP that report their links (a third-party tool's side may be slow to
    /// start, and a tunnelled side has nowhere further to go).
    pub check_heard: bool,
    /// The client addresses it counts against (`--relay-per-ip`).
    pub clients: Vec<IpAddr>,
}

impl RelaySpec {
    /// A relay between two Punch peers registered from `ips` (`[sender, receiver]`), that
    /// frees itself when idle.
    pub fn peers(session: &str, ips: [IpAddr; 2]) -> Self {
        RelaySpec {
            session: session.to_string(),
            sides: ips.map(|ip| Admission::Peer(Some(ip))),
            ports: [0, 0],
            idles: true,
            check_heard: false,
            clients: ips.to_vec(),
        }
    }
}

/// How long a relay between two Punch peers waits for both to send before it says which it
/// never heard from (that side's UDP to the relay is blocked: it moves to its tunnel).
pub const HEARD_WAIT: Duration = Duration::from_secs(10);

/// What a relay tells its session by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEvent {
    /// It freed itself for lack of traffic; whether it had carried anything before.
    Idle { carried: bool },
    /// [`HEARD_WAIT`] after its start these sides (`[sender, receiver]`) had sent nothing:
    /// one of them while the other had, or both (the relay's ports are out of their reach).
    Unheard { sides: [bool; 2] },
}

/// A running relay; dropping it stops forwarding and frees its ports.
#[derive(Debug)]
pub struct Relay {
    /// `[sender's port, receiver's port]`.
    pub ports: [u16; 2],
    stop: CancellationToken,
    /// Who may use each Punch peer side, changed when it registers again, leaves or moves to
    /// its tunnel.
    peers: watch::Sender<[Admission; 2]>,
}

impl Relay {
    /// The Punch peer of `side` (0 sender, 1 receiver) is now where `admission` says
    /// (`Peer(None)`: it left).
    pub fn set_peer(&self, side: usize, admission: Admission) {
        self.peers
            .send_if_modified(|p| std::mem::replace(&mut p[side], admission.clone()) != admission);
    }
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

    /// Starts a relay as `spec` says. `on_event` hears what the relay finds by itself (it
    /// freed itself for lack of traffic; a side never sent).
    pub async fn allocate(
        &self,
        spec: RelaySpec,
        on_event: impl Fn(RelayEvent) + Send + 'static,
    ) -> Result<Relay, Refusal> {
        let mut keys: Vec<IpAddr> = spec.clients.iter().map(|ip| client_key(*ip)).collect();
        keys.sort();
        keys.dedup();
        let owner = Owner {
            session: spec.session.clone(),
            keys,
        };
        self.admit(&owner)?;
        let release = Release {
            owner,
            holders: self.holders.clone(),
            stats: self.stats.clone(),
            freed: self.freed.clone(),
        };
        let sockets = match (
            self.bind(spec.ports[0]).await,
            self.bind(spec.ports[1]).await,
        ) {
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
        let (peers, peers_rx) = watch::channel(spec.sides.clone());
        let v6 = [
            sockets[0].local_addr().is_ok_and(|a| a.is_ipv6()),
            sockets[1].local_addr().is_ok_and(|a| a.is_ipv6()),
        ];
        let forwarder = Forwarder {
            v6,
            sockets,
            gates: spec.sides.clone().map(Gate::new),
            peers: peers_rx,
            last_heard: Instant::now(),
            carried: false,
            bucket: byte_bucket(self.config.max_bitrate),
            total: self.total.clone(),
            stats: self.stats.clone(),
            idle: spec.idles.then_some(self.config.idle),
            heard_by: spec
                .check_heard
                .then(|| Instant::now() + self.config.heard_wait),
            batch: self.config.batch.clamp(1, forward::BATCH),
        };
        tokio::spawn(forwarder.run(stop.clone(), on_event, release));
        tracing::info!(session = spec.session, ?ports, sides = ?spec.sides.map(|s| match s {
            Admission::Peer(ip) => format!("peer {ip:?}"),
            Admission::Tunnel(at) => format!("tunnel {at:?}"),
            Admission::Caller { stream_id } => format!("caller device (stream ID {})", if stream_id.is_some() { "checked" } else { "not checked" }),
        }), "relay started");
        Ok(Relay { ports, stop, peers })
    }

    /// A socket on `port` of the relay address (0: the next free one of `--relay-ports`, or
    /// any).
    async fn bind(&self, port: u16) -> Result<UdpSocket, String> {
        if port != 0 {
            // The relay this one replaces lets go of the port as its task ends: moments.
            let mut tries = 0;
            loop {
                match UdpSocket::bind(SocketAddr::new(self.config.bind, port)).await {
                    Ok(s) => return Ok(s),
                    Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 20 => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => {
                        return Err(format!(
                            "cannot open relay port {port} (the one its device calls) again: {e}; to move the device to another port, set the side to a Punch peer and back to a caller device (the device then needs the new port and stream ID)"
                        ));
                    }
                }
            }
        }
        self.bind_any().await
    }

    async fn bind_any(&self) -> Result<UdpSocket, String> {
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

#[cfg(test)]
mod tests;
