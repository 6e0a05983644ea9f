//! The Punch server: HTTP API, WebSocket signalling, one task per session, SQLite persistence,
//! the STUN service and the relay. `docs/architecture.md` maps its modules.
//!
//! ```no_run
//! # async fn demo() -> Result<(), String> {
//! let server = punch::server::Server::start(punch::server::ServerConfig::default()).await?;
//! println!("listening on {}", server.local_addr());
//! server.shutdown().await;
//! # Ok(()) }
//! ```

mod cluster;
mod config;
mod connect;
mod http;
mod limit;
mod listener;
pub mod metrics;
mod registry;
pub mod relay;
mod session;
pub mod spec;
mod state;
pub mod store;
mod stun;
mod time;
pub mod tls;
pub mod token;
mod tunnel;
mod ui;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use cluster::NodeConfig;
pub use config::{DEFAULT_TTL_S, Limits, ServerConfig};
pub use http::qr_svg;
use registry::Registry;
use relay::RelayService;
pub use session::PathPolicy;
use session::SessionEnv;
use session::persist::{Store, StoreOp};
use state::{AppState, Stats};
pub use time::{format_time, now_ms};
use token::TokenKey;

/// Connections waiting to be accepted: enough for thousands of peers reconnecting at once
/// (after a node of a cluster died); the kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 8192;

/// The HTTP listener on `at`.
fn listen(at: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if at.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(at)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    stun_ports: Option<[u16; 2]>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    /// The accept loop.
    serve: tokio::task::JoinHandle<()>,
    /// Built-in TLS, reloaded by [`Server::reload_tls`].
    tls: Option<Arc<tls::Tls>>,
    /// Where `/metrics` is served when it has a listener of its own.
    metrics_addr: Option<SocketAddr>,
    /// One task per HTTP connection (until it is upgraded).
    connections: TaskTracker,
    store: Store,
    store_thread: store::StoreThread,
    /// Its part in a cluster (PostgreSQL): its leases end at shutdown.
    cluster: Option<Arc<cluster::Cluster>>,
}

