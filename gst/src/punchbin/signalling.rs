//! The signalling task of one element: connect, register, follow the session, report health.
//!
//! Media never depends on this task once the inner element runs: when the connection drops it
//! reconnects with backoff and re-registers the same slot with the same port.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use gst::prelude::*;
use punch::client::{ClientError, Signalling, nat};
use punch::protocol::{
    ClientMessage, ErrorCode, NatReport, PeerInfo, PeerMeta, Port, Register, Role, ServerMessage,
    SrtStatus, StatusReport,
};
use tokio::time::{Instant, MissedTickBehavior, interval, sleep, sleep_until};
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::health::{self, Sample};
use super::settings::Settings;

/// Connection attempts before an element that never reached its server gives up.
const FIRST_CONNECT_ATTEMPTS: u32 = 5;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often the inner element's stats are checked for connect/disconnect.
const STATUS_POLL: Duration = Duration::from_millis(50);
/// How long one STUN probe waits (the primary, then the alternate port).
const STUN_TIMEOUT: Duration = Duration::from_millis(1000);
/// While no peer has come, the discovery is repeated this often: it keeps the NAT mapping
/// alive (UDP mappings expire after 30 s on Linux) and notices when it changed.
const REPROBE: Duration = Duration::from_secs(20);
/// How long to wait for the server's `hello` before registering without it.
const HELLO_WAIT: Duration = Duration::from_secs(1);

/// Everything the task needs, resolved when the element starts.
pub struct Config {
    target: super::settings::Target,
    role: Role,
    local_port: u16,
    local_address: String,
    latency: Option<u32>,
    label: Option<String>,
    health_interval: Duration,
    peer_timeout: Option<Duration>,
    stun: bool,
    prime_ttl: u32,
    /// The server's host, where its STUN service and relay are.
    server_host: String,
}

impl Config {
    pub fn new(settings: &Settings, role: Role) -> Result<Config, String> {
        let target = settings.target()?;
        let server_host = punch::client::server_host(&target.server)
            .ok_or_else(|| format!("server {:?} has no host", target.server))?;
        let local_port = match settings.local_port {
            0 => free_udp_port(&settings.local_address)?,
            p => p as u16,
        };
        Ok(Config {
            target,
            role,
            local_port,
            local_address: settings.local_address.clone(),
            latency: u32::try_from(settings.latency).ok(),
            label: settings.label.clone(),
            health_interval: Duration::from_millis(settings.health_interval_ms.into()),
            peer_timeout: (settings.peer_timeout_s > 0)
                .then(|| Duration::from_secs(settings.peer_timeout_s.into())),
            stun: settings.stun,
            prime_ttl: settings.prime_ttl,
            server_host,
        })
    }
}

/// A UDP port free right now; the socket is closed again because SRT must bind it itself
/// (srt-facts §1.3).
fn free_udp_port(local_address: &str) -> Result<u16, String> {
    let socket = UdpSocket::bind((local_address, 0))
        .map_err(|e| format!("cannot find a free UDP port on {local_address}: {e}"))?;
    socket
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

enum Next {
    Reconnect,
    Stop,
}

struct Task {
    shared: Arc<Shared>,
    config: Config,
    /// The stream this element registered on (from the server's `registered`).
    stream: Option<String>,
    ever_registered: bool,
    peer_deadline: Option<Instant>,
    status: Option<SrtStatus>,
    last_sample: Option<Sample>,
    /// STUN ports the server offers (from its `hello`).
    stun_ports: Option<[u16; 2]>,
    /// What STUN discovery found; kept across reconnects (the port is SRT's by then).
    nat: Option<NatReport>,
    /// The server address the STUN service answered from: where relayed media goes.
    server_ip: Option<IpAddr>,
    /// Whether a peer's coordinates were applied (discovery stops then: SRT holds the port).
    peered: bool,
    /// Whether this connection has sent its `register`.
    registration_sent: bool,
    /// The element run this task serves.
    run: u64,
}

pub async fn run(shared: Arc<Shared>, config: Config, cancel: CancellationToken, run: u64) {
    let mut task = Task {
        shared,
        config,
        stream: None,
        ever_registered: false,
        peer_deadline: None,
        status: None,
        last_sample: None,
        stun_ports: None,
        nat: None,
        server_ip: None,
        peered: false,
        registration_sent: false,
        run,
    };
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = task.main() => {}
    }
}

impl Task {
    fn bin(&self) -> Option<gst::Bin> {
        self.shared.bin()
    }

