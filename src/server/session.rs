//! One session: its state machine ([`SessionCore`], no sockets, unit-tested) and the tokio task
//! that owns it ([`spawn`]), the single writer of the session's state.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::error::ApiError;
use super::health::{self, StreamHealth};
use super::registry::Registry;
use super::relay::{Relay, RelayService};
use super::store::{LastPeer, SessionRecord, Store, StoreOp};
use super::token::Scope;
use super::{format_time, now_ms};
use crate::protocol::{
    ClientMessage, Closed, Endpoint, ErrorBody, ErrorCode, Health, MAX_LABEL_LEN, MAX_LATENCY_MS,
    MIN_LATENCY_MS, MediaPath, NatMapping, NatReport, PeerInfo, PeerStatus, PeerView, Register,
    Registered, Role, ServerMessage, SessionState, SessionUpdate, SessionView, SrtStatus,
    StreamSummary, StreamView, Tally, TallyState,
};

pub type ConnId = u64;

/// How often a session with steady traffic writes its activity time to the database.
const ACTIVITY_PERSIST_MS: i64 = 5_000;

/// Who a message goes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Conn(ConnId),
    All,
}

/// A relay the session asks its task to start or stop.
#[derive(Debug, Clone, PartialEq)]
pub enum RelayOp {
    /// Start one for stream `stream` between these peer addresses (`[sender, receiver]`);
    /// `generation` ties the answer to this request.
    Start {
        stream: usize,
        generation: u64,
        ips: [IpAddr; 2],
    },
    Stop {
        stream: usize,
    },
}

/// What handling one event asks the owner to do.
#[derive(Debug, Default)]
pub struct Effects {
    pub out: Vec<(Target, ServerMessage)>,
    pub store: Vec<StoreOp>,
    pub relay: Vec<RelayOp>,
    /// The session view changed: dashboards should get a fresh one.
    pub view_changed: bool,
}

impl Effects {
    fn send(&mut self, conn: ConnId, msg: ServerMessage) {
        self.out.push((Target::Conn(conn), msg));
    }

    fn error(&mut self, conn: ConnId, code: ErrorCode, message: impl Into<String>) {
        self.send(
            conn,
            ServerMessage::Error(ErrorBody {
                code,
                message: message.into(),
            }),
        );
    }
}

#[derive(Debug)]
struct ConnInfo {
    ip: IpAddr,
    scope: Scope,
    slot: Option<(usize, Role)>,
}

/// The live holder of one side of a stream.
#[derive(Debug, Clone)]
struct Holder {
    conn: ConnId,
    srt: Option<SrtStatus>,
    /// Where the holder's SRT datagrams come from (its STUN-mapped address, else its
    /// signalling address).
    udp_ip: IpAddr,
    /// The local port its SRT socket binds.
    local_port: u16,
    nat: Option<NatReport>,
    /// Whether it reports its SRT status (`punch peer`, holding a side for a third-party tool,
    /// cannot).
    reports: bool,
}

/// How a session decides between direct rendezvous and the relay.
#[derive(Debug, Clone)]
pub struct PathPolicy {
    /// Whether the server may relay at all.
    pub relay: bool,
    /// How long a stream may stay READY before it is relayed (milliseconds).
    pub direct_timeout_ms: i64,
}

impl Default for PathPolicy {
    fn default() -> Self {
        PathPolicy {
            relay: true,
            direct_timeout_ms: 8_000,
        }
    }
}

/// What a stream has at run time only (not persisted).
#[derive(Debug, Default)]
struct StreamRuntime {
    health: StreamHealth,
    path: Option<MediaPath>,
    path_reason: Option<String>,
    /// Why a relay was asked for, while it is being set up.
    relay_pending: Option<String>,
    /// `[sender's port, receiver's port]` of the relay in use.
    relay_ports: Option<[u16; 2]>,
    /// When a direct attempt gives way to the relay.
    direct_deadline: Option<i64>,
    /// Bumped whenever the pairing starts over, so that a late relay answer is recognised.
    generation: u64,
    /// Where each side was when the current path was chosen. A side that comes back from the
    /// same place (a signalling reconnect: its SRT never stopped) keeps the path and the relay.
    paired: Option<[Place; 2]>,
}

/// Where a side's SRT traffic comes from, as far as pairing is concerned.
#[derive(Debug, Clone, PartialEq)]
struct Place {
    address: Endpoint,
    mapping: Option<NatMapping>,
}

/// What a stream's connection strings are made of.
#[derive(Debug, Clone)]
pub struct StreamCoordinates {
    pub name: String,
    pub passphrase: String,
    pub pbkeylen: u8,
    pub latency: u32,
    /// Public SRT address and local port of the live sender and receiver.
    pub sender: Option<(Endpoint, u16)>,
    pub receiver: Option<(Endpoint, u16)>,
    /// `[sender's, receiver's]` relay ports when the stream is relayed.
    pub relay_ports: Option<[u16; 2]>,
}

/// A session's state, independent of sockets and tasks.
#[derive(Debug)]
pub struct SessionCore {
    rec: SessionRecord,
    /// Live holders per stream, `[sender, receiver]`.
    holders: Vec<[Option<Holder>; 2]>,
    runtime: Vec<StreamRuntime>,
    conns: HashMap<ConnId, ConnInfo>,
    max_conns: usize,
    policy: PathPolicy,
    activity_persisted_ms: i64,
    closed: bool,
}

fn slot_index(role: Role) -> usize {
    match role {
        Role::Sender => 0,
        Role::Receiver => 1,
    }
}

