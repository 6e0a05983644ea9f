//! Pairing and the path policy: once both sides of a stream are registered, whether they
//! rendezvous directly or through the relay, when a direct attempt gives way to the relay, and
//! what coordinates each side is sent.

use std::net::IpAddr;

use super::core::{Holder, SessionCore, slot_index};
use super::effects::{Effects, RelayOp};
use super::health::StreamHealth;
use crate::protocol::{
    Endpoint, LinkMode, MediaPath, NatMapping, PeerInfo, Role, ServerMessage, SrtStatus,
};
use crate::server::relay::{Refusal, RelaySpec};

/// How a session decides between direct rendezvous and the relay.
#[derive(Debug, Clone)]
pub struct PathPolicy {
    /// Whether the server may relay at all.
    pub relay: bool,
    /// How long a stream may stay READY before it is relayed (milliseconds).
    pub direct_timeout_ms: i64,
    /// The address the server's tunnel sockets send to the relay from: what the relay admits
    /// for a tunnelled side.
    pub tunnel_ip: std::net::IpAddr,
}

impl Default for PathPolicy {
    fn default() -> Self {
        PathPolicy {
            relay: true,
            direct_timeout_ms: 8_000,
            tunnel_ip: std::net::IpAddr::from([127, 0, 0, 1]),
        }
    }
}

/// What a stream has at run time only (not persisted).
#[derive(Debug, Default)]
pub(super) struct StreamRuntime {
    /// Recent health of both sides: history, colour, latency recommendation.
    pub(super) health: StreamHealth,
    /// Direct or relayed, once both sides are registered.
    pub(super) path: Option<MediaPath>,
    /// Why the stream takes its path, for people.
    pub(super) path_reason: Option<String>,
    /// Why a relay was asked for, while it is being set up.
    pub(super) relay_pending: Option<String>,
    /// Why a relay was wanted, while the server has no relay capacity for it: asked for again
    /// whenever a relay ends.
    pub(super) relay_waiting: Option<String>,
    /// `[sender's port, receiver's port]` of the relay in use.
    pub(super) relay_ports: Option<[u16; 2]>,
    /// The last cue sent to the stream (shown on the operator pages; not persisted).
    pub(super) cue: Option<crate::protocol::Cue>,
    /// When a direct attempt gives way to the relay.
    pub(super) direct_deadline: Option<i64>,
    /// Bumped whenever the pairing starts over, so that a late relay answer is recognised.
    pub(super) generation: u64,
    /// `[sender, receiver]`: the tunnel of a side without UDP (`tunnel.rs`), kept across
    /// pairings.
    pub(super) tunnels: [Option<super::tunnel::TunnelSide>; 2],
    /// Where each side was when the current path was chosen. A side that comes back from the
    /// same place (a signalling reconnect: its SRT never stopped) keeps the path and the relay.
    pub(super) paired: Option<[Place; 2]>,
}

/// Where a side's SRT traffic comes from, as far as pairing is concerned.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Place {
    pub(super) address: Endpoint,
    pub(super) mapping: Option<NatMapping>,
    /// Over its tunnel (the relay admits the server's tunnel address for it).
    pub(super) tunnel: bool,
}

impl SessionCore {
    /// The coordinates `recipient` needs: the other side's public address, or its own relay port.
    pub(super) fn peer_info_for(&self, idx: usize, recipient: Role) -> PeerInfo {
        let s = &self.rec.streams[idx];
        let mut mode = LinkMode::Rendezvous;
        let (ip, port, relay) = match self.device_coordinates(idx) {
            Some((ip, port, relay, m)) => {
                mode = m;
                (ip, port, relay)
            }
            None => match self.runtime[idx].relay_ports {
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
            },
        };
        let me = slot_index(recipient);
        let tunnel = relay && self.holders[idx][me].as_ref().is_some_and(|h| h.tunnel);
        PeerInfo {
            tunnel,
            ticket: self.ticket(idx, me).filter(|_| tunnel),
            stream: s.stream().to_string(),
            ip,
            port,
            passphrase: s.passphrase.clone(),
            pbkeylen: self.rec.pbkeylen,
            latency: s.latency,
            relay,
            mode,
        }
    }

    /// Sends both holders of stream `idx` their coordinates.
    pub(super) fn send_coordinates(&self, idx: usize, fx: &mut Effects) {
        fx.pairings += 1;
        for role in [Role::Sender, Role::Receiver] {
            if let Some(h) = &self.holders[idx][slot_index(role)] {
                fx.send(h.conn, ServerMessage::Peer(self.peer_info_for(idx, role)));
            }
        }
    }

    /// Both sides are there: registered Punch peers, or a device.
    pub(super) fn both_registered(&self, idx: usize) -> bool {
        self.present(idx, Role::Sender) && self.present(idx, Role::Receiver)
    }

