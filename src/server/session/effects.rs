//! What handling one event asks the session's owner to do: messages to send, changes to
//! store, relays to start or stop. The core returns these; the actor carries them out.

use super::persist::StoreOp;
use crate::protocol::{ErrorBody, ErrorCode, ServerMessage};
use crate::server::relay::{Admission, RelaySpec};

/// Identifies one WebSocket connection of the server.
pub type ConnId = u64;

/// Who a message goes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Conn(ConnId),
    /// Several connections, one message (serialised once).
    Conns(Vec<ConnId>),
    All,
}

/// A relay the session asks its task to start or stop.
#[derive(Debug, Clone, PartialEq)]
pub enum RelayOp {
    /// Start one for stream `stream` as `spec` says; `generation` ties the answer to this
    /// request; `device`: the relay of a caller device (answered by `device_relay_ready`).
    Start {
        stream: usize,
        generation: u64,
        device: bool,
        spec: RelaySpec,
    },
    /// The Punch peer of side `side` (0 sender, 1 receiver) of a running relay is now where
    /// `admission` says (registered again, left, or its tunnel opened).
    SetPeer {
        stream: usize,
        side: usize,
        admission: Admission,
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
    /// Connections to close (after their messages above), and why.
    pub close: Vec<(ConnId, String)>,
    /// Links whose two sides were handed coordinates (for the metrics).
    pub pairings: u32,
}

impl Effects {
    pub(super) fn send(&mut self, conn: ConnId, msg: ServerMessage) {
        self.out.push((Target::Conn(conn), msg));
    }

    pub(super) fn error(&mut self, conn: ConnId, code: ErrorCode, message: impl Into<String>) {
        self.send(
            conn,
            ServerMessage::Error(ErrorBody {
                code,
                message: message.into(),
            }),
        );
    }
}
