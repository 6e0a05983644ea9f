//! HTTP request and response bodies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::device::{DeviceView, SideSpec};
use super::messages::{Cue, ErrorBody};
use super::values::{
    Endpoint, Health, HealthLevel, MediaPath, NatReport, PeerMeta, PeerStatus, Role, SessionState,
    SrtStatus, TallyState,
};

/// `{"error": {...}}`, the body of every HTTP error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
pub struct ErrorResponse {
    pub error: ErrorBody,
}

/// Per-stream settings given at creation (`streams` as a map).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct StreamSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<String>,
    /// Who holds the sender side (absent: a Punch peer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<SideSpec>,
    /// Who holds the receiver side (absent: a Punch peer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver: Option<SideSpec>,
    /// How many receivers the stream has (1 when absent; at most `--max-receivers`): the
    /// sender links with each on its own SRT connection, one receiver token serves them all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receivers: Option<u8>,
}

/// `POST /api/session/:id/cue`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CueRequest {
    pub stream: String,
    /// Only this side's people; absent: both sides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    pub text: String,
}

/// Tokens for the two sides of one stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
pub struct StreamTokens {
    pub sender: String,
    pub receiver: String,
}

impl StreamTokens {
    /// The token of side `role`.
    pub fn get(&self, role: Role) -> &str {
        match role {
            Role::Sender => &self.sender,
            Role::Receiver => &self.receiver,
        }
    }
}

/// `201` answer to `POST /api/session`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
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
    pub stream_tokens: BTreeMap<String, StreamTokens>,
    /// With `"join": true`: the token peers register with to wait for the producer to give
    /// them a side (the venue QR code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_token: Option<String>,
}

/// `POST /api/session/:id/admission`: give a waiting peer a side, or turn it down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AdmissionRequest {
    pub peer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reject: bool,
    /// `stream` is a new stream of the session, made for this peer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create: bool,
}

/// A peer in the waiting room (`GET /api/session/:id`, admin token).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
pub struct WaitingPeer {
    pub peer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The side it asked for.
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// RFC 3339 time it started waiting.
    pub since: String,
}

/// `POST /api/session/:id/tally`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
pub struct TallyRequest {
    pub stream: String,
    pub state: TallyState,
}

/// The fields vMix's SRT dialog asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
pub struct VmixFields {
    #[serde(rename = "type")]
    pub kind: String,
    pub hostname: String,
    pub port: u16,
    pub latency_ms: u32,
    pub passphrase: String,
    pub key_length: u8,
    /// The stream ID a caller must send (vMix's "Stream ID" field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<String>,
}

/// Ready-to-paste settings for one side of a stream, one per client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
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
    pub notes: BTreeMap<String, String>,
}

/// Both sides of one stream: `a` is the sender (camera), `b` the receiver (decoder).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
pub struct StreamConnect {
    pub for_peer_a: ConnectionStrings,
    pub for_peer_b: ConnectionStrings,
}

/// `GET /api/session/:id/connect`: per stream, and for a single-stream session also at the
/// top level (the original service's shape). `409` while no stream has both sides registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
pub struct ConnectResponse {
    pub session: String,
    pub streams: BTreeMap<String, StreamConnect>,
    /// Streams without strings yet, and which side they miss (multi-stream sessions).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub missing: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_peer_a: Option<ConnectionStrings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_peer_b: Option<ConnectionStrings>,
}

/// `POST /api/session/:id/latency`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
pub struct LatencyRequest {
    pub stream: String,
    /// New SRT latency, milliseconds.
    pub latency: u32,
}

/// One side of a stream in `GET /api/session/:id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
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
    /// A device holds this side: what to type into it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceView>,
}

/// The SRT latency the server recommends for a stream from its recent health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
pub struct HealthSample {
    /// Unix time, milliseconds.
    pub t: i64,
    pub rtt: Option<f64>,
    pub bitrate: Option<f64>,
}

