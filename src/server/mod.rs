//! The Punch server: HTTP API, WebSocket signalling, one task per session, SQLite persistence.
//!
//! ```no_run
//! # async fn demo() -> Result<(), String> {
//! let server = punch::server::Server::start(punch::server::ServerConfig::default()).await?;
//! println!("listening on {}", server.local_addr());
//! server.shutdown().await;
//! # Ok(()) }
//! ```

mod connect;
mod error;
mod health;
mod http;
mod registry;
pub mod relay;
mod session;
pub mod store;
mod stun;
pub mod token;
mod ui;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use error::ApiError;
pub use http::qr_svg;
use registry::Registry;
use relay::{RelayConfig, RelayService};
pub use session::PathPolicy;
use session::SessionEnv;
use store::Store;
use token::TokenKey;

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

/// Counters shown by `/healthz`.
#[derive(Default)]
pub struct Stats {
    pub connections: AtomicUsize,
    pub messages: AtomicU64,
    pub stun_requests: Arc<AtomicU64>,
}

/// Shared by every request handler and connection task.
pub struct AppState {
    config: ServerConfig,
    key: TokenKey,
    registry: Arc<Registry>,
    sessions: SessionEnv,
    cancel: CancellationToken,
    next_conn_id: AtomicU64,
    stats: Stats,
    create_limiter: http::CreateLimiter,
    /// `[primary, alternate]` STUN ports, when the service runs.
    stun_ports: Option<[u16; 2]>,
    relay: Arc<RelayService>,
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    stun_ports: Option<[u16; 2]>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    serve: tokio::task::JoinHandle<()>,
    store: Store,
    store_thread: store::StoreThread,
}

impl Server {
    /// Opens the database, restores its sessions, binds the listener and starts serving.
    pub async fn start(config: ServerConfig) -> Result<Server, String> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let stun_sockets = match config.stun_port {
            Some(port) => {
                let at = SocketAddr::new(config.listen.ip(), port);
                Some(stun::bind(at).await.map_err(|e| {
                    format!("cannot open the STUN service on UDP {at} (and the port above it): {e}")
                })?)
            }
            None => None,
        };
        let stun_ports = stun_sockets.as_ref().map(|s| {
            s.each_ref()
                .map(|s| s.local_addr().map(|a| a.port()).unwrap_or(0))
        });
        let mut relay_config = config.relay.clone();
        if relay_config.bind.is_unspecified() {
            relay_config.bind = config.listen.ip();
        }
        let relay = Arc::new(RelayService::new(relay_config));
        let (store, store_thread, loaded) =
            Store::open(&config.db, config.secret.clone(), now_ms())?;
        if config.db == ":memory:" && config.secret.is_none() {
            tracing::warn!("in-memory database: sessions and tokens will not survive a restart");
        }
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let registry = Arc::new(Registry::default());
        let sessions = SessionEnv {
            store: store.clone(),
            registry: registry.clone(),
            cancel: cancel.clone(),
            tracker: tracker.clone(),
            max_conns: config.limits.max_connections_per_session,
            policy: PathPolicy {
                relay: config.path.relay && config.relay.max_relays > 0,
                ..config.path.clone()
            },
            relay: relay.clone(),
        };
        for (name, t) in loaded.tombstones {
            registry.restore_tombstone(name, t);
        }
        let restored = loaded.sessions.len();
        for rec in loaded.sessions {
            let handle = session::spawn(rec, sessions.clone());
            registry.insert(handle, usize::MAX).map_err(|e| e.message)?;
        }
        tracing::info!(db = %config.db, restored, "database open");
        let state = Arc::new(AppState {
            key: TokenKey::new(loaded.secret),
            registry,
            sessions,
            cancel: cancel.clone(),
            next_conn_id: AtomicU64::new(1),
            stats: Stats::default(),
            create_limiter: http::CreateLimiter::default(),
            stun_ports,
            relay,
            config,
        });
        if let Some(sockets) = stun_sockets {
            let requests = state.stats.stun_requests.clone();
            tracker.spawn(stun::serve(sockets, requests, cancel.clone()));
        }
        let app = http::router(state.clone());
        let shutdown = cancel.clone();
        let serve = tokio::spawn(async move {
            let service = app.into_make_service_with_connect_info::<SocketAddr>();
            // Signalling messages are tiny and latency-bound: never let Nagle hold them back.
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                let _ = tcp.set_nodelay(true);
            });
            if let Err(e) = axum::serve(listener, service)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
            {
                tracing::error!("server error: {e}");
            }
        });
        tracing::info!("listening on http://{addr}");
        if let Some([primary, alternate]) = state.stun_ports {
            tracing::info!("STUN on udp/{primary} and udp/{alternate}");
        }
        if addr.ip().is_loopback() {
            tracing::warn!(
                "listening on a loopback address: STUN and the relay are reachable from this machine only"
            );
        }
        let stun_ports = state.stun_ports;
        drop(state);
        Ok(Server {
            addr,
            stun_ports,
            cancel,
            tracker,
            serve,
            store,
            store_thread,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `[primary, alternate]` UDP ports of the STUN service, if it runs.
    pub fn stun_ports(&self) -> Option<[u16; 2]> {
        self.stun_ports
    }

    /// Resolves when the server stops (after [`shutdown`](Self::shutdown) from elsewhere, or a fatal error).
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Stops accepting, closes every WebSocket with "going away", and flushes the database.
    /// Sessions stay in the database: a new server on the same file carries on with them.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.serve.await;
        self.tracker.close();
        self.tracker.wait().await;
        if let Err(e) = self.store.commit(store::StoreOp::Flush).await {
            tracing::error!("database flush failed: {e}");
        }
        drop(self.store);
        let thread = self.store_thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `2026-05-03T11:49:15.620Z` for a Unix time in milliseconds.
pub fn format_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // civil-from-days (H. Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn format_time_is_rfc3339_utc() {
        assert_eq!(super::format_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::format_time(1_777_808_955_620),
            "2026-05-03T11:49:15.620Z"
        );
        assert_eq!(
            super::format_time(951_782_400_001),
            "2000-02-29T00:00:00.001Z"
        );
    }
}
