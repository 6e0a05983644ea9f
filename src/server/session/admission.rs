//! The waiting room: peers that register with the session's join token hold no side; they wait,
//! listed for the operator, until admitted into a free side of a stream (they then go on
//! exactly as if they had registered with that side's token) or rejected. A peer may be
//! admitted into a new stream, made for it.

use super::core::{SessionCore, check_meta, mapped_address, slot_index};
use super::effects::{ConnId, Effects};
use super::error::SessionError;
use super::model::StreamRecord;
use super::persist::StoreOp;
use crate::protocol::{
    Admission, AdmissionState, ErrorCode, Register, Role, ServerMessage, TallyState, WaitingPeer,
    validate_name,
};
use std::net::IpAddr;

use crate::server::limit::client_key;
use crate::server::time::format_time;
use crate::server::token::Scope;

/// A peer in the waiting room: what it registered with, kept for its admission.
#[derive(Debug, Clone)]
pub(super) struct Waiting {
    pub(super) register: Register,
    /// Whether the STUN service saw its `nat.mapped` (as `register` is told).
    pub(super) mapping_seen: bool,
    pub(super) since_ms: i64,
}

/// The name a waiting peer is admitted or rejected by.
fn peer_name(conn: ConnId) -> String {
    format!("p{conn}")
}

impl SessionCore {
    /// A `register` with the join token: into the waiting room.
    pub(super) fn wait(
        &mut self,
        conn: ConnId,
        r: Register,
        mapping_seen: bool,
        now: i64,
        fx: &mut Effects,
    ) {
        // everything the registration at admission checks of the message itself, now: an
        // admission must not fail on it later
        if let Err(e) = check_meta(&r.meta).and(mapped_address(&r).map(|_| ())) {
            fx.error(conn, ErrorCode::BadMessage, e);
            return;
        }
        let Some(info) = self.conns.get_mut(&conn) else {
            return;
        };
        if info.watching {
            fx.error(
                conn,
                ErrorCode::AlreadyRegistered,
                "this connection watches the waiting room (the venue page); register from another connection",
            );
            return;
        }
        // registering again (a new NAT mapping) keeps its place in the room
        let since_ms = info.waiting.as_ref().map_or(now, |w| w.since_ms);
        info.waiting = Some(Waiting {
            register: r,
            mapping_seen,
            since_ms,
        });
        fx.send(
            conn,
            ServerMessage::Admission(Admission {
                state: AdmissionState::Waiting,
                peer: peer_name(conn),
                stream: None,
                role: None,
                token: None,
            }),
        );
        fx.view_changed = true;
    }

    fn waiting_conn(&self, peer: &str) -> Result<ConnId, SessionError> {
        self.conns
            .iter()
            .find(|(id, c)| c.waiting.is_some() && peer_name(**id) == peer)
            .map(|(id, _)| *id)
            .ok_or_else(|| {
                SessionError::new(
                    ErrorCode::UnknownPeer,
                    format!(
                        "no peer {peer:?} waits in session {} (it left, or was admitted or rejected already)",
                        self.rec.name
                    ),
                )
            })
    }

    /// Adds stream `name` to the session (a peer is admitted into a new stream), with
    /// `passphrase`, at most `max` streams (receiver slots, counted over every stream) in all.
    pub fn add_stream(
        &mut self,
        name: &str,
        passphrase: String,
        max: usize,
        fx: &mut Effects,
    ) -> Result<(), SessionError> {
        let bad = |m: String| SessionError::new(ErrorCode::BadRequest, m);
        validate_name("stream", name).map_err(bad)?;
        if self.rec.streams.iter().any(|s| s.name == name) {
            return Err(bad(format!(
                "session {} has a stream {name:?} already: admit into it without `create`",
                self.rec.name
            )));
        }
        if self.rec.streams.len() >= max {
            return Err(bad(format!(
                "a session holds at most {max} streams (receiver slots over all its streams)"
            )));
        }
        let stream = StreamRecord {
            name: name.to_string(),
            label: None,
            role: None,
            audio: None,
            passphrase,
            latency: self.rec.latency,
            tally: TallyState::Off,
            sender: None,
            receiver: None,
            devices: [None, None],
        };
        fx.store.push(StoreOp::AddStream {
            session: self.rec.name.clone(),
            idx: self.rec.streams.len(),
            stream: Box::new(stream.clone()),
        });
        self.rec.streams.push(stream);
        self.holders.push([None, None]);
        self.runtime.push(Default::default());
        fx.view_changed = true;
        Ok(())
    }

    /// The side a waiting peer asked for (its role), for the admission's default.
    pub fn waiting_role(&self, peer: &str) -> Result<Role, SessionError> {
        let conn = self.waiting_conn(peer)?;
        Ok(self.conns[&conn]
            .waiting
            .as_ref()
            .map_or(Role::Sender, |w| w.register.role))
    }