    fn error(&self, kind: gst::ResourceError, message: String) {
        // a stopped element's task must not post into the next run
        if !self.shared.is_current(self.run) {
            return;
        }
        if let Some(bin) = self.bin() {
            gst::element_error!(bin, kind, ("{message}"));
        }
    }

    fn open_error(&self) -> gst::ResourceError {
        match self.config.role {
            Role::Sender => gst::ResourceError::OpenWrite,
            Role::Receiver => gst::ResourceError::OpenRead,
        }
    }

    async fn main(&mut self) {
        let t = self.config.target.clone();
        let mut attempts = 0;
        let mut backoff = BACKOFF_START;
        loop {
            match Signalling::connect(&t.server, &t.session, &t.token, CONNECT_TIMEOUT).await {
                Ok(sig) => {
                    attempts = 0;
                    backoff = BACKOFF_START;
                    match self.session(sig).await {
                        Next::Stop => return,
                        Next::Reconnect => {}
                    }
                }
                Err(e) => {
                    if e.is_permanent() {
                        let kind = match &e {
                            ClientError::Refused {
                                status: 401 | 403, ..
                            } => gst::ResourceError::NotAuthorized,
                            ClientError::Refused {
                                status: 404 | 410, ..
                            } => gst::ResourceError::NotFound,
                            _ => gst::ResourceError::Settings,
                        };
                        self.error(kind, format!("Punch session {}: {e}", t.session));
                        return;
                    }
                    attempts += 1;
                    if !self.ever_registered && attempts >= FIRST_CONNECT_ATTEMPTS {
                        self.error(
                            self.open_error(),
                            format!("{e} (gave up after {attempts} attempts)"),
                        );
                        return;
                    }
                    gst::info!(self.shared.cat, "signalling: {e}; retrying in {backoff:?}");
                }
            }
            sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    fn register_message(&self) -> ClientMessage {
        ClientMessage::Register(Register {
            stream: self.stream.clone().or(self.config.target.stream.clone()),
            port: Port(self.config.local_port),
            role: self.config.role,
            meta: PeerMeta {
                label: self.config.label.clone(),
                ..Default::default()
            },
            nat: self.nat.clone(),
            reports: true,
        })
    }

    /// STUN discovery from the SRT port, while SRT does not hold it. `true` when the result
    /// differs from what was registered.
    async fn discover(&mut self) -> bool {
        let Some([stun_port, _]) = self.stun_ports.filter(|_| self.config.stun) else {
            return false;
        };
        if self.peered || self.shared.inner_running() {
            return false;
        }
        let local = match self.config.local_address.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, self.config.local_port),
            Err(_) => return false,
        };
        let Some(server) = self.server_address(stun_port).await else {
            gst::warning!(
                self.shared.cat,
                "cannot resolve {} (as an address of the local-address family) for STUN",
                self.config.server_host
            );
            return false;
        };
        match nat::discover(local, server, STUN_TIMEOUT).await {
            Ok(found) => {
                let report = found.report();
                gst::info!(
                    self.shared.cat,
                    "STUN: local port {} is {} in public, mapping {}",
                    self.config.local_port,
                    found.mapped,
                    found.mapping().as_str()
                );
                self.server_ip = Some(found.server.ip());
                let changed = self.nat.as_ref() != Some(&report);
                self.nat = Some(report);
                changed
            }
            Err(e) => {
                // Not fatal: without it the server uses the declared port, which works behind
                // port-preserving NATs, and falls back to its relay otherwise.
                gst::warning!(self.shared.cat, "STUN discovery failed: {e}");
                false
            }
        }
    }

    /// The server's address for UDP `port`, of the family SRT binds (`local-address`), within
    /// a bounded time.
    async fn server_address(&self, port: u16) -> Option<SocketAddr> {
        let v4 = self
            .config
            .local_address
            .parse::<IpAddr>()
            .map(|ip| ip.is_ipv4())
            .unwrap_or(true);
        let lookup = tokio::net::lookup_host((self.config.server_host.as_str(), port));
        tokio::time::timeout(CONNECT_TIMEOUT, lookup)
            .await
            .ok()?
            .ok()?
            .find(|a| a.is_ipv4() == v4)
    }