    /// Both sides are registered and at least one reports its SRT link up. One report is
    /// enough: an SRT connection is one link, and a side run by a third-party tool (held by
    /// `punch peer`) cannot report at all.
    pub(super) fn link_up(&self, idx: usize) -> bool {
        self.both_registered(idx)
            && self.holders[idx].iter().any(|h| {
                h.as_ref()
                    .is_some_and(|h| h.srt == Some(SrtStatus::Connected))
            })
    }

    /// Forgets how stream `idx` was paired (a side left or registered again); stops its relay.
    /// SRT status reported so far was about the old pairing.
    pub(super) fn reset_path(&mut self, idx: usize, fx: &mut Effects) {
        for h in self.holders[idx].iter_mut().flatten() {
            h.srt = None;
        }
        // A caller device's relay stays: the device may call whenever it likes.
        let device_relay = self.caller_device(idx).is_some();
        let rt = &mut self.runtime[idx];
        if device_relay {
            rt.direct_deadline = None;
            rt.paired = None;
            rt.generation += 1;
            fx.view_changed = true;
            return;
        }
        if rt.relay_ports.take().is_some() || rt.relay_pending.take().is_some() {
            fx.relay.push(RelayOp::Stop { stream: idx });
        }
        rt.relay_waiting = None;
        rt.path = None;
        rt.path_reason = None;
        rt.direct_deadline = None;
        rt.paired = None;
        rt.generation += 1;
        fx.view_changed = true;
    }

