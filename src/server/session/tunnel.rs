//! Sides without UDP, as the session sees them: which link-side a tunnel WebSocket may carry
//! (its ticket), where its datagrams come from (the server's tunnel socket for it, the only
//! address the relay admits for that side), and the move of a side the relay never heard from
//! to its tunnel. (The actor's record of the open tunnels is `actor/tunnel.rs`.)

use std::net::SocketAddr;

use rand::Rng;
use rand::distr::Alphanumeric;

use super::core::{SessionCore, slot_index};
use super::effects::{Effects, RelayOp};
use super::error::SessionError;
use crate::protocol::{ErrorCode, Role};
use crate::server::relay::Admission;

/// The tunnel of one side of one link.
#[derive(Debug, Clone)]
pub(super) struct TunnelSide {
    /// What the tunnel WebSocket must name (`&ticket=`): given only to the side's holder, in
    /// its `peer` coordinates, so another holder of the same token cannot take the tunnel.
    /// Kept while the server runs: a side whose signalling reconnects keeps its tunnel.
    pub(super) ticket: String,
    /// The server's tunnel socket carrying it now (`None`: no tunnel open yet).
    pub(super) at: Option<SocketAddr>,
    /// The server moved the side here: its relay never heard from it (else the side said it
    /// has no UDP). For the path's reason.
    pub(super) unheard: bool,
}

impl SessionCore {
    /// Who the relay admits for `side` of link `idx`: its holder's IP, its tunnel socket, or
    /// nobody while no one holds it.
    pub(super) fn side_admission(&self, idx: usize, side: usize) -> Admission {
        match &self.holders[idx][side] {
            None => Admission::Peer(None),
            Some(h) if h.tunnel => {
                Admission::Tunnel(self.runtime[idx].tunnels[side].as_ref().and_then(|t| t.at))
            }
            Some(h) => Admission::Peer(Some(h.udp_ip)),
        }
    }

    /// `side` of link `idx` registered without a tunnel: its ticket is withdrawn (a tunnel
    /// open on it ends at the next event).
    pub(super) fn drop_ticket(&mut self, idx: usize, side: usize) {
        self.runtime[idx].tunnels[side] = None;
    }

    /// `side` of link `idx` goes over its tunnel: it gets a ticket unless it has one.
    pub(super) fn ensure_ticket(&mut self, idx: usize, side: usize) {
        self.runtime[idx].tunnels[side].get_or_insert_with(|| TunnelSide {
            ticket: rand::rng()
                .sample_iter(&Alphanumeric)
                .take(24)
                .map(char::from)
                .collect(),
            at: None,
            unheard: false,
        });
    }

    /// The ticket `side` of link `idx` opens its tunnel with, if it goes over one.
    pub(super) fn ticket(&self, idx: usize, side: usize) -> Option<String> {
        self.runtime[idx].tunnels[side]
            .as_ref()
            .map(|t| t.ticket.clone())
    }

    /// A tunnel WebSocket for `role` of `stream` (receiver slot `slot`) with `ticket` opened,
    /// its datagrams coming from `at`: the relay admits that address, and only that one, for
    /// the side. Returns the link and side it carries.
    pub fn attach_tunnel(
        &mut self,
        stream: &str,
        role: Role,
        slot: u8,
        ticket: &str,
        at: SocketAddr,
    ) -> Result<((usize, usize), Effects), SessionError> {
        let head = self.stream_index(stream)?;
        let unspecified = (std::net::IpAddr::from([0, 0, 0, 0]), [0, 0]);
        let idx = self
            .pick_link(head, role, Some(slot.max(1)), None, unspecified)
            .map_err(|e| SessionError::new(ErrorCode::UnknownStream, e))?;
        let side = slot_index(role);
        let tunnelled = self.holders[idx][side].as_ref().is_some_and(|h| h.tunnel);
        let ticket_of = self.runtime[idx].tunnels[side]
            .as_mut()
            .filter(|_| tunnelled);
        let Some(t) = ticket_of else {
            return Err(SessionError::new(
                ErrorCode::Forbidden,
                format!(
                    "the {role} of stream {stream:?} does not go over a tunnel now (it registers with \"tunnel\": true, and the server answers with a ticket; a side whose signalling reconnects opens its tunnel once it is registered again)"
                ),
            ));
        };
        if t.ticket != ticket {
            return Err(SessionError::new(
                ErrorCode::Forbidden,
                format!(
                    "wrong tunnel ticket for the {role} of stream {stream:?}: use the one of the latest peer coordinates"
                ),
            ));
        }
        t.at = Some(at);
        let mut fx = Effects::default();
        if self.runtime[idx].relay_ports.is_some() {
            fx.relay.push(RelayOp::SetPeer {
                stream: idx,
                side,
                admission: self.side_admission(idx, side),
            });
        }
        Ok(((idx, side), fx))
    }

    /// Where the tunnel of `side` of link `idx` now sends: the relay port (`None`: no relay
    /// yet), while its tunnel socket is `at`; `Err` when that tunnel was replaced.
    pub(super) fn tunnel_target(
        &self,
        (idx, side): (usize, usize),
        at: SocketAddr,
    ) -> Result<Option<u16>, ()> {
        let t = self
            .runtime
            .get(idx)
            .and_then(|rt| rt.tunnels[side].as_ref());
        if t.and_then(|t| t.at) != Some(at) {
            return Err(());
        }
        Ok(self.runtime[idx].relay_ports.map(|p| p[side]))
    }

    /// The relay of link `idx` (its `generation`) never heard from `sides` (`[sender,
    /// receiver]`): their UDP to the relay is blocked (only STUN gets through, say, or the
    /// relay's ports are out of reach). Each such Punch peer that reports its link moves to its
    /// tunnel, and the link is paired again once; a side the relay heard stays on UDP. A
    /// third-party tool's side (`punch peer`) cannot move and is left alone.
    pub fn relay_unheard(
        &mut self,
        idx: usize,
        generation: u64,
        sides: [bool; 2],
        now: i64,
    ) -> Effects {
        let mut fx = Effects::default();
        let rt = &self.runtime[idx];
        if rt.generation != generation || rt.relay_ports.is_none() || self.link_up(idx) {
            return fx;
        }
        let mut moved = false;
        for side in (0..2).filter(|&s| sides[s]) {
            let Some(h) = self.holders[idx][side].as_mut() else {
                continue;
            };
            if h.tunnel || !h.reports {
                continue;
            }
            h.tunnel = true;
            moved = true;
            tracing::info!(
                session = self.rec.name,
                stream = self.rec.streams[idx].name,
                side,
                "the relay never heard from this side: moving it to its tunnel"
            );
            self.ensure_ticket(idx, side);
            if let Some(t) = self.runtime[idx].tunnels[side].as_mut() {
                t.unheard = true;
            }
        }
        if moved {
            self.with_summary_change(&mut fx, |core, fx| {
                core.reset_path(idx, fx);
                if core.pair(idx, now, fx) {
                    core.send_coordinates(idx, fx);
                }
            });
        }
        fx
    }
}
