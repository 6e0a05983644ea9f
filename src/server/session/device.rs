//! Sides held by SRT devices instead of Punch peers (`docs/devices.md`).
//!
//! * A **caller** device calls the relay: its stream has a relay from the session's start for
//!   as long as the side is a caller (not freed when idle: the device may call at any time),
//!   on a port chosen once and kept, so that what was typed into the device stays right. The
//!   Punch side is sent to the relay's other port as a listener.
//! * A **listener** device is called by the Punch side at its address: no relay.
//!
//! A device side counts as present for the stream's state; it shows connected while the Punch
//! side reports its link up.

use std::net::{IpAddr, SocketAddr};

use super::core::{SessionCore, slot_index};
use super::effects::{Effects, RelayOp};
use super::error::SessionError;
use super::model::DeviceSide;
use super::persist::StoreOp;
use crate::protocol::srt_url::Link;
use crate::protocol::{
    DeviceMode, DeviceView, ErrorCode, LinkMode, MediaPath, Role, ServerMessage, SideSpec,
    caller_stream_id,
};
use crate::server::relay::{Admission, Refusal, RelaySpec};

/// What a side spec becomes, checked: `None` for a Punch peer. `existing` keeps a caller's key
/// and port when it is set again; `fresh_key` is used otherwise.
pub fn device_side(
    spec: &SideSpec,
    existing: Option<&DeviceSide>,
    fresh_key: String,
) -> Result<Option<DeviceSide>, String> {
    match spec.device {
        None | Some(DeviceMode::Rendezvous) => {
            if spec.address.is_some() || spec.streamid.is_some() {
                return Err(
                    "`address` and `streamid` are for a listener or caller device; a Punch peer (or a rendezvous device held by `punch peer`) takes neither".into(),
                );
            }
            Ok(None)
        }
        Some(DeviceMode::Caller) => {
            if spec.address.is_some() {
                return Err(
                    "a caller device calls the server: it has no `address` (that is for a listener device)".into(),
                );
            }
            let kept = existing.filter(|d| d.mode == DeviceMode::Caller);
            Ok(Some(DeviceSide {
                mode: DeviceMode::Caller,
                address: None,
                // as it was unless given (a side set again without `streamid` keeps it)
                check_streamid: spec
                    .streamid
                    .unwrap_or(kept.is_none_or(|d| d.check_streamid)),
                key: kept.map_or(fresh_key, |d| d.key.clone()),
                port: kept.map_or(0, |d| d.port),
            }))
        }
        Some(DeviceMode::Listener) => {
            if spec.streamid.is_some() {
                return Err("`streamid` is for a caller device; a listener device is called by the Punch side".into());
            }
            let Some(address) = &spec.address else {
                return Err(
                    "a listener device needs `address`: the ip:port it listens at, e.g. \"198.51.100.7:9000\"".into(),
                );
            };
            let addr: SocketAddr = address.parse().map_err(|_| {
                format!("address {address:?} is not ip:port (e.g. \"198.51.100.7:9000\" or \"[2001:db8::7]:9000\")")
            })?;
            let ip = addr.ip();
            if addr.port() == 0 || ip.is_unspecified() || ip.is_multicast() {
                return Err(format!(
                    "address {address:?} cannot be called: give the device's own IP and a port 1-65535"
                ));
            }
            Ok(Some(DeviceSide {
                mode: DeviceMode::Listener,
                address: Some(SocketAddr::new(ip.to_canonical(), addr.port())),
                check_streamid: false,
                key: String::new(),
                port: addr.port(),
            }))
        }
    }
}

/// Both sides devices: nobody would run the Punch side.
pub fn check_pair(devices: &[Option<DeviceSide>; 2]) -> Result<(), String> {
    if devices.iter().all(Option::is_some) {
        return Err("both sides are devices: at least one side of a stream must be a Punch peer (punchsink, punchsrc or punch peer)".into());
    }
    Ok(())
}

impl SessionCore {
    pub(super) fn device(&self, idx: usize, role: Role) -> Option<&DeviceSide> {
        self.rec.streams[idx].devices[slot_index(role)].as_ref()
    }