    /// Chooses the path of a stream whose two sides are registered. `true` when the direct
    /// coordinates can go out now; `false` when a relay was asked for instead.
    pub(super) fn pair(&mut self, idx: usize, now: i64, fx: &mut Effects) -> bool {
        if self.caller_device(idx).is_some() {
            // the relay runs from the start; the coordinates go out once it does
            return self.runtime[idx].relay_ports.is_some();
        }
        let tunnelled = [Role::Sender, Role::Receiver].into_iter().find(|r| {
            self.holders[idx][slot_index(*r)]
                .as_ref()
                .is_some_and(|h| h.tunnel)
        });
        if let Some((role, addr)) = self.listener_device(idx) {
            let rt = &mut self.runtime[idx];
            if let Some(punch) = tunnelled {
                // its datagrams reach only the relay, and the relay does not call listeners
                rt.path = None;
                rt.path_reason = Some(format!(
                    "the {punch} has no UDP and the {role} is an SRT listener device at {addr}: the tunnel cannot call a listener device; set the device to caller mode (it then calls the relay), or give the {punch} UDP"
                ));
                fx.view_changed = true;
                return false;
            }
            rt.path = Some(MediaPath::Direct);
            rt.path_reason = Some(format!(
                "the {role} is an SRT listener device at {addr}: the Punch side calls it"
            ));
            return true;
        }
        let place = |role: Role| {
            let holder = self.holders[idx][slot_index(role)].as_ref()?;
            Some(Place {
                address: self.rec.streams[idx].peer(role).as_ref()?.address.clone(),
                mapping: holder.nat.as_ref().map(|n| n.mapping),
                tunnel: holder.tunnel,
            })
        };
        if let (Some(s), Some(r)) = (place(Role::Sender), place(Role::Receiver)) {
            self.runtime[idx].paired = Some([s, r]);
        }
        // a side without UDP: only the relay, its datagrams over the tunnel, can carry it
        if let Some(role) = tunnelled {
            let unheard = self.runtime[idx].tunnels[slot_index(role)]
                .as_ref()
                .is_some_and(|t| t.unheard);
            let why = if unheard {
                format!(
                    "the {role}'s UDP never reached the relay (only STUN got through): its media goes over the TCP tunnel, through the relay"
                )
            } else {
                format!(
                    "the {role} has no UDP (its STUN requests went unanswered, or it is set to use the tunnel): its media goes over the TCP tunnel, through the relay"
                )
            };
            if self.policy.relay {
                self.request_relay(idx, why, fx);
                return false;
            }
            self.runtime[idx].path_reason = Some(format!(
                "{why}; but the relay is disabled, so it cannot connect"
            ));
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
    pub(super) fn arm_direct_timer(&mut self, idx: usize, now: i64) {
        let reporter = self.holders[idx].iter().flatten().any(|h| h.reports);
        let down = !self.link_up(idx);
        // a listener device is called directly, there is no relay to give way to
        let device = self.listener_device(idx).is_some() || self.caller_device(idx).is_some();
        let rt = &mut self.runtime[idx];
        if rt.path == Some(MediaPath::Direct)
            && rt.relay_pending.is_none()
            && !device
            && self.policy.relay
            && reporter
            && down
        {
            rt.direct_deadline = Some(now + self.policy.direct_timeout_ms);
        }
    }

    pub(super) fn request_relay(&mut self, idx: usize, why: String, fx: &mut Effects) {
        if self.caller_device(idx).is_some() {
            // its own relay runs already (`device.rs`)
            return;
        }
        let ip_of = |h: &Option<Holder>| {
            h.as_ref()
                .map(|h| h.udp_ip)
                .unwrap_or(IpAddr::from([0, 0, 0, 0]))
        };
        let ips = [ip_of(&self.holders[idx][0]), ip_of(&self.holders[idx][1])];
        let udp_reporters = self.holders[idx]
            .iter()
            .all(|h| h.as_ref().is_some_and(|h| h.reports && !h.tunnel));
        let spec = RelaySpec {
            sides: [self.side_admission(idx, 0), self.side_admission(idx, 1)],
            // two Punch peers over UDP: the relay names a side it never hears from, which
            // then moves to its tunnel (`tunnel.rs`)
            check_heard: udp_reporters,
            ..RelaySpec::peers(&self.rec.name, ips)
        };
        let rt = &mut self.runtime[idx];
        rt.relay_pending = Some(why);
        rt.direct_deadline = None;
        fx.relay.push(RelayOp::Start {
            stream: idx,
            generation: rt.generation,
            device: false,
            spec,
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

    /// The relay could not be started: the stream stays (or goes) direct, and says why. When
    /// the refusal was for capacity, the stream waits for it: the relay is asked for again when
    /// another ends ([`relay_capacity_freed`](Self::relay_capacity_freed)).
    pub fn relay_failed(&mut self, idx: usize, generation: u64, refusal: &Refusal) -> Effects {
        let mut fx = Effects::default();
        let rt = &mut self.runtime[idx];
        if rt.generation != generation {
            return fx;
        }
        let why = rt.relay_pending.take().unwrap_or_default();
        let error = &refusal.message;
        tracing::warn!(
            session = self.rec.name,
            stream = self.rec.streams[idx].name,
            "cannot relay: {error}"
        );
        let already_direct = rt.path == Some(MediaPath::Direct);
        rt.path = Some(MediaPath::Direct);
        rt.path_reason = Some(if refusal.capacity {
            rt.relay_waiting = Some(why.clone());
            format!("{why}; waiting for relay capacity ({error}), trying direct meanwhile")
        } else {
            format!("{why}, but the relay is unavailable: {error}")
        });
        if !already_direct {
            self.send_coordinates(idx, &mut fx);
        }
        fx.view_changed = true;
        fx
    }

    /// Whether a stream waits for relay capacity.
    pub fn waiting_for_relay(&self) -> bool {
        self.runtime.iter().any(|r| r.relay_waiting.is_some())
    }

    /// A relay somewhere ended: streams waiting for capacity ask again.
    pub fn relay_capacity_freed(&mut self) -> Effects {
        let mut fx = Effects::default();
        for idx in 0..self.runtime.len() {
            if self.runtime[idx].relay_pending.is_some() {
                continue;
            }
            if self.caller_device(idx).is_some() {
                if self.runtime[idx].relay_waiting.take().is_some() {
                    self.request_device_relay(idx, &mut fx);
                }
                continue;
            }
            if !self.both_registered(idx) {
                continue;
            }
            if self.link_up(idx) {
                // the direct attempt made meanwhile works: keep it
                self.runtime[idx].relay_waiting = None;
                continue;
            }
            if let Some(why) = self.runtime[idx].relay_waiting.take() {
                self.request_relay(idx, why, &mut fx);
            }
        }
        fx
    }

    /// The relay of stream `idx` freed itself (no traffic for the idle time). If it had carried
    /// media, the stream pairs again, so that its peers, if they are still there, get fresh
    /// coordinates. If it never carried anything its sides cannot (or do not mean to) use one:
    /// no new relay until a side registers again, so that a registration that never sends holds
    /// no relay for longer than the idle time.
    pub fn relay_idle(&mut self, idx: usize, generation: u64, carried: bool, now: i64) -> Effects {
        let mut fx = Effects::default();
        if self.runtime[idx].generation != generation {
            return fx;
        }
        self.with_summary_change(&mut fx, |core, fx| {
            core.reset_path(idx, fx);
            if !carried {
                core.runtime[idx].path_reason = Some(
                    "the relay carried nothing for its idle time and was freed; a side registering again asks for a new one".into(),
                );
                return;
            }
            if core.both_registered(idx) && core.pair(idx, now, fx) {
                core.send_coordinates(idx, fx);
            }
        });
        fx
    }

    /// When the first direct attempt gives way to the relay.
    pub(super) fn direct_deadline(&self) -> Option<i64> {
        self.runtime.iter().filter_map(|r| r.direct_deadline).min()
    }

    /// Gives up on direct attempts that did not connect in time.
    pub(super) fn direct_timeouts(&mut self, now: i64, fx: &mut Effects) {
        for idx in 0..self.runtime.len() {
            if self.runtime[idx].direct_deadline.is_some_and(|d| d <= now)
                && self.both_registered(idx)
                && self.caller_device(idx).is_none()
                && self.listener_device(idx).is_none()
            {
                let secs = self.policy.direct_timeout_ms as f64 / 1000.0;
                self.request_relay(
                    idx,
                    format!("no direct SRT connection within {secs} s (a NAT or firewall blocks the rendezvous)"),
                    fx,
                );
            }
        }
    }
}
