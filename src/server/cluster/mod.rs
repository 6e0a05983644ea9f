//! Several `punch serve` nodes on one PostgreSQL database, behind any TCP/HTTP load balancer.
//!
//! Each session is owned by one node at a time, its single writer as on a lone server, through
//! a lease row (`leases`: owner, epoch, expiry on the database's clock):
//!
//! * The node that creates a session owns it (the lease is written with the session). Every
//!   node renews all its leases every [`RENEW`]; a lease runs for [`LEASE`].
//! * A request (HTTP or WebSocket) for a session this node does not serve is forwarded to the
//!   owner's internal URL, published in `nodes` (`forward.rs`). When the owner does not answer,
//!   the node waits for its lease to run out, then takes the session over (epoch + 1), loads it
//!   from the database and starts its task here ([`Cluster::locate`]).
//! * A node takes a session over only once its lease ran out, its own lease too: one takeover,
//!   one epoch, one task loaded at it.
//! * Every node also adopts, every [`ADOPT_EVERY`], sessions whose lease expired with nobody
//!   asking for them (a node died), so they expire and keep their timers.
//! * Fencing (`fence.rs`): every write checks, in its transaction, that the lease still names
//!   this node at the epoch it took it at. A node frozen past its lease that wakes up finds its
//!   writes refused and stops serving the sessions it lost, closing their connections (the
//!   peers reconnect through the balancer to the new owner).
//! * A node that shuts down ends its leases at once ([`Cluster::leave`]).
//!
//! `lease.rs` decides (unit-tested); `db.rs` holds the statements.

mod db;
mod fence;
mod forward;
mod lease;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use fence::{Fence, MOVED};
pub use forward::route;
use lease::Decision;

use super::registry::Registry;
use super::session::model::Tombstone;
use super::session::{self, SessionEnv};

/// The database's clock in milliseconds, as SQL (leases expire on it, not on a node's).
macro_rules! db_now {
    () => {
        "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT"
    };
}
pub(crate) use db_now;

/// How long a lease runs without renewal: a dead node's sessions are taken over this long
/// after its last renewal at the latest.
pub const LEASE: Duration = Duration::from_secs(3);
/// [`LEASE`] in the database's unit.
pub(crate) const LEASE_MS: i64 = LEASE.as_millis() as i64;
/// How often a node renews its leases (and says it is alive).
pub const RENEW: Duration = Duration::from_secs(1);
/// How often a node looks for sessions nobody holds.
pub const ADOPT_EVERY: Duration = Duration::from_secs(1);
/// Sessions adopted in one go at most.
const ADOPT_BATCH: i64 = 1000;
/// How long a request for a session whose owner does not answer may wait for its lease to run
/// out before it is refused (503).
pub const OWNER_WAIT: Duration = Duration::from_secs(6);

/// This node among those sharing the database.
#[derive(Debug, Clone, Default)]
pub struct NodeConfig {
    /// Its name (`--node-id`); default: `node-` and random characters, new at each start.
    pub id: Option<String>,
    /// Where the other nodes reach its HTTP port (`--internal-url`, plain `http://`);
    /// default: `http://` and the address it listens on.
    pub internal_url: Option<String>,
}

impl NodeConfig {
    /// This node's name: the one given, else a new one.
    pub fn node_id(&self) -> String {
        self.id.clone().unwrap_or_else(|| {
            let tail: String = (0..8)
                .map(|_| {
                    let n = rand::random::<u8>() % 36;
                    char::from_digit(u32::from(n), 36).unwrap_or('x')
                })
                .collect();
            format!("node-{tail}")
        })
    }
}

