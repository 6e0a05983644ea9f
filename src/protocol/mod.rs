//! The Punch wire protocol: every HTTP body and WebSocket message exchanged between the
//! server, the signalling client and the GStreamer elements.
//!
//! This module is serde only (no tokio, no GStreamer) so that every side uses the same types.
//! WebSocket messages are JSON objects tagged by `type`. `docs/protocol.md` shows each one.

pub mod stun;
pub mod uri;

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// Session latency when the creator does not choose one (milliseconds).
pub const DEFAULT_LATENCY_MS: u32 = 200;
/// SRT latency bounds accepted by the server (milliseconds), as vendors clamp it.
pub const MIN_LATENCY_MS: u32 = 20;
pub const MAX_LATENCY_MS: u32 = 8000;
/// Default SRT key length in bytes (AES-128); SRT accepts 16, 24 or 32.
pub const DEFAULT_PBKEYLEN: u8 = 16;
/// Stream name used when a session is created without naming its streams.
pub const DEFAULT_STREAM: &str = "default";
/// Longest session or stream name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest free-text label (camera label, audio description, role text).
pub const MAX_LABEL_LEN: usize = 128;

/// Which side of an SRT stream a peer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The encoder side (`punchsink`).
    Sender,
    /// The decoder side (`punchsrc`).
    Receiver,
}

impl Role {
    pub fn other(self) -> Role {
        match self {
            Role::Sender => Role::Receiver,
            Role::Receiver => Role::Sender,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Sender => "sender",
            Role::Receiver => "receiver",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "sender" => Some(Role::Sender),
            "receiver" => Some(Role::Receiver),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Session and stream lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SessionState {
    /// At least one side of a stream is not registered.
    Waiting,
    /// Both sides registered and received each other's coordinates.
    Ready,
    /// Direct rendezvous cannot work or did not connect: media goes through the server's relay.
    /// (Ordered before `Connected` so that a session's state, its least advanced stream's, shows
    /// that one of its streams is relayed.)
    Relaying,
    /// Both sides report their SRT connection up.
    Connected,
    /// Closed by its admin or expired; terminal.
    Closed,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Waiting => "WAITING",
            SessionState::Ready => "READY",
            SessionState::Relaying => "RELAYING",
            SessionState::Connected => "CONNECTED",
            SessionState::Closed => "CLOSED",
        }
    }

    pub fn parse(s: &str) -> Option<SessionState> {
        match s {
            "WAITING" => Some(SessionState::Waiting),
            "READY" => Some(SessionState::Ready),
            "RELAYING" => Some(SessionState::Relaying),
            "CONNECTED" => Some(SessionState::Connected),
            "CLOSED" => Some(SessionState::Closed),
            _ => None,
        }
    }
}

impl fmt::Display for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The SRT connection state a peer reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SrtStatus {
    Connecting,
    Connected,
    Disconnected,
}

/// Tally light state of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum TallyState {
    #[serde(rename = "on-air")]
    OnAir,
    #[serde(rename = "preview")]
    Preview,
    #[default]
    #[serde(rename = "off")]
    Off,
}

impl TallyState {
    pub fn as_str(self) -> &'static str {
        match self {
            TallyState::OnAir => "on-air",
            TallyState::Preview => "preview",
            TallyState::Off => "off",
        }
    }

    pub fn parse(s: &str) -> Option<TallyState> {
        match s {
            "on-air" => Some(TallyState::OnAir),
            "preview" => Some(TallyState::Preview),
            "off" => Some(TallyState::Off),
            _ => None,
        }
    }
}

/// What the server knows of one side of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerStatus {
    /// Nobody holds the slot (never registered, or the holder disconnected).
    Waiting,
    /// A live connection holds the slot.
    Registered,
    /// The holder reports its SRT connection up.
    Connected,
}

/// A UDP port number in 1..=65535, with a readable error for anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Port(pub u16);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = i64::deserialize(d)?;
        match u16::try_from(raw) {
            Ok(p) if p != 0 => Ok(Port(p)),
            _ => Err(serde::de::Error::custom(format!(
                "port must be between 1 and 65535, got {raw}"
            ))),
        }
    }
}

