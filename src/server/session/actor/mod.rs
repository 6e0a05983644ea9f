//! The task that owns one session (its single writer): it feeds events to the
//! [`SessionCore`] and carries out the [`Effects`], and [`SessionHandle`] is how the rest of
//! the server talks to it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::core::{ConnLimits, SessionCore};
use super::effects::{ConnId, Effects, Target};
use super::error::SessionError;
use super::model::SessionRecord;
use super::path::PathPolicy;
use super::persist::{Store, StoreOp};
use super::view::StreamCoordinates;
use crate::protocol::{
    ClientMessage, ErrorCode, Role, ServerMessage, SessionView, SideSpec, TallyState, close_code,
};
use crate::server::relay::{Relay, RelayEvent, RelayService};
use crate::server::time::now_ms;
use crate::server::token::Scope;
use crate::server::tunnel::TunnelLink;

mod relay;
mod tunnel;

pub(super) use tunnel::Tunnels;

/// What a connection task receives from its session.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A serialised server message, UTF-8 (serialised once, shared by every recipient).
    Text(bytes::Bytes),
    /// Close the socket with this code and reason.
    Close(u16, String),
}

enum Command {
    Attach {
        conn: ConnId,
        ip: IpAddr,
        scope: Scope,
        out: mpsc::Sender<Outbound>,
        reply: oneshot::Sender<Result<(), SessionError>>,
    },
    Message {
        conn: ConnId,
        msg: ClientMessage,
        /// Whether the STUN service saw a registered `nat.mapped` (see `SessionCore::handle`).
        mapping_seen: bool,
    },
    Detach {
        conn: ConnId,
    },
    View {
        /// What the asking token may read.
        scope: Scope,
        /// Where a join token's reader is: it reads the peers waiting from there.
        place: Option<IpAddr>,
        reply: oneshot::Sender<SessionView>,
    },
    Tally {
        stream: String,
        state: TallyState,
        reply: oneshot::Sender<Result<(), SessionError>>,
    },
    Latency {
        stream: String,
        latency: u32,
        reply: oneshot::Sender<Result<(), SessionError>>,
    },
    Coordinates {
        reply: oneshot::Sender<Vec<StreamCoordinates>>,
    },
    /// A tunnel opened (`tunnel.rs`): its socket `at`; it hears its relay port on the reply's
    /// receiver.
    AttachTunnel {
        link: TunnelLink,
        ticket: String,
        at: SocketAddr,
        reply: oneshot::Sender<Result<watch::Receiver<Option<u16>>, SessionError>>,
    },
    Side {
        stream: String,
        role: Role,
        spec: SideSpec,
        /// A new caller device's stream-ID key.
        key: String,
        /// The host the request came to (caller devices call it).
        host: Option<String>,
        reply: oneshot::Sender<Result<(), SessionError>>,
    },
    Cue {
        stream: String,
        role: Option<Role>,
        text: String,
        reply: oneshot::Sender<Result<(), SessionError>>,
    },
    /// Admit a waiting peer (`Some((stream, role, token, a new stream's passphrase and the
    /// most streams))`) or reject it (`None`).
    Admission {
        peer: String,
        side: Option<AdmitTo>,
        reply: oneshot::Sender<Result<(), SessionError>>,
    },
    /// The role a waiting peer asked for.
    WaitingRole {
        peer: String,
        reply: oneshot::Sender<Result<Role, SessionError>>,
    },
    Relay {
        stream: usize,
        generation: u64,
        event: RelayEvent,
    },
    Close {
        reason: String,
        reply: oneshot::Sender<Result<(), SessionError>>,
    },
    /// Another node serves the session now: stop, writing nothing.
    Evict,
}

/// Where a waiting peer is admitted.
#[derive(Debug, Clone)]
pub struct AdmitTo {
    pub stream: String,
    pub role: Role,
    /// That side's stream token, given to the peer for its reconnects.
    pub token: String,
    /// `Some((passphrase, most streams of a session))`: `stream` is a new stream.
    pub create: Option<(String, usize)>,
}

