//! The open tunnels of one session, kept by its actor: each hears the relay port to send to on
//! a watch channel, and is closed (its channel dropped) when a newer tunnel of its side replaces
//! it, its ticket is withdrawn, or the session ends.

use std::collections::HashMap;
use std::net::SocketAddr;

use tokio::sync::watch;

use crate::server::session::core::SessionCore;

/// A link (by index) and a side of it (0 sender, 1 receiver).
type LinkSide = (usize, usize);

/// The open tunnels of one session, kept by its actor.
#[derive(Debug, Default)]
pub(in crate::server::session) struct Tunnels {
    /// Per link-side: the tunnel socket, and the channel that tells it its relay port.
    open: HashMap<LinkSide, (SocketAddr, watch::Sender<Option<u16>>)>,
}

impl Tunnels {
    /// A tunnel attached (see [`SessionCore::attach_tunnel`]): it hears its relay port on the
    /// receiver, which ends when a newer tunnel of its side replaces it or the session goes.
    pub(in crate::server::session) fn attach(
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
    pub(in crate::server::session) fn refresh(&mut self, core: &SessionCore) {
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