/// A public address as the server sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub ip: String,
    pub port: u16,
}

/// Free-form peer description shown to operators.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PeerMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<String>,
    /// Any other keys the peer sends (device model, software version, ...).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

// ---------------------------------------------------------------------------------------------
// peer → server

/// Messages a peer sends over the WebSocket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    Register(Register),
    Health(Health),
    Status(StatusReport),
}

/// Claim one side of a stream and declare the local UDP port SRT will bind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// How a NAT maps one local UDP port to public ports (RFC 4787 terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NatMapping {
    /// The same public ip:port for every destination (no NAT, port-preserving or "cone" NATs):
    /// rendezvous to the mapped address works.
    EndpointIndependent,
    /// A new public port per destination ("symmetric"): only a relay can connect it.
    EndpointDependent,
    /// Discovery could not tell (one probe unanswered).
    Unknown,
}

impl NatMapping {
    pub fn as_str(self) -> &'static str {
        match self {
            NatMapping::EndpointIndependent => "endpoint-independent",
            NatMapping::EndpointDependent => "endpoint-dependent",
            NatMapping::Unknown => "unknown",
        }
    }
}

/// STUN discovery result sent with `register`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatReport {
    /// Public address of the SRT port as the server's STUN service saw it.
    pub mapped: Option<Endpoint>,
    pub mapping: NatMapping,
}

/// Link health sampled by the peer over its last reporting interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// Round-trip time, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt: Option<f64>,
    /// Retransmitted packets as a percentage of packets sent (sender side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retransmit: Option<f64>,
    /// Payload rate in bit/s (send rate on the sender, receive rate on the receiver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitrate: Option<f64>,
    /// Lost packets as a percentage of packets expected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// Negotiated SRT latency, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<f64>,
}

impl Health {
    /// Every present value must be a finite, non-negative number; percentages at most 100.
    pub fn validate(&self) -> Result<(), String> {
        let fields = [
            ("rtt", self.rtt, f64::MAX),
            ("retransmit", self.retransmit, 100.0),
            ("bitrate", self.bitrate, f64::MAX),
            ("loss", self.loss, 100.0),
            ("latency", self.latency, f64::MAX),
        ];
        for (name, value, max) in fields {
            if let Some(v) = value
                && !(v.is_finite() && (0.0..=max).contains(&v))
            {
                return Err(format!(
                    "health field `{name}` must be a number between 0 and {max}, got {v}"
                ));
            }
        }
        Ok(())
    }
}

/// The peer's SRT connection state changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub srt: SrtStatus,
}

// ---------------------------------------------------------------------------------------------
// server → peer

/// Messages the server sends over the WebSocket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Hello(Hello),
    Registered(Registered),
    Peer(PeerInfo),
    Tally(Tally),
    Session(SessionUpdate),
    Error(ErrorBody),
    Closed(Closed),
    /// The full session view, pushed to admin connections (the dashboard) on every change.
    View(Box<SessionView>),
    /// A message type this build does not know (a newer server): ignored, not an error.
    #[serde(other)]
    Unknown,
}

/// Registration accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registered {
    pub stream: String,
    pub role: Role,
    /// This peer's public address as the server sees it.
    pub you: Endpoint,
    /// The other side, once it is registered (a `peer` message follows too).
    pub peer: Option<PeerInfo>,
}

/// Where the other side of the stream is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// Sent first on every connection: what the server offers besides signalling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// UDP ports of the STUN service on the server's host (primary, alternate), if it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stun: Option<[u16; 2]>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    pub stream: String,
    pub state: TallyState,
}

/// One stream as announced to every connection of its session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamSummary {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub state: SessionState,
    pub sender: PeerStatus,
    pub receiver: PeerStatus,
    pub tally: TallyState,
}

/// Sent on every change of the session's streams or peers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionUpdate {
    pub state: SessionState,
    pub streams: Vec<StreamSummary>,
    /// Streams in CONNECTED state.
    pub connected: usize,
    pub total: usize,
}

