//! What every request handler and connection task shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};

use tokio_util::sync::CancellationToken;

use super::config::ServerConfig;
use super::limit::KeyedLimiter;
use super::registry::Registry;
use super::relay::RelayService;
use super::session::SessionEnv;
use super::stun::{Ledger, StunStats};
use super::token::TokenKey;

/// Counters shown by `/healthz`.
#[derive(Default)]
pub struct Stats {
    /// WebSocket connections open now.
    pub connections: AtomicUsize,
    /// WebSocket text messages received.
    pub messages: AtomicU64,
    /// What the STUN service answered and dropped (shared with the STUN task).
    pub stun: Arc<StunStats>,
}

/// Shared by every request handler and connection task.
pub struct AppState {
    /// What the server was started with.
    pub config: ServerConfig,
    /// Issues and verifies tokens.
    pub key: TokenKey,
    /// Session names to their tasks.
    pub registry: Arc<Registry>,
    /// What every new session task is given.
    pub sessions: SessionEnv,
    /// Server shutdown.
    pub cancel: CancellationToken,
    /// Source of connection ids.
    pub next_conn_id: AtomicU64,
    pub stats: Stats,
    /// `GET /metrics`.
    pub metrics: Arc<super::metrics::Metrics>,
    /// Sessions created per client address.
    pub create_limiter: KeyedLimiter<std::net::IpAddr>,
    /// `[primary, alternate]` STUN ports, when the service runs.
    pub stun_ports: Option<[u16; 2]>,
    /// Where the STUN service saw each registration's requests come from.
    pub stun_ledger: Arc<Ledger>,
    /// The relays, for `/healthz`.
    pub relay: Arc<RelayService>,
    /// This node's part in a cluster (a PostgreSQL database): `None` on SQLite.
    pub cluster: Option<Arc<super::cluster::Cluster>>,
}