/// A cheap handle to a running session task.
#[derive(Clone, Debug)]
pub struct SessionHandle {
    pub name: Arc<str>,
    /// The incarnation its tokens carry.
    pub nonce: Arc<str>,
    /// Who created it (per-client limits).
    pub creator: Option<IpAddr>,
    tx: mpsc::Sender<Command>,
}

impl SessionHandle {
    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, SessionError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| SessionError::gone(&self.name))?;
        rx.await.map_err(|_| SessionError::gone(&self.name))
    }

    pub async fn attach(
        &self,
        conn: ConnId,
        ip: IpAddr,
        scope: Scope,
        out: mpsc::Sender<Outbound>,
    ) -> Result<(), SessionError> {
        self.request(|reply| Command::Attach {
            conn,
            ip,
            scope,
            out,
            reply,
        })
        .await?
    }

    /// Forwards a peer's message; waits for room in the session's queue (back-pressure on that
    /// peer). `mapping_seen`: the STUN service saw a `register`'s `nat.mapped`.
    pub async fn message(&self, conn: ConnId, msg: ClientMessage, mapping_seen: bool) -> bool {
        self.tx
            .send(Command::Message {
                conn,
                msg,
                mapping_seen,
            })
            .await
            .is_ok()
    }

    pub async fn detach(&self, conn: ConnId) {
        let _ = self.tx.send(Command::Detach { conn }).await;
    }

    /// The session's view, as a token of `scope` may read it.
    pub async fn view(&self, scope: &Scope) -> Result<SessionView, SessionError> {
        let scope = scope.clone();
        self.request(|reply| Command::View {
            scope,
            place: None,
            reply,
        })
        .await
    }

    /// The view of a reader at client address `place`: with the join token, the peers waiting
    /// from there (the venue page); otherwise as [`Self::view`].
    pub async fn view_from(
        &self,
        scope: &Scope,
        place: IpAddr,
    ) -> Result<SessionView, SessionError> {
        let scope = scope.clone();
        self.request(|reply| Command::View {
            scope,
            place: Some(place),
            reply,
        })
        .await
    }

    pub async fn set_tally(&self, stream: String, state: TallyState) -> Result<(), SessionError> {
        self.request(|reply| Command::Tally {
            stream,
            state,
            reply,
        })
        .await?
    }

    pub async fn set_latency(&self, stream: String, latency: u32) -> Result<(), SessionError> {
        self.request(|reply| Command::Latency {
            stream,
            latency,
            reply,
        })
        .await?
    }

    /// Sets who holds side `role` of `stream` (a Punch peer or a device).
    pub async fn set_side(
        &self,
        stream: String,
        role: Role,
        spec: SideSpec,
        key: String,
        host: Option<String>,
    ) -> Result<(), SessionError> {
        self.request(|reply| Command::Side {
            stream,
            role,
            spec,
            key,
            host,
            reply,
        })
        .await?
    }

    /// Sends a cue to the people at `stream` (one side, or both).
    pub async fn cue(
        &self,
        stream: String,
        role: Option<Role>,
        text: String,
    ) -> Result<(), SessionError> {
        self.request(|reply| Command::Cue {
            stream,
            role,
            text,
            reply,
        })
        .await?
    }

    /// Admits waiting `peer` into a side or rejects it (`None`).
    pub async fn admission(&self, peer: String, side: Option<AdmitTo>) -> Result<(), SessionError> {
        self.request(|reply| Command::Admission { peer, side, reply })
            .await?
    }

    /// The role waiting `peer` asked for.
    pub async fn waiting_role(&self, peer: String) -> Result<Role, SessionError> {
        self.request(|reply| Command::WaitingRole { peer, reply })
            .await?
    }

    /// What third-party connection strings are made of.
    pub async fn coordinates(&self) -> Result<Vec<StreamCoordinates>, SessionError> {
        self.request(|reply| Command::Coordinates { reply }).await
    }

    /// A tunnel of `link` with `ticket` opened; its datagrams come from `at`. The receiver
    /// has the relay port to send to (`None`: no relay yet) and ends when the tunnel is
    /// replaced by a newer one of its side, or the session goes.
    pub async fn attach_tunnel(
        &self,
        link: TunnelLink,
        ticket: String,
        at: SocketAddr,
    ) -> Result<watch::Receiver<Option<u16>>, SessionError> {
        self.request(|reply| Command::AttachTunnel {
            link,
            ticket,
            at,
            reply,
        })
        .await?
    }

    /// Stops the task without closing the session (another node took it over): its
    /// connections are closed with "going away", so the peers reconnect (to the new owner).
    pub async fn evict(&self) {
        let _ = self.tx.send(Command::Evict).await;
    }

    /// Resolves once the task has ended (it handles no more commands).
    pub async fn stopped(&self) {
        self.tx.closed().await
    }

    /// Closes the session; returns once the closure is stored and the name answers 410. When
    /// storing failed the session is closed all the same (the store keeps trying) and the error
    /// says so.
    pub async fn close(&self, reason: &str) -> Result<(), SessionError> {
        self.request(|reply| Command::Close {
            reason: reason.to_string(),
            reply,
        })
        .await?
    }
}

