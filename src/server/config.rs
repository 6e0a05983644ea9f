//! What a server is started with: addresses, storage, limits, path policy and relay settings.

use std::net::SocketAddr;
use std::time::Duration;

use super::relay::RelayConfig;
use super::session::PathPolicy;

/// Default inactivity TTL of a session (seconds).
pub const DEFAULT_TTL_S: u64 = 1800;

/// Bounds that keep one client from costing the server more than its share.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_sessions: usize,
    pub max_streams: usize,
    pub max_connections_per_session: usize,
    /// Largest WebSocket message accepted (bytes).
    pub ws_max_message: usize,
    /// Largest HTTP request body accepted (bytes).
    pub http_max_body: usize,
    /// Messages queued for one connection before it counts as too slow and is dropped.
    pub send_queue: usize,
    pub ping_interval: Duration,
    /// A connection silent for this long (no frame, no pong) is closed.
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    /// Sessions one client IP may create per minute (0 = unlimited).
    pub creates_per_minute: u32,
    pub messages_per_second: f64,
    pub message_burst: f64,
    /// Longest TTL a session may ask for (seconds).
    pub max_ttl_s: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sessions: 20_000,
            max_streams: 32,
            max_connections_per_session: 64,
            ws_max_message: 4096,
            http_max_body: 16 * 1024,
            send_queue: 64,
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
            creates_per_minute: 60,
            messages_per_second: 20.0,
            message_burst: 200.0,
            max_ttl_s: 7 * 24 * 3600,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// SQLite database path, or `:memory:`.
    pub db: String,
    /// Base URL peers and browsers use to reach this server; derived from the `Host` header when unset.
    pub public_url: Option<String>,
    /// Take client addresses from `X-Forwarded-For` / `Forwarded` (only behind a trusted proxy).
    pub trust_proxy: bool,
    /// Default inactivity TTL (seconds).
    pub default_ttl_s: u64,
    /// Token secret; when unset it is generated once and stored in the database.
    pub secret: Option<Vec<u8>>,
    pub limits: Limits,
    /// UDP port of the STUN service (the alternate is the next one; 0: any free ports;
    /// `None`: no STUN service), on the `listen` address.
    pub stun_port: Option<u16>,
    /// Direct attempts versus the relay.
    pub path: PathPolicy,
    pub relay: RelayConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            db: ":memory:".into(),
            public_url: None,
            trust_proxy: false,
            default_ttl_s: DEFAULT_TTL_S,
            secret: None,
            limits: Limits::default(),
            stun_port: Some(0),
            path: PathPolicy::default(),
            relay: RelayConfig::default(),
        }
    }
}