impl SessionCore {
    pub fn new(rec: SessionRecord, max_conns: usize, policy: PathPolicy) -> Self {
        let holders = vec![[None, None]; rec.streams.len()];
        let runtime = rec
            .streams
            .iter()
            .map(|_| StreamRuntime::default())
            .collect();
        let activity_persisted_ms = rec.last_activity_ms;
        SessionCore {
            rec,
            holders,
            runtime,
            conns: HashMap::new(),
            max_conns,
            policy,
            activity_persisted_ms,
            closed: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.rec.name
    }

    pub fn has_connections(&self) -> bool {
        !self.conns.is_empty()
    }

    /// When the session expires if nothing happens (never while a connection is open).
    pub fn expires_ms(&self) -> Option<i64> {
        if self.has_connections() {
            None
        } else {
            Some(self.rec.last_activity_ms + self.rec.ttl_s as i64 * 1000)
        }
    }

    /// Records activity; returns a store op when the persisted time is stale.
    pub fn touch(&mut self, now: i64) -> Option<StoreOp> {
        self.rec.last_activity_ms = self.rec.last_activity_ms.max(now);
        if now - self.activity_persisted_ms >= ACTIVITY_PERSIST_MS {
            self.activity_persisted_ms = now;
            Some(StoreOp::Activity {
                session: self.rec.name.clone(),
                at_ms: now,
            })
        } else {
            None
        }
    }

    pub fn attach(
        &mut self,
        conn: ConnId,
        ip: IpAddr,
        scope: Scope,
        now: i64,
    ) -> Result<Effects, ApiError> {
        if self.conns.len() >= self.max_conns {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::TooManyConnections,
                format!(
                    "session {} already has {} connections",
                    self.rec.name, self.max_conns
                ),
            ));
        }
        let scope_is_admin = scope == Scope::Admin;
        self.conns.insert(
            conn,
            ConnInfo {
                ip,
                scope,
                slot: None,
            },
        );
        let mut fx = Effects::default();
        fx.store.extend(self.touch(now));
        // A new connection learns where the session stands right away (a dashboard from the
        // view that follows).
        fx.send(conn, ServerMessage::Session(self.summary()));
        fx.view_changed = scope_is_admin;
        Ok(fx)
    }

    pub fn detach(&mut self, conn: ConnId, now: i64) -> Effects {
        let mut fx = Effects::default();
        let Some(info) = self.conns.remove(&conn) else {
            return fx;
        };
        self.rec.last_activity_ms = now;
        if let Some((idx, role)) = info.slot {
            self.with_summary_change(&mut fx, |core, fx| {
                // The path stays: SRT may well go on while its signalling reconnects; a relay
                // nobody uses frees itself, and a side coming back from elsewhere re-pairs.
                core.holders[idx][slot_index(role)] = None;
                core.runtime[idx].direct_deadline = None;
                fx.store.push(StoreOp::Left {
                    session: core.rec.name.clone(),
                    stream: core.rec.streams[idx].name.clone(),
                    role,
                    at_ms: now,
                });
            });
        }
        // Persist the time the last connection left: the TTL counts from it, also across restarts.
        if self.conns.is_empty() {
            self.activity_persisted_ms = now;
            fx.store.push(StoreOp::Activity {
                session: self.rec.name.clone(),
                at_ms: now,
            });
        }
        fx
    }

    pub fn handle(&mut self, conn: ConnId, msg: ClientMessage, now: i64) -> Effects {
        let mut fx = Effects::default();
        if !self.conns.contains_key(&conn) {
            return fx;
        }
        fx.store.extend(self.touch(now));
        match msg {
            ClientMessage::Register(r) => self.register(conn, r, now, &mut fx),
            ClientMessage::Health(h) => self.health(conn, h, now, &mut fx),
            ClientMessage::Status(s) => {
                if let Some((idx, role)) = self.registered_slot(conn, "status", &mut fx) {
                    self.with_summary_change(&mut fx, |core, fx| {
                        let was_up = core.link_up(idx);
                        if let Some(h) = core.holders[idx][slot_index(role)].as_mut() {
                            h.srt = Some(s.srt);
                        }
                        if core.link_up(idx) {
                            core.runtime[idx].direct_deadline = None;
                        } else if was_up {
                            // A direct link that broke gets the same chance as a new one.
                            core.arm_direct_timer(idx, now);
                        }
                        fx.view_changed = true;
                    });
                }
            }
        }
        fx
    }

    fn registered_slot(&self, conn: ConnId, what: &str, fx: &mut Effects) -> Option<(usize, Role)> {
        let slot = self.conns.get(&conn).and_then(|c| c.slot);
        if slot.is_none() {
            fx.error(
                conn,
                ErrorCode::NotRegistered,
                format!("send `register` before `{what}`"),
            );
        }
        slot
    }

    fn register(&mut self, conn: ConnId, r: Register, now: i64, fx: &mut Effects) {
        let info = &self.conns[&conn];
        let (token_stream, token_role) = match &info.scope {
            Scope::Admin => (None, None),
            Scope::Stream { stream, role } => (Some(stream.clone()), Some(*role)),
        };
        let stream_name = r
            .stream
            .clone()
            .or(token_stream.clone())
            .unwrap_or_else(|| self.rec.streams[0].name.clone());
        let Some(idx) = self.rec.streams.iter().position(|s| s.name == stream_name) else {
            let known: Vec<&str> = self.rec.streams.iter().map(|s| s.name.as_str()).collect();
            fx.error(
                conn,
                ErrorCode::UnknownStream,
                format!(
                    "session {} has no stream {stream_name:?} (streams: {})",
                    self.rec.name,
                    known.join(", ")
                ),
            );
            return;
        };
        if let (Some(ts), Some(tr)) = (&token_stream, token_role)
            && (ts != &stream_name || tr != r.role)
        {
            fx.error(
                conn,
                ErrorCode::Forbidden,
                format!(
                    "this token is for the {tr} of stream {ts:?}; it cannot register as {} of stream {stream_name:?}",
                    r.role
                ),
            );
            return;
        }
        for (field, value) in [("label", &r.meta.label), ("audio", &r.meta.audio)] {
            if value
                .as_ref()
                .is_some_and(|v| v.chars().count() > MAX_LABEL_LEN)
            {
                fx.error(
                    conn,
                    ErrorCode::BadMessage,
                    format!("meta.{field} is longer than {MAX_LABEL_LEN} characters"),
                );
                return;
            }
        }
        if let Some((old_idx, old_role)) = info.slot
            && (old_idx, old_role) != (idx, r.role)
        {
            fx.error(
                conn,
                ErrorCode::AlreadyRegistered,
                format!(
                    "this connection is already the {old_role} of stream {:?}; open another connection for another slot",
                    self.rec.streams[old_idx].name
                ),
            );
            return;
        }
        let me = slot_index(r.role);
        if let Some(holder) = &self.holders[idx][me]
            && holder.conn != conn
        {
            let from = self.rec.streams[idx]
                .peer(r.role)
                .as_ref()
                .map(|p| format!(" from {}:{}", p.address.ip, p.address.port))
                .unwrap_or_default();
            fx.error(
                conn,
                ErrorCode::SlotTaken,
                format!(
                    "stream {stream_name:?} already has a {} connected{from}; stop it first, or use another stream",
                    r.role
                ),
            );
            return;
        }
        let ip = info.ip;
        // The STUN-mapped address is where the SRT port is reachable; without discovery, the
        // signalling address with the declared port (right for port-preserving NATs).
        // A mapped address goes into the other side's SRT URI: it must be a plain address.
        let mapped = match r.nat.as_ref().and_then(|n| n.mapped.as_ref()) {
            None => None,
            Some(m) => match m.ip.parse::<IpAddr>() {
                Ok(mip) if m.port != 0 => Some((mip.to_canonical(), m.port)),
                _ => {
                    fx.error(
                        conn,
                        ErrorCode::BadMessage,
                        format!(
                            "nat.mapped must be an IP address and a port 1-65535, got {:?}:{}",
                            m.ip, m.port
                        ),
                    );
                    return;
                }
            },
        };
        let udp_ip = mapped.map(|(mip, _)| mip).unwrap_or(ip);
        let mapped = mapped.map(|(mip, port)| Endpoint {
            ip: mip.to_string(),
            port,
        });
        self.with_summary_change(fx, |core, fx| {
            let address = mapped.unwrap_or(Endpoint {
                ip: ip.to_string(),
                port: r.port.0,
            });
            let peer = LastPeer {
                address: address.clone(),
                meta: r.meta,
                registered_ms: now,
                health: None,
                health_ms: None,
            };
            *core.rec.streams[idx].peer_mut(r.role) = Some(peer.clone());
            core.holders[idx][me] = Some(Holder {
                conn,
                srt: None,
                udp_ip,
                local_port: r.port.0,
                nat: r.nat,
                reports: r.reports,
            });
            if let Some(c) = core.conns.get_mut(&conn) {
                c.slot = Some((idx, r.role));
            }
            let place = Place {
                address: address.clone(),
                mapping: core.holders[idx][me]
                    .as_ref()
                    .and_then(|h| h.nat.as_ref().map(|n| n.mapping)),
            };
            let rt = &core.runtime[idx];
            let returning = rt.path.is_some() && rt.paired.as_ref().is_some_and(|p| p[me] == place);
            if !returning {
                core.reset_path(idx, fx);
            }
            fx.store.push(StoreOp::Registered {
                session: core.rec.name.clone(),
                stream: stream_name.clone(),
                role: r.role,
                peer,
            });
            // Coordinates go out now (the path in use for a returning side, else a direct
            // attempt), or once the relay runs.
            let paired = core.both_registered(idx)
                && if returning {
                    core.arm_direct_timer(idx, now);
                    core.runtime[idx].relay_pending.is_none()
                } else {
                    core.pair(idx, now, fx)
                };
            let peer = paired.then(|| core.peer_info_for(idx, r.role));
            fx.send(
                conn,
                ServerMessage::Registered(Registered {
                    stream: stream_name.clone(),
                    role: r.role,
                    you: address,
                    peer,
                }),
            );
            if paired {
                core.send_coordinates(idx, fx);
            }
            fx.send(
                conn,
                ServerMessage::Tally(Tally {
                    stream: stream_name.clone(),
                    state: core.rec.streams[idx].tally,
                }),
            );
        });
    }

    fn health(&mut self, conn: ConnId, h: Health, now: i64, fx: &mut Effects) {
        let Some((idx, role)) = self.registered_slot(conn, "health", fx) else {
            return;
        };
        if let Err(e) = h.validate() {
            fx.error(conn, ErrorCode::BadMessage, e);
            return;
        }
        if let Some(p) = self.rec.streams[idx].peer_mut(role).as_mut() {
            p.health = Some(h.clone());
            p.health_ms = Some(now);
        }
        self.runtime[idx].health.record(role, &h, now);
        fx.view_changed = true;
        fx.store.push(StoreOp::Health {
            session: self.rec.name.clone(),
            stream: self.rec.streams[idx].name.clone(),
            role,
            health: h,
            at_ms: now,
        });
    }

    /// Sets a stream's tally and tells both of its peers.
    pub fn set_tally(
        &mut self,
        stream: &str,
        state: TallyState,
        now: i64,
    ) -> Result<Effects, ApiError> {
        let idx = self.stream_index(stream)?;
        let mut fx = Effects::default();
        fx.store.extend(self.touch(now));
        self.with_summary_change(&mut fx, |core, fx| {
            core.rec.streams[idx].tally = state;
            fx.store.push(StoreOp::Tally {
                session: core.rec.name.clone(),
                stream: stream.to_string(),
                state,
            });
            for holder in core.holders[idx].iter().flatten() {
                fx.send(
                    holder.conn,
                    ServerMessage::Tally(Tally {
                        stream: stream.to_string(),
                        state,
                    }),
                );
            }
        });
        Ok(fx)
    }

    /// Ends the session: everyone is told why.
    pub fn close(&mut self, reason: &str, now: i64) -> Effects {
        self.closed = true;
        let mut fx = Effects::default();
        fx.out.push((
            Target::All,
            ServerMessage::Closed(Closed {
                reason: reason.to_string(),
            }),
        ));
        fx.store.push(StoreOp::Close {
            session: self.rec.name.clone(),
            reason: reason.to_string(),
            at_ms: now,
            ack: None,
        });
        fx
    }

    fn stream_index(&self, stream: &str) -> Result<usize, ApiError> {
        self.rec
            .streams
            .iter()
            .position(|s| s.name == stream)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::UnknownStream,
                    format!("session {} has no stream {stream:?}", self.rec.name),
                )
            })
    }

    /// Runs `change` and broadcasts a `session` message if the summary changed.
    fn with_summary_change(
        &mut self,
        fx: &mut Effects,
        change: impl FnOnce(&mut Self, &mut Effects),
    ) {
        let before = self.summary();
        change(self, fx);
        let after = self.summary();
        if after != before {
            fx.out.push((Target::All, ServerMessage::Session(after)));
            fx.view_changed = true;
        }
    }

    /// The coordinates `recipient` needs: the other side's public address, or its own relay port.
    fn peer_info_for(&self, idx: usize, recipient: Role) -> PeerInfo {
        let s = &self.rec.streams[idx];
        let (ip, port, relay) = match self.runtime[idx].relay_ports {
            Some(ports) => (String::new(), ports[slot_index(recipient)], true),
            None => {
                let addr = s
                    .peer(recipient.other())
                    .as_ref()
                    .map(|p| p.address.clone());
                let addr = addr.unwrap_or(Endpoint {
                    ip: String::new(),
                    port: 0,
                });
                (addr.ip, addr.port, false)
            }
        };
        PeerInfo {
            stream: s.name.clone(),
            ip,
            port,
            passphrase: s.passphrase.clone(),
            pbkeylen: self.rec.pbkeylen,
            latency: s.latency,
            relay,
        }
    }

    /// Sends both holders of stream `idx` their coordinates.
    fn send_coordinates(&self, idx: usize, fx: &mut Effects) {
        for role in [Role::Sender, Role::Receiver] {
            if let Some(h) = &self.holders[idx][slot_index(role)] {
                fx.send(h.conn, ServerMessage::Peer(self.peer_info_for(idx, role)));
            }
        }
    }

    fn both_registered(&self, idx: usize) -> bool {
        self.holders[idx].iter().all(Option::is_some)
    }

    /// Both sides are registered and at least one reports its SRT link up. One report is
    /// enough: an SRT connection is one link, and a side run by a third-party tool (held by
    /// `punch peer`) cannot report at all.
    fn link_up(&self, idx: usize) -> bool {
        self.both_registered(idx)
            && self.holders[idx].iter().any(|h| {
                h.as_ref()
                    .is_some_and(|h| h.srt == Some(SrtStatus::Connected))
            })
    }

    /// Forgets how stream `idx` was paired (a side left or registered again); stops its relay.
    /// SRT status reported so far was about the old pairing.
    fn reset_path(&mut self, idx: usize, fx: &mut Effects) {
        for h in self.holders[idx].iter_mut().flatten() {
            h.srt = None;
        }
        let rt = &mut self.runtime[idx];
        if rt.relay_ports.take().is_some() || rt.relay_pending.take().is_some() {
            fx.relay.push(RelayOp::Stop { stream: idx });
        }
        rt.path = None;
        rt.path_reason = None;
        rt.direct_deadline = None;
        rt.paired = None;
        rt.generation += 1;
        fx.view_changed = true;
    }

    /// Chooses the path of a stream whose two sides are registered. `true` when the direct
    /// coordinates can go out now; `false` when a relay was asked for instead.
    fn pair(&mut self, idx: usize, now: i64, fx: &mut Effects) -> bool {
        let place = |role: Role| {
            Some(Place {
                address: self.rec.streams[idx].peer(role).as_ref()?.address.clone(),
                mapping: self.holders[idx][slot_index(role)]
                    .as_ref()?
                    .nat
                    .as_ref()
                    .map(|n| n.mapping),
            })
        };
        if let (Some(s), Some(r)) = (place(Role::Sender), place(Role::Receiver)) {
            self.runtime[idx].paired = Some([s, r]);
        }
        let symmetric = [Role::Sender, Role::Receiver].into_iter().find(|r| {
            self.holders[idx][slot_index(*r)]
                .as_ref()
                .and_then(|h| h.nat.as_ref())
                .is_some_and(|n| n.mapping == NatMapping::EndpointDependent)
        });
        if let Some(role) = symmetric {
            let why = format!(
                "the {role}'s NAT gives each destination a new port (endpoint-dependent mapping), so direct rendezvous cannot work"
            );
            if self.policy.relay {
                self.request_relay(idx, why, fx);
                return false;
            }
            self.runtime[idx].path_reason = Some(format!("{why}; the relay is disabled"));
        }
        self.runtime[idx].path = Some(MediaPath::Direct);
        self.arm_direct_timer(idx, now);
        true
    }

    /// A direct stream whose link is not up gets `--direct-timeout` to bring it up before it is
    /// relayed; only if a side can report its link (third-party tools cannot: their stream would
    /// be relayed whatever happens) and relaying is allowed.
    fn arm_direct_timer(&mut self, idx: usize, now: i64) {
        let reporter = self.holders[idx].iter().flatten().any(|h| h.reports);
        let down = !self.link_up(idx);
        let rt = &mut self.runtime[idx];
        if rt.path == Some(MediaPath::Direct)
            && rt.relay_pending.is_none()
            && self.policy.relay
            && reporter
            && down
        {
            rt.direct_deadline = Some(now + self.policy.direct_timeout_ms);
        }
    }

    fn request_relay(&mut self, idx: usize, why: String, fx: &mut Effects) {
        let ip_of = |h: &Option<Holder>| {
            h.as_ref()
                .map(|h| h.udp_ip)
                .unwrap_or(IpAddr::from([0, 0, 0, 0]))
        };
        let ips = [ip_of(&self.holders[idx][0]), ip_of(&self.holders[idx][1])];
        let rt = &mut self.runtime[idx];
        rt.relay_pending = Some(why);
        rt.direct_deadline = None;
        fx.relay.push(RelayOp::Start {
            stream: idx,
            generation: rt.generation,
            ips,
        });
        fx.view_changed = true;
    }

    /// The relay asked for is running: both sides are sent to it. `false` if the request is
    /// stale (the pairing started over meanwhile) and the relay should be dropped.
    pub fn relay_ready(&mut self, idx: usize, generation: u64, ports: [u16; 2]) -> (bool, Effects) {
        let mut fx = Effects::default();
        let rt = &mut self.runtime[idx];
        if rt.generation != generation || rt.relay_pending.is_none() {
            return (false, fx);
        }
        self.with_summary_change(&mut fx, |core, fx| {
            let rt = &mut core.runtime[idx];
            rt.path = Some(MediaPath::Relay);
            rt.path_reason = rt.relay_pending.take();
            rt.relay_ports = Some(ports);
            tracing::info!(
                session = core.rec.name,
                stream = core.rec.streams[idx].name,
                ?ports,
                reason = rt.path_reason.as_deref().unwrap_or(""),
                "stream relayed"
            );
            core.send_coordinates(idx, fx);
        });
        fx.view_changed = true;
        (true, fx)
    }

    /// The relay could not be started: the stream stays (or goes) direct, and says why.
    pub fn relay_failed(&mut self, idx: usize, generation: u64, error: &str) -> Effects {
        let mut fx = Effects::default();
        let rt = &mut self.runtime[idx];
        if rt.generation != generation {
            return fx;
        }
        let why = rt.relay_pending.take().unwrap_or_default();
        tracing::warn!(
            session = self.rec.name,
            stream = self.rec.streams[idx].name,
            "cannot relay: {error}"
        );
        let already_direct = rt.path == Some(MediaPath::Direct);
        rt.path = Some(MediaPath::Direct);
        rt.path_reason = Some(format!("{why}, but the relay is unavailable: {error}"));
        if !already_direct {
            self.send_coordinates(idx, &mut fx);
        }
        fx.view_changed = true;
        fx
    }

    /// The relay of stream `idx` freed itself (no traffic): pair the stream again, so that its
    /// peers, if they are still there, get fresh coordinates.
    pub fn relay_idle(&mut self, idx: usize, generation: u64, now: i64) -> Effects {
        let mut fx = Effects::default();
        if self.runtime[idx].generation != generation {
            return fx;
        }
        self.with_summary_change(&mut fx, |core, fx| {
            core.reset_path(idx, fx);
            if core.both_registered(idx) && core.pair(idx, now, fx) {
                core.send_coordinates(idx, fx);
            }
        });
        fx
    }

    /// When [`tick`](Self::tick) has something to do.
    pub fn next_deadline(&self) -> Option<i64> {
        self.runtime.iter().filter_map(|r| r.direct_deadline).min()
    }

    /// Gives up on direct attempts that did not connect in time.
    pub fn tick(&mut self, now: i64) -> Effects {
        let mut fx = Effects::default();
        for idx in 0..self.runtime.len() {
            if self.runtime[idx].direct_deadline.is_some_and(|d| d <= now)
                && self.both_registered(idx)
            {
                let secs = self.policy.direct_timeout_ms as f64 / 1000.0;
                self.request_relay(
                    idx,
                    format!("no direct SRT connection within {secs} s (a NAT or firewall blocks the rendezvous)"),
                    &mut fx,
                );
            }
        }
        fx
    }

    /// Changes a stream's SRT latency; both peers get it and reconnect with it.
    pub fn set_latency(
        &mut self,
        stream: &str,
        latency: u32,
        now: i64,
    ) -> Result<Effects, ApiError> {
        let idx = self.stream_index(stream)?;
        if !(MIN_LATENCY_MS..=MAX_LATENCY_MS).contains(&latency) {
            return Err(ApiError::bad_request(format!(
                "latency must be between {MIN_LATENCY_MS} and {MAX_LATENCY_MS} ms, got {latency}"
            )));
        }
        let mut fx = Effects::default();
        fx.store.extend(self.touch(now));
        self.rec.streams[idx].latency = latency;
        fx.store.push(StoreOp::Latency {
            session: self.rec.name.clone(),
            stream: stream.to_string(),
            latency,
        });
        let rt = &self.runtime[idx];
        if rt.path.is_some() && rt.relay_pending.is_none() {
            self.send_coordinates(idx, &mut fx);
        }
        fx.view_changed = true;
        Ok(fx)
    }

    pub fn coordinates(&self) -> Vec<StreamCoordinates> {
        self.rec
            .streams
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let live = |role: Role| {
                    let h = self.holders[i][slot_index(role)].as_ref()?;
                    s.peer(role)
                        .as_ref()
                        .map(|p| (p.address.clone(), h.local_port))
                };
                StreamCoordinates {
                    name: s.name.clone(),
                    passphrase: s.passphrase.clone(),
                    pbkeylen: self.rec.pbkeylen,
                    latency: s.latency,
                    sender: live(Role::Sender),
                    receiver: live(Role::Receiver),
                    relay_ports: self.runtime[i].relay_ports,
                }
            })
            .collect()
    }

    /// Admin connections that hold no slot: dashboards.
    pub fn watchers(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.conns
            .iter()
            .filter(|(_, c)| c.scope == Scope::Admin && c.slot.is_none())
            .map(|(id, _)| *id)
    }

    fn peer_status(&self, idx: usize, role: Role) -> PeerStatus {
        match &self.holders[idx][slot_index(role)] {
            None => PeerStatus::Waiting,
            Some(Holder {
                srt: Some(SrtStatus::Connected),
                ..
            }) => PeerStatus::Connected,
            Some(_) => PeerStatus::Registered,
        }
    }

    fn stream_state(&self, idx: usize) -> SessionState {
        if self.closed {
            return SessionState::Closed;
        }
        match (
            self.peer_status(idx, Role::Sender),
            self.peer_status(idx, Role::Receiver),
        ) {
            (PeerStatus::Waiting, _) | (_, PeerStatus::Waiting) => SessionState::Waiting,
            _ if self.runtime[idx].relay_ports.is_some() => SessionState::Relaying,
            _ if self.link_up(idx) => SessionState::Connected,
            _ => SessionState::Ready,
        }
    }

    /// The session's state is its least advanced stream's.
    pub fn state(&self) -> SessionState {
        (0..self.rec.streams.len())
            .map(|i| self.stream_state(i))
            .min()
            .unwrap_or(SessionState::Waiting)
    }

    pub fn summary(&self) -> SessionUpdate {
        let streams: Vec<StreamSummary> = self
            .rec
            .streams
            .iter()
            .enumerate()
            .map(|(i, s)| StreamSummary {
                name: s.name.clone(),
                label: s.label.clone(),
                state: self.stream_state(i),
                sender: self.peer_status(i, Role::Sender),
                receiver: self.peer_status(i, Role::Receiver),
                tally: s.tally,
            })
            .collect();
        let connected = (0..streams.len()).filter(|i| self.link_up(*i)).count();
        SessionUpdate {
            state: self.state(),
            total: streams.len(),
            connected,
            streams,
        }
    }

    pub fn view(&self) -> SessionView {
        let peer_view = |idx: usize, role: Role| {
            let last = self.rec.streams[idx].peer(role).as_ref();
            let holder = self.holders[idx][slot_index(role)].as_ref();
            PeerView {
                status: self.peer_status(idx, role),
                address: last.map(|p| p.address.clone()),
                meta: last.map(|p| p.meta.clone()),
                srt: holder.and_then(|h| h.srt),
                registered_at: last.map(|p| format_time(p.registered_ms)),
                last_health: last.and_then(|p| p.health.clone()),
                health_at: last.and_then(|p| p.health_ms).map(format_time),
                nat: holder.and_then(|h| h.nat.clone()),
            }
        };
        // Only live holders' health colours a stream.
        let live_health = |idx: usize, role: Role| {
            self.holders[idx][slot_index(role)].as_ref()?;
            self.rec.streams[idx].peer(role).as_ref()?.health.as_ref()
        };
        let streams: Vec<StreamView> = self
            .rec
            .streams
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let rt = &self.runtime[i];
                let level = health::level(
                    [live_health(i, Role::Sender), live_health(i, Role::Receiver)],
                    s.latency,
                );
                StreamView {
                    name: s.name.clone(),
                    label: s.label.clone(),
                    role: s.role.clone(),
                    audio: s.audio.clone(),
                    state: self.stream_state(i),
                    latency: s.latency,
                    tally: s.tally,
                    path: rt.path,
                    path_reason: rt.path_reason.clone().or(rt.relay_pending.clone()),
                    level: level.as_ref().map(|l| l.0),
                    level_reason: level.map(|l| l.1),
                    recommendation: rt.health.recommendation(),
                    history: rt.health.history(),
                    sender: peer_view(i, Role::Sender),
                    receiver: peer_view(i, Role::Receiver),
                }
            })
            .collect();
        let connected = (0..streams.len()).filter(|i| self.link_up(*i)).count();
        SessionView {
            session: self.rec.name.clone(),
            state: self.state(),
            latency: self.rec.latency,
            ttl: self.rec.ttl_s,
            created: format_time(self.rec.created_ms),
            expires: self.expires_ms().map(format_time),
            total: streams.len(),
            connected,
            streams,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The actor

/// What a connection task receives from its session.
#[derive(Debug, Clone)]
pub enum Outbound {
    Text(axum::extract::ws::Utf8Bytes),
    /// Close the socket with this code and reason.
    Close(u16, String),
}

enum Command {
    Attach {
        conn: ConnId,
        ip: IpAddr,
        scope: Scope,
        out: mpsc::Sender<Outbound>,
        reply: oneshot::Sender<Result<(), ApiError>>,
    },
    Message {
        conn: ConnId,
        msg: ClientMessage,
    },
    Detach {
        conn: ConnId,
    },
    View {
        reply: oneshot::Sender<SessionView>,
    },
    Tally {
        stream: String,
        state: TallyState,
        reply: oneshot::Sender<Result<(), ApiError>>,
    },
    Latency {
        stream: String,
        latency: u32,
        reply: oneshot::Sender<Result<(), ApiError>>,
    },
    Coordinates {
        reply: oneshot::Sender<Vec<StreamCoordinates>>,
    },
    RelayIdle {
        stream: usize,
        generation: u64,
    },
    Close {
        reason: String,
        reply: oneshot::Sender<()>,
    },
}

/// A cheap handle to a running session task.
#[derive(Clone, Debug)]
pub struct SessionHandle {
    pub name: Arc<str>,
    pub nonce: Arc<str>,
    tx: mpsc::Sender<Command>,
}

fn gone(name: &str) -> ApiError {
    ApiError::gone(format!("session {name} is closed"))
}

impl SessionHandle {
    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, ApiError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| gone(&self.name))?;
        rx.await.map_err(|_| gone(&self.name))
    }

    pub async fn attach(
        &self,
        conn: ConnId,
        ip: IpAddr,
        scope: Scope,
        out: mpsc::Sender<Outbound>,
    ) -> Result<(), ApiError> {
        self.request(|reply| Command::Attach {
            conn,
            ip,
            scope,
            out,
            reply,
        })
        .await?
    }

    /// Forwards a peer's message; waits for room in the session's queue (back-pressure on that peer).
    pub async fn message(&self, conn: ConnId, msg: ClientMessage) -> bool {
        self.tx.send(Command::Message { conn, msg }).await.is_ok()
    }

    pub async fn detach(&self, conn: ConnId) {
        let _ = self.tx.send(Command::Detach { conn }).await;
    }

    pub async fn view(&self) -> Result<SessionView, ApiError> {
        self.request(|reply| Command::View { reply }).await
    }

    pub async fn set_tally(&self, stream: String, state: TallyState) -> Result<(), ApiError> {
        self.request(|reply| Command::Tally {
            stream,
            state,
            reply,
        })
        .await?
    }

    pub async fn set_latency(&self, stream: String, latency: u32) -> Result<(), ApiError> {
        self.request(|reply| Command::Latency {
            stream,
            latency,
            reply,
        })
        .await?
    }

    /// What third-party connection strings are made of.
    pub async fn coordinates(&self) -> Result<Vec<StreamCoordinates>, ApiError> {
        self.request(|reply| Command::Coordinates { reply }).await
    }

    /// Closes the session; returns once the closure is stored and the name answers 410.
    pub async fn close(&self, reason: &str) -> Result<(), ApiError> {
        self.request(|reply| Command::Close {
            reason: reason.to_string(),
            reply,
        })
        .await
    }
}

