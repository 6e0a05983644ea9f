//! What a session is made of, as it is persisted: the records the store saves and loads and
//! the session core works on. Run-time state (who is connected now, the path in use) lives in
//! the core, not here.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::protocol::{DeviceMode, Endpoint, Health, PeerMeta, Role, TallyState};

/// How long a closed session's name answers 410 Gone before it is forgotten.
pub const TOMBSTONE_RETENTION_MS: i64 = 24 * 3600 * 1000;

/// Last known holder of one side of a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct LastPeer {
    /// Where its SRT traffic comes from (STUN-mapped, else the signalling address and the
    /// declared port): what the other side is sent to.
    pub address: Endpoint,
    /// What it said about itself (label, audio), shown to operators.
    pub meta: PeerMeta,
    /// When it registered, for the dashboard.
    pub registered_ms: i64,
    /// Its latest health report and when it came, kept across restarts for the dashboard.
    pub health: Option<Health>,
    pub health_ms: Option<i64>,
}

/// A device (not a Punch peer) holding one side of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSide {
    /// `Caller` or `Listener` (a rendezvous device is held by a Punch peer: no record).
    pub mode: DeviceMode,
    /// A listener's address: what the Punch side calls.
    #[serde(default)]
    pub address: Option<SocketAddr>,
    /// A caller must send its stream ID (else the first caller locks the relay port).
    #[serde(default)]
    pub check_streamid: bool,
    /// A caller's key, the `s=` of its stream ID: generated, kept when the side is set to
    /// caller again (a device keeps its settings), new after the side was something else.
    #[serde(default)]
    pub key: String,
    /// The relay port a caller calls; chosen once so that what was typed into the device stays
    /// right (also across server restarts).
    #[serde(default)]
    pub port: u16,
}

/// One stream of a session: its settings and the last holders of its two sides.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamRecord {
    /// Unique within the session; part of stream tokens and `punch://` URIs.
    pub name: String,
    /// Free text for operators, given at creation.
    pub label: Option<String>,
    pub role: Option<String>,
    pub audio: Option<String>,
    /// SRT passphrase both sides get; generated at creation, stable for the session's life so
    /// that a side that re-registers (also after a server restart) keeps its link.
    pub passphrase: String,
    /// SRT latency the sides are given (ms); the operator may change it.
    pub latency: u32,
    pub tally: TallyState,
    pub sender: Option<LastPeer>,
    pub receiver: Option<LastPeer>,
    /// `[sender, receiver]`: a device holds the side instead of a Punch peer.
    pub devices: [Option<DeviceSide>; 2],
}

/// Separates a stream's name from its receiver slot in the record of slot 2 and up (stream
/// names are letters, digits, `-` and `_`, so it cannot be part of one).
const SLOT_SEPARATOR: char = '~';

/// The record name of receiver slot `slot` (1…N) of `stream`. A stream with N receivers is N
/// records, one per link from the sender: slot 1's is the stream's own name (so a stream with
/// one receiver is what it always was), slot k's is `stream~k`.
pub fn link_name(stream: &str, slot: u8) -> String {
    if slot <= 1 {
        stream.to_string()
    } else {
        format!("{stream}{SLOT_SEPARATOR}{slot}")
    }
}

impl StreamRecord {
    /// The stream this link belongs to (what users, tokens and URIs call it).
    pub fn stream(&self) -> &str {
        self.name
            .split_once(SLOT_SEPARATOR)
            .map_or(self.name.as_str(), |(s, _)| s)
    }

    /// The receiver slot this record links, 1…N.
    pub fn slot(&self) -> u8 {
        self.name
            .split_once(SLOT_SEPARATOR)
            .and_then(|(_, k)| k.parse().ok())
            .unwrap_or(1)
    }

    pub fn peer_mut(&mut self, role: Role) -> &mut Option<LastPeer> {
        match role {
            Role::Sender => &mut self.sender,
            Role::Receiver => &mut self.receiver,
        }
    }

    pub fn peer(&self, role: Role) -> &Option<LastPeer> {
        match role {
            Role::Sender => &self.sender,
            Role::Receiver => &self.receiver,
        }
    }
}

/// A live session as persisted.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub name: String,
    /// Random per creation: binds tokens to this incarnation of the name.
    pub nonce: String,
    pub created_ms: i64,
    /// Inactivity time after which the session expires.
    pub ttl_s: u64,
    /// The latency new streams start with (ms).
    pub latency: u32,
    /// SRT key length (bytes) of every stream.
    pub pbkeylen: u8,
    /// Last activity; the TTL counts from it once nobody is connected.
    pub last_activity_ms: i64,
    /// Who created it, as per-client limits count (see `limit::client_key`); `None` for
    /// sessions stored before this was recorded.
    pub creator: Option<IpAddr>,
    /// The host the session was created at (or `--public-url`'s): what caller devices call.
    pub public_host: Option<String>,
    /// It has a waiting room: its join token is accepted.
    pub join: bool,
    pub streams: Vec<StreamRecord>,
}

/// A closed session remembered so its name answers 410 Gone.
#[derive(Debug, Clone, PartialEq)]
pub struct Tombstone {
    /// The closed incarnation's nonce: its tokens get 410, other tokens 404.
    pub nonce: String,
    /// Why it ended ("closed by operator", "expired").
    pub reason: String,
    pub closed_ms: i64,
}
