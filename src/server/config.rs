//! What a server is started with: addresses, storage, limits, path policy and relay settings.

use std::net::SocketAddr;
use std::time::Duration;

use super::relay::RelayConfig;
use super::session::PathPolicy;

/// Default inactivity TTL of a session (seconds).
pub const DEFAULT_TTL_S: u64 = 1800;

/// Bounds that keep one client from costing the server more than its share. Every one is a
/// `punch serve` flag (or fixed here); `docs/security.md` lists them with their defaults.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Sessions held at once, server-wide.
    pub max_sessions: usize,
    /// Live sessions created from one client address (IPv6: one /64).
    pub sessions_per_ip: usize,
    /// Streams one session may have; also the most receiver slots of all its streams
    /// together (each slot is one SRT link from the sender, with its own path and relay).
    pub max_streams: usize,
    /// Receivers one stream may have (`"receivers": N` at creation).
    pub max_receivers: usize,
    /// WebSocket connections one session accepts, all scopes together.
    pub max_connections_per_session: usize,
    /// Of those, connections with the admin token (dashboards, the CLI).
    pub admin_connections_per_session: usize,
    /// Of those, connections with the token of one side of one stream.
    pub connections_per_side: usize,
    /// Of those, connections with the join token (the waiting room), so that a venue QR code
    /// in strangers' hands cannot take the session's connections.
    pub join_connections_per_session: usize,
    /// A WebSocket that has neither registered nor asked to watch this long after opening is
    /// closed (and never keeps its session alive meanwhile).
    pub identify_timeout: Duration,
    /// Largest WebSocket message accepted (bytes).
    pub ws_max_message: usize,
    /// Largest HTTP request body accepted (bytes).
    pub http_max_body: usize,
    /// Messages queued for one connection before it counts as too slow and is dropped.
    pub send_queue: usize,
    pub ping_interval: Duration,
    /// A WebSocket silent for this long (no frame, no pong) is closed.
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    /// Sessions one client address may create per minute (0 = unlimited).
    pub creates_per_minute: u32,
    /// Messages one WebSocket may send per second on average, and in a burst.
    pub messages_per_second: f64,
    pub message_burst: f64,
    /// Longest TTL a session may ask for (seconds).
    pub max_ttl_s: u64,
    /// TCP connections open at once from one client address (IPv6: one /64).
    pub connections_per_ip: usize,
    /// A request's head must arrive in full within this time of its first byte (or of the
    /// connection's opening).
    pub header_timeout: Duration,
    /// A request's body must arrive in full within this time of its head.
    pub body_timeout: Duration,
    /// A kept-alive connection with no request under way is closed after this long.
    pub keepalive_timeout: Duration,
    /// STUN requests answered per second from one source address (IPv6: one /64), and in a
    /// burst; more are dropped.
    pub stun_per_second: f64,
    pub stun_burst: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sessions: 20_000,
            sessions_per_ip: 100,
            max_streams: 32,
            max_receivers: 16,
            max_connections_per_session: 64,
            admin_connections_per_session: 16,
            connections_per_side: 4,
            join_connections_per_session: 16,
            identify_timeout: Duration::from_secs(5),
            ws_max_message: 4096,
            http_max_body: 16 * 1024,
            send_queue: 64,
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
            creates_per_minute: 60,
            messages_per_second: 20.0,
            message_burst: 200.0,
            max_ttl_s: 24 * 3600,
            connections_per_ip: 256,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(60),
            stun_per_second: 10.0,
            stun_burst: 20.0,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Built-in TLS on the listen port (HTTPS, WSS; links become `https://`, `punchs://`).
    pub tls: Option<super::tls::TlsFiles>,
    /// Serve `/metrics` on this address (plain HTTP) instead of the main port.
    pub metrics_listen: Option<SocketAddr>,
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
    /// When set, `POST /api/session` needs `Authorization: Bearer <key>`.
    pub create_key: Option<String>,
    pub limits: Limits,
    /// UDP port of the STUN service (the alternate is the next one; 0: any free ports;
    /// `None`: no STUN service), on the `listen` address.
    pub stun_port: Option<u16>,
    /// The host peers send STUN to (and reach relays at), told in every `hello`; unset: the
    /// host they reached the server by. Each node of a cluster names its own.
    pub stun_host: Option<String>,
    /// With a PostgreSQL database: this node's name among the servers sharing it (default:
    /// generated at start) and the URL the other nodes forward its sessions' requests to.
    pub node: super::cluster::NodeConfig,
    /// Direct attempts versus the relay.
    pub path: PathPolicy,
    pub relay: RelayConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls: None,
            metrics_listen: None,
            db: ":memory:".into(),
            public_url: None,
            trust_proxy: false,
            default_ttl_s: DEFAULT_TTL_S,
            secret: None,
            create_key: None,
            limits: Limits::default(),
            stun_port: Some(0),
            stun_host: None,
            node: Default::default(),
            path: PathPolicy::default(),
            relay: RelayConfig::default(),
        }
    }
}
