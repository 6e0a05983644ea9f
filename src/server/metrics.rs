//! `GET /metrics`: the server's state and activity in the Prometheus text format, from the
//! `prometheus` crate's registry (one per server, so several servers in one process keep their
//! own). What the session tasks and the connections change as it happens is counted here as it
//! happens; what the STUN service, the relays and the connections already count in their own
//! atomics is read at each scrape.

use std::sync::atomic::Ordering;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use super::state::AppState;
use crate::protocol::{ErrorCode, MediaPath, Role, SessionState};

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    /// Sessions by state (the state of their least advanced stream).
    pub sessions: IntGaugeVec,
    /// Sides held by a registered Punch peer, by role.
    pub peers: IntGaugeVec,
    /// SRT links up (a side reports connected), by path: direct, relay, device.
    pub links_up: IntGaugeVec,
    /// Registrations accepted (a `registered` sent).
    pub registrations: IntCounter,
    /// `error` messages sent to peers and refused WebSocket attachments, by error code.
    pub refusals: IntCounterVec,
    /// Coordinates handed to both sides of a link (a new pairing, a re-pairing, a relay).
    pub pairings: IntCounter,
    /// From a side's `registered` to its first `peer` on that connection.
    pub register_to_peer: Histogram,
    /// One database transaction, from its start to its commit.
    pub store_commit: Histogram,
    /// WebSocket messages sent to peers and dashboards.
    pub ws_out: IntCounter,
    /// Tunnels open (sides without UDP).
    pub tunnels: IntGauge,
    /// Tunnel frames dropped because the side's TCP connection did not keep up.
    pub tunnel_dropped: IntCounter,
    // Read from the other services' counters at each scrape.
    ws_in: IntCounter,
    ws_connections: IntGauge,
    stun_requests: IntCounter,
    stun_limited: IntCounter,
    stun_limited_sources: IntCounter,
    /// TCP connections refused before any request: too many from one address, a failed TLS
    /// handshake.
    pub connections_refused: IntCounterVec,
    relays_active: IntGauge,
    relayed_bytes: IntCounter,
    relayed_datagrams: IntCounter,
    relay_dropped: IntCounter,
    relay_strangers: IntCounter,
    /// One scrape at a time: reading the services' counters and raising ours to them is two
    /// steps, which two scrapes at once would both take.
    scrape: std::sync::Mutex<()>,
}

