//! The session core: one session's state machine, with no sockets, tasks or HTTP. Every event
//! (a connection attaching, a message, an operator command, a timer) returns [`Effects`] for the
//! owner to carry out. Pairing and the path policy are in `path.rs`, what it shows in `view.rs`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use super::admission::Waiting;
use super::effects::{ConnId, Effects};
use super::error::SessionError;
use super::model::{LastPeer, SessionRecord};
use super::path::{PathPolicy, Place, StreamRuntime};
use super::persist::StoreOp;
use crate::protocol::{
    ClientMessage, Endpoint, ErrorCode, Health, MAX_LABEL_LEN, NatReport, PeerMeta, Register,
    Registered, Role, ServerMessage, SrtStatus, Tally,
};
use crate::server::limit::client_key;
use crate::server::token::Scope;

/// Join-token connections from one client address (IPv6: one /64): one place cannot fill the
/// waiting room.
const JOIN_PER_CLIENT: usize = 4;

/// How often a session with steady traffic writes its activity time to the database.
const ACTIVITY_PERSIST_MS: i64 = 5_000;

/// How many connections a session takes, and how soon they must say what they are for.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// All connections together.
    pub total: usize,
    /// Connections with the admin token (dashboards, the CLI).
    pub admin: usize,
    /// Connections with the token of one side of one stream: a stream token cannot starve the
    /// admin or the other streams.
    pub per_side: usize,
    /// Connections with the join token (the waiting room): the venue QR code cannot starve the
    /// admin or the streams either.
    pub join: usize,
    /// A connection that has neither registered nor asked to watch this long after attaching
    /// is closed (milliseconds).
    pub identify_ms: i64,
}

/// One connection attached to the session.
#[derive(Debug)]
pub(super) struct ConnInfo {
    /// Its client address (signalling), the SRT address without STUN discovery.
    pub(super) ip: IpAddr,
    /// What its token allows.
    pub(super) scope: Scope,
    /// The `(stream, role)` it holds once registered.
    pub(super) slot: Option<(usize, Role)>,
    /// It asked to watch the session (a dashboard).
    pub(super) watching: bool,
    /// It registered with the join token and waits to be given a side.
    pub(super) waiting: Option<Waiting>,
    /// When it attached: it must register or watch within [`ConnLimits::identify_ms`].
    attached_ms: i64,
}

impl ConnInfo {
    /// It registered or watches: it keeps the session alive and is not closed for idling.
    fn identified(&self) -> bool {
        self.slot.is_some() || self.watching || self.waiting.is_some()
    }
}

/// The live holder of one side of a stream.
#[derive(Debug, Clone)]
pub(super) struct Holder {
    /// Its connection, where messages for this side go.
    pub(super) conn: ConnId,
    /// The SRT status it last reported (`None`: nothing since the current pairing).
    pub(super) srt: Option<SrtStatus>,
    /// Where the holder's SRT datagrams come from (its STUN-mapped address, else its
    /// signalling address): the address the relay admits for this side.
    pub(super) udp_ip: IpAddr,
    /// The local port its SRT socket binds.
    pub(super) local_port: u16,
    /// Its NAT discovery, which decides direct or relay.
    pub(super) nat: Option<NatReport>,
    /// Whether it reports its SRT status (`punch peer`, holding a side for a third-party tool,
    /// cannot).
    pub(super) reports: bool,
    /// It has no UDP: its datagrams come over the tunnel WebSocket, from the server itself.
    pub(super) tunnel: bool,
}

/// A session's state, independent of sockets and tasks.
#[derive(Debug)]
pub struct SessionCore {
    /// What is persisted; the core keeps it current and emits a store op per change.
    pub(super) rec: SessionRecord,
    /// Live holders per stream, `[sender, receiver]`.
    pub(super) holders: Vec<[Option<Holder>; 2]>,
    /// Per stream, what exists only while the server runs (path, relay, health history).
    pub(super) runtime: Vec<StreamRuntime>,
    /// Every attached connection: peers and dashboards.
    pub(super) conns: HashMap<ConnId, ConnInfo>,
    /// Connections the session accepts.
    pub(super) limits: ConnLimits,
    /// Direct versus relay.
    pub(super) policy: PathPolicy,
    /// When the activity time was last stored (it is stored at most every few seconds).
    activity_persisted_ms: i64,
    /// Closed or expired: every stream shows CLOSED.
    pub(super) closed: bool,
    /// The node serving the session, shown in its views (several servers on one database).
    pub(super) node: Option<String>,
}

