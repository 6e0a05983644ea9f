//! The value types every message and body is made of: roles, states, addresses, NAT and
//! health reports.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Which side of an SRT stream a peer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
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
        f.pad(self.as_str())
    }
}

/// Session and stream lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
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
}

impl fmt::Display for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The SRT connection state a peer reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum SrtStatus {
    Connecting,
    Connected,
    Disconnected,
}

/// Tally light state of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
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

#[cfg(feature = "spec")]
impl schemars::JsonSchema for Port {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Port".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A UDP port number.",
            "type": "integer",
            "minimum": 1,
            "maximum": 65535
        })
    }
}

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
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
pub struct Endpoint {
    pub ip: String,
    pub port: u16,
}

/// Free-form peer description shown to operators.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
pub struct PeerMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<String>,
    /// Any other keys the peer sends (device model, software version, ...).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// How a NAT maps one local UDP port to public ports (RFC 4787 terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
pub struct NatReport {
    /// Public address of the SRT port as the server's STUN service saw it.
    pub mapped: Option<Endpoint>,
    pub mapping: NatMapping,
}

/// Link health sampled by the peer over its last reporting interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
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

/// Colour of a stream's health on the dashboard; thresholds in `docs/dashboard.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum HealthLevel {
    Green,
    Amber,
    Red,
}

/// Which way a stream's media goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum MediaPath {
    /// Peer to peer (SRT rendezvous through both NATs).
    Direct,
    /// Through the server's UDP relay.
    Relay,
    /// Through the server's relay, a side's datagrams carried over its tunnel WebSocket (TCP):
    /// that side has no UDP.
    Tunnel,
}