impl Server {
    /// Opens the database, restores its sessions, binds the listener and starts serving.
    pub async fn start(config: ServerConfig) -> Result<Server, String> {
        // the certificate first: a wrong one must not leave a half-started server
        let tls = match &config.tls {
            Some(files) => Some(Arc::new(tls::Tls::load(files.clone())?)),
            None => None,
        };
        let listener = listen(config.listen)
            .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let metrics_listener = match config.metrics_listen {
            Some(at) => Some(
                tokio::net::TcpListener::bind(at)
                    .await
                    .map_err(|e| format!("cannot listen for metrics on {at}: {e}"))?,
            ),
            None => None,
        };
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
        let relay_bind = relay_config.bind;
        let relay = Arc::new(RelayService::new(relay_config));
        let metrics = Arc::new(metrics::Metrics::new());
        // a PostgreSQL database may be shared: this node holds leases on the sessions it serves
        let (fence, lost) = match store::is_postgres(&config.db) {
            true => {
                let (fence, lost) = cluster::Fence::new(config.node.node_id());
                (Some(Arc::new(fence)), Some(lost))
            }
            false => (None, None),
        };
        let (store, store_thread, loaded) = store::open(
            &config.db,
            config.secret.clone(),
            now_ms(),
            Some(metrics.store_commit.clone()),
            fence.clone(),
        )?;
        if config.db == ":memory:" && config.secret.is_none() {
            tracing::warn!("in-memory database: sessions and tokens will not survive a restart");
        }
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let registry = Arc::new(Registry::default());
        let on_closed = {
            let (registry, fence) = (registry.clone(), fence.clone());
            Arc::new(move |name: &str, reason: &str| {
                registry.remove_closed(name, reason);
                if let Some(f) = &fence {
                    f.release(name);
                }
            })
        };
        let sessions = SessionEnv {
            store: store.clone(),
            on_closed,
            cancel: cancel.clone(),
            tracker: tracker.clone(),
            conn_limits: session::ConnLimits {
                total: config.limits.max_connections_per_session,
                admin: config.limits.admin_connections_per_session,
                per_side: config.limits.connections_per_side,
                join: config.limits.join_connections_per_session,
                identify_ms: config.limits.identify_timeout.as_millis() as i64,
            },
            policy: PathPolicy {
                relay: config.path.relay && config.relay.max_relays > 0,
                // tunnel sockets send to the relay from its own address; when it binds every
                // address, from 127.0.0.1 (a dual-stack [::] socket takes IPv4 too, and a host
                // without IPv6 has no ::1)
                tunnel_ip: if relay_bind.is_unspecified() {
                    [127, 0, 0, 1].into()
                } else {
                    relay_bind
                },
                ..config.path.clone()
            },
            relay: relay.clone(),
            metrics: metrics.clone(),
            node: fence.as_ref().map(|f| f.node.clone()),
        };
        for (name, t) in loaded.tombstones {
            registry.restore_tombstone(name, t);
        }
        let restored = loaded.sessions.len();
        for rec in loaded.sessions {
            let handle = session::spawn(rec, sessions.clone());
            registry
                .insert(handle, usize::MAX, usize::MAX)
                .map_err(|e| e.message)?;
        }
        tracing::info!(db = %store::redacted(&config.db), restored, "database open");
        let cluster = match (fence, lost) {
            (Some(fence), Some(lost)) => Some(
                cluster::Cluster::start(
                    &config.db,
                    &config.node,
                    addr,
                    fence,
                    lost,
                    registry.clone(),
                    sessions.clone(),
                    cancel.clone(),
                    &tracker,
                )
                .await?,
            ),
            _ => None,
        };
        let state = Arc::new(AppState {
            key: TokenKey::new(loaded.secret),
            registry,
            sessions,
            cancel: cancel.clone(),
            next_conn_id: AtomicU64::new(1),
            stats: Stats::default(),
            metrics,
            create_limiter: limit::KeyedLimiter::per_minute(config.limits.creates_per_minute),
            stun_ports,
            stun_ledger: Arc::default(),
            relay,
            cluster: cluster.clone(),
            config,
        });
        if let Some(sockets) = stun_sockets {
            let limits = &state.config.limits;
            let limiter = limit::KeyedLimiter::new(limits.stun_per_second, limits.stun_burst);
            tracker.spawn(stun::serve(
                sockets,
                state.stats.stun.clone(),
                state.stun_ledger.clone(),
                limiter,
                cancel.clone(),
            ));
        }
        let app = http::router(state.clone());
        let limits = &state.config.limits;
        let rules = listener::ConnectionRules {
            // Behind a trusted proxy every connection comes from the proxy: it limits clients.
            per_ip: (!state.config.trust_proxy).then_some(limits.connections_per_ip),
            header_timeout: limits.header_timeout,
            body_timeout: limits.body_timeout,
            keepalive_timeout: limits.keepalive_timeout,
            tls: tls.clone(),
            metrics: Some(state.metrics.clone()),
        };
        let connections = TaskTracker::new();
        // `/metrics` on a listener of its own: plain HTTP, for the monitoring network
        let metrics_addr = match metrics_listener {
            Some(l) => {
                let addr = l.local_addr().map_err(|e| e.to_string())?;
                let rules = listener::ConnectionRules {
                    tls: None,
                    ..rules.clone()
                };
                tracker.spawn(listener::serve(
                    l,
                    http::metrics_router(state.clone()),
                    rules,
                    cancel.clone(),
                    connections.clone(),
                ));
                tracing::info!("metrics on http://{addr}/metrics");
                Some(addr)
            }
            None => None,
        };
        let serve = tokio::spawn(listener::serve(
            listener,
            app,
            rules,
            cancel.clone(),
            connections.clone(),
        ));
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!("listening on {scheme}://{addr}");
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
            tls,
            metrics_addr,
            connections,
            store,
            store_thread,
            cluster,
        })
    }

    /// Reads the TLS certificate and key again (SIGHUP): new connections get them, open ones
    /// are not touched; on an error the certificate in use stays. `Ok(false)` without TLS.
    pub fn reload_tls(&self) -> Result<bool, String> {
        match &self.tls {
            Some(tls) => tls.reload().map(|()| true),
            None => Ok(false),
        }
    }

    /// The `--metrics-listen` address, if `/metrics` has its own listener.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Whether the server speaks TLS on its port.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// This node's name among the servers sharing its PostgreSQL database.
    pub fn node(&self) -> Option<&str> {
        self.cluster.as_ref().map(|c| c.node.as_str())
    }

    /// `[primary, alternate]` UDP ports of the STUN service, if it runs.
    pub fn stun_ports(&self) -> Option<[u16; 2]> {
        self.stun_ports
    }

    /// Stops accepting, closes every WebSocket with "going away", and flushes the database.
    /// Sessions stay in the database: a new server on the same file carries on with them.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.serve.await;
        self.connections.close();
        // Connections finish their request and close; one that does not is not waited for.
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(5), self.connections.wait()).await;
        self.tracker.close();
        self.tracker.wait().await;
        if let Err(e) = self.store.commit(StoreOp::Flush).await {
            tracing::error!("database flush failed: {e}");
        }
        if let Some(cluster) = self.cluster {
            cluster.leave().await;
            // (it holds a handle on the store, which the writer waits for)
            drop(cluster);
        }
        drop(self.store);
        let thread = self.store_thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}
