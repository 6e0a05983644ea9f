//! The peer state machine: what one side of a stream does with its signalling connection,
//! without sockets or timers of its own. Every input (a connection opened or lost, a server
//! message, a STUN result, the SRT link going up or down, the time) returns [`Action`]s for the
//! driver to carry out; time is passed in, so every step is unit-tested.
//!
//! The path of one connection: `hello` (where the STUN service is) → STUN discovery from the SRT
//! port → `register` → `registered` → `peer` (priming towards it, then SRT) → status and health
//! reports. A lost connection is reconnected with backoff and the same slot registered again
//! with what was learnt before (the SRT port is SRT's by then, so discovery is not repeated).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::super::error::ClientError;
use super::super::nat::{Discovery, DiscoveryError};
use crate::protocol::{
    Admission, AdmissionState, ClientMessage, Cue, ErrorCode, Health, NatReport, PeerInfo,
    PeerMeta, Port, Register, Registered, Role, ServerMessage, SessionState, SessionUpdate,
    SrtStatus, StatusReport, Tally,
};

/// First delay before reconnecting (doubling up to [`BACKOFF_MAX`]).
pub const BACKOFF_START: Duration = Duration::from_millis(250);
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Failed connection attempts before a peer that never reached its server gives up.
pub const FIRST_CONNECT_ATTEMPTS: u32 = 5;
/// How long to wait for the server's `hello` before registering without it (an older server).
pub const HELLO_WAIT: Duration = Duration::from_secs(1);
/// While no peer has come, STUN discovery is repeated this often: it keeps the NAT mapping
/// alive (UDP mappings expire after 30 s on Linux) and notices when it changed.
pub const REPROBE: Duration = Duration::from_secs(20);
/// A slot still held by this side's previous connection frees itself once the server notices
/// it is gone; until then registration is retried this often.
pub const SLOT_RETRY: Duration = Duration::from_secs(1);

/// What a peer is, fixed for its run.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// The session's name, for messages.
    pub session: String,
    /// The stream asked for (the URI's); `None`: the token's, else the session's first.
    pub stream: Option<String>,
    pub role: Role,
    /// The local UDP port SRT binds (and discovery and priming are done from).
    pub local_port: u16,
    /// Shown to operators.
    pub label: Option<String>,
    /// Whether this peer reports its SRT status and health (`false` for `punch peer`, which holds
    /// a side for another tool).
    pub reports: bool,
    /// Whether to discover the SRT port's public address by STUN.
    pub stun: bool,
    /// Whether to send priming datagrams towards a direct peer before SRT starts.
    pub prime: bool,
    /// Give up when no peer's coordinates came this long after the first registration.
    pub peer_timeout: Option<Duration>,
    /// The receiver slot to link with, on a stream with several receivers (`None`: a receiver
    /// takes the next free one, a sender receiver 1 or, with `fan_out`, all of them).
    pub receiver: Option<u8>,
    /// A sender that links with every receiver of its stream: when the stream has several,
    /// this connection watches instead of registering ([`PeerEvent::FanOut`]) and the host
    /// runs one peer per receiver, each with `receiver` set.
    pub fan_out: bool,
    /// Carry this side's media over the tunnel from the start (a network known to block
    /// UDP); otherwise the tunnel is used when STUN discovery gets no answer.
    pub force_tunnel: bool,
}

/// Why a peer stopped for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The URL or settings cannot work.
    Settings,
    /// The token was refused or does not allow this slot.
    NotAuthorized,
    /// No such session or stream, or the session ended.
    NotFound,
    /// Someone else holds the slot.
    Busy,
    /// The server could not be reached.
    Unreachable,
    /// No peer came within the peer timeout.
    NoPeer,
    /// The session was closed while this peer was in it.
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    /// For people: names the session and what to fix.
    pub message: String,
}

/// Where SRT is to send to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A known address.
    Addr(SocketAddr),
    /// The relay port `port` on the server, whose address the driver resolves (STUN discovery did
    /// not tell it).
    ServerPort(u16),
    /// The tunnel of this side of `stream` (receiver slot `slot`): the driver opens it and gives
    /// SRT its local end.
    Tunnel {
        stream: String,
        slot: u8,
        /// What the tunnel URL names: ties it to this side of this link.
        ticket: String,
    },
}

