//! The element's side of signalling: the peer state machine and its driver (in `punch::client`)
//! run on the plugin runtime with this element as their [`PeerHost`]. Only GStreamer work is
//! here: configuring the inner SRT element, bus messages, properties, element errors.
//!
//! Media never depends on signalling once the inner element runs: when the connection drops the
//! driver reconnects with backoff and re-registers the same slot with the same port.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use gst::prelude::*;
use punch::client::peer::{
    self, DriverConfig, Failure, FailureKind, PeerConfig, PeerEvent, PeerHost, PeerMachine,
};
use punch::protocol::{Health, PeerInfo, Role, SessionState};
use tokio_util::sync::CancellationToken;

use super::Engine;
use super::health::{self, Sample};
use super::settings::Settings;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the inner element's stats are checked for connect/disconnect.
const STATUS_POLL: Duration = Duration::from_millis(50);
/// How long one STUN probe waits (the primary, then the alternate port).
const STUN_TIMEOUT: Duration = Duration::from_millis(1000);

/// Everything the task needs, resolved when the element starts.
pub struct Config {
    machine: PeerConfig,
    driver: DriverConfig,
    /// The `latency` property, when it overrides the session's.
    latency: Option<u32>,
}

impl Config {
    pub fn new(settings: &Settings, role: Role) -> Result<Config, String> {
        let target = settings.target()?;
        let local_address: IpAddr = settings.local_address.parse().map_err(|_| {
            format!(
                "local-address {:?} is not an IP address",
                settings.local_address
            )
        })?;
        let local_port = match settings.local_port {
            0 => punch::client::net::free_udp_port(local_address)?,
            p => p as u16,
        };
        Ok(Config {
            machine: PeerConfig {
                session: target.session,
                stream: target.stream,
                role,
                local_port,
                label: settings.label.clone(),
                reports: true,
                stun: settings.stun,
                prime: settings.prime_ttl > 0,
                peer_timeout: (settings.peer_timeout_s > 0)
                    .then(|| Duration::from_secs(settings.peer_timeout_s.into())),
                receiver: u8::try_from(settings.receiver).ok().filter(|k| *k > 0),
                // a punchsink links with every receiver of its stream, one leg each
                fan_out: role == Role::Sender && settings.receiver == 0,
                force_tunnel: settings.tunnel,
            },
            driver: DriverConfig {
                server: target.server,
                token: target.token,
                local_address,
                connect_timeout: CONNECT_TIMEOUT,
                stun_timeout: STUN_TIMEOUT,
                prime_ttl: settings.prime_ttl,
                status_poll: Some(STATUS_POLL),
                health_interval: Some(Duration::from_millis(settings.health_interval_ms.into())),
                trust: punch::client::tls::Trust {
                    ca_file: settings.ca_file.as_ref().map(Into::into),
                },
            },
            latency: u32::try_from(settings.latency).ok(),
        })
    }
}

/// This element as the signalling driver's host.
struct Host {
    engine: Arc<Engine>,
    /// The element run this task serves: a stopped run's task must not touch the next one.
    run: u64,
    role: Role,
    local_address: IpAddr,
    local_port: u16,
    latency: Option<u32>,
    /// The session's name, for bus messages.
    session: String,
    /// The stream the server registered this element on.
    stream: Option<String>,
    /// The previous stats sample, for per-interval health.
    last_sample: Option<Sample>,
}

/// Runs signalling for one element run until it ends or `cancel`.
pub async fn run(engine: Arc<Engine>, config: Config, cancel: CancellationToken, run: u64) {
    let mut machine = PeerMachine::new(config.machine.clone());
    let mut host = Host {
        engine,
        run,
        role: config.machine.role,
        local_address: config.driver.local_address,
        local_port: config.machine.local_port,
        latency: config.latency,
        session: config.machine.session.clone(),
        stream: None,
        last_sample: None,
    };
    tokio::select! {
        _ = cancel.cancelled() => {}
        failure = peer::run(&mut machine, &config.driver, &mut host) => {
            if let Some(failure) = failure {
                host.fail(failure);
            }
        }
    }
}

impl Host {
    /// Posts the element error for `failure`, unless this run is over.
    fn fail(&self, failure: Failure) {
        if failure.kind == FailureKind::Closed {
            self.engine.set_stream_state(SessionState::Closed);
        }
        let kind = match failure.kind {
            FailureKind::Settings => gst::ResourceError::Settings,
            FailureKind::NotAuthorized => gst::ResourceError::NotAuthorized,
            FailureKind::NotFound | FailureKind::Closed => gst::ResourceError::NotFound,
            FailureKind::Busy => gst::ResourceError::Busy,
            FailureKind::Unreachable | FailureKind::NoPeer => match self.role {
                Role::Sender => gst::ResourceError::OpenWrite,
                Role::Receiver => gst::ResourceError::OpenRead,
            },
        };
        if !self.engine.is_current(self.run) {
            return;
        }
        if let Some(bin) = self.engine.bin() {
            gst::element_error!(bin, kind, ("{}", failure.message));
        }
    }
}