    /// Gives waiting `peer` the side `role` of `stream`; `token` is that side's stream token,
    /// sent to it for its reconnects. The role must be the one it asked for: a `punchsrc`
    /// cannot send.
    /// `create`: `Some((passphrase, most streams))` makes `stream` a new stream first.
    pub fn admit(
        &mut self,
        peer: &str,
        stream: &str,
        role: Role,
        token: String,
        create: Option<(String, usize)>,
        now: i64,
    ) -> Result<Effects, SessionError> {
        let conn = self.waiting_conn(peer)?;
        let wish = self.waiting_role(peer)?;
        if wish != role {
            return Err(SessionError::new(
                ErrorCode::BadRequest,
                format!("peer {peer} is a {wish}: admit it as the {wish} of a stream"),
            ));
        }
        let mut fx = Effects::default();
        // (after every check that can refuse: a new stream is not undone)
        if let Some((passphrase, max)) = create {
            self.add_stream(stream, passphrase, max, &mut fx)?;
        }
        let idx = self.stream_index(stream)?;
        let side = Scope::Stream {
            stream: stream.to_string(),
            role,
        };
        let count = self.conns.values().filter(|c| c.scope == side).count();
        if let Some(cap) = self.side_full(&side, count) {
            return Err(SessionError::new(
                ErrorCode::TooManyConnections,
                format!("the {role} of stream {stream:?} already has {cap} connections"),
            ));
        }
        if role == Role::Sender && self.receiver_count(idx) > 1 {
            return Err(SessionError::new(
                ErrorCode::BadRequest,
                format!(
                    "stream {stream:?} has several receivers: its sender is a punchsink with the stream's sender token, which links with each of them"
                ),
            ));
        }
        // a receiver takes a free receiver slot, as with the receiver token (what it asked for
        // is kept only if there is such a slot)
        let ip = self.conns[&conn].ip;
        let asked = waiting_receiver(self.conns.get(&conn))
            .filter(|k| usize::from(*k) <= self.links_of(idx).len());
        let port = waiting_port(self.conns.get(&conn));
        let link = self
            .pick_link(idx, role, asked, None, (ip, [port, port]))
            .map_err(|e| SessionError::new(ErrorCode::BadRequest, e))?;
        if self.device(link, role).is_some() || self.holders[link][slot_index(role)].is_some() {
            return Err(SessionError::new(
                ErrorCode::SlotTaken,
                format!("the {role} of stream {stream:?} is taken; choose a free side"),
            ));
        }
        fx.store.extend(self.touch(now));
        let Some(info) = self.conns.get_mut(&conn) else {
            return Ok(fx);
        };
        let Some(waiting) = info.waiting.take() else {
            return Ok(fx);
        };
        info.scope = side;
        fx.send(
            conn,
            ServerMessage::Admission(Admission {
                state: AdmissionState::Admitted,
                peer: peer.to_string(),
                stream: Some(stream.to_string()),
                role: Some(role),
                token: Some(token),
            }),
        );
        let mut r = waiting.register;
        r.stream = Some(stream.to_string());
        r.role = role;
        // the slot just checked
        r.receiver = (self.receiver_count(idx) > 1).then(|| self.rec.streams[link].slot());
        self.register_as(conn, r, waiting.mapping_seen, now, &mut fx);
        fx.view_changed = true;
        Ok(fx)
    }

    /// Turns waiting `peer` down: it is told why and closed.
    pub fn reject(&mut self, peer: &str, now: i64) -> Result<Effects, SessionError> {
        let conn = self.waiting_conn(peer)?;
        let mut fx = Effects::default();
        fx.store.extend(self.touch(now));
        if let Some(info) = self.conns.get_mut(&conn) {
            info.waiting = None;
        }
        let why = format!(
            "the producer of session {} turned this peer down",
            self.rec.name
        );
        fx.error(conn, ErrorCode::Rejected, why.clone());
        fx.close.push((conn, why));
        fx.view_changed = true;
        Ok(fx)
    }

    /// The waiting room, oldest first, for the admin's view.
    pub(super) fn waiting_room(&self) -> Vec<WaitingPeer> {
        self.waiting_where(|_| true)
    }

    /// The peers waiting from client address `ip` (IPv6: its /64), for the venue page there.
    pub(super) fn waiting_from(&self, ip: IpAddr) -> Vec<WaitingPeer> {
        let place = client_key(ip);
        self.waiting_where(|at| client_key(at) == place)
    }

    fn waiting_where(&self, from: impl Fn(IpAddr) -> bool) -> Vec<WaitingPeer> {
        let mut room: Vec<(i64, WaitingPeer)> = self
            .conns
            .iter()
            .filter(|(_, c)| from(c.ip))
            .filter_map(|(id, c)| {
                let w = c.waiting.as_ref()?;
                Some((
                    w.since_ms,
                    WaitingPeer {
                        peer: peer_name(*id),
                        label: w.register.meta.label.clone(),
                        role: w.register.role,
                        stream: w.register.stream.clone(),
                        since: format_time(w.since_ms),
                    },
                ))
            })
            .collect();
        room.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.peer.cmp(&b.1.peer)));
        room.into_iter().map(|(_, w)| w).collect()
    }
}

/// The receiver slot a waiting peer asked for.
fn waiting_receiver(info: Option<&super::core::ConnInfo>) -> Option<u8> {
    info?.waiting.as_ref()?.register.receiver
}

/// The UDP port a waiting peer declared.
fn waiting_port(info: Option<&super::core::ConnInfo>) -> u16 {
    info.and_then(|c| c.waiting.as_ref())
        .map_or(0, |w| w.register.port.0)
}