/// What the host (the element, `punch peer`) is told.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerEvent {
    Discovered(Discovery),
    Registered(Registered),
    Tally(Tally),
    /// The producer sent this peer's stream a cue.
    Cue(Cue),
    /// The waiting room: this peer waits, or was admitted to a side.
    Admission(Admission),
    /// The producer turned this peer down (a failure follows).
    Rejected(String),
    /// The session changed; `stream_state` is this peer's stream's.
    Session {
        stream_state: Option<SessionState>,
        update: SessionUpdate,
    },
    /// The SRT status reported to the server changed.
    Srt(SrtStatus),
    /// The stream has this many receivers and the config asked to fan out: this connection
    /// only watches; the host runs one peer per receiver slot.
    FanOut(u8),
    /// Worth a log line.
    Note(String),
    /// Worth a warning.
    Warning(String),
}

/// What the driver is asked to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Send(ClientMessage),
    /// STUN discovery from the SRT port against the server's STUN port (and its `alternate`
    /// when that gets no answer), its requests named `tag`; answer with
    /// [`PeerMachine::discovered`].
    Discover {
        stun_port: u16,
        alternate: Option<u16>,
        tag: Option<String>,
    },
    /// Priming datagrams from the SRT port towards `to` (the driver skips them while SRT holds
    /// the port).
    Prime {
        to: SocketAddr,
    },
    /// Run SRT with these coordinates.
    Apply {
        peer: PeerInfo,
        target: Target,
    },
    Event(PeerEvent),
    /// Drop this connection and connect again after a while.
    Reconnect {
        after: Duration,
    },
    /// End: `None` when asked to, else why.
    Stop(Option<Failure>),
}

/// One side of a stream, as far as signalling goes.
#[derive(Debug)]
pub struct PeerMachine {
    config: PeerConfig,
    // -- kept across connections --
    /// The stream the server registered this peer on.
    stream: Option<String>,
    /// The receiver slot the server gave this peer (several receivers): registered again.
    slot: Option<u8>,
    /// The stream has this many receivers and this peer fans out to them: it watches.
    hosting: Option<u8>,
    /// Whether a registration ever succeeded (then connection failures are retried forever).
    ever_registered: bool,
    /// What STUN discovery found; kept across reconnects (the port is SRT's by then).
    nat: Option<NatReport>,
    /// The server address the STUN service answered from: where relayed media goes.
    server_ip: Option<IpAddr>,
    /// STUN discovery never got an answer: UDP looks blocked, media goes over the tunnel.
    udp_blocked: bool,
    /// STUN ports the server offers (from its `hello`).
    stun_ports: Option<[u16; 2]>,
    /// The name this connection's STUN requests carry (from its `hello`).
    stun_tag: Option<String>,
    /// The hello's `stun_host`: the node to send STUN (and, without a STUN answer, relayed
    /// SRT) to, when it is not the host the server was reached by.
    stun_host: Option<String>,
    /// Coordinates were applied: SRT holds the port, discovery and priming stop.
    peered: bool,
    /// The side's own token, given at admission from the waiting room: reconnects use it
    /// instead of the join token.
    admitted_token: Option<String>,
    /// It waited in the waiting room: like a registration, connection failures are retried
    /// for good from then on (a server restart must not end the wait).
    waited: bool,
    /// The SRT status last reported (resent after every registration).
    status: Option<SrtStatus>,
    /// Connection attempts since the last success, and the next delay.
    attempts: u32,
    backoff: Duration,
    /// When the peer timeout runs out.
    peer_deadline: Option<Instant>,
    // -- per connection --
    /// A connection is open.
    online: bool,
    /// This connection has sent `register`.
    registration_sent: bool,
    /// This connection was answered `registered`.
    registered_here: bool,
    /// This connection had its `hello` (or gave up waiting for it).
    hello_seen: bool,
    /// This connection had its first `session` summary (a fanning-out sender waits for it).
    summary_seen: bool,
    /// This connection sent `watch`.
    watching: bool,
    /// Registering waits for a discovery under way.
    register_after_discovery: bool,
    discovering: bool,
    /// When to register without a `hello`.
    hello_deadline: Option<Instant>,
    /// When to repeat discovery.
    next_reprobe: Option<Instant>,
}