/// The states a live session is counted in.
const STATES: [SessionState; 4] = [
    SessionState::Waiting,
    SessionState::Ready,
    SessionState::Connected,
    SessionState::Relaying,
];

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        fn reg<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
            r.register(Box::new(c.clone()))
                .expect("every metric has its own name");
            c
        }
        let gauge_vec = |name: &str, help: &str, label: &str| {
            reg(
                &registry,
                IntGaugeVec::new(Opts::new(name, help), &[label]).expect("a valid metric"),
            )
        };
        let counter = |name: &str, help: &str| {
            reg(
                &registry,
                IntCounter::new(name, help).expect("a valid metric"),
            )
        };
        let gauge = |name: &str, help: &str| {
            reg(
                &registry,
                IntGauge::new(name, help).expect("a valid metric"),
            )
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            reg(
                &registry,
                Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                    .expect("a valid metric"),
            )
        };
        let m = Metrics {
            sessions: gauge_vec(
                "punch_sessions",
                "Live sessions by state (their least advanced stream's).",
                "state",
            ),
            peers: gauge_vec(
                "punch_peers_connected",
                "Stream sides held by a registered Punch peer, by role.",
                "role",
            ),
            links_up: gauge_vec(
                "punch_links_up",
                "SRT links up, by path (direct, relay, device).",
                "path",
            ),
            registrations: counter(
                "punch_registrations_total",
                "Registrations accepted.",
            ),
            refusals: reg(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "punch_refusals_total",
                        "Error messages sent to peers and refused WebSocket attachments, by error code.",
                    ),
                    &["code"],
                )
                .expect("a valid metric"),
            ),
            pairings: counter(
                "punch_pairings_total",
                "Coordinates handed to both sides of a link (pairings, re-pairings, relays).",
            ),
            register_to_peer: histogram(
                "punch_register_to_peer_seconds",
                "From a side's registration to its first peer coordinates.",
                vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
            ),
            store_commit: histogram(
                "punch_store_commit_seconds",
                "One database transaction, start to commit.",
                vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0],
            ),
            ws_out: counter(
                "punch_ws_messages_sent_total",
                "WebSocket messages sent to peers and dashboards.",
            ),
            tunnels: gauge("punch_tunnels_open", "Tunnels open: sides without UDP whose SRT datagrams go over a WebSocket."),
            tunnel_dropped: counter(
                "punch_tunnel_dropped_total",
                "Tunnel frames dropped (oldest first) because the side's TCP connection did not keep up.",
            ),
            ws_in: counter(
                "punch_ws_messages_received_total",
                "WebSocket messages received from peers and dashboards.",
            ),
            ws_connections: gauge(
                "punch_ws_connections",
                "WebSocket connections open now.",
            ),
            stun_requests: counter(
                "punch_stun_requests_total",
                "STUN Binding requests answered.",
            ),
            stun_limited: counter(
                "punch_stun_rate_limited_total",
                "STUN requests dropped because their source sent too many.",
            ),
            stun_limited_sources: counter(
                "punch_stun_rate_limited_sources_total",
                "Sources (IPv6: /64) whose STUN requests were rate-limited, each counted once a minute while it goes on.",
            ),
            connections_refused: reg(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "punch_connections_refused_total",
                        "TCP connections closed before any request, by reason (per_ip: --connections-per-ip; tls_handshake).",
                    ),
                    &["reason"],
                )
                .expect("a valid metric"),
            ),
            relays_active: gauge("punch_relays_active", "Relays running now."),
            relayed_bytes: counter(
                "punch_relayed_bytes_total",
                "Bytes the relays forwarded.",
            ),
            relayed_datagrams: counter(
                "punch_relayed_datagrams_total",
                "Datagrams the relays forwarded.",
            ),
            relay_dropped: counter(
                "punch_relay_dropped_total",
                "Datagrams the relays dropped (from strangers, over a bandwidth cap, no peer yet).",
            ),
            relay_strangers: counter(
                "punch_relay_strangers_total",
                "Datagrams from addresses a relay does not admit.",
            ),
            scrape: std::sync::Mutex::new(()),
            registry,
        };
        let build = IntGaugeVec::new(
            Opts::new("punch_build_info", "The running build: its version."),
            &["version"],
        )
        .expect("a valid metric");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        m.registry
            .register(Box::new(build))
            .expect("every metric has its own name");
        // every label value there is, at zero, so that a dashboard sees them from the start
        for s in STATES {
            m.sessions.with_label_values(&[s.as_str()]);
        }
        for r in [Role::Sender, Role::Receiver] {
            m.peers.with_label_values(&[r.as_str()]);
        }
        for p in ["direct", "relay", "device", "tunnel"] {
            m.links_up.with_label_values(&[p]);
        }
        for r in ["per_ip", "tls_handshake"] {
            m.connections_refused.with_label_values(&[r]);
        }
        m
    }

    /// One refusal of `code`.
    pub fn refused(&self, code: ErrorCode) {
        self.refusals.with_label_values(&[code.as_str()]).inc();
    }

    /// The text exposition, with the other services' counters read now.
    pub fn render(&self, state: &AppState) -> String {
        let _one = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        let raise = |c: &IntCounter, now: u64| c.inc_by(now.saturating_sub(c.get()));
        raise(&self.ws_in, state.stats.messages.load(Ordering::Relaxed));
        self.ws_connections
            .set(state.stats.connections.load(Ordering::Relaxed) as i64);
        raise(
            &self.stun_requests,
            state.stats.stun.answered.load(Ordering::Relaxed),
        );
        raise(
            &self.stun_limited,
            state.stats.stun.limited.load(Ordering::Relaxed),
        );
        raise(
            &self.stun_limited_sources,
            state.stats.stun.limited_sources.load(Ordering::Relaxed),
        );
        let relay = &state.relay.stats;
        self.relays_active
            .set(relay.active.load(Ordering::Relaxed) as i64);
        raise(&self.relayed_bytes, relay.bytes.load(Ordering::Relaxed));
        raise(
            &self.relayed_datagrams,
            relay.packets.load(Ordering::Relaxed),
        );
        raise(&self.relay_dropped, relay.dropped.load(Ordering::Relaxed));
        raise(
            &self.relay_strangers,
            relay.strangers.load(Ordering::Relaxed),
        );
        let mut out = Vec::new();
        // (writing to a Vec does not fail)
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// What one session adds to the gauges: kept by its task, so that each change is a difference
/// and a closed session takes back all it added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionGauges {
    pub state: Option<SessionState>,
    /// `[sender, receiver]` sides held by a Punch peer.
    pub peers: [i64; 2],
    /// Links up: `[direct, relay, device, tunnel]`.
    pub links: [i64; 4],
}