/// Everything a session task needs from the server.
#[derive(Clone)]
pub struct SessionEnv {
    pub store: Store,
    pub registry: Arc<Registry>,
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
    pub max_conns: usize,
    pub policy: PathPolicy,
    pub relay: Arc<RelayService>,
}

/// Dashboards get at most one view per this interval (health arrives every second per peer).
const VIEW_INTERVAL: Duration = Duration::from_millis(250);

/// Starts the task owning `rec`.
pub fn spawn(rec: SessionRecord, env: SessionEnv) -> SessionHandle {
    let (tx, rx) = mpsc::channel(256);
    let handle = SessionHandle {
        name: rec.name.as_str().into(),
        nonce: rec.nonce.as_str().into(),
        tx,
    };
    let actor = Actor {
        me: handle.tx.downgrade(),
        core: SessionCore::new(rec, env.max_conns, env.policy.clone()),
        outs: HashMap::new(),
        relays: HashMap::new(),
        view_due: None,
        view_sent: tokio::time::Instant::now() - VIEW_INTERVAL,
        env: env.clone(),
    };
    env.tracker.spawn(actor.run(rx));
    handle
}

struct Actor {
    /// This session's own queue, for events from tasks it starts (relays).
    me: mpsc::WeakSender<Command>,
    core: SessionCore,
    outs: HashMap<ConnId, mpsc::Sender<Outbound>>,
    /// Running relays by stream index.
    relays: HashMap<usize, Relay>,
    /// When the dashboards are due a fresh view.
    view_due: Option<tokio::time::Instant>,
    view_sent: tokio::time::Instant,
    env: SessionEnv,
}