impl PeerMachine {
    pub fn new(config: PeerConfig) -> Self {
        PeerMachine {
            config,
            stream: None,
            slot: None,
            hosting: None,
            ever_registered: false,
            nat: None,
            server_ip: None,
            udp_blocked: false,
            stun_ports: None,
            stun_tag: None,
            stun_host: None,
            peered: false,
            admitted_token: None,
            waited: false,
            status: None,
            attempts: 0,
            backoff: BACKOFF_START,
            peer_deadline: None,
            online: false,
            registration_sent: false,
            registered_here: false,
            hello_seen: false,
            summary_seen: false,
            watching: false,
            register_after_discovery: false,
            discovering: false,
            hello_deadline: None,
            next_reprobe: None,
        }
    }

    pub fn config(&self) -> &PeerConfig {
        &self.config
    }

    /// The stream this peer is registered on (or asked for).
    /// The host the server's STUN service and relays are on, when the `hello` named one.
    pub fn stun_host(&self) -> Option<&str> {
        self.stun_host.as_deref()
    }

    pub fn stream(&self) -> Option<&str> {
        self.stream.as_deref().or(self.config.stream.as_deref())
    }

    /// A signalling connection opened.
    pub fn connected(&mut self, now: Instant) -> Vec<Action> {
        self.online = true;
        self.attempts = 0;
        self.backoff = BACKOFF_START;
        self.registration_sent = false;
        self.registered_here = false;
        self.hello_seen = false;
        self.summary_seen = false;
        self.watching = false;
        self.register_after_discovery = false;
        self.hello_deadline = Some(now + HELLO_WAIT);
        self.next_reprobe = Some(now + REPROBE);
        Vec::new()
    }

    /// The connection could not be opened.
    pub fn connect_failed(&mut self, e: &ClientError) -> Vec<Action> {
        if e.is_permanent() {
            let kind = match e {
                ClientError::Refused {
                    status: 401 | 403, ..
                } => FailureKind::NotAuthorized,
                ClientError::Refused {
                    status: 404 | 410, ..
                } => FailureKind::NotFound,
                _ => FailureKind::Settings,
            };
            return vec![self.fail(kind, format!("Punch session {}: {e}", self.config.session))];
        }
        self.attempts += 1;
        if !self.ever_registered && !self.waited && self.attempts >= FIRST_CONNECT_ATTEMPTS {
            return vec![self.fail(
                FailureKind::Unreachable,
                format!("{e} (gave up after {} attempts)", self.attempts),
            )];
        }
        let after = self.next_backoff();
        vec![
            Action::Event(PeerEvent::Note(format!(
                "signalling: {e}; retrying in {after:?}"
            ))),
            Action::Reconnect { after },
        ]
    }

    /// The open connection broke (media, if it runs, is not affected).
    pub fn disconnected(&mut self) -> Vec<Action> {
        self.online = false;
        self.hello_deadline = None;
        self.next_reprobe = None;
        let after = self.next_backoff();
        vec![
            Action::Event(PeerEvent::Note(
                "signalling connection lost; media continues, reconnecting".into(),
            )),
            Action::Reconnect { after },
        ]
    }

    fn next_backoff(&mut self) -> Duration {
        let after = self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        after
    }

    fn fail(&mut self, kind: FailureKind, message: String) -> Action {
        Action::Stop(Some(Failure { kind, message }))
    }

    fn can_discover(&self) -> bool {
        // (a sender that fans out only watches: its legs discover from their own ports)
        self.config.stun
            && self.stun_ports.is_some()
            && !self.peered
            && !self.discovering
            && self.hosting.is_none()
            && !self.config.force_tunnel
    }