/// The free-text fields of a `register` within [`MAX_LABEL_LEN`] characters.
pub(super) fn check_meta(meta: &PeerMeta) -> Result<(), String> {
    for (field, value) in [("label", &meta.label), ("audio", &meta.audio)] {
        if value
            .as_ref()
            .is_some_and(|v| v.chars().count() > MAX_LABEL_LEN)
        {
            return Err(format!(
                "meta.{field} is longer than {MAX_LABEL_LEN} characters"
            ));
        }
    }
    Ok(())
}

/// A `register`'s `nat.mapped`, canonical: it goes into the other side's SRT URI, so it must be
/// a plain address and a port.
pub(super) fn mapped_address(r: &Register) -> Result<Option<(IpAddr, u16)>, String> {
    match r.nat.as_ref().and_then(|n| n.mapped.as_ref()) {
        None => Ok(None),
        Some(m) => match m.ip.parse::<IpAddr>() {
            Ok(mip) if m.port != 0 => Ok(Some((mip.to_canonical(), m.port))),
            _ => Err(format!(
                "nat.mapped must be an IP address and a port 1-65535, got {:?}:{}",
                m.ip, m.port
            )),
        },
    }
}

/// Index of a role's side in `[sender, receiver]` arrays.
pub(super) fn slot_index(role: Role) -> usize {
    match role {
        Role::Sender => 0,
        Role::Receiver => 1,
    }
}