/// Told a closed session's name and reason once the closure is stored.
pub type ClosedHook = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// Everything a session task needs from the server.
#[derive(Clone)]
pub struct SessionEnv {
    /// Where changes are persisted.
    pub store: Store,
    /// Called once a closure is committed, with the session's name and the reason: frees the
    /// name (the registry keeps a tombstone so the old tokens get 410).
    pub on_closed: ClosedHook,
    /// Server shutdown: the task ends, the session lives on in the database.
    pub cancel: CancellationToken,
    /// Lets the server wait for every session task at shutdown.
    pub tracker: TaskTracker,
    /// Connections one session accepts.
    pub conn_limits: ConnLimits,
    /// Direct versus relay.
    pub policy: PathPolicy,
    /// Where relays come from.
    pub relay: Arc<RelayService>,
    /// The server's metrics.
    pub metrics: Arc<crate::server::metrics::Metrics>,
    /// This node's name when several share the database: shown in the session's views.
    pub node: Option<String>,
}

/// Dashboards get at most one view per this interval (health arrives every second per peer).
const VIEW_INTERVAL: Duration = Duration::from_millis(250);

/// Starts the task owning `rec`.
pub fn spawn(rec: SessionRecord, env: SessionEnv) -> SessionHandle {
    let (tx, rx) = mpsc::channel(256);
    let handle = SessionHandle {
        name: rec.name.as_str().into(),
        nonce: rec.nonce.as_str().into(),
        creator: rec.creator,
        tx,
    };
    let actor = Actor {
        me: handle.tx.downgrade(),
        core: SessionCore::new(rec, env.conn_limits, env.policy.clone())
            .with_node(env.node.clone()),
        outs: HashMap::new(),
        relays: HashMap::new(),
        view_due: None,
        view_sent: tokio::time::Instant::now() - VIEW_INTERVAL,
        relay_freed: env.relay.freed(),
        tunnels: Tunnels::default(),
        meter: crate::server::metrics::SessionMeter::new(env.metrics.clone()),
        env: env.clone(),
    };
    env.tracker.spawn(actor.run(rx));
    handle
}