    fn discover(&mut self) -> Option<Action> {
        let [stun_port, _] = self.stun_ports?;
        self.discovering = true;
        Some(Action::Discover {
            stun_port,
            alternate: self.stun_ports.map(|[_, alt]| alt),
            tag: self.stun_tag.clone(),
        })
    }

    /// What follows the `hello`: discovery then registration, or (a sender fanning out to
    /// several receivers, which learns it from the first `session` summary) watching.
    fn proceed(&mut self) -> Vec<Action> {
        if self.config.fan_out && !self.summary_seen {
            return Vec::new();
        }
        if self.hosting.is_some() {
            if std::mem::replace(&mut self.watching, true) {
                return Vec::new();
            }
            // the session was reached and is usable: reconnect for good from now on
            self.ever_registered = true;
            return vec![Action::Send(ClientMessage::Watch)];
        }
        if self.nat.is_none() && self.can_discover() {
            self.register_after_discovery = true;
            return self.discover().into_iter().collect();
        }
        if self.registration_sent {
            return Vec::new();
        }
        vec![self.register()]
    }

    fn register(&mut self) -> Action {
        self.registration_sent = true;
        Action::Send(ClientMessage::Register(Register {
            stream: self.stream().map(String::from),
            port: Port(self.config.local_port),
            role: self.config.role,
            meta: PeerMeta {
                label: self.config.label.clone(),
                ..Default::default()
            },
            nat: self.nat.clone(),
            reports: self.config.reports,
            receiver: self.config.receiver.or(self.slot),
            tunnel: self.config.force_tunnel || self.udp_blocked,
        }))
    }

    /// The token to connect with when it is not the configured one: the side's own, once the
    /// producer admitted this peer from the waiting room.
    pub fn admitted_token(&self) -> Option<&str> {
        self.admitted_token.as_deref()
    }