    /// The side of stream `idx` held by a caller device, if any.
    pub(super) fn caller_device(&self, idx: usize) -> Option<Role> {
        [Role::Sender, Role::Receiver].into_iter().find(|r| {
            self.device(idx, *r)
                .is_some_and(|d| d.mode == DeviceMode::Caller)
        })
    }

    /// The side of stream `idx` held by a listener device, if any.
    pub(super) fn listener_device(&self, idx: usize) -> Option<(Role, SocketAddr)> {
        [Role::Sender, Role::Receiver].into_iter().find_map(|r| {
            let d = self.device(idx, r)?;
            (d.mode == DeviceMode::Listener).then_some((r, d.address?))
        })
    }

    /// Whether side `role` of stream `idx` is there: a registered peer or a device.
    pub(super) fn present(&self, idx: usize, role: Role) -> bool {
        self.holders[idx][slot_index(role)].is_some() || self.device(idx, role).is_some()
    }

    /// What the path goes through besides Punch peers, for the view.
    pub(super) fn via(&self, idx: usize) -> Option<String> {
        if self.caller_device(idx).is_some() {
            Some("caller device".into())
        } else {
            self.listener_device(idx).map(|_| "listener device".into())
        }
    }

    /// Starts the relays of the streams with a caller device (at the session's start).
    pub fn start(&mut self) -> Effects {
        let mut fx = Effects::default();
        for idx in 0..self.rec.streams.len() {
            self.request_device_relay(idx, &mut fx);
        }
        fx
    }

    /// Asks for stream `idx`'s caller-device relay, if it has a caller device.
    pub(super) fn request_device_relay(&mut self, idx: usize, fx: &mut Effects) {
        let Some(role) = self.caller_device(idx) else {
            return;
        };
        let device = self
            .device(idx, role)
            .cloned()
            .unwrap_or_else(|| unreachable!());
        let me = slot_index(role);
        let punch = 1 - me;
        let punch_ip = self.holders[idx][punch].as_ref().map(|h| h.udp_ip);
        let mut sides = [Admission::Peer(None), Admission::Peer(None)];
        sides[me] = Admission::Caller {
            stream_id: device
                .check_streamid
                .then(|| caller_stream_id(&self.rec.streams[idx].name, &device.key)),
        };
        sides[punch] = self.side_admission(idx, punch);
        let mut ports = [0, 0];
        ports[me] = device.port;
        let clients: Vec<IpAddr> = self.rec.creator.into_iter().chain(punch_ip).collect();
        self.runtime[idx].relay_pending = Some(format!(
            "the {role} is an SRT caller device: it calls the server's relay"
        ));
        fx.relay.push(RelayOp::Start {
            stream: idx,
            generation: self.runtime[idx].generation,
            device: true,
            spec: RelaySpec {
                session: self.rec.name.clone(),
                sides,
                ports,
                idles: false,
                check_heard: false,
                clients,
            },
        });
        fx.view_changed = true;
    }

    /// A caller device's relay runs: its port is kept for the device, and the Punch side, if
    /// registered, is sent to it.
    pub fn device_relay_ready(&mut self, idx: usize, ports: [u16; 2]) -> (bool, Effects) {
        let mut fx = Effects::default();
        let Some(role) = self.caller_device(idx) else {
            return (false, fx);
        };
        let me = slot_index(role);
        self.with_summary_change(&mut fx, |core, fx| {
            let rt = &mut core.runtime[idx];
            rt.path = Some(MediaPath::Relay);
            rt.path_reason = rt.relay_pending.take();
            rt.relay_waiting = None;
            rt.relay_ports = Some(ports);
            let stream = &mut core.rec.streams[idx];
            if let Some(d) = stream.devices[me].as_mut()
                && d.port != ports[me]
            {
                d.port = ports[me];
                fx.store.push(StoreOp::Devices {
                    session: core.rec.name.clone(),
                    stream: stream.name.clone(),
                    devices: stream.devices.clone(),
                });
            }
            core.send_coordinates(idx, fx);
        });
        fx.view_changed = true;
        (true, fx)
    }

