//! Sides without UDP, as the session sees them: which link-side a tunnel WebSocket may carry
//! (its ticket), where its datagrams come from (the server's tunnel socket for it, the only
//! address the relay admits for that side), and the move of a side the relay never heard from
//! to its tunnel. [`Tunnels`] is the actor's record of the open tunnels: each gets the relay
//! port to send to, and is closed when a newer tunnel of its side replaces it.

use std::collections::HashMap;
use std::net::SocketAddr;

use rand::Rng;
use rand::distr::Alphanumeric;
use tokio::sync::watch;

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
    ) -> Result<(LinkSide, Effects), SessionError> {
        let head = self.stream_index(stream)?;
        let unspecified = (std::net::IpAddr::from([0, 0, 0, 0]), [0, 0]);
        let idx = self
            .pick_link(head, role, Some(slot.max(1)), None, unspecified)
            .map_err(|e| SessionError::new(ErrorCode::UnknownStream, e))?;
        let side = slot_index(role);
        let Some(t) = self.runtime[idx].tunnels[side].as_mut() else {
            return Err(SessionError::new(
                ErrorCode::Forbidden,
                format!(
                    "the {role} of stream {stream:?} does not go over a tunnel (it registers with \"tunnel\": true, and the server answers with a ticket)"
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
    fn tunnel_target(&self, (idx, side): LinkSide, at: SocketAddr) -> Result<Option<u16>, ()> {
        let t = self
            .runtime
            .get(idx)
            .and_then(|rt| rt.tunnels[side].as_ref());
        if t.and_then(|t| t.at) != Some(at) {
            return Err(());
        }
        Ok(self.runtime[idx].relay_ports.map(|p| p[side]))
    }

    /// The relay of link `idx` (its `generation`) never heard from `side` while it heard the
    /// other: that side's UDP to the relay is blocked (only STUN gets through, say). A Punch
    /// peer that reports its link moves to its tunnel; the other side, which reached the relay,
    /// stays on UDP. A third-party tool's side (`punch peer`) cannot move and is left alone.
    pub fn relay_unheard(&mut self, idx: usize, generation: u64, side: usize, now: i64) -> Effects {
        let mut fx = Effects::default();
        let rt = &self.runtime[idx];
        if rt.generation != generation || rt.relay_ports.is_none() || self.link_up(idx) {
            return fx;
        }
        let Some(h) = self.holders[idx][side].as_mut() else {
            return fx;
        };
        if h.tunnel || !h.reports {
            return fx;
        }
        h.tunnel = true;
        let role = if side == 0 {
            Role::Sender
        } else {
            Role::Receiver
        };
        tracing::info!(
            session = self.rec.name,
            stream = self.rec.streams[idx].name,
            %role,
            "the relay never heard from this side: moving it to its tunnel"
        );
        self.ensure_ticket(idx, side);
        if let Some(t) = self.runtime[idx].tunnels[side].as_mut() {
            t.unheard = true;
        }
        self.with_summary_change(&mut fx, |core, fx| {
            core.reset_path(idx, fx);
            if core.pair(idx, now, fx) {
                core.send_coordinates(idx, fx);
            }
        });
        fx
    }
}

/// A link (by index) and a side of it (0 sender, 1 receiver).
type LinkSide = (usize, usize);

/// The open tunnels of one session, kept by its actor.
#[derive(Debug, Default)]
pub(super) struct Tunnels {
    /// Per link-side: the tunnel socket, and the channel that tells it its relay port.
    open: HashMap<LinkSide, (SocketAddr, watch::Sender<Option<u16>>)>,
}

impl Tunnels {
    /// A tunnel attached (see [`SessionCore::attach_tunnel`]): it hears its relay port on the
    /// receiver, which ends when a newer tunnel of its side replaces it or the session goes.
    pub(super) fn attach(
        &mut self,
        core: &SessionCore,
        key: LinkSide,
        at: SocketAddr,
    ) -> watch::Receiver<Option<u16>> {
        let port = core.tunnel_target(key, at).unwrap_or(None);
        let (tx, rx) = watch::channel(port);
        // the tunnel this one replaces hears its channel close, and ends
        self.open.insert(key, (at, tx));
        rx
    }

    /// After each event: every tunnel hears its relay port; the replaced and the ended go.
    pub(super) fn refresh(&mut self, core: &SessionCore) {
        self.open
            .retain(|key, (at, tx)| match core.tunnel_target(*key, *at) {
                Ok(port) => {
                    tx.send_if_modified(|p| std::mem::replace(p, port) != port);
                    !tx.is_closed()
                }
                Err(()) => false,
            });
    }
}