    /// A message from the server.
    pub fn message(&mut self, msg: ServerMessage, now: Instant) -> Vec<Action> {
        match msg {
            ServerMessage::Hello(hello) => {
                self.stun_ports = hello.stun;
                self.stun_tag = hello.stun_tag;
                self.stun_host = hello.stun_host;
                self.hello_deadline = None;
                self.hello_seen = true;
                // Discovery first, registration (again, if the hello came late) after it.
                self.proceed()
            }
            ServerMessage::Registered(r) => {
                self.stream = Some(r.stream.clone());
                self.slot = r.receiver.or(self.slot);
                self.registered_here = true;
                if !self.ever_registered {
                    self.ever_registered = true;
                    self.peer_deadline = self.config.peer_timeout.map(|t| now + t);
                }
                let mut out = vec![Action::Event(PeerEvent::Registered(r))];
                // The server forgets SRT status across reconnects and restarts: tell it again.
                if let Some(srt) = self.status.filter(|_| self.config.reports) {
                    out.push(Action::Send(ClientMessage::Status(StatusReport { srt })));
                }
                out
            }
            ServerMessage::Peer(p) => {
                if self.stream.as_deref() != Some(p.stream.as_str()) {
                    return Vec::new();
                }
                self.peer_deadline = None;
                self.coordinates(p)
            }
            ServerMessage::Tally(t) if self.stream.as_deref() == Some(t.stream.as_str()) => {
                vec![Action::Event(PeerEvent::Tally(t))]
            }
            ServerMessage::Tally(_) => Vec::new(),
            ServerMessage::Cue(c) if self.stream.as_deref() == Some(c.stream.as_str()) => {
                vec![Action::Event(PeerEvent::Cue(c))]
            }
            ServerMessage::Cue(_) => Vec::new(),
            ServerMessage::Admission(a) => {
                match a.state {
                    AdmissionState::Waiting => {
                        self.waited = true;
                        // waiting is not failing; the peer timeout, if set, bounds it
                        if self.peer_deadline.is_none() {
                            self.peer_deadline = self.config.peer_timeout.map(|t| now + t);
                        }
                    }
                    AdmissionState::Admitted => {
                        self.admitted_token = a.token.clone();
                        if let Some(stream) = &a.stream {
                            self.stream = Some(stream.clone());
                        }
                    }
                }
                vec![Action::Event(PeerEvent::Admission(a))]
            }
            ServerMessage::Session(update) => {
                let mine = self.stream();
                let line = mine
                    .and_then(|m| update.streams.iter().find(|s| s.name == m))
                    .or(update.streams.first());
                // with several receivers, this peer's own link's state
                let stream_state = line.map(|s| {
                    self.slot
                        .or(self.config.receiver)
                        .and_then(|k| s.links.get(usize::from(k).checked_sub(1)?).copied())
                        .unwrap_or(s.state)
                });
                let receivers = line.map_or(1, |s| s.receivers);
                let mut out = Vec::new();
                if self.config.fan_out && !self.summary_seen {
                    self.summary_seen = true;
                    if receivers > 1 && self.hosting != Some(receivers) {
                        self.hosting = Some(receivers);
                        out.push(Action::Event(PeerEvent::FanOut(receivers)));
                    }
                    if self.hello_seen {
                        out.extend(self.proceed());
                    }
                }
                out.push(Action::Event(PeerEvent::Session {
                    stream_state,
                    update,
                }));
                out
            }
            ServerMessage::Error(e) => {
                let session = &self.config.session;
                let message = format!("Punch session {session}: {} ({})", e.message, e.code);
                match e.code {
                    ErrorCode::Forbidden => vec![self.fail(FailureKind::NotAuthorized, message)],
                    ErrorCode::Rejected => vec![
                        Action::Event(PeerEvent::Rejected(e.message.clone())),
                        self.fail(FailureKind::NotAuthorized, message),
                    ],
                    ErrorCode::UnknownStream => vec![self.fail(FailureKind::NotFound, message)],
                    ErrorCode::SlotTaken if self.ever_registered => {
                        // a receiver slot it remembered (not one it was configured with) may
                        // have gone to another receiver meanwhile: take any free one next
                        if self.config.receiver.is_none() {
                            self.slot = None;
                        }
                        vec![
                            Action::Event(PeerEvent::Note(format!(
                                "slot still held ({}); retrying",
                                e.message
                            ))),
                            Action::Reconnect { after: SLOT_RETRY },
                        ]
                    }
                    ErrorCode::SlotTaken => vec![self.fail(FailureKind::Busy, message)],
                    code => vec![Action::Event(PeerEvent::Warning(format!(
                        "server reported {code}: {}",
                        e.message
                    )))],
                }
            }
            ServerMessage::Closed(c) => {
                let message = format!(
                    "Punch session {} was closed ({})",
                    self.config.session, c.reason
                );
                vec![self.fail(FailureKind::Closed, message)]
            }
            ServerMessage::View(_) | ServerMessage::Unknown => Vec::new(),
        }
    }

    /// Coordinates for this peer's stream: priming (before SRT holds the port), then SRT.
    fn coordinates(&mut self, peer: PeerInfo) -> Vec<Action> {
        let mut out = Vec::new();
        let target = if peer.tunnel {
            let Some(ticket) = peer.ticket.clone() else {
                return vec![Action::Event(PeerEvent::Warning(
                    "the server sent tunnel coordinates without a tunnel ticket; ignoring them"
                        .to_string(),
                ))];
            };
            // the server decided this side has no UDP: it stays on the tunnel, also when it
            // registers again
            self.udp_blocked = true;
            Target::Tunnel {
                stream: peer.stream.clone(),
                slot: self.slot.or(self.config.receiver).unwrap_or(1),
                ticket,
            }
        } else if peer.relay {
            match self.server_ip {
                Some(ip) => Target::Addr(SocketAddr::new(ip, peer.port)),
                None => Target::ServerPort(peer.port),
            }
        } else {
            let Ok(ip) = peer.ip.parse::<IpAddr>() else {
                return vec![Action::Event(PeerEvent::Warning(format!(
                    "ignoring peer coordinates with a non-IP address {:?}",
                    peer.ip
                )))];
            };
            let to = SocketAddr::new(ip, peer.port);
            if self.config.prime {
                out.push(Action::Prime { to });
            }
            Target::Addr(to)
        };
        self.peered = true;
        out.push(Action::Apply { peer, target });
        out
    }