impl SessionGauges {
    /// The index of a link's path in [`Self::links`].
    pub fn path_index(path: Option<MediaPath>, device: bool) -> usize {
        match (device, path) {
            (true, _) => 2,
            (false, Some(MediaPath::Relay)) => 1,
            (false, Some(MediaPath::Tunnel)) => 3,
            _ => 0,
        }
    }

    /// Moves the gauges from `before` to `self`.
    pub fn publish(&self, before: &SessionGauges, m: &Metrics) {
        if self.state != before.state {
            if let Some(s) = before.state {
                m.sessions.with_label_values(&[s.as_str()]).dec();
            }
            if let Some(s) = self.state {
                m.sessions.with_label_values(&[s.as_str()]).inc();
            }
        }
        for (i, role) in [Role::Sender, Role::Receiver].iter().enumerate() {
            let d = self.peers[i] - before.peers[i];
            if d != 0 {
                m.peers.with_label_values(&[role.as_str()]).add(d);
            }
        }
        for (i, path) in ["direct", "relay", "device", "tunnel"].iter().enumerate() {
            let d = self.links[i] - before.links[i];
            if d != 0 {
                m.links_up.with_label_values(&[path]).add(d);
            }
        }
    }
}

/// One session task's share of the metrics: its gauges, and the registrations still waiting
/// for their first coordinates.
pub struct SessionMeter {
    metrics: std::sync::Arc<Metrics>,
    gauges: SessionGauges,
    /// Connections told `registered` and not yet `peer`, since when.
    awaiting_peer: std::collections::HashMap<super::session::ConnId, std::time::Instant>,
}

impl SessionMeter {
    pub fn new(metrics: std::sync::Arc<Metrics>) -> SessionMeter {
        SessionMeter {
            metrics,
            gauges: SessionGauges::default(),
            awaiting_peer: Default::default(),
        }
    }

    /// A message the session sends to `conn`.
    pub fn sent(&mut self, conn: super::session::ConnId, msg: &crate::protocol::ServerMessage) {
        use crate::protocol::ServerMessage as M;
        match msg {
            M::Registered(r) => {
                self.metrics.registrations.inc();
                if r.peer.is_none() {
                    self.awaiting_peer.insert(conn, std::time::Instant::now());
                } else {
                    self.awaiting_peer.remove(&conn);
                    self.metrics.register_to_peer.observe(0.0);
                }
            }
            M::Peer(_) => {
                if let Some(since) = self.awaiting_peer.remove(&conn) {
                    self.metrics
                        .register_to_peer
                        .observe(since.elapsed().as_secs_f64());
                }
            }
            M::Error(e) => self.metrics.refused(e.code),
            _ => {}
        }
    }

    /// Links handed coordinates on both sides.
    pub fn paired(&self, links: u32) {
        self.metrics.pairings.inc_by(links.into());
    }

    /// `conn` left: it waits for nothing any more.
    pub fn left(&mut self, conn: super::session::ConnId) {
        self.awaiting_peer.remove(&conn);
    }

    /// The session's gauges are now `now`.
    pub fn publish(&mut self, now: SessionGauges) {
        if now != self.gauges {
            now.publish(&self.gauges, &self.metrics);
            self.gauges = now;
        }
    }
}

impl Drop for SessionMeter {
    /// The session's task ended (closed, expired, server shutdown): it counts no more.
    fn drop(&mut self) {
        SessionGauges::default().publish(&self.gauges, &self.metrics);
    }
}