    /// Where `peer` is reached: relayed coordinates point at the server's own address. `None`
    /// when that cannot be known (the coordinates are then not applied; the next ones may be).
    async fn resolve_peer(&mut self, mut peer: PeerInfo) -> Option<PeerInfo> {
        if peer.relay {
            let ip = match self.server_ip {
                Some(ip) => Some(ip),
                None => self.server_address(peer.port).await.map(|a| a.ip()),
            };
            let Some(ip) = ip else {
                gst::warning!(
                    self.shared.cat,
                    "relayed coordinates, but {} does not resolve to an address SRT can reach",
                    self.config.server_host
                );
                return None;
            };
            peer.ip = ip.to_string();
        } else if peer.ip.parse::<IpAddr>().is_err() {
            gst::warning!(
                self.shared.cat,
                "ignoring peer coordinates with a non-IP address {:?}",
                peer.ip
            );
            return None;
        } else if self.config.prime_ttl > 0
            && !self.shared.inner_running()
            && let Ok(ip) = peer.ip.parse::<IpAddr>()
            && let Ok(local) = self.config.local_address.parse::<IpAddr>()
        {
            let to = SocketAddr::new(ip, peer.port);
            if let Err(e) = nat::prime(
                SocketAddr::new(local, self.config.local_port),
                to,
                self.config.prime_ttl,
                nat::PRIME_COUNT,
                nat::PRIME_GAP,
            )
            .await
            {
                gst::info!(self.shared.cat, "priming towards {to} failed: {e}");
            }
        }
        Some(peer)
    }

    /// One signalling connection, until it drops or the element must stop.
    async fn session(&mut self, mut sig: Signalling) -> Next {
        // Registration follows the server's `hello` (it says where STUN is); a server that sends
        // none (an older one) gets the registration after a second anyway.
        self.registration_sent = false;
        let hello_wait = sleep(HELLO_WAIT);
        tokio::pin!(hello_wait);
        let mut reprobe = interval(REPROBE);
        reprobe.set_missed_tick_behavior(MissedTickBehavior::Delay);
        reprobe.tick().await;
        let mut status_tick = interval(STATUS_POLL);
        status_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut health_tick = interval(self.config.health_interval);
        health_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        health_tick.tick().await;
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        loop {
            let deadline = self.peer_deadline.unwrap_or(far);
            tokio::select! {
                msg = sig.recv() => match msg {
                    Ok(Some(m)) => {
                        if let Some(next) = self.server_message(&mut sig, m).await {
                            if matches!(next, Next::Stop) {
                                sig.close().await;
                            }
                            return next;
                        }
                    }
                    Ok(None) | Err(_) => {
                        gst::info!(self.shared.cat, "signalling connection lost; media continues, reconnecting");
                        return Next::Reconnect;
                    }
                },
                _ = status_tick.tick() => {
                    if let Some(status) = self.poll_status()
                        && sig.send(&ClientMessage::Status(StatusReport { srt: status })).await.is_err()
                    {
                        return Next::Reconnect;
                    }
                }
                _ = &mut hello_wait, if !self.registration_sent => {
                    self.registration_sent = true;
                    if sig.send(&self.register_message()).await.is_err() {
                        return Next::Reconnect;
                    }
                }
                _ = reprobe.tick() => {
                    if self.discover().await
                        && sig.send(&self.register_message()).await.is_err()
                    {
                        return Next::Reconnect;
                    }
                }
                _ = health_tick.tick() => {
                    if let Some(health) = self.health()
                        && sig.send(&ClientMessage::Health(health)).await.is_err()
                    {
                        return Next::Reconnect;
                    }
                }
                _ = sleep_until(deadline) => {
                    let t = self.config.peer_timeout.unwrap_or_default();
                    self.error(
                        self.open_error(),
                        format!(
                            "No peer joined stream {} of session {} within {} s (peer-timeout)",
                            self.stream.as_deref().unwrap_or("?"),
                            self.config.target.session,
                            t.as_secs()
                        ),
                    );
                    sig.close().await;
                    return Next::Stop;
                }
            }
        }
    }