    /// The driver could not carry out the last [`Action::Apply`] (the relay's address did not
    /// resolve): SRT does not hold the port, so discovery may go on.
    pub fn unapplied(&mut self) {
        self.peered = false;
    }

    /// What STUN discovery found (or why it failed).
    pub fn discovered(&mut self, result: Result<Discovery, DiscoveryError>) -> Vec<Action> {
        self.discovering = false;
        let mut out = Vec::new();
        let changed = match result {
            Ok(found) => {
                let report = found.report();
                self.server_ip = Some(found.server.ip());
                let changed = self.nat.as_ref() != Some(&report);
                self.nat = Some(report);
                out.push(Action::Event(PeerEvent::Discovered(found)));
                changed
            }
            Err(e) => {
                // Not fatal: without it the server uses the declared port, which works behind
                // port-preserving NATs, and falls back to its relay otherwise. Never an answer
                // from either STUN port: UDP looks blocked, and the media goes over the tunnel.
                // (A local failure, a port that cannot be bound, says nothing of the network.)
                let unanswered = e.unanswered && self.nat.is_none();
                let blocked = unanswered && !self.udp_blocked;
                self.udp_blocked |= unanswered;
                out.push(Action::Event(PeerEvent::Warning(if blocked {
                    format!(
                        "STUN discovery failed ({e}): UDP looks blocked; media will use the TCP tunnel"
                    )
                } else {
                    format!("STUN discovery failed: {e}")
                })));
                blocked
            }
        };
        let pending = std::mem::take(&mut self.register_after_discovery);
        if self.online && (pending || (changed && self.registration_sent)) {
            out.push(self.register());
        }
        out
    }

    /// The SRT link is (`true`) or is not up, as the host sees it now.
    pub fn srt_link(&mut self, up: bool) -> Vec<Action> {
        let now = if up {
            SrtStatus::Connected
        } else if self.status == Some(SrtStatus::Connected) {
            SrtStatus::Disconnected
        } else {
            SrtStatus::Connecting
        };
        if self.status == Some(now) {
            return Vec::new();
        }
        self.status = Some(now);
        let mut out = vec![Action::Event(PeerEvent::Srt(now))];
        if self.registered_here && self.config.reports {
            out.push(Action::Send(ClientMessage::Status(StatusReport {
                srt: now,
            })));
        }
        out
    }

    /// A health report for the server.
    pub fn health(&mut self, health: Health) -> Vec<Action> {
        if self.registered_here && self.config.reports {
            vec![Action::Send(ClientMessage::Health(health))]
        } else {
            Vec::new()
        }
    }

    /// When [`tick`](Self::tick) has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let hello = self.hello_deadline.filter(|_| !self.registration_sent);
        let reprobe = self.next_reprobe.filter(|_| self.can_discover());
        [hello, reprobe, self.peer_deadline]
            .into_iter()
            .flatten()
            .min()
    }

    /// Timers: registering without a `hello`, repeating discovery, the peer timeout.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(deadline) = self.peer_deadline
            && deadline <= now
        {
            self.peer_deadline = None;
            let secs = self.config.peer_timeout.unwrap_or_default().as_secs();
            let message = format!(
                "No peer joined stream {} of session {} within {secs} s (peer-timeout)",
                self.stream().unwrap_or("?"),
                self.config.session
            );
            return vec![self.fail(FailureKind::NoPeer, message)];
        }
        if self.online && !self.registration_sent && self.hello_deadline.is_some_and(|d| d <= now) {
            self.hello_deadline = None;
            self.hello_seen = true;
            out.extend(self.proceed());
        }
        if self.online && self.next_reprobe.is_some_and(|d| d <= now) {
            self.next_reprobe = Some(now + REPROBE);
            if self.can_discover() {
                out.extend(self.discover());
            }
        }
        out
    }
}