/// The node's part in the cluster.
pub struct Cluster {
    pub node: String,
    /// What the other nodes forward to.
    internal_url: String,
    db: db::Db,
    /// A connection of its own for the renewals: never queued behind lookups and loads.
    renewals: db::Db,
    fence: Arc<Fence>,
    registry: Arc<Registry>,
    /// What a session task taken over here is given.
    sessions: SessionEnv,
    /// One takeover at a time per session (concurrent requests for it wait for the first).
    taking: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Where a request for a session goes.
pub enum Located {
    /// Served here (taken over if it had to be), or answered here (no such session, closed).
    Here,
    /// Forward to the owner at `url`.
    Owner { owner: String, url: String },
    /// Ask again after this long (this node's own lease is being adopted, or another node was
    /// quicker to take the session).
    Wait(Duration),
}

impl Cluster {
    /// Joins the cluster on database `url`: publishes the node, adopts the sessions nobody
    /// holds, and starts renewing, adopting and stopping lost sessions.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        url: &str,
        config: &NodeConfig,
        listening: SocketAddr,
        fence: Arc<Fence>,
        lost: mpsc::UnboundedReceiver<String>,
        registry: Arc<Registry>,
        sessions: SessionEnv,
        cancel: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Arc<Cluster>, String> {
        let internal_url = match &config.internal_url {
            Some(u) if u.starts_with("http://") => u.trim_end_matches('/').to_string(),
            Some(u) => {
                return Err(format!(
                    "--internal-url {u}: give a plain http:// URL the other nodes reach this one at"
                ));
            }
            None if listening.ip().is_unspecified() => {
                let at = SocketAddr::new([127, 0, 0, 1].into(), listening.port());
                tracing::warn!(
                    "listening on {listening}: other nodes are told http://{at}; set --internal-url to the address they reach this node at"
                );
                format!("http://{at}")
            }
            None => format!("http://{listening}"),
        };
        let cluster = Arc::new(Cluster {
            node: fence.node.clone(),
            internal_url,
            db: db::Db::new(url),
            renewals: db::Db::new(url),
            fence,
            registry,
            sessions,
            taking: Mutex::default(),
        });
        cluster
            .db
            .announce(&cluster.node, &cluster.internal_url)
            .await?;
        // what nobody holds (every session, after the whole cluster was down) is served from
        // the start, as a lone server serves what it stored
        while cluster.adopt().await? == ADOPT_BATCH as usize {}
        tracing::info!(
            node = cluster.node,
            url = cluster.internal_url,
            sessions = cluster.fence.held(),
            "joined the cluster"
        );
        tracker.spawn(cluster.clone().keep_leases(cancel.clone()));
        tracker.spawn(cluster.clone().adopt_orphans(cancel.clone()));
        tracker.spawn(cluster.clone().stop_lost(lost, cancel));
        Ok(cluster)
    }

    /// Renews the leases until shutdown, on a task and a connection of its own: however long
    /// an adoption or a storm of lookups takes, the leases do not run out.
    async fn keep_leases(self: Arc<Self>, cancel: CancellationToken) {
        self.every(RENEW, cancel, "renew", || self.renew()).await
    }

    /// Adopts the sessions nobody holds until shutdown.
    async fn adopt_orphans(self: Arc<Self>, cancel: CancellationToken) {
        self.every(ADOPT_EVERY, cancel, "take", || async {
            self.adopt().await.map(|_| ())
        })
        .await
    }

    /// Runs `step` every `period`, saying once when it starts failing and when it works again.
    async fn every<F, Fut>(&self, period: Duration, cancel: CancellationToken, what: &str, step: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            match step().await {
                Err(e) if !failing => {
                    failing = true;
                    tracing::error!(
                        node = self.node,
                        "cannot {what} leases: {e}; the sessions served here go on, and their changes are stored once the database answers (unless another node took them meanwhile)"
                    );
                }
                Ok(()) if failing => {
                    failing = false;
                    tracing::warn!(node = self.node, "the database answers again");
                }
                _ => {}
            }
        }
    }

    async fn renew(&self) -> Result<(), String> {
        // what this node held before asking: a lease taken meanwhile is not lost
        let before = self.fence.snapshot();
        let held = self.renewals.renew(&self.node).await?;
        for (session, epoch) in before {
            if !held.iter().any(|(s, e)| *s == session && *e == epoch) {
                tracing::warn!(
                    session,
                    node = self.node,
                    "this session's lease was taken by another node: it is no longer served here"
                );
                self.fence.lose(&session);
            }
        }
        self.renewals.announce(&self.node, &self.internal_url).await
    }