    /// Handles one server message; `Some` ends this connection.
    async fn server_message(&mut self, sig: &mut Signalling, msg: ServerMessage) -> Option<Next> {
        match msg {
            ServerMessage::Hello(hello) => {
                self.stun_ports = hello.stun;
                if self.nat.is_none() {
                    self.discover().await;
                }
                self.registration_sent = true;
                if sig.send(&self.register_message()).await.is_err() {
                    return Some(Next::Reconnect);
                }
            }
            ServerMessage::View(_) | ServerMessage::Unknown => {}
            ServerMessage::Registered(r) => {
                gst::info!(
                    self.shared.cat,
                    "registered as {} of stream {}, public address {}:{}",
                    r.role,
                    r.stream,
                    r.you.ip,
                    r.you.port
                );
                self.stream = Some(r.stream);
                if !self.ever_registered {
                    self.ever_registered = true;
                    self.peer_deadline = self.config.peer_timeout.map(|t| Instant::now() + t);
                }
                // The server forgets SRT status across reconnects and restarts: tell it again.
                if let Some(status) = self.status
                    && sig
                        .send(&ClientMessage::Status(StatusReport { srt: status }))
                        .await
                        .is_err()
                {
                    return Some(Next::Reconnect);
                }
            }
            ServerMessage::Peer(p) => {
                if self.stream.as_deref() == Some(p.stream.as_str()) {
                    self.peer_deadline = None;
                    let p = self.resolve_peer(p).await?;
                    self.peered = true;
                    let latency = self.config.latency.unwrap_or(p.latency);
                    let uri = Shared::srt_uri(
                        &p,
                        &self.config.local_address,
                        self.config.local_port,
                        latency,
                    );
                    self.shared.apply_peer(self.run, p, uri);
                }
            }
            ServerMessage::Tally(t) => {
                if self.stream.as_deref() == Some(t.stream.as_str()) {
                    self.shared.set_tally(&t.stream, t.state);
                }
            }
            ServerMessage::Session(update) => {
                let mine = self.stream.clone().or(self.config.target.stream.clone());
                let stream_state = mine
                    .as_deref()
                    .and_then(|m| update.streams.iter().find(|s| s.name == m))
                    .or(update.streams.first())
                    .map(|s| s.state);
                if let Some(state) = stream_state {
                    self.shared.set_stream_state(state);
                }
                let streams: Vec<String> = update
                    .streams
                    .iter()
                    .map(|s| format!("{}={}", s.name, s.state))
                    .collect();
                self.shared.post(
                    gst::Structure::builder("punch-session")
                        .field("session", self.config.target.session.as_str())
                        .field("state", update.state.as_str())
                        .field(
                            "stream-state",
                            stream_state.map(|s| s.as_str()).unwrap_or(""),
                        )
                        .field("connected", update.connected as u32)
                        .field("total", update.total as u32)
                        .field("streams", streams.join(","))
                        .build(),
                );
            }
            ServerMessage::Error(e) => {
                let session = &self.config.target.session;
                match e.code {
                    ErrorCode::Forbidden => self.error(
                        gst::ResourceError::NotAuthorized,
                        format!("Punch session {session}: {}", e.message),
                    ),
                    ErrorCode::UnknownStream => self.error(
                        gst::ResourceError::NotFound,
                        format!("Punch session {session}: {}", e.message),
                    ),
                    // A slot still held by our own previous connection frees itself once the
                    // server notices it is gone; a first registration conflicts with someone else.
                    ErrorCode::SlotTaken if self.ever_registered => {
                        gst::info!(self.shared.cat, "slot still held ({}); retrying", e.message);
                        sleep(Duration::from_secs(1)).await;
                        return Some(Next::Reconnect);
                    }
                    ErrorCode::SlotTaken => self.error(
                        gst::ResourceError::Busy,
                        format!("Punch session {session}: {}", e.message),
                    ),
                    _ => {
                        gst::warning!(self.shared.cat, "server reported {}: {}", e.code, e.message);
                        return None;
                    }
                }
                return Some(Next::Stop);
            }
            ServerMessage::Closed(c) => {
                self.shared
                    .set_stream_state(punch::protocol::SessionState::Closed);
                self.error(
                    gst::ResourceError::NotFound,
                    format!(
                        "Punch session {} was closed ({})",
                        self.config.target.session, c.reason
                    ),
                );
                return Some(Next::Stop);
            }
        }
        None
    }

    /// The SRT status, when it changed since the last poll.
    fn poll_status(&mut self) -> Option<SrtStatus> {
        if !self.shared.inner_running() {
            return None;
        }
        let stats = self.shared.stats()?;
        let now = if health::is_connected(&stats) {
            SrtStatus::Connected
        } else if self.status == Some(SrtStatus::Connected) {
            SrtStatus::Disconnected
        } else {
            SrtStatus::Connecting
        };
        if self.status == Some(now) {
            return None;
        }
        gst::info!(self.shared.cat, "SRT {now:?}");
        self.status = Some(now);
        Some(now)
    }

    /// Samples the stats, posts `punch-health`, returns the report for the server.
    fn health(&mut self) -> Option<punch::protocol::Health> {
        if !self.shared.inner_running() {
            return None;
        }
        let stats = self.shared.stats()?;
        let sample = Sample::take(&stats, self.config.role);
        let prev = self.last_sample.replace(sample)?;
        let report = health::report(&prev, &sample, &stats, self.config.role);
        let stream = self.stream.clone().unwrap_or_default();
        self.shared
            .post(report.structure(&stream, self.config.role));
        if let Some(bin) = self.bin() {
            bin.notify("stats");
        }
        report.connected.then(|| report.to_protocol())
    }
}
