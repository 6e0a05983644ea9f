//! The client side of Punch: everything a peer (the GStreamer elements, `punch peer`) and an
//! operator tool (the CLI) need to talk to a server.
//!
//! * [`signalling`]: the session WebSocket; [`rest`] (feature `rest`): the HTTP API.
//! * [`nat`]: STUN discovery and hole-punch priming from the SRT port.
//! * [`peer`]: the peer state machine (pure) and the driver that runs it against a server.
//! * [`net`]: free UDP ports and the open-file limit.
//! * [`tunnel`]: SRT datagrams over a WebSocket, for a side without UDP.

pub mod error;
pub mod nat;
pub mod net;
pub mod peer;
#[cfg(feature = "rest")]
pub mod rest;
pub mod signalling;
pub mod tls;
pub mod tunnel;

pub use error::ClientError;
pub use signalling::{Signalling, ws_url};