fn instant_at(ms: i64) -> tokio::time::Instant {
    let wait = (ms - now_ms()).max(0) as u64;
    tokio::time::Instant::now() + Duration::from_millis(wait)
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        loop {
            let expiry = self.core.expires_ms().map(instant_at);
            let deadline = self.core.next_deadline().map(instant_at);
            tokio::select! {
                _ = self.env.cancel.cancelled() => {
                    // Server shutdown: the session lives on in the database. Count the
                    // connections that were open as activity so the TTL restarts after the restart.
                    if self.core.has_connections() {
                        let name = self.core.name().to_string();
                        self.env.store.send(StoreOp::Activity { session: name, at_ms: now_ms() }).await;
                    }
                    return;
                }
                _ = sleep_until_opt(expiry) => {
                    if self.core.expires_ms().is_some_and(|at| at <= now_ms()) {
                        tracing::info!(session = self.core.name(), "session expired after inactivity");
                        self.shutdown("expired").await;
                        return;
                    }
                }
                _ = sleep_until_opt(deadline) => {
                    let fx = self.core.tick(now_ms());
                    self.apply(fx).await;
                }
                _ = sleep_until_opt(self.view_due) => self.send_view(),
                cmd = rx.recv() => {
                    let Some(cmd) = cmd else { return };
                    if self.command(cmd).await {
                        return;
                    }
                }
            }
        }
    }

    /// Handles one command; `true` when the session is over.
    async fn command(&mut self, cmd: Command) -> bool {
        let now = now_ms();
        match cmd {
            Command::Attach {
                conn,
                ip,
                scope,
                out,
                reply,
            } => match self.core.attach(conn, ip, scope, now) {
                Ok(fx) => {
                    self.outs.insert(conn, out);
                    let _ = reply.send(Ok(()));
                    self.apply(fx).await;
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Message { conn, msg } => {
                let fx = self.core.handle(conn, msg, now);
                self.apply(fx).await;
            }
            Command::Detach { conn } => {
                self.outs.remove(&conn);
                let fx = self.core.detach(conn, now);
                self.apply(fx).await;
            }
            Command::View { reply } => {
                if let Some(op) = self.core.touch(now) {
                    self.env.store.send(op).await;
                }
                let _ = reply.send(self.core.view());
            }
            Command::Tally {
                stream,
                state,
                reply,
            } => {
                let result = self.core.set_tally(&stream, state, now);
                self.apply_and_answer(result, reply).await;
            }
            Command::Latency {
                stream,
                latency,
                reply,
            } => {
                let result = self.core.set_latency(&stream, latency, now);
                self.apply_and_answer(result, reply).await;
            }
            Command::Coordinates { reply } => {
                let _ = reply.send(self.core.coordinates());
            }
            Command::RelayIdle { stream, generation } => {
                let fx = self.core.relay_idle(stream, generation, now);
                self.apply(fx).await;
            }
            Command::Close { reason, reply } => {
                self.shutdown(&reason).await;
                let _ = reply.send(());
                return true;
            }
        }
        false
    }

    /// Closes the session: tells every connection, stores the closure, frees the name.
    async fn shutdown(&mut self, reason: &str) {
        let mut fx = self.core.close(reason, now_ms());
        // The closure must be committed before anyone is told the name is gone.
        let ops = std::mem::take(&mut fx.store);
        self.apply(fx).await;
        for (_, out) in self.outs.drain() {
            let _ = out.try_send(Outbound::Close(
                super::ws::close_code::NORMAL,
                format!("session closed: {reason}"),
            ));
        }
        for op in ops {
            if let StoreOp::Close {
                session,
                reason,
                at_ms,
                ..
            } = op
            {
                if let Err(e) = self
                    .env
                    .store
                    .commit(|ack| StoreOp::Close {
                        session,
                        reason,
                        at_ms,
                        ack: Some(ack),
                    })
                    .await
                {
                    tracing::error!("could not store the closure of a session: {e}");
                }
            } else {
                self.env.store.send(op).await;
            }
        }
        self.env.registry.remove_closed(self.core.name(), reason);
    }

    /// Carries out an operator command's effects, then answers it.
    async fn apply_and_answer(
        &mut self,
        result: Result<Effects, ApiError>,
        reply: oneshot::Sender<Result<(), ApiError>>,
    ) {
        let answer = match result {
            Ok(fx) => {
                self.apply(fx).await;
                Ok(())
            }
            Err(e) => Err(e),
        };
        let _ = reply.send(answer);
    }

    /// Sends the current view to every dashboard now.
    fn send_view(&mut self) {
        self.view_due = None;
        self.view_sent = tokio::time::Instant::now();
        let watchers: Vec<ConnId> = self.core.watchers().collect();
        if watchers.is_empty() {
            return;
        }
        let msg = ServerMessage::View(Box::new(self.core.view()));
        let text: axum::extract::ws::Utf8Bytes = match serde_json::to_string(&msg) {
            Ok(t) => t.into(),
            Err(e) => {
                tracing::error!("cannot serialise a session view: {e}");
                return;
            }
        };
        for conn in watchers {
            if let Some(out) = self.outs.get(&conn) {
                // A dashboard that does not keep up misses views, not the next one.
                let _ = out.try_send(Outbound::Text(text.clone()));
            }
        }
    }

    async fn apply(&mut self, fx: Effects) {
        for op in fx.store {
            self.env.store.send(op).await;
        }
        if fx.view_changed && self.view_due.is_none() {
            self.view_due = Some(self.view_sent + VIEW_INTERVAL);
        }
        let mut slow = Vec::new();
        for (target, msg) in fx.out {
            let text: axum::extract::ws::Utf8Bytes = match serde_json::to_string(&msg) {
                Ok(t) => t.into(),
                Err(e) => {
                    tracing::error!("cannot serialise a server message: {e}");
                    continue;
                }
            };
            let mut deliver = |conn: ConnId, out: &mpsc::Sender<Outbound>| {
                if out.try_send(Outbound::Text(text.clone())).is_err() {
                    slow.push(conn);
                }
            };
            match target {
                Target::Conn(conn) => {
                    if let Some(out) = self.outs.get(&conn) {
                        deliver(conn, out);
                    }
                }
                Target::All => {
                    for (conn, out) in &self.outs {
                        deliver(*conn, out);
                    }
                }
            }
        }
        // A connection whose queue is full is too slow to follow the session: dropping its sender
        // makes its task close the socket, and the detach frees its slot.
        for conn in slow {
            if self.outs.remove(&conn).is_some() {
                tracing::info!(
                    session = self.core.name(),
                    conn,
                    "dropping a connection that does not read its messages"
                );
                let fx = self.core.detach(conn, now_ms());
                Box::pin(self.apply(fx)).await;
            }
        }
        // After the messages of this event: a peer must get `registered` before the relayed
        // coordinates the relay's start produces.
        for op in fx.relay {
            self.relay(op).await;
        }
    }
}

impl Actor {
    async fn relay(&mut self, op: RelayOp) {
        match op {
            RelayOp::Stop { stream } => {
                self.relays.remove(&stream);
            }
            RelayOp::Start {
                stream,
                generation,
                ips,
            } => {
                // The relay's task tells this session when it frees itself.
                let me = self.me.clone();
                let on_idle = move || {
                    if let Some(tx) = me.upgrade() {
                        // Waits for room: a lost notice would leave the stream on dead ports.
                        tokio::spawn(async move {
                            let _ = tx.send(Command::RelayIdle { stream, generation }).await;
                        });
                    }
                };
                let fx = match self.env.relay.allocate(ips, on_idle).await {
                    Ok(relay) => {
                        let (current, fx) = self.core.relay_ready(stream, generation, relay.ports);
                        if current {
                            self.relays.insert(stream, relay);
                        }
                        fx
                    }
                    Err(e) => self.core.relay_failed(stream, generation, &e),
                };
                Box::pin(self.apply(fx)).await;
            }
        }
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{PeerMeta, Port, StatusReport};
    use crate::server::store::StreamRecord;

    fn record(streams: &[&str]) -> SessionRecord {
        SessionRecord {
            name: "show".into(),
            nonce: "n".into(),
            created_ms: 0,
            ttl_s: 60,
            latency: 200,
            pbkeylen: 16,
            last_activity_ms: 0,
            streams: streams
                .iter()
                .map(|s| StreamRecord {
                    name: s.to_string(),
                    label: None,
                    role: None,
                    audio: None,
                    passphrase: format!("pass-{s}-0123456789"),
                    latency: 200,
                    tally: TallyState::Off,
                    sender: None,
                    receiver: None,
                })
                .collect(),
        }
    }

    fn register(stream: Option<&str>, role: Role, port: u16) -> ClientMessage {
        ClientMessage::Register(Register {
            stream: stream.map(String::from),
            port: Port(port),
            role,
            meta: PeerMeta::default(),
            nat: None,
            reports: true,
        })
    }

    fn sent_to(fx: &Effects, conn: ConnId) -> Vec<&ServerMessage> {
        fx.out
            .iter()
            .filter(|(t, _)| *t == Target::Conn(conn) || *t == Target::All)
            .map(|(_, m)| m)
            .collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn both_sides_get_each_others_coordinates_and_one_passphrase() {
        let mut core = SessionCore::new(record(&["cam"]), 8, PathPolicy::default());
        core.attach(1, ip("203.0.113.2"), Scope::Admin, 0).unwrap();
        core.attach(2, ip("198.51.100.2"), Scope::Admin, 0).unwrap();
        let fx = core.handle(1, register(None, Role::Sender, 9000), 1);
        assert!(matches!(
            sent_to(&fx, 1)[0],
            ServerMessage::Registered(Registered { peer: None, .. })
        ));
        assert_eq!(core.state(), SessionState::Waiting);

        let fx = core.handle(2, register(Some("cam"), Role::Receiver, 9001), 2);
        let to_sender: Vec<_> = sent_to(&fx, 1)
            .into_iter()
            .filter_map(|m| match m {
                ServerMessage::Peer(p) => Some(p.clone()),
                _ => None,
            })
            .collect();
        let to_receiver: Vec<_> = sent_to(&fx, 2)
            .into_iter()
            .filter_map(|m| match m {
                ServerMessage::Peer(p) => Some(p.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            (to_sender[0].ip.as_str(), to_sender[0].port),
            ("198.51.100.2", 9001)
        );
        assert_eq!(
            (to_receiver[0].ip.as_str(), to_receiver[0].port),
            ("203.0.113.2", 9000)
        );
        assert_eq!(to_sender[0].passphrase, to_receiver[0].passphrase);
        assert_eq!(core.state(), SessionState::Ready);

        core.handle(
            1,
            ClientMessage::Status(StatusReport {
                srt: SrtStatus::Connected,
            }),
            3,
        );
        // One side's report is enough: the link is up (the other may be a third-party tool).
        assert_eq!(core.state(), SessionState::Connected);
        core.handle(
            2,
            ClientMessage::Status(StatusReport {
                srt: SrtStatus::Connected,
            }),
            4,
        );
        assert_eq!(core.state(), SessionState::Connected);

        // the receiver leaves: back to WAITING, and a newcomer takes the slot over
        core.detach(2, 5);
        assert_eq!(core.state(), SessionState::Waiting);
        core.attach(3, ip("192.0.2.7"), Scope::Admin, 6).unwrap();
        let fx = core.handle(3, register(None, Role::Receiver, 7000), 7);
        assert!(
            sent_to(&fx, 1).iter().any(
                |m| matches!(m, ServerMessage::Peer(p) if p.ip == "192.0.2.7" && p.port == 7000)
            )
        );
        assert_eq!(core.state(), SessionState::Ready);
    }

    #[test]
    fn refusals() {
        let mut core = SessionCore::new(record(&["a", "b"]), 3, PathPolicy::default());
        let stream_b_sender = Scope::Stream {
            stream: "b".into(),
            role: Role::Sender,
        };
        core.attach(1, ip("127.0.0.1"), Scope::Admin, 0).unwrap();
        core.attach(2, ip("127.0.0.1"), stream_b_sender, 0).unwrap();
        core.attach(3, ip("127.0.0.1"), Scope::Admin, 0).unwrap();
        assert_eq!(
            core.attach(4, ip("127.0.0.1"), Scope::Admin, 0)
                .unwrap_err()
                .status,
            StatusCode::TOO_MANY_REQUESTS
        );

        let code = |fx: &Effects| match &fx.out[0].1 {
            ServerMessage::Error(e) => e.code,
            other => panic!("expected an error, got {other:?}"),
        };
        assert_eq!(
            code(&core.handle(1, ClientMessage::Health(Health::default()), 1)),
            ErrorCode::NotRegistered
        );
        assert_eq!(
            code(&core.handle(1, register(Some("zz"), Role::Sender, 1), 1)),
            ErrorCode::UnknownStream
        );
        assert_eq!(
            code(&core.handle(2, register(Some("a"), Role::Sender, 1), 1)),
            ErrorCode::Forbidden
        );
        assert_eq!(
            code(&core.handle(2, register(Some("b"), Role::Receiver, 1), 1)),
            ErrorCode::Forbidden
        );
        core.handle(2, register(None, Role::Sender, 5000), 1);
        assert_eq!(
            code(&core.handle(3, register(Some("b"), Role::Sender, 1), 1)),
            ErrorCode::SlotTaken
        );
        core.handle(3, register(Some("a"), Role::Sender, 1), 1);
        assert_eq!(
            code(&core.handle(3, register(Some("a"), Role::Receiver, 1), 1)),
            ErrorCode::AlreadyRegistered
        );
    }

    #[test]
    fn tally_reaches_both_peers_and_the_state_is_the_least_advanced_stream() {
        let mut core = SessionCore::new(record(&["a", "b"]), 8, PathPolicy::default());
        core.attach(1, ip("127.0.0.1"), Scope::Admin, 0).unwrap();
        core.attach(2, ip("127.0.0.1"), Scope::Admin, 0).unwrap();
        core.handle(1, register(Some("a"), Role::Sender, 1000), 1);
        core.handle(2, register(Some("a"), Role::Receiver, 1001), 1);
        assert_eq!(core.summary().streams[0].state, SessionState::Ready);
        assert_eq!(core.state(), SessionState::Waiting, "stream b has nobody");
        let fx = core.set_tally("a", TallyState::OnAir, 2).unwrap();
        for conn in [1, 2] {
            assert!(
                sent_to(&fx, conn)
                    .iter()
                    .any(|m| matches!(m, ServerMessage::Tally(t) if t.state == TallyState::OnAir))
            );
        }
        assert!(core.set_tally("nope", TallyState::Off, 2).is_err());
    }

    fn register_nat(
        role: Role,
        port: u16,
        mapped: (&str, u16),
        mapping: NatMapping,
    ) -> ClientMessage {
        ClientMessage::Register(Register {
            stream: None,
            port: Port(port),
            role,
            meta: PeerMeta::default(),
            nat: Some(NatReport {
                mapped: Some(Endpoint {
                    ip: mapped.0.into(),
                    port: mapped.1,
                }),
                mapping,
            }),
            reports: true,
        })
    }

    fn peers_sent(fx: &Effects, conn: ConnId) -> Vec<PeerInfo> {
        sent_to(fx, conn)
            .into_iter()
            .filter_map(|m| match m {
                ServerMessage::Peer(p) => Some(p.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn mapped_addresses_are_handed_out_and_symmetric_nats_are_relayed() {
        let mut core = SessionCore::new(record(&["cam"]), 8, PathPolicy::default());
        core.attach(1, ip("203.0.113.2"), Scope::Admin, 0).unwrap();
        core.attach(2, ip("198.51.100.2"), Scope::Admin, 0).unwrap();
        core.handle(
            1,
            register_nat(
                Role::Sender,
                9000,
                ("203.0.113.2", 24419),
                NatMapping::EndpointIndependent,
            ),
            1,
        );
        let fx = core.handle(
            2,
            register_nat(
                Role::Receiver,
                9000,
                ("198.51.100.2", 61000),
                NatMapping::EndpointDependent,
            ),
            2,
        );
        // No direct coordinates: a relay is asked for, between the two mapped addresses.
        assert!(peers_sent(&fx, 1).is_empty() && peers_sent(&fx, 2).is_empty());
        let [
            RelayOp::Start {
                stream: 0,
                generation,
                ips,
            },
        ] = fx.relay.as_slice()
        else {
            panic!("expected one relay start, got {:?}", fx.relay)
        };
        assert_eq!(*ips, [ip("203.0.113.2"), ip("198.51.100.2")]);
        let reason = core.view().streams[0].path_reason.clone().unwrap();
        assert!(
            reason.contains("receiver's NAT") && reason.contains("endpoint-dependent"),
            "{reason}"
        );

        let (current, fx) = core.relay_ready(0, *generation, [40000, 40001]);
        assert!(current);
        let to_sender = peers_sent(&fx, 1);
        let to_receiver = peers_sent(&fx, 2);
        assert!(to_sender[0].relay && to_sender[0].port == 40000 && to_sender[0].ip.is_empty());
        assert!(to_receiver[0].relay && to_receiver[0].port == 40001);
        assert_eq!(core.state(), SessionState::Relaying);
        let view = core.view();
        assert_eq!(view.streams[0].path, Some(MediaPath::Relay));
        assert_eq!(
            view.streams[0].receiver.nat.as_ref().map(|n| n.mapping),
            Some(NatMapping::EndpointDependent)
        );

        // The receiver's signalling drops and comes back from the same place: its SRT never
        // stopped, so the relay stays and it gets the same relayed coordinates.
        let fx = core.detach(2, 3);
        assert!(fx.relay.is_empty(), "{:?}", fx.relay);
        core.attach(4, ip("198.51.100.2"), Scope::Admin, 4).unwrap();
        let back = register_nat(
            Role::Receiver,
            9000,
            ("198.51.100.2", 61000),
            NatMapping::EndpointDependent,
        );
        let fx = core.handle(4, back, 5);
        assert!(fx.relay.is_empty(), "{:?}", fx.relay);
        assert!(
            peers_sent(&fx, 4)
                .iter()
                .any(|p| p.relay && p.port == 40001)
        );
        assert_eq!(core.state(), SessionState::Relaying);

        // A receiver from elsewhere re-pairs: the old relay stops, a new one is asked for, and
        // a late answer to the old request is refused.
        core.detach(4, 6);
        core.attach(5, ip("192.0.2.50"), Scope::Admin, 6).unwrap();
        let fx = core.handle(
            5,
            register_nat(
                Role::Receiver,
                9000,
                ("192.0.2.50", 9000),
                NatMapping::EndpointDependent,
            ),
            7,
        );
        assert_eq!(fx.relay[0], RelayOp::Stop { stream: 0 });
        assert!(
            matches!(fx.relay[1], RelayOp::Start { stream: 0, .. }),
            "{:?}",
            fx.relay
        );
        assert!(!core.relay_ready(0, *generation, [1, 2]).0);

        // A relay that frees itself for lack of traffic makes the stream pair again.
        let RelayOp::Start { generation, .. } = fx.relay[1].clone() else {
            unreachable!()
        };
        let (current, _) = core.relay_ready(0, generation, [40010, 40011]);
        assert!(current);
        let fx = core.relay_idle(0, generation, 8);
        assert!(
            matches!(
                fx.relay.as_slice(),
                [RelayOp::Stop { .. }, RelayOp::Start { .. }]
            ),
            "{:?}",
            fx.relay
        );
    }

    #[test]
    fn a_direct_attempt_that_does_not_connect_in_time_is_relayed() {
        let policy = PathPolicy {
            relay: true,
            direct_timeout_ms: 5_000,
        };
        let mut core = SessionCore::new(record(&["cam"]), 8, policy);
        core.attach(1, ip("203.0.113.2"), Scope::Admin, 0).unwrap();
        core.attach(2, ip("198.51.100.2"), Scope::Admin, 0).unwrap();
        core.handle(1, register(None, Role::Sender, 9000), 1_000);
        let fx = core.handle(2, register(None, Role::Receiver, 9000), 2_000);
        assert_eq!(
            peers_sent(&fx, 1).len(),
            1,
            "direct coordinates go out at once"
        );
        assert_eq!(core.view().streams[0].path, Some(MediaPath::Direct));
        assert_eq!(core.next_deadline(), Some(7_000));
        assert!(core.tick(6_999).relay.is_empty());
        let fx = core.tick(7_000);
        assert!(matches!(
            fx.relay.as_slice(),
            [RelayOp::Start { stream: 0, .. }]
        ));
        let reason = core.view().streams[0].path_reason.clone().unwrap();
        assert!(reason.contains("within 5 s"), "{reason}");
        assert_eq!(core.next_deadline(), None);

        // When the relay cannot start, the stream stays direct and says why.
        let RelayOp::Start { generation, .. } = fx.relay[0].clone() else {
            unreachable!()
        };
        let fx = core.relay_failed(0, generation, "no free relay port");
        assert!(
            peers_sent(&fx, 1).is_empty(),
            "the direct coordinates were already sent"
        );
        let view = core.view();
        assert_eq!(view.streams[0].path, Some(MediaPath::Direct));
        assert!(
            view.streams[0]
                .path_reason
                .as_ref()
                .unwrap()
                .contains("no free relay port")
        );
    }

    #[test]
    fn connecting_in_time_cancels_the_fallback() {
        let mut core = SessionCore::new(record(&["cam"]), 8, PathPolicy::default());
        core.attach(1, ip("203.0.113.2"), Scope::Admin, 0).unwrap();
        core.attach(2, ip("198.51.100.2"), Scope::Admin, 0).unwrap();
        core.handle(1, register(None, Role::Sender, 9000), 0);
        core.handle(2, register(None, Role::Receiver, 9000), 0);
        for conn in [1, 2] {
            core.handle(
                conn,
                ClientMessage::Status(StatusReport {
                    srt: SrtStatus::Connected,
                }),
                100,
            );
        }
        assert_eq!(core.next_deadline(), None);
        assert!(core.tick(1_000_000).relay.is_empty());
        assert_eq!(core.state(), SessionState::Connected);
    }

    #[test]
    fn latency_changes_reach_both_peers_and_watchers_are_dashboards() {
        let mut core = SessionCore::new(record(&["cam"]), 8, PathPolicy::default());
        core.attach(1, ip("203.0.113.2"), Scope::Admin, 0).unwrap();
        core.attach(2, ip("198.51.100.2"), Scope::Admin, 0).unwrap();
        core.attach(3, ip("192.0.2.9"), Scope::Admin, 0).unwrap();
        core.handle(1, register(None, Role::Sender, 9000), 0);
        core.handle(2, register(None, Role::Receiver, 9000), 0);
        assert_eq!(core.watchers().collect::<Vec<_>>(), vec![3]);
        let fx = core.set_latency("cam", 480, 1).unwrap();
        assert!(fx.view_changed);
        assert_eq!(peers_sent(&fx, 1)[0].latency, 480);
        assert_eq!(peers_sent(&fx, 2)[0].latency, 480);
        assert_eq!(core.view().streams[0].latency, 480);
        let e = core.set_latency("cam", 10, 2).unwrap_err();
        assert!(e.message.contains("between 20 and 8000"), "{}", e.message);
        assert_eq!(
            core.set_latency("nope", 100, 2).unwrap_err().code,
            ErrorCode::UnknownStream
        );
    }

    #[test]
    fn the_direct_timer_restarts_when_a_link_breaks_or_a_side_returns_and_never_runs_for_tools() {
        let policy = PathPolicy {
            relay: true,
            direct_timeout_ms: 5_000,
        };
        let mut core = SessionCore::new(record(&["cam"]), 8, policy.clone());
        core.attach(1, ip("203.0.113.2"), Scope::Admin, 0).unwrap();
        core.attach(2, ip("198.51.100.2"), Scope::Admin, 0).unwrap();
        core.handle(1, register(None, Role::Sender, 9000), 0);
        core.handle(2, register(None, Role::Receiver, 9000), 0);
        let status = |srt| ClientMessage::Status(StatusReport { srt });
        core.handle(1, status(SrtStatus::Connected), 1_000);
        assert_eq!(core.next_deadline(), None);
        // The link breaks: the same chance as a new direct attempt.
        core.handle(1, status(SrtStatus::Disconnected), 20_000);
        assert_eq!(core.next_deadline(), Some(25_000));
        // The receiver's signalling drops and comes back from the same place: still timed.
        core.detach(2, 21_000);
        assert_eq!(core.next_deadline(), None);
        core.attach(3, ip("198.51.100.2"), Scope::Admin, 22_000)
            .unwrap();
        core.handle(3, register(None, Role::Receiver, 9000), 22_000);
        assert_eq!(core.next_deadline(), Some(27_000));

        // Two third-party tools (punch peer) cannot report: no timer, no relay they did not need.
        let mut core = SessionCore::new(record(&["cam"]), 8, policy);
        core.attach(1, ip("203.0.113.2"), Scope::Admin, 0).unwrap();
        core.attach(2, ip("198.51.100.2"), Scope::Admin, 0).unwrap();
        for (conn, role) in [(1, Role::Sender), (2, Role::Receiver)] {
            let ClientMessage::Register(mut r) = register(None, role, 9000) else {
                unreachable!()
            };
            r.reports = false;
            core.handle(conn, ClientMessage::Register(r), 0);
        }
        assert_eq!(core.view().streams[0].path, Some(MediaPath::Direct));
        assert_eq!(core.next_deadline(), None);
    }

    #[test]
    fn a_mapped_address_must_be_an_address() {
        let mut core = SessionCore::new(record(&["cam"]), 8, PathPolicy::default());
        core.attach(1, ip("203.0.113.2"), Scope::Admin, 0).unwrap();
        for (ip_text, port) in [("1.2.3.4?mode=caller&x", 9000), ("203.0.113.2", 0)] {
            let fx = core.handle(
                1,
                register_nat(
                    Role::Sender,
                    9000,
                    (ip_text, port),
                    NatMapping::EndpointIndependent,
                ),
                1,
            );
            assert!(
                sent_to(&fx, 1).iter().any(|m| matches!(m, ServerMessage::Error(e) if e.code == ErrorCode::BadMessage && e.message.contains("nat.mapped"))),
                "{ip_text}:{port} accepted"
            );
        }
        // An IPv4-mapped IPv6 address is handed out as the IPv4 address it is.
        let fx = core.handle(
            1,
            register_nat(
                Role::Sender,
                9000,
                ("::ffff:203.0.113.2", 24419),
                NatMapping::EndpointIndependent,
            ),
            2,
        );
        assert!(
            sent_to(&fx, 1)
                .iter()
                .any(|m| matches!(m, ServerMessage::Registered(r) if r.you.ip == "203.0.113.2"))
        );
    }
}
