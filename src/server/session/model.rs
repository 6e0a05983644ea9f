//! What a session is made of, as it is persisted: the records the store saves and loads and
//! the session core works on. Run-time state (who is connected now, the path in use) lives in
//! the core, not here.

use std::net::IpAddr;

use crate::protocol::{Endpoint, Health, PeerMeta, Role, TallyState};

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
}

impl StreamRecord {
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