    /// Adopts sessions nobody holds; how many.
    async fn adopt(&self) -> Result<usize, String> {
        let taken = self.db.adopt(&self.node, ADOPT_BATCH).await?;
        if taken.is_empty() {
            return Ok(0);
        }
        let names: Vec<String> = taken.iter().map(|(s, _)| s.clone()).collect();
        // served here while its lease ran out (this node was frozen, or cut off from the
        // database): what its task holds may be stale. It stops, what it queued is refused
        // (this node holds no epoch for it meanwhile), and the session is loaded again.
        let mut stale = false;
        for (session, _) in &taken {
            if let Some(old) = self.registry.evict(session) {
                tracing::warn!(
                    session,
                    node = self.node,
                    "this node's lease on the session ran out while it served it: loading it again"
                );
                old.evict().await;
                let _ = tokio::time::timeout(Duration::from_secs(1), old.stopped()).await;
                self.fence.release(session);
                stale = true;
            }
        }
        if stale {
            let _ = self
                .sessions
                .store
                .commit(super::session::persist::StoreOp::Flush)
                .await;
        }
        for (session, epoch) in &taken {
            self.fence.hold(session, *epoch);
        }
        let records = self.db.load(&names).await?;
        tracing::info!(
            node = self.node,
            sessions = records.len(),
            "took over sessions nobody held"
        );
        for rec in records {
            self.serve(rec);
        }
        Ok(taken.len())
    }

    /// Starts the task of a session taken over.
    fn serve(&self, rec: session::model::SessionRecord) {
        let name = rec.name.clone();
        if self.registry.is_live(&name) {
            return;
        }
        let handle = session::spawn(rec, self.sessions.clone());
        if let Err(e) = self.registry.insert(handle, usize::MAX, usize::MAX) {
            tracing::error!(
                session = name,
                "cannot serve a session taken over: {}",
                e.message
            );
        }
    }

    /// Stops serving the sessions another node took over.
    async fn stop_lost(
        self: Arc<Self>,
        mut lost: mpsc::UnboundedReceiver<String>,
        cancel: CancellationToken,
    ) {
        loop {
            let session = tokio::select! {
                _ = cancel.cancelled() => return,
                s = lost.recv() => match s { Some(s) => s, None => return },
            };
            if let Some(handle) = self.registry.evict(&session) {
                handle.evict().await;
            }
        }
    }

    /// Where a request for `name` (not served here) goes; takes the session over when nobody
    /// holds it.
    pub async fn locate(&self, name: &str) -> Result<Located, String> {
        if self.registry.is_live(name) {
            return Ok(Located::Here);
        }
        let found = self.db.find(name).await?;
        match lease::decide(&self.node, found.as_ref()) {
            Decision::Answer => {
                if let Some((nonce, reason, closed_ms)) = found.and_then(|f| f.closed) {
                    self.registry.restore_tombstone(
                        name.to_string(),
                        Tombstone {
                            nonce,
                            reason,
                            closed_ms,
                        },
                    );
                }
                Ok(Located::Here)
            }
            Decision::Forward { owner, url } => Ok(Located::Owner { owner, url }),
            Decision::Wait { ms } => Ok(Located::Wait(Duration::from_millis(ms.max(1) as u64))),
            Decision::Take => self.take(name).await,
        }
    }

    async fn take(&self, name: &str) -> Result<Located, String> {
        let lock = self
            .taking
            .lock()
            .unwrap()
            .entry(name.to_string())
            .or_default()
            .clone();
        let _one = lock.lock().await;
        let result = async {
            if self.registry.is_live(name) {
                return Ok(Located::Here);
            }
            let Some(epoch) = self.db.take(name, &self.node).await? else {
                // another node was quicker (or it closed): ask again
                return match lease::decide(&self.node, self.db.find(name).await?.as_ref()) {
                    Decision::Forward { owner, url } => Ok(Located::Owner { owner, url }),
                    _ => Ok(Located::Wait(RENEW / 4)),
                };
            };
            self.fence.hold(name, epoch);
            let rec = self.db.load(&[name.to_string()]).await?;
            match rec.into_iter().next() {
                Some(rec) => {
                    tracing::info!(
                        session = name,
                        node = self.node,
                        epoch,
                        "took the session over"
                    );
                    self.serve(rec);
                }
                None => self.fence.release(name),
            }
            Ok(Located::Here)
        }
        .await;
        self.taking.lock().unwrap().remove(name);
        result
    }

    /// Whether a live session of this name exists on any node (a creation must not replace it).
    pub async fn exists(&self, name: &str) -> Result<bool, String> {
        Ok(self
            .db
            .find(name)
            .await?
            .is_some_and(|f| f.closed.is_none()))
    }

    /// At shutdown, once the session tasks ended and their changes are stored: ends this
    /// node's leases so the other nodes take its sessions at once.
    pub async fn leave(&self) {
        match self.db.leave(&self.node).await {
            Ok(()) => tracing::info!(node = self.node, "left the cluster"),
            Err(e) => tracing::warn!(
                node = self.node,
                "could not end this node's leases ({e}): the other nodes take its sessions when they expire"
            ),
        }
    }
}
