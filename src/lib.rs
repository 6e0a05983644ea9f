//! Punch: a self-hosted SRT session broker.
//!
//! * [`protocol`]: the wire types shared by the server, the client and the GStreamer elements.
//! * [`client`] (feature `client`): the WebSocket signalling client.
//! * [`server`] (feature `server`): the HTTP/WebSocket server (`punch serve`).
//! * `cli` (feature `cli`): the `punch` command line.

pub mod protocol;

#[cfg(feature = "client")]
pub mod client;

#[cfg(feature = "server")]
pub mod server;

#[cfg(feature = "cli")]
pub mod cli;