struct Actor {
    /// This session's own queue, for events from tasks it starts (relays).
    me: mpsc::WeakSender<Command>,
    core: SessionCore,
    outs: HashMap<ConnId, mpsc::Sender<Outbound>>,
    /// Running relays by stream index.
    relays: HashMap<usize, Relay>,
    /// Open tunnels, told their relay port after every event.
    tunnels: Tunnels,
    /// When the dashboards are due a fresh view.
    view_due: Option<tokio::time::Instant>,
    view_sent: tokio::time::Instant,
    /// Changes when a relay anywhere ends: streams waiting for relay capacity ask again.
    relay_freed: tokio::sync::watch::Receiver<u64>,
    /// This session's part of the metrics (given back when the task ends).
    meter: crate::server::metrics::SessionMeter,
    env: SessionEnv,
}

fn instant_at(ms: i64) -> tokio::time::Instant {
    let wait = (ms - now_ms()).max(0) as u64;
    tokio::time::Instant::now() + Duration::from_millis(wait)
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        // Caller devices' relays, before anyone asks for the session's view.
        let fx = self.core.start();
        let _ = self.apply(fx).await;
        // counted from the start (a restored session nobody opened yet too)
        self.meter.publish(self.core.gauges());
        loop {
            let expiry = self.core.expires_ms().map(instant_at);
            let deadline = self.core.next_deadline().map(instant_at);
            tokio::select! {
                _ = self.env.cancel.cancelled() => {
                    // Server shutdown: the session lives on in the database. Count the
                    // connections that were open as activity so the TTL restarts after the restart.
                    if self.core.has_connections() {
                        let name = self.core.name().to_string();
                        self.env.store.send(StoreOp::Activity { session: name, at_ms: now_ms() }).await;
                    }
                    return;
                }
                _ = sleep_until_opt(expiry) => {
                    if self.core.expires_ms().is_some_and(|at| at <= now_ms()) {
                        tracing::info!(session = self.core.name(), "session expired after inactivity");
                        if let Err(e) = self.shutdown("expired").await {
                            tracing::error!(session = self.core.name(), "{}", e.message);
                        }
                        return;
                    }
                }
                _ = sleep_until_opt(deadline) => {
                    let fx = self.core.tick(now_ms());
                    let _ = self.apply(fx).await; // a failed store is logged and retried
                }
                _ = sleep_until_opt(self.view_due) => self.send_view(),
                changed = self.relay_freed.changed(), if self.core.waiting_for_relay() => {
                    if changed.is_ok() {
                        let fx = self.core.relay_capacity_freed();
                        let _ = self.apply(fx).await; // a failed store is logged and retried
                    }
                }
                cmd = rx.recv() => {
                    let Some(cmd) = cmd else { return };
                    if self.command(cmd).await {
                        return;
                    }
                }
            }
            self.meter.publish(self.core.gauges());
        }
    }

    /// Handles one command; `true` when the session is over.
    async fn command(&mut self, cmd: Command) -> bool {
        let now = now_ms();
        match cmd {
            Command::Attach {
                conn,
                ip,
                scope,
                out,
                reply,
            } => match self.core.attach(conn, ip, scope, now) {
                Ok(fx) => {
                    self.outs.insert(conn, out);
                    let _ = reply.send(Ok(()));
                    let _ = self.apply(fx).await; // a failed store is logged and retried
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Message {
                conn,
                msg,
                mapping_seen,
            } => {
                let fx = self.core.handle_checked(conn, msg, mapping_seen, now);
                let _ = self.apply(fx).await; // a failed store is logged and retried
            }
            Command::Detach { conn } => {
                self.outs.remove(&conn);
                self.meter.left(conn);
                let fx = self.core.detach(conn, now);
                let _ = self.apply(fx).await; // a failed store is logged and retried
            }
            Command::View {
                scope,
                place,
                reply,
            } => {
                if let Some(op) = self.core.touch(now) {
                    self.env.store.send(op).await;
                }
                let _ = reply.send(self.core.view_at(&scope, place));
            }
            Command::Tally {
                stream,
                state,
                reply,
            } => {
                let result = self.core.set_tally(&stream, state, now);
                self.apply_and_answer(result, reply).await;
            }
            Command::Latency {
                stream,
                latency,
                reply,
            } => {
                let result = self.core.set_latency(&stream, latency, now);
                self.apply_and_answer(result, reply).await;
            }
            Command::Coordinates { reply } => {
                let _ = reply.send(self.core.coordinates());
            }
            Command::AttachTunnel {
                link,
                ticket,
                at,
                reply,
            } => {
                let attached =
                    self.core
                        .attach_tunnel(&link.stream, link.role, link.slot, &ticket, at);
                let answer = match attached {
                    Ok((key, fx)) => {
                        let _ = self.apply(fx).await;
                        Ok(self.tunnels.attach(&self.core, key, at))
                    }
                    Err(e) => Err(e),
                };
                let _ = reply.send(answer);
            }
            Command::Side {
                stream,
                role,
                spec,
                key,
                host,
                reply,
            } => {
                let result = self.core.set_side(&stream, role, &spec, key, host, now);
                self.apply_and_answer(result, reply).await;
            }
            Command::WaitingRole { peer, reply } => {
                let _ = reply.send(self.core.waiting_role(&peer));
            }
            Command::Admission { peer, side, reply } => {
                let result = match side {
                    Some(to) => self
                        .core
                        .admit(&peer, &to.stream, to.role, to.token, to.create, now),
                    None => self.core.reject(&peer, now),
                };
                self.apply_and_answer(result, reply).await;
            }
            Command::Cue {
                stream,
                role,
                text,
                reply,
            } => {
                let at = crate::server::time::format_time(now);
                let result = self.core.cue(&stream, role, &text, at, now);
                self.apply_and_answer(result, reply).await;
            }
            Command::Relay {
                stream,
                generation,
                event,
            } => {
                let fx = match event {
                    RelayEvent::Idle { carried } => {
                        self.core.relay_idle(stream, generation, carried, now)
                    }
                    RelayEvent::Unheard { sides } => {
                        self.core.relay_unheard(stream, generation, sides, now)
                    }
                };
                let _ = self.apply(fx).await; // a failed store is logged and retried
            }
            Command::Close { reason, reply } => {
                let result = self.shutdown(&reason).await;
                let _ = reply.send(result);
                return true;
            }
            Command::Evict => {
                for (_, out) in self.outs.drain() {
                    let _ = out.try_send(Outbound::Close(
                        close_code::GOING_AWAY,
                        "this session moved to another server; reconnect".into(),
                    ));
                }
                return true;
            }
        }
        false
    }

    /// Closes the session: tells every connection, stores the closure, frees the name. The
    /// session is closed whether or not the closure could be stored; the error says it was not
    /// (yet: the store keeps trying).
    async fn shutdown(&mut self, reason: &str) -> Result<(), SessionError> {
        let mut fx = self.core.close(reason, now_ms());
        // The closure must be committed before anyone is told the name is gone.
        let ops = std::mem::take(&mut fx.store);
        let _ = self.apply(fx).await;
        for (_, out) in self.outs.drain() {
            let _ = out.try_send(Outbound::Close(
                close_code::NORMAL,
                format!("session closed: {reason}"),
            ));
        }
        let stored = self.persist(ops).await;
        (self.env.on_closed)(self.core.name(), reason);
        stored.map_err(|e| {
            SessionError::new(
                ErrorCode::Storage,
                format!(
                    "session {} is closed, but the database did not store that yet ({e}); the server keeps trying",
                    self.core.name()
                ),
            )
        })
    }

    /// Stores `ops`; those whose outcome someone is told about are waited for. The first
    /// failure is returned (the store keeps the failed changes and retries them).
    async fn persist(&self, ops: Vec<StoreOp>) -> Result<(), String> {
        let mut result = Ok(());
        for op in ops {
            if op.acknowledged() {
                if let Err(e) = self.env.store.commit(op).await {
                    tracing::error!(session = self.core.name(), "could not store a change: {e}");
                    result = result.and(Err(e));
                }
            } else {
                self.env.store.send(op).await;
            }
        }
        result
    }

    /// Carries out an operator command's effects, then answers it.
    async fn apply_and_answer(
        &mut self,
        result: Result<Effects, SessionError>,
        reply: oneshot::Sender<Result<(), SessionError>>,
    ) {
        let answer = match result {
            Ok(fx) => self.apply(fx).await.map_err(|e| {
                let message = if e == crate::server::cluster::MOVED {
                    "this server no longer serves the session (another server took it over), and the change was not stored; send it again".to_string()
                } else {
                    format!("the change is in effect, but the database did not store it yet ({e}); the server keeps trying")
                };
                SessionError::new(ErrorCode::Storage, message)
            }),
            Err(e) => Err(e),
        };
        let _ = reply.send(answer);
    }

    /// Sends the current view to every dashboard now.
    fn send_view(&mut self) {
        self.view_due = None;
        self.view_sent = tokio::time::Instant::now();
        // One view per token scope (the admin's, each stream token's), serialised once.
        for (view, watchers) in self.core.watcher_views() {
            let msg = ServerMessage::View(Box::new(view));
            let text: bytes::Bytes = match serde_json::to_string(&msg) {
                Ok(t) => t.into(),
                Err(e) => {
                    tracing::error!("cannot serialise a session view: {e}");
                    return;
                }
            };
            for conn in watchers {
                if let Some(out) = self.outs.get(&conn) {
                    // A dashboard that does not keep up misses views, not the next one.
                    let _ = out.try_send(Outbound::Text(text.clone()));
                }
            }
        }
    }

    /// Carries out `fx`; fails when an acknowledged change was not stored (all the rest is
    /// done anyway).
    async fn apply(&mut self, fx: Effects) -> Result<(), String> {
        let stored = self.persist(fx.store).await;
        if fx.view_changed && self.view_due.is_none() {
            self.view_due = Some(self.view_sent + VIEW_INTERVAL);
        }
        let mut slow = Vec::new();
        self.meter.paired(fx.pairings);
        for (target, msg) in fx.out {
            if let Target::Conn(conn) = &target {
                self.meter.sent(*conn, &msg);
            }
            let text: bytes::Bytes = match serde_json::to_string(&msg) {
                Ok(t) => t.into(),
                Err(e) => {
                    tracing::error!("cannot serialise a server message: {e}");
                    continue;
                }
            };
            let mut deliver = |conn: ConnId, out: &mpsc::Sender<Outbound>| {
                if out.try_send(Outbound::Text(text.clone())).is_err() {
                    slow.push(conn);
                }
            };
            match target {
                Target::Conn(conn) => {
                    if let Some(out) = self.outs.get(&conn) {
                        deliver(conn, out);
                    }
                }
                Target::Conns(conns) => {
                    for conn in conns {
                        if let Some(out) = self.outs.get(&conn) {
                            deliver(conn, out);
                        }
                    }
                }
                Target::All => {
                    for (conn, out) in &self.outs {
                        deliver(*conn, out);
                    }
                }
            }
        }
        for (conn, why) in fx.close {
            if let Some(out) = self.outs.get(&conn) {
                let _ = out.try_send(Outbound::Close(close_code::POLICY, why));
            }
        }
        // A connection whose queue is full is too slow to follow the session: dropping its sender
        // makes its task close the socket, and the detach frees its slot.
        for conn in slow {
            if self.outs.remove(&conn).is_some() {
                tracing::info!(
                    session = self.core.name(),
                    conn,
                    "dropping a connection that does not read its messages"
                );
                let fx = self.core.detach(conn, now_ms());
                let _ = Box::pin(self.apply(fx)).await;
            }
        }
        // After the messages of this event: a peer must get `registered` before the relayed
        // coordinates the relay's start produces.
        for op in fx.relay {
            self.relay(op).await;
        }
        self.tunnels.refresh(&self.core);
        stored
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