impl PeerHost for Host {
    fn apply(&mut self, peer: &PeerInfo, target: SocketAddr) {
        // What the element runs with and shows as `peer-address`: where SRT really sends.
        let peer = PeerInfo {
            ip: target.ip().to_string(),
            port: target.port(),
            ..peer.clone()
        };
        let latency = self.latency.unwrap_or(peer.latency);
        let uri = self
            .engine
            .srt_uri(&peer, self.local_address, self.local_port, latency);
        let local = SocketAddr::new(self.local_address, self.local_port);
        self.engine.apply_peer(self.run, peer, uri, local);
    }

    fn srt_running(&self) -> bool {
        self.engine.inner_running()
    }

    fn srt_connected(&mut self) -> Option<bool> {
        if !self.engine.inner_running() {
            return None;
        }
        self.engine.stats().map(|s| self.engine.observe(&s))
    }

    /// Samples the stats, posts `punch-health`, returns the report for the server.
    fn health(&mut self) -> Option<Health> {
        if !self.engine.inner_running() {
            return None;
        }
        let stats = self.engine.stats()?;
        let sample = Sample::take(&stats, self.role);
        let prev = self.last_sample.replace(sample)?;
        let report = health::report(&prev, &sample, &stats, self.role);
        let stream = self.stream.clone().unwrap_or_default();
        self.engine.post(report.structure(&stream, self.role));
        if let Some(bin) = self.engine.bin() {
            bin.notify("stats");
        }
        report.connected.then(|| report.to_protocol())
    }

    fn event(&mut self, event: PeerEvent) {
        let cat = self.engine.cat();
        match event {
            PeerEvent::Discovered(found) => gst::info!(
                cat,
                "STUN: local port {} is {} in public, mapping {}",
                self.local_port,
                found.mapped,
                found.mapping().as_str()
            ),
            PeerEvent::Registered(r) => {
                gst::info!(
                    cat,
                    "registered as {} of stream {}, public address {}:{}",
                    r.role,
                    r.stream,
                    r.you.ip,
                    r.you.port
                );
                self.engine.set_stream(&r.stream);
                self.engine.set_receiver(r.receiver);
                self.stream = Some(r.stream);
            }
            PeerEvent::Tally(t) => self.engine.set_tally(&t.stream, t.state),
            PeerEvent::Admission(a) => {
                let state = match a.state {
                    punch::protocol::AdmissionState::Waiting => "waiting",
                    punch::protocol::AdmissionState::Admitted => "admitted",
                };
                let mut s = gst::Structure::builder("punch-admission")
                    .field("state", state)
                    .field("peer", a.peer.as_str());
                if let Some(stream) = &a.stream {
                    s = s.field("stream", stream.as_str());
                }
                self.engine.post(s.build());
            }
            PeerEvent::Rejected(why) => self.engine.post(
                gst::Structure::builder("punch-admission")
                    .field("state", "rejected")
                    .field("reason", why.as_str())
                    .build(),
            ),
            PeerEvent::Cue(c) => self.engine.post(
                gst::Structure::builder("punch-cue")
                    .field("stream", c.stream.as_str())
                    .field("text", c.text.as_str())
                    .field("at", c.at.as_str())
                    .build(),
            ),
            PeerEvent::Session {
                stream_state,
                update,
            } => {
                if let Some(state) = stream_state {
                    self.engine.set_stream_state(state);
                }
                let streams: Vec<String> = update
                    .streams
                    .iter()
                    .map(|s| format!("{}={}", s.name, s.state))
                    .collect();
                self.engine.post(
                    gst::Structure::builder("punch-session")
                        .field("session", self.session.as_str())
                        .field("state", update.state.as_str())
                        .field(
                            "stream-state",
                            stream_state.map(|s| s.as_str()).unwrap_or(""),
                        )
                        .field("connected", update.connected as u32)
                        .field("total", update.total as u32)
                        .field("streams", streams.join(","))
                        .build(),
                );
            }
            PeerEvent::FanOut(receivers) => {
                gst::info!(
                    cat,
                    "the stream has {receivers} receivers: one SRT link to each"
                );
                self.engine.fan_out(receivers);
            }
            PeerEvent::Srt(status) => gst::info!(cat, "SRT {status:?}"),
            PeerEvent::Note(note) => gst::info!(cat, "{note}"),
            PeerEvent::Warning(w) => gst::warning!(cat, "{w}"),
        }
    }
}
