//! One side of a stream against a Punch server: the pure state machine ([`PeerMachine`]) and
//! the driver that runs it ([`run`]) for a [`PeerHost`] (the GStreamer elements, `punch peer`).

mod driver;
mod machine;
#[cfg(test)]
mod tests;

pub use driver::{DriverConfig, PeerHost, run};
pub use machine::{
    Action, BACKOFF_MAX, BACKOFF_START, FIRST_CONNECT_ATTEMPTS, Failure, FailureKind, HELLO_WAIT,
    PeerConfig, PeerEvent, PeerMachine, REPROBE, SLOT_RETRY, Target,
};