/// An error: `code` is stable and machine-readable, `message` is for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

/// The session ended; the server closes the socket after this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closed {
    pub reason: String,
}

// ---------------------------------------------------------------------------------------------
// HTTP bodies

/// `{"error": {...}}`, the body of every HTTP error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: ErrorBody,
}

/// Per-stream settings given at creation (`streams` as a map).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<String>,
}

/// Tokens for the two sides of one stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamTokens {
    pub sender: String,
    pub receiver: String,
}

/// `201` answer to `POST /api/session`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedSession {
    pub session: String,
    /// Admin token of this session.
    pub token: String,
    /// Operator dashboard URL (carries the admin token).
    pub url: String,
    /// QR image of `url`.
    pub qr: String,
    pub streams: Vec<String>,
    pub latency: u32,
    pub ttl: u64,
    pub state: SessionState,
    /// RFC 3339 UTC creation time.
    pub created: String,
    /// Stream-scoped tokens, one per stream and side.
    pub stream_tokens: serde_json::Map<String, serde_json::Value>,
}

/// `POST /api/session/:id/tally`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TallyRequest {
    pub stream: String,
    pub state: TallyState,
}

/// The fields vMix's SRT dialog asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmixFields {
    #[serde(rename = "type")]
    pub kind: String,
    pub hostname: String,
    pub port: u16,
    pub latency_ms: u32,
    pub passphrase: String,
    pub key_length: u8,
}

/// Ready-to-paste settings for one side of a stream, one per client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionStrings {
    /// URI for `punchsink`/`punchsrc` (stream-scoped token).
    pub punch: String,
    /// A complete `gst-launch-1.0` line with `srtsink`/`srtsrc`.
    pub gstreamer: String,
    pub srt_live_transmit: String,
    /// ffmpeg piped through srt-live-transmit (ffmpeg itself cannot be a rendezvous peer).
    pub ffmpeg: String,
    /// OBS Studio custom server URL (latency in µs).
    pub obs: String,
    pub vmix: VmixFields,
    /// Conditions a format only works under, by format name.
    pub notes: std::collections::BTreeMap<String, String>,
}

/// Both sides of one stream: `a` is the sender (camera), `b` the receiver (decoder).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamConnect {
    pub for_peer_a: ConnectionStrings,
    pub for_peer_b: ConnectionStrings,
}

/// `GET /api/session/:id/connect`: per stream, and for a single-stream session also at the
/// top level (the original service's shape). `409` while no stream has both sides registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectResponse {
    pub session: String,
    pub streams: std::collections::BTreeMap<String, StreamConnect>,
    /// Streams without strings yet, and which side they miss (multi-stream sessions).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub missing: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_peer_a: Option<ConnectionStrings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_peer_b: Option<ConnectionStrings>,
}

/// `POST /api/session/:id/latency`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyRequest {
    pub stream: String,
    /// New SRT latency, milliseconds.
    pub latency: u32,
}

/// One side of a stream in `GET /api/session/:id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerView {
    pub status: PeerStatus,
    /// Public address of the current (or last) holder.
    pub address: Option<Endpoint>,
    pub meta: Option<PeerMeta>,
    pub srt: Option<SrtStatus>,
    pub registered_at: Option<String>,
    pub last_health: Option<Health>,
    pub health_at: Option<String>,
    /// The NAT discovery the peer reported at registration.
    pub nat: Option<NatReport>,
}

/// Colour of a stream's health on the dashboard; thresholds in `docs/dashboard.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthLevel {
    Green,
    Amber,
    Red,
}

/// Which way a stream's media goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaPath {
    /// Peer to peer (SRT rendezvous through both NATs).
    Direct,
    /// Through the server's UDP relay.
    Relay,
}