    /// A caller device's relay could not start: the stream says why, and waits for capacity
    /// when that was the reason.
    pub fn device_relay_failed(&mut self, idx: usize, refusal: &Refusal) -> Effects {
        let mut fx = Effects::default();
        let rt = &mut self.runtime[idx];
        let why = rt.relay_pending.take().unwrap_or_default();
        tracing::warn!(
            session = self.rec.name,
            stream = self.rec.streams[idx].name,
            "cannot start the caller device's relay: {}",
            refusal.message
        );
        rt.path = None;
        rt.path_reason = Some(if refusal.capacity {
            rt.relay_waiting = Some(why.clone());
            format!(
                "{why}, but the server has no relay capacity now ({}); waiting for it",
                refusal.message
            )
        } else {
            format!("{why}, but the relay is unavailable: {}", refusal.message)
        });
        fx.view_changed = true;
        fx
    }

    /// The coordinates the Punch side of a device stream gets, if it is one: the relay port
    /// to listen behind, or the listener device to call.
    pub(super) fn device_coordinates(&self, idx: usize) -> Option<(String, u16, bool, LinkMode)> {
        if let Some(device_role) = self.caller_device(idx) {
            let ports = self.runtime[idx].relay_ports?;
            let punch = slot_index(device_role.other());
            return Some((String::new(), ports[punch], true, LinkMode::Listener));
        }
        let (_, addr) = self.listener_device(idx)?;
        Some((addr.ip().to_string(), addr.port(), false, LinkMode::Caller))
    }

    /// Tells a running caller-device relay where the Punch side now is.
    pub(super) fn device_relay_peer(&self, idx: usize, fx: &mut Effects) {
        if let Some(role) = self.caller_device(idx) {
            let punch = 1 - slot_index(role);
            fx.relay.push(RelayOp::SetPeer {
                stream: idx,
                side: punch,
                admission: self.side_admission(idx, punch),
            });
        }
    }

    /// What to type into the device holding side `role` of stream `idx`.
    pub(super) fn device_view(&self, idx: usize, role: Role) -> Option<DeviceView> {
        let d = self.device(idx, role)?;
        let s = &self.rec.streams[idx];
        let (host, port, streamid, url) = match d.mode {
            DeviceMode::Caller => {
                let host = self.rec.public_host.clone().unwrap_or_default();
                let port = self.runtime[idx]
                    .relay_ports
                    .map_or(d.port, |p| p[slot_index(role)]);
                let streamid = d.check_streamid.then(|| caller_stream_id(&s.name, &d.key));
                let link = Link {
                    host: &host,
                    port,
                    passphrase: &s.passphrase,
                    pbkeylen: self.rec.pbkeylen,
                };
                let mut url = link.caller();
                if let Some(sid) = &streamid {
                    url.push_str("&streamid=");
                    url.push_str(sid);
                }
                (host, port, streamid, url)
            }
            _ => {
                let addr = d.address?;
                let link = Link {
                    host: "",
                    port: addr.port(),
                    passphrase: &s.passphrase,
                    pbkeylen: self.rec.pbkeylen,
                };
                (addr.ip().to_string(), addr.port(), None, link.listener())
            }
        };
        Some(DeviceView {
            mode: d.mode,
            host,
            port,
            passphrase: s.passphrase.clone(),
            pbkeylen: self.rec.pbkeylen,
            latency: s.latency,
            streamid,
            url,
        })
    }

