//! One session: its records ([`model`]), its state machine ([`SessionCore`]: no sockets, no
//! tasks, unit-tested) and the tokio task that owns it ([`spawn`]), the single writer of the
//! session's state.
//!
//! * `model.rs`: the persisted records; `persist.rs`: the changes to them and the handle they
//!   are sent to the storage engine through.
//! * `health.rs`: what a stream's health reports add up to (colour, latency recommendation).
//! * `core.rs`: connections, registration, tally, latency, close.
//! * `admission.rs`: the waiting room of peers with the join token.
//! * `device.rs`: sides held by SRT devices (caller, listener) and cues.
//! * `operate.rs`: tally, latency, close, and the `session` summary to every connection.
//! * `path.rs`: pairing and the path policy (direct rendezvous or relay).
//! * `tunnel.rs`: sides without UDP: their tunnel tickets and sockets, and the move of a side
//!   the relay never heard from to its tunnel.
//! * `view.rs`: the summary, the full view and the connection-string coordinates.
//! * `effects.rs`: what the core asks its owner to do.
//! * `error.rs`: why an operation was refused ([`SessionError`]).
//! * `actor/`: the task and its handle (`relay.rs`: the relays it starts and stops; `tunnel.rs`:
//!   the open tunnels).

mod actor;
mod admission;
mod core;
pub(crate) mod device;
mod effects;
mod error;
mod health;
pub mod model;
mod operate;
mod path;
pub mod persist;
mod receivers;
mod tunnel;
mod view;

pub use actor::{AdmitTo, Outbound, SessionEnv, SessionHandle, spawn};
pub use core::ConnLimits;
pub use device::{check_pair, device_side};
pub use effects::ConnId;
pub use error::SessionError;
pub use path::PathPolicy;
pub use view::StreamCoordinates;

#[cfg(test)]
pub(crate) mod tests;