/// The SRT latency the server recommends for a stream from its recent health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyRecommendation {
    /// Recommended SRT latency, milliseconds.
    pub latency: u32,
    /// 95th percentile of the RTT samples in the window, milliseconds.
    pub rtt_p95: f64,
    /// Highest loss (or retransmit) percentage in the window.
    pub loss: f64,
    /// RTT multiplier chosen for that loss (SRT Deployment Guide table).
    pub multiplier: u32,
    /// RTT samples the recommendation is based on.
    pub samples: usize,
    /// How it was derived, for people.
    pub note: String,
}

/// One point of a stream's recent history (dashboard sparklines).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthSample {
    /// Unix time, milliseconds.
    pub t: i64,
    pub rtt: Option<f64>,
    pub bitrate: Option<f64>,
}

/// One stream in `GET /api/session/:id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamView {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<String>,
    pub state: SessionState,
    /// SRT latency the peers are given, milliseconds.
    pub latency: u32,
    pub tally: TallyState,
    /// Direct or relayed, once both sides are registered.
    pub path: Option<MediaPath>,
    /// Why the stream is relayed.
    pub path_reason: Option<String>,
    pub level: Option<HealthLevel>,
    /// What decided `level`, for people.
    pub level_reason: Option<String>,
    pub recommendation: Option<LatencyRecommendation>,
    /// Recent health, oldest first.
    pub history: Vec<HealthSample>,
    pub sender: PeerView,
    pub receiver: PeerView,
}

/// `GET /api/session/:id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionView {
    pub session: String,
    pub state: SessionState,
    pub latency: u32,
    pub ttl: u64,
    pub created: String,
    /// When the session expires if nothing happens until then (null while any WebSocket is open).
    pub expires: Option<String>,
    pub streams: Vec<StreamView>,
    pub connected: usize,
    pub total: usize,
}

/// Whether `name` is a valid session or stream name: 1–64 of `A-Z a-z 0-9 - _`.
pub fn validate_name(kind: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{kind} name must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "{kind} name is longer than {MAX_NAME_LEN} characters"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "{kind} name {name:?} contains {c:?}; use only letters, digits, '-' and '_'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_parses_and_rejects_bad_ports() {
        let m: ClientMessage = serde_json::from_str(
            r#"{"type":"register","port":9000,"role":"sender","meta":{"label":"CAM-1","x":1}}"#,
        )
        .unwrap();
        let ClientMessage::Register(r) = m else {
            panic!("not a register")
        };
        assert_eq!(r.port, Port(9000));
        assert_eq!(r.meta.label.as_deref(), Some("CAM-1"));
        assert_eq!(r.meta.extra["x"], 1);
        for bad in ["0", "65536", "-1"] {
            let err = serde_json::from_str::<ClientMessage>(&format!(
                r#"{{"type":"register","port":{bad},"role":"sender"}}"#
            ))
            .unwrap_err();
            assert!(
                err.to_string().contains("port must be between 1 and 65535"),
                "{err}"
            );
        }
    }

    #[test]
    fn unknown_type_is_an_error_naming_the_variants() {
        let err = serde_json::from_str::<ClientMessage>(r#"{"type":"hello"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown variant `hello`"), "{err}");
    }

    #[test]
    fn tally_wire_names() {
        assert_eq!(
            serde_json::to_string(&TallyState::OnAir).unwrap(),
            "\"on-air\""
        );
        let t: Tally = serde_json::from_str(r#"{"stream":"a","state":"preview"}"#).unwrap();
        assert_eq!(t.state, TallyState::Preview);
    }

    #[test]
    fn health_validation() {
        assert!(
            Health {
                rtt: Some(12.0),
                retransmit: Some(0.5),
                ..Default::default()
            }
            .validate()
            .is_ok()
        );
        assert!(
            Health {
                loss: Some(101.0),
                ..Default::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            Health {
                rtt: Some(-1.0),
                ..Default::default()
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn names() {
        assert!(validate_name("session", "nab-floor_cam1").is_ok());
        assert!(validate_name("session", "").is_err());
        assert!(validate_name("session", "a b").unwrap_err().contains("' '"));
        assert!(validate_name("stream", &"x".repeat(65)).is_err());
    }
}