    /// Sets who holds side `role` of `stream` (the operator changed it). A Punch peer holding
    /// a side that becomes a device is told and let go; the stream pairs again.
    pub fn set_side(
        &mut self,
        stream: &str,
        role: Role,
        spec: &SideSpec,
        fresh_key: String,
        host: Option<String>,
        now: i64,
    ) -> Result<Effects, SessionError> {
        let idx = self.stream_index(stream)?;
        let me = slot_index(role);
        let bad = |m: String| SessionError::new(ErrorCode::BadRequest, m);
        let side = device_side(spec, self.device(idx, role), fresh_key).map_err(bad)?;
        if side.as_ref().is_some_and(|d| d.mode == DeviceMode::Caller) && !self.policy.relay {
            return Err(bad(
                "this server does not relay (--no-relay), and a caller device calls the relay: make it a listener device or hold the side with a Punch peer".into(),
            ));
        }
        if side.is_some() && self.receiver_count(idx) > 1 {
            return Err(bad(format!(
                "stream {stream:?} has several receivers, which Punch peers send and receive; give a device its own stream"
            )));
        }
        let mut devices = self.rec.streams[idx].devices.clone();
        devices[me] = side;
        check_pair(&devices).map_err(bad)?;
        let mut fx = Effects::default();
        fx.store.extend(self.touch(now));
        if devices == self.rec.streams[idx].devices {
            // nothing changes: a live link is not disturbed
            return Ok(fx);
        }
        if self.rec.public_host.is_none() {
            self.rec.public_host = host;
        }
        self.with_summary_change(&mut fx, |core, fx| {
            // The old relay goes (a caller device's is not stopped by `reset_path`).
            if core.runtime[idx].relay_ports.is_some() || core.runtime[idx].relay_pending.is_some()
            {
                fx.relay.push(RelayOp::Stop { stream: idx });
                core.runtime[idx].relay_ports = None;
                core.runtime[idx].relay_pending = None;
            }
            core.rec.streams[idx].devices = devices.clone();
            if devices[me].is_some()
                && let Some(h) = core.holders[idx][me].take()
            {
                let why = format!("the {role} of stream {stream:?} is now held by a device");
                fx.error(h.conn, ErrorCode::SlotTaken, why.clone());
                fx.close.push((h.conn, why));
                if let Some(c) = core.conns.get_mut(&h.conn) {
                    c.slot = None;
                }
            }
            core.reset_path(idx, fx);
            fx.store.push(StoreOp::Devices {
                session: core.rec.name.clone(),
                stream: stream.to_string(),
                devices,
            });
            core.request_device_relay(idx, fx);
            if core.caller_device(idx).is_none()
                && core.both_registered(idx)
                && core.pair(idx, now, fx)
            {
                core.send_coordinates(idx, fx);
            }
        });
        fx.view_changed = true;
        Ok(fx)
    }

    /// A cue for the people at stream `stream` (one side, or both).
    pub fn cue(
        &mut self,
        stream: &str,
        role: Option<Role>,
        text: &str,
        at: String,
        now: i64,
    ) -> Result<Effects, SessionError> {
        let idx = self.stream_index(stream)?;
        let text = text.trim();
        let bad = |m: String| SessionError::new(ErrorCode::BadRequest, m);
        if text.is_empty() {
            return Err(bad("a cue needs some text".into()));
        }
        let len = text.chars().count();
        if len > crate::protocol::MAX_CUE_LEN {
            return Err(bad(format!(
                "a cue is at most {} characters, got {len}",
                crate::protocol::MAX_CUE_LEN
            )));
        }
        if text.chars().any(char::is_control) {
            return Err(bad(
                "a cue is one line of text, without control characters".into()
            ));
        }
        let cue = crate::protocol::Cue {
            stream: stream.to_string(),
            role,
            text: text.to_string(),
            at,
        };
        let mut fx = Effects::default();
        fx.store.extend(self.touch(now));
        for r in [Role::Sender, Role::Receiver] {
            if role.is_some_and(|want| want != r) {
                continue;
            }
            for link in self.links_of(idx) {
                if let Some(h) = &self.holders[link][slot_index(r)] {
                    fx.send(h.conn, ServerMessage::Cue(cue.clone()));
                }
            }
        }
        // camera-operator pages watching with this stream's tokens
        for (id, c) in &self.conns {
            if c.slot.is_none()
                && c.watching
                && let crate::server::token::Scope::Stream { stream: s, role: r } = &c.scope
                && s == stream
                && role.is_none_or(|want| want == *r)
            {
                fx.send(*id, ServerMessage::Cue(cue.clone()));
            }
        }
        self.runtime[idx].cue = Some(cue);
        fx.view_changed = true;
        Ok(fx)
    }
}
