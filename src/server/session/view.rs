//! What a session shows: the summary every connection gets, the full view dashboards and
//! `GET /api/session/:id` get, and the coordinates connection strings are made of.

use super::core::{Holder, SessionCore, slot_index};
use super::effects::ConnId;
use super::health;
use super::receivers::redact;
use crate::protocol::{
    DeviceMode, DeviceView, Endpoint, MediaPath, PeerStatus, PeerView, Role, SessionState,
    SessionUpdate, SessionView, SrtStatus, StreamSummary, StreamView,
};
use std::net::IpAddr;

use crate::server::limit::client_key;
use crate::server::metrics::SessionGauges;
use crate::server::time::format_time;
use crate::server::token::Scope;

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
    /// `[sender, receiver]`: the fields of a device holding the side (a caller's once its
    /// relay runs).
    pub devices: [Option<DeviceView>; 2],
    /// How many receivers the stream has (connection strings are for one link only).
    pub receivers: u8,
}

impl SessionCore {
    pub fn coordinates(&self) -> Vec<StreamCoordinates> {
        // (links of receiver slot 2 and up are Punch peers' only: no connection strings)
        self.stream_heads()
            .map(|i| {
                let s = &self.rec.streams[i];
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
                    receivers: self.receiver_count(i),
                    devices: [Role::Sender, Role::Receiver].map(|r| {
                        let ready = self.device(i, r).is_some_and(|d| {
                            d.mode != DeviceMode::Caller || self.runtime[i].relay_ports.is_some()
                        });
                        ready.then(|| self.device_view(i, r)).flatten()
                    }),
                }
            })
            .collect()
    }

    /// The views due to the connections that watch (dashboards, camera-operator pages): one
    /// per token scope, with its connections.
    pub fn watcher_views(&self) -> Vec<(SessionView, Vec<ConnId>)> {
        // (join-token watchers read by place)
        let mut groups: Vec<(&Scope, Option<IpAddr>, Vec<ConnId>)> = Vec::new();
        for (id, c) in self.conns.iter().filter(|(_, c)| c.watching) {
            let place = (c.scope == Scope::Join).then_some(c.ip);
            let same = |s: &Scope, p: Option<IpAddr>| {
                s == &c.scope && p.map(client_key) == place.map(client_key)
            };
            match groups.iter_mut().find(|(s, p, _)| same(s, *p)) {
                Some((_, _, conns)) => conns.push(*id),
                None => groups.push((&c.scope, place, vec![*id])),
            }
        }
        groups
            .into_iter()
            .map(|(scope, place, conns)| (self.view_at(scope, place), conns))
            .collect()
    }

    /// [`Self::view_for`], and for the join token read from `place`: the peers waiting from
    /// there (the same client address, IPv6 the same /64), nothing else of the session.
    pub fn view_at(&self, scope: &Scope, place: Option<IpAddr>) -> SessionView {
        let mut view = self.view_for(scope);
        if let (Scope::Join, Some(ip)) = (scope, place) {
            view.waiting = self.waiting_from(ip);
        }
        view
    }

    /// How link `idx`'s media goes: its path, `tunnel` when it is relayed and a side of it has
    /// no UDP.
    pub(super) fn media_path(&self, idx: usize) -> Option<MediaPath> {
        let tunnelled = self.holders[idx].iter().flatten().any(|h| h.tunnel);
        match self.runtime[idx].path {
            Some(MediaPath::Relay) if tunnelled => Some(MediaPath::Tunnel),
            other => other,
        }
    }

    /// What this session adds to the server's gauges (`/metrics`).
    pub fn gauges(&self) -> SessionGauges {
        // (a closed session is on its way out: it counts in no state)
        let state = Some(self.state()).filter(|s| *s != SessionState::Closed);
        let mut g = SessionGauges {
            state,
            ..SessionGauges::default()
        };
        for (idx, sides) in self.holders.iter().enumerate() {
            for (i, holder) in sides.iter().enumerate() {
                g.peers[i] += i64::from(holder.is_some());
            }
            if self.link_up(idx) {
                let device = [Role::Sender, Role::Receiver]
                    .iter()
                    .any(|r| self.device(idx, *r).is_some());
                g.links[SessionGauges::path_index(self.media_path(idx), device)] += 1;
            }
        }
        g
    }

    pub(super) fn peer_status(&self, idx: usize, role: Role) -> PeerStatus {
        if self.device(idx, role).is_some() {
            // a device reports nothing: it is connected while the Punch side's link is up
            return if self.link_up(idx) {
                PeerStatus::Connected
            } else {
                PeerStatus::Waiting
            };
        }
        match &self.holders[idx][slot_index(role)] {
            None => PeerStatus::Waiting,
            Some(Holder {
                srt: Some(SrtStatus::Connected),
                ..
            }) => PeerStatus::Connected,
            Some(_) => PeerStatus::Registered,
        }
    }

    pub(super) fn stream_state(&self, idx: usize) -> SessionState {
        if self.closed {
            return SessionState::Closed;
        }
        if !self.both_registered(idx) {
            SessionState::Waiting
        } else if self.runtime[idx].relay_ports.is_some() {
            SessionState::Relaying
        } else if self.link_up(idx) {
            SessionState::Connected
        } else {
            SessionState::Ready
        }
    }

    /// The session's state is its least advanced stream's.
    pub fn state(&self) -> SessionState {
        self.stream_heads()
            .map(|i| self.group_state(i))
            .min()
            .unwrap_or(SessionState::Waiting)
    }

    pub fn summary(&self) -> SessionUpdate {
        let streams: Vec<StreamSummary> = self
            .stream_heads()
            .map(|i| self.stream_summary(i))
            .collect();
        let connected = self
            .stream_heads()
            .filter(|&i| self.group_linked(i))
            .count();
        SessionUpdate {
            state: self.state(),
            total: streams.len(),
            connected,
            streams,
        }
    }

    /// The summary a token of `scope` may read: a stream token's own stream only, and the
    /// session's `state`, `connected` and `total` are then that stream's.
    pub fn summary_for(&self, scope: &Scope) -> SessionUpdate {
        let mut update = self.summary();
        match scope {
            Scope::Stream { stream, .. } => {
                update.streams.retain(|s| &s.name == stream);
                let idx = self
                    .rec
                    .streams
                    .iter()
                    .position(|s| &s.name == stream && s.slot() == 1);
                (update.state, update.connected, update.total) = self.one_stream(idx);
            }
            // a peer in the waiting room learns that the session is there, nothing of it
            Scope::Join => {
                update.streams.clear();
                update.state = SessionState::Waiting;
                (update.connected, update.total) = (0, 0);
            }
            Scope::Admin => {}
        }
        update
    }

    /// `(state, connected, total)` of a session seen as its one stream `idx`.
    fn one_stream(&self, idx: Option<usize>) -> (SessionState, usize, usize) {
        match idx {
            Some(i) => (self.group_state(i), usize::from(self.group_linked(i)), 1),
            None => (self.state(), 0, 0),
        }
    }

    pub fn view(&self) -> SessionView {
        let peer_view = |idx: usize, role: Role| {
            // a device side has no registrations: nothing a former Punch peer said shows
            let last = self.rec.streams[idx]
                .peer(role)
                .as_ref()
                .filter(|_| self.device(idx, role).is_none());
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
                device: self.device_view(idx, role),
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
                    path: self.media_path(i),
                    path_reason: rt.path_reason.clone().or(rt.relay_pending.clone()),
                    via: self.via(i),
                    cue: rt.cue.clone(),
                    level: level.as_ref().map(|l| l.0),
                    level_reason: level.map(|l| l.1),
                    recommendation: rt.health.recommendation(),
                    history: rt.health.history(),
                    sender: peer_view(i, Role::Sender),
                    receiver: peer_view(i, Role::Receiver),
                    receivers: Vec::new(),
                    sent_bitrate: None,
                }
            })
            .collect();
        let streams = self.group_views(streams);
        let connected = self
            .stream_heads()
            .filter(|&i| self.group_linked(i))
            .count();
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
            waiting: self.waiting_room(),
            join: self.rec.join,
            node: self.node.clone(),
        }
    }

    /// The view a token of `scope` may read. The admin token reads everything. A stream token
    /// reads its own stream only (the session's `state`, `connected` and `total` are that
    /// stream's), and of the other side only what it needs: its status, and its
    /// address only while it is this side's direct rendezvous peer (it was sent that address
    /// anyway), never its meta, NAT report or health.
    pub fn view_for(&self, scope: &Scope) -> SessionView {
        let mut view = self.view();
        let (stream, role) = match scope {
            Scope::Admin => return view,
            Scope::Join => {
                view.streams.clear();
                view.waiting.clear();
                view.join = false;
                view.state = SessionState::Waiting;
                (view.connected, view.total) = (0, 0);
                return view;
            }
            Scope::Stream { stream, role } => (stream, role),
        };
        view.waiting.clear();
        view.join = false;
        view.streams.retain(|s| &s.name == stream);
        let idx = self
            .rec
            .streams
            .iter()
            .position(|s| &s.name == stream && s.slot() == 1);
        (view.state, view.connected, view.total) = self.one_stream(idx);
        for s in &mut view.streams {
            // of the other links of a stream with several receivers: their status only
            for link in &mut s.receivers {
                let direct = link.path == Some(MediaPath::Direct);
                redact(&mut link.sender, direct && *role == Role::Receiver);
                redact(&mut link.receiver_peer, direct && *role == Role::Sender);
            }
            if s.cue
                .as_ref()
                .is_some_and(|c| c.role.is_some_and(|r| r != *role))
            {
                s.cue = None;
            }
            let direct_peer = s.path == Some(MediaPath::Direct)
                && s.sender.status != PeerStatus::Waiting
                && s.receiver.status != PeerStatus::Waiting;
            let other = match role {
                Role::Sender => &mut s.receiver,
                Role::Receiver => &mut s.sender,
            };
            redact(other, direct_peer);
        }
        view
    }
}