impl SessionCore {
    pub fn new(rec: SessionRecord, limits: ConnLimits, policy: PathPolicy) -> Self {
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
            limits,
            policy,
            activity_persisted_ms,
            closed: false,
            node: None,
        }
    }

    /// Names the node serving the session in its views.
    pub fn with_node(mut self, node: Option<String>) -> Self {
        self.node = node;
        self
    }

    pub fn name(&self) -> &str {
        &self.rec.name
    }

    /// Whether a connection that registered or watches is attached (such a connection keeps
    /// the session alive; one that did neither does not).
    pub fn has_connections(&self) -> bool {
        self.conns.values().any(ConnInfo::identified)
    }

    /// When the session expires if nothing happens (never while a peer or dashboard is there).
    pub fn expires_ms(&self) -> Option<i64> {
        if self.has_connections() {
            None
        } else {
            Some(self.rec.last_activity_ms + self.rec.ttl_s as i64 * 1000)
        }
    }

    /// When [`tick`](Self::tick) has something to do.
    pub fn next_deadline(&self) -> Option<i64> {
        [self.direct_deadline(), self.identify_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Timers: direct attempts that did not connect in time, connections that did not say
    /// what they are for.
    pub fn tick(&mut self, now: i64) -> Effects {
        let mut fx = Effects::default();
        self.direct_timeouts(now, &mut fx);
        self.close_unidentified(now, &mut fx);
        fx
    }

    /// When the first connection that did not say what it is for is due to be closed.
    fn identify_deadline(&self) -> Option<i64> {
        self.conns
            .values()
            .filter(|c| !c.identified())
            .map(|c| c.attached_ms + self.limits.identify_ms)
            .min()
    }

    /// Closes the connections that neither registered nor watched in time.
    fn close_unidentified(&mut self, now: i64, fx: &mut Effects) {
        let secs = self.limits.identify_ms as f64 / 1000.0;
        let due: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| !c.identified() && c.attached_ms + self.limits.identify_ms <= now)
            .map(|(id, _)| *id)
            .collect();
        for conn in due {
            let why = format!("no `register` or `watch` within {secs} s of connecting");
            fx.error(conn, ErrorCode::NotRegistered, why.clone());
            fx.close.push((conn, why));
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
    ) -> Result<Effects, SessionError> {
        let full = |what: String| {
            Err(SessionError::new(
                ErrorCode::TooManyConnections,
                format!("session {} already has {what}", self.rec.name),
            ))
        };
        if scope == Scope::Join && !self.rec.join {
            return Err(SessionError::new(
                ErrorCode::Forbidden,
                format!(
                    "session {} has no waiting room (it was created without \"join\": true)",
                    self.rec.name
                ),
            ));
        }
        // each receiver slot beyond a stream's first brings a sender leg and a receiver
        let total = self.limits.total + 2 * (self.rec.streams.len() - self.stream_heads().count());
        if self.conns.len() >= total {
            return full(format!("{total} connections"));
        }
        let same_scope = self.conns.values().filter(|c| c.scope == scope).count();
        match &scope {
            Scope::Admin if same_scope >= self.limits.admin => {
                return full(format!(
                    "{} connections with its admin token",
                    self.limits.admin
                ));
            }
            Scope::Join if same_scope >= self.limits.join => {
                return full(format!(
                    "{} connections with its join token (the waiting room is full)",
                    self.limits.join
                ));
            }
            Scope::Join
                if self
                    .conns
                    .values()
                    // (venue pages that watch do not take a camera's place)
                    .filter(|c| {
                        c.scope == Scope::Join && !c.watching && client_key(c.ip) == client_key(ip)
                    })
                    .count()
                    >= JOIN_PER_CLIENT =>
            {
                return full(format!(
                    "{JOIN_PER_CLIENT} connections with its join token from {}",
                    client_key(ip)
                ));
            }
            Scope::Stream { stream, role } => {
                if let Some(cap) = self.side_full(&scope, same_scope) {
                    return full(format!(
                        "{cap} connections with the token of the {role} of stream {stream:?}"
                    ));
                }
            }
            _ => {}
        }
        self.conns.insert(
            conn,
            ConnInfo {
                ip,
                scope,
                slot: None,
                watching: false,
                waiting: None,
                attached_ms: now,
            },
        );
        let mut fx = Effects::default();
        // A new connection learns where the session stands right away. It is not activity
        // yet: only registering or watching keeps a session alive.
        let summary = self.summary_for(&self.conns[&conn].scope);
        fx.send(conn, ServerMessage::Session(summary));
        Ok(fx)
    }

    pub fn detach(&mut self, conn: ConnId, now: i64) -> Effects {
        let mut fx = Effects::default();
        let Some(info) = self.conns.remove(&conn) else {
            return fx;
        };
        if !info.identified() {
            return fx;
        }
        // the waiting room on the dashboards loses it
        fx.view_changed |= info.waiting.is_some();
        self.rec.last_activity_ms = now;
        if let Some((idx, role)) = info.slot {
            self.with_summary_change(&mut fx, |core, fx| {
                // The path stays while one side is there: SRT may well go on while its
                // signalling reconnects, and a side coming back from elsewhere re-pairs. Once
                // both have left, a relay has nobody to serve.
                core.holders[idx][slot_index(role)] = None;
                core.runtime[idx].direct_deadline = None;
                core.device_relay_peer(idx, fx);
                if core.holders[idx].iter().all(Option::is_none) {
                    core.reset_path(idx, fx);
                }
                fx.store.push(StoreOp::Left {
                    session: core.rec.name.clone(),
                    stream: core.rec.streams[idx].name.clone(),
                    role,
                    at_ms: now,
                });
            });
        }
        // Persist the time the last connection left: the TTL counts from it, also across restarts.
        if !self.has_connections() {
            self.activity_persisted_ms = now;
            fx.store.push(StoreOp::Activity {
                session: self.rec.name.clone(),
                at_ms: now,
            });
        }
        fx
    }

    /// A peer's message, a `register`'s `nat.mapped` taken as verified (the tests' way in).
    #[cfg(test)]
    pub fn handle(&mut self, conn: ConnId, msg: ClientMessage, now: i64) -> Effects {
        self.handle_checked(conn, msg, true, now)
    }

    /// A peer's message; `mapping_seen`: the server's STUN service saw the `nat.mapped` of a
    /// `register` from this connection (see [`Self::register`] for an unseen one).
    pub fn handle_checked(
        &mut self,
        conn: ConnId,
        msg: ClientMessage,
        mapping_seen: bool,
        now: i64,
    ) -> Effects {
        let mut fx = Effects::default();
        if !self.conns.contains_key(&conn) {
            return fx;
        }
        match msg {
            ClientMessage::Watch => self.watch(conn, &mut fx),
            ClientMessage::Register(r) => self.register(conn, r, mapping_seen, now, &mut fx),
            ClientMessage::Health(h) => self.health(conn, h, now, &mut fx),
            ClientMessage::Status(s) => {
                if let Some((idx, role)) = self.registered_slot(conn, "status", &mut fx) {
                    self.with_summary_change(&mut fx, |core, fx| {
                        let was_up = core.link_up(idx);
                        if let Some(h) = core.holders[idx][slot_index(role)].as_mut() {
                            h.srt = Some(s.srt);
                        }
                        if core.link_up(idx) {
                            let rt = &mut core.runtime[idx];
                            rt.direct_deadline = None;
                            // the direct attempt made while waiting for relay capacity works
                            if rt.relay_waiting.take().is_some() {
                                rt.path_reason = None;
                                fx.view_changed = true;
                            }
                        } else if was_up {
                            // A direct link that broke gets the same chance as a new one.
                            core.arm_direct_timer(idx, now);
                        }
                        fx.view_changed = true;
                    });
                }
            }
        }
        // Only what a peer or a dashboard does is activity (a connection that never said what
        // it is for does not keep the session alive).
        if self.conns.get(&conn).is_some_and(ConnInfo::identified) {
            fx.store.extend(self.touch(now));
        }
        fx
    }

    fn watch(&mut self, conn: ConnId, fx: &mut Effects) {
        let Some(info) = self.conns.get(&conn) else {
            return;
        };
        if info.slot.is_some() || info.waiting.is_some() {
            fx.error(
                conn,
                ErrorCode::AlreadyRegistered,
                "this connection holds a side (or waits for one); watch from another connection",
            );
            return;
        }
        // The admin token watches the session; a stream token its own stream (the
        // camera-operator page), as much of it as the token may read; the join token the peers
        // waiting from the watcher's own place (the venue page), nothing of the session. Pages watching with a
        // stream token leave one of its connections free for the side's element.
        if let Scope::Stream { stream, role } = &info.scope {
            let scope = info.scope.clone();
            let watching = self
                .conns
                .values()
                .filter(|c| c.watching && c.scope == scope)
                .count();
            if watching + 1 >= self.limits.per_side {
                let why = format!(
                    "{watching} pages already watch with the token of the {role} of stream {stream:?}; one of its {} connections stays free for the side itself",
                    self.limits.per_side
                );
                fx.error(conn, ErrorCode::TooManyConnections, why.clone());
                fx.close.push((conn, why));
                return;
            }
        }
        let Some(info) = self.conns.get_mut(&conn) else {
            return;
        };
        info.watching = true;
        // The dashboard's first view follows.
        fx.view_changed = true;
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

    /// A `nat.mapped` the STUN service did not see for this connection (`mapping_seen` false)
    /// is taken only when it is this side's last registered address and comes from that IP: a
    /// side whose signalling reconnected while its SRT socket holds the port cannot run STUN
    /// again, and returns with the mapping it had (verified when it was first registered, or it
    /// would not be the address). Any other is dropped with `address_not_verified`, and the
    /// signalling address is used.
    fn register(
        &mut self,
        conn: ConnId,
        r: Register,
        mapping_seen: bool,
        now: i64,
        fx: &mut Effects,
    ) {
        let info = &self.conns[&conn];
        // (a waiting peer registers again when its NAT mapping changed: it keeps its place)
        if info.scope == Scope::Join {
            self.wait(conn, r, mapping_seen, now, fx);
            return;
        }
        self.register_as(conn, r, mapping_seen, now, fx);
    }

    /// A registration with a stream or admin token (or a waiting peer just admitted).
    pub(super) fn register_as(
        &mut self,
        conn: ConnId,
        mut r: Register,
        mapping_seen: bool,
        now: i64,
        fx: &mut Effects,
    ) {
        let info = &self.conns[&conn];
        let (token_stream, token_role) = match &info.scope {
            Scope::Admin | Scope::Join => (None, None),
            Scope::Stream { stream, role } => (Some(stream.clone()), Some(*role)),
        };
        let stream_name = r
            .stream
            .clone()
            .or(token_stream.clone())
            .unwrap_or_else(|| self.rec.streams[0].name.clone());
        let Some(head) = self
            .rec
            .streams
            .iter()
            .position(|s| s.name == stream_name && s.slot() == 1)
        else {
            let known: Vec<&str> = self
                .stream_heads()
                .map(|i| self.rec.streams[i].name.as_str())
                .collect();
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
        if let Err(e) = check_meta(&r.meta) {
            fx.error(conn, ErrorCode::BadMessage, e);
            return;
        }
        let held = info
            .slot
            .filter(|(_, role)| *role == r.role)
            .map(|(i, _)| i);
        let ports = [
            r.port.0,
            r.nat
                .as_ref()
                .and_then(|n| n.mapped.as_ref())
                .map_or(r.port.0, |m| m.port),
        ];
        let idx = match self.pick_link(head, r.role, r.receiver, held, (info.ip, ports)) {
            Ok(idx) => idx,
            Err(e) => {
                fx.error(conn, ErrorCode::UnknownStream, e);
                return;
            }
        };
        let receivers = self.receiver_count(head);
        let slot = (receivers > 1).then(|| self.rec.streams[idx].slot());
        if let Some((old_idx, old_role)) = info.slot
            && (old_idx, old_role) != (idx, r.role)
        {
            fx.error(
                conn,
                ErrorCode::AlreadyRegistered,
                format!(
                    "this connection is already the {old_role} of stream {:?}; open another connection for another slot",
                    self.rec.streams[old_idx].stream()
                ),
            );
            return;
        }
        let me = slot_index(r.role);
        if let Some(d) = self.device(idx, r.role) {
            fx.error(
                conn,
                ErrorCode::SlotTaken,
                format!(
                    "the {} of stream {stream_name:?} is held by an SRT {} device; change the side to a Punch peer first",
                    r.role,
                    d.mode.as_str()
                ),
            );
            return;
        }
        if info.watching {
            fx.error(
                conn,
                ErrorCode::AlreadyRegistered,
                "this connection watches the session; register from another connection",
            );
            return;
        }
        if let Some(holder) = &self.holders[idx][me]
            && holder.conn != conn
        {
            let from = self.rec.streams[idx]
                .peer(r.role)
                .as_ref()
                .map(|p| format!(" from {}:{}", p.address.ip, p.address.port))
                .unwrap_or_default();
            let what = match slot {
                Some(k) if r.receiver.is_some() || r.role == Role::Sender => {
                    format!("a {} connected on receiver {k}", r.role)
                }
                Some(_) => format!("all {receivers} receivers connected"),
                None => format!("a {} connected", r.role),
            };
            fx.error(
                conn,
                ErrorCode::SlotTaken,
                format!(
                    "stream {stream_name:?} already has {what}{from}; stop it first, or use another stream"
                ),
            );
            return;
        }
        let ip = info.ip;
        // The STUN-mapped address is where the SRT port is reachable; without discovery, the
        // signalling address with the declared port (right for port-preserving NATs).
        // A mapped address goes into the other side's SRT URI: it must be a plain address.
        let mapped = match mapped_address(&r) {
            Ok(mapped) => mapped,
            Err(e) => {
                fx.error(conn, ErrorCode::BadMessage, e);
                return;
            }
        };
        let mapped = match mapped {
            Some((mip, port)) if !mapping_seen => {
                // and from where it was: the NAT's public IP is its signalling IP too
                let known = mip == ip
                    && self.rec.streams[idx]
                        .peer(r.role)
                        .as_ref()
                        .is_some_and(|p| p.address.ip == mip.to_string() && p.address.port == port);
                if known {
                    Some((mip, port))
                } else {
                    fx.error(
                        conn,
                        ErrorCode::AddressNotVerified,
                        format!(
                            "nat.mapped {} was not seen by this server's STUN service for this connection (its Binding requests must carry the hello's stun_tag as USERNAME); registering the signalling address {ip}:{} instead",
                            SocketAddr::new(mip, port),
                            r.port.0
                        ),
                    );
                    if let Some(nat) = r.nat.as_mut() {
                        nat.mapped = None;
                    }
                    None
                }
            }
            other => other,
        };
        // (a tunnelled side's datagrams come from the server's tunnel socket, which the relay
        // admits by its exact address; this IP is what the side counts against)
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
                tunnel: r.tunnel,
            });
            if let Some(c) = core.conns.get_mut(&conn) {
                c.slot = Some((idx, r.role));
            }
            if r.tunnel {
                core.ensure_ticket(idx, me);
            } else {
                core.drop_ticket(idx, me);
            }
            let place = Place {
                address: address.clone(),
                mapping: core.holders[idx][me]
                    .as_ref()
                    .and_then(|h| h.nat.as_ref().map(|n| n.mapping)),
                // a side moving to its tunnel is paired again: the relay must admit the tunnel
                tunnel: r.tunnel,
            };
            let rt = &core.runtime[idx];
            let returning = rt.path.is_some() && rt.paired.as_ref().is_some_and(|p| p[me] == place);
            if !returning {
                core.reset_path(idx, fx);
            }
            core.device_relay_peer(idx, fx);
            fx.store.push(StoreOp::Registered {
                session: core.rec.name.clone(),
                stream: core.rec.streams[idx].name.clone(),
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
                    receiver: slot,
                    receivers,
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
}