/// One stream in `GET /api/session/:id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
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
    /// What the path goes through besides Punch peers: `caller device` (relayed) or
    /// `listener device` (direct); the dashboard shows `relay (caller device)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// The last cue sent to this stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cue: Option<Cue>,
    pub level: Option<HealthLevel>,
    /// What decided `level`, for people.
    pub level_reason: Option<String>,
    pub recommendation: Option<LatencyRecommendation>,
    /// Recent health, oldest first.
    pub history: Vec<HealthSample>,
    pub sender: PeerView,
    /// The receiver (with several: receiver 1, also listed in `receivers`).
    pub receiver: PeerView,
    /// With several receivers: one entry per receiver slot, each its own SRT link.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub receivers: Vec<ReceiverLink>,
    /// With several receivers: the sender's total sending rate over all its links, bit/s
    /// (its upload is the bound on how many receivers it can feed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_bitrate: Option<f64>,
}

/// One receiver slot of a stream with several receivers: its own link from the sender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
pub struct ReceiverLink {
    /// The slot, 1…N.
    pub receiver: u8,
    pub state: SessionState,
    pub path: Option<MediaPath>,
    pub path_reason: Option<String>,
    pub level: Option<HealthLevel>,
    pub level_reason: Option<String>,
    /// The sender's end of this link (its health is this link's sending side).
    pub sender: PeerView,
    pub receiver_peer: PeerView,
}

/// `GET /api/session/:id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
pub struct SessionView {
    pub session: String,
    pub state: SessionState,
    pub latency: u32,
    pub ttl: u64,
    pub created: String,
    /// When the session expires if nothing happens until then (null while a peer that registered or a dashboard that watches is connected).
    pub expires: Option<String>,
    pub streams: Vec<StreamView>,
    pub connected: usize,
    pub total: usize,
    /// Peers waiting with the join token for the producer to give them a side (admin only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting: Vec<WaitingPeer>,
    /// The session has a waiting room (it was created with `"join": true`; admin only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub join: bool,
    /// The node serving the session now, when several servers share one database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// `POST /api/session`: the request body. Every field may be absent or `null` (its default).
/// (The server reads the body field by field, to say exactly what is wrong with one; this type
/// is what it accepts, for clients and for the generated spec.)
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// Session name (1-64 of `A-Z a-z 0-9 - _`); default: `punch-` and 8 random characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The streams: a list of names, or a map of name to its settings (`null`: defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streams: Option<StreamList>,
    /// SRT latency of every stream, milliseconds (20-8000; default 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<u32>,
    /// Inactivity TTL, seconds (1 to the server's `--max-ttl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
    /// SRT key length, bytes: 16, 24 or 32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pbkeylen: Option<u8>,
    /// Give the session a waiting room (the answer carries `join_token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join: Option<bool>,
}

/// `streams` of a [`CreateRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum StreamList {
    /// Stream names, default settings.
    Names(Vec<String>),
    /// Stream name to its settings, in the order given.
    Specs(BTreeMap<String, Option<StreamSpec>>),
}

/// `DELETE /api/session/:id`: the session is closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
pub struct ClosedSession {
    pub session: String,
    /// Always `CLOSED`.
    pub state: SessionState,
}

/// `POST /api/session/:id/admission`: what was done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
pub struct AdmissionAnswer {
    pub peer: String,
    /// Admitted: the side it now holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Turned down.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rejected: bool,
}

/// `GET /healthz`: counters. No names, addresses or tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
pub struct ServerHealth {
    /// Always `ok` when the server answers.
    pub status: String,
    /// Live sessions.
    pub sessions: usize,
    /// WebSocket connections open.
    pub connections: usize,
    /// WebSocket messages received.
    pub messages: u64,
    /// UDP ports of the STUN service (primary, alternate), if it runs.
    pub stun: Option<[u16; 2]>,
    pub stun_requests: u64,
    pub stun_limited: u64,
    /// Relays running.
    pub relays: usize,
    pub relay_packets: u64,
    pub relay_bytes: u64,
    pub relay_dropped: u64,
    pub relay_strangers: u64,
}
