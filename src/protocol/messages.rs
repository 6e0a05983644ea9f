//! The WebSocket messages, both ways: JSON objects tagged by `type`.

use serde::{Deserialize, Serialize};

use super::api::SessionView;
use super::device::LinkMode;
use super::error::ErrorCode;
use super::values::{
    Endpoint, Health, NatReport, PeerMeta, PeerStatus, Port, Role, SessionState, SrtStatus,
    TallyState,
};

// ---------------------------------------------------------------------------------------------
// peer → server

/// Messages a peer sends over the WebSocket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    Register(Register),
    Health(Health),
    Status(StatusReport),
    /// Follow the session without holding a side (the dashboard; admin token only): the
    /// connection then gets a `view` on every change. A connection that neither registers nor
    /// watches is closed after a few seconds.
    Watch,
}

/// Claim one side of a stream and declare the local UDP port SRT will bind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
pub struct Register {
    /// Stream name; defaults to the token's stream, else the session's first stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Local UDP port the SRT socket binds.
    pub port: Port,
    pub role: Role,
    #[serde(default)]
    pub meta: PeerMeta,
    /// What the peer learnt about its NAT by STUN from the SRT port (absent: no discovery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat: Option<NatReport>,
    /// Whether this connection will report its SRT status (`false` for `punch peer`, which holds
    /// a side for a third-party tool). Default `true`.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub reports: bool,
    /// Which receiver slot (1…N) of a stream with several receivers this side links with. A
    /// receiver without it takes the next free slot (the one it held before, if free); a
    /// sender without it links with receiver 1. A sender serves N receivers with N
    /// registrations, one connection and one SRT port each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "spec", schemars(range(min = 1)))]
    pub receiver: Option<u8>,
    /// This side has no UDP (STUN went unanswered, or it was told so): its SRT datagrams go
    /// over a tunnel WebSocket (`GET /api/tunnel/{session}`), through the server's relay.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tunnel: bool,
}

/// The default receiver count: one.
pub(crate) fn one() -> u8 {
    1
}

pub(crate) fn is_one(n: &u8) -> bool {
    *n == 1
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// The peer's SRT connection state changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
pub struct StatusReport {
    pub srt: SrtStatus,
}

// ---------------------------------------------------------------------------------------------
// server → peer

/// Messages the server sends over the WebSocket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Hello(Hello),
    Registered(Registered),
    Peer(PeerInfo),
    Tally(Tally),
    Cue(Cue),
    Admission(Admission),
    Session(SessionUpdate),
    Error(ErrorBody),
    Closed(Closed),
    /// The full session view, pushed to admin connections (the dashboard) on every change.
    View(Box<SessionView>),
    /// A message type this build does not know (a newer server): ignored, not an error.
    /// (Not part of the spec: no server sends it.)
    #[serde(other)]
    #[cfg_attr(feature = "spec", schemars(skip))]
    Unknown,
}

/// Registration accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
pub struct Registered {
    pub stream: String,
    pub role: Role,
    /// This peer's public address as the server sees it.
    pub you: Endpoint,
    /// The other side, once it is registered (a `peer` message follows too).
    pub peer: Option<PeerInfo>,
    /// The receiver slot this registration links (streams with several receivers only): a
    /// receiver registers it again when it reconnects, to keep its link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver: Option<u8>,
    /// How many receivers the stream has.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub receivers: u8,
}

/// Where the other side of the stream is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
pub struct PeerInfo {
    pub stream: String,
    pub ip: String,
    pub port: u16,
    pub passphrase: String,
    pub pbkeylen: u8,
    /// SRT latency to configure, milliseconds.
    pub latency: u32,
    /// The coordinates are the server's relay: `ip` is empty and the peer sends to `port` on the
    /// address it reached the server's STUN service at.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub relay: bool,
    /// How this side runs SRT: rendezvous (absent), `listener` (for a caller device, behind the
    /// relay: prime towards the coordinates, then listen on the local port) or `caller` (call
    /// a listener device at the coordinates).
    #[serde(default, skip_serializing_if = "LinkMode::is_rendezvous")]
    pub mode: LinkMode,
    /// (With `relay`.) This side's datagrams go over its tunnel WebSocket: open
    /// `GET /api/tunnel/{session}` with this side's token, and run SRT against a local socket
    /// that carries each datagram as one binary frame (`protocol::tunnel`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tunnel: bool,
    /// (With `tunnel`.) What the tunnel URL names as `&ticket=`: it ties the tunnel to this
    /// side of this link, so no other holder of the token can carry it. The same for as long as
    /// the server runs (a signalling reconnect keeps the tunnel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
}

/// Sent first on every connection: what the server offers besides signalling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
pub struct Hello {
    /// UDP ports of the STUN service on the server's host (primary, alternate), if it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stun: Option<[u16; 2]>,
    /// The name this connection gives its STUN requests (their USERNAME): the server accepts
    /// a registered `nat.mapped` only if its STUN service saw a request of that name from
    /// exactly that address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stun_tag: Option<String>,
    /// Where to send those STUN requests when it is not the host the client reached the
    /// server by: behind a load balancer, the address of the node serving this connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stun_host: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
pub struct Tally {
    pub stream: String,
    pub state: TallyState,
}

/// Where a peer that registered with a join token stands in the waiting room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum AdmissionState {
    /// In the waiting room until the producer decides.
    Waiting,
    /// Given a side: `registered` and `peer` follow as for that side's token.
    Admitted,
}

/// The waiting room's word to a peer that registered with a join token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
pub struct Admission {
    pub state: AdmissionState,
    /// The name the operator admits or rejects it by.
    pub peer: String,
    /// Admitted: the side it now holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Admitted: that side's stream token, to reconnect with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// A cue from the producer to the people at one stream (or one side of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
pub struct Cue {
    pub stream: String,
    /// The side it is for; absent: both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// At most `MAX_CUE_LEN` characters, no control characters; shown as text, never markup.
    pub text: String,
    /// RFC 3339 UTC time the server took it.
    pub at: String,
}

/// One stream as announced to every connection of its session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
pub struct StreamSummary {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub state: SessionState,
    pub sender: PeerStatus,
    /// The first receiver's status (with several, `linked` counts the linked ones).
    pub receiver: PeerStatus,
    pub tally: TallyState,
    /// Receivers the stream has. A sender whose stream has more than one links with each on
    /// its own registration (`register.receiver`).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub receivers: u8,
    /// With several receivers: how many of them have a connected SRT link now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linked: Option<u8>,
    /// With several receivers: each receiver's link state, receiver 1 first (a peer reads its
    /// own link's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<SessionState>,
}

/// Sent on every change of the session's streams or peers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
pub struct SessionUpdate {
    pub state: SessionState,
    pub streams: Vec<StreamSummary>,
    /// Streams in CONNECTED state.
    pub connected: usize,
    pub total: usize,
}

/// An error: `code` is stable and machine-readable, `message` is for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

/// The session ended; the server closes the socket after this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
pub struct Closed {
    pub reason: String,
}
