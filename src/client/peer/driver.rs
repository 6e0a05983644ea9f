//! The I/O shell around [`PeerMachine`]: it opens the signalling connection, runs STUN
//! discovery and priming, keeps the timers, and hands what matters to a [`PeerHost`] (the
//! GStreamer element, `punch peer`), the one narrow interface between signalling and the thing
//! that runs SRT.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior, interval, sleep, sleep_until};

use super::machine::{Action, Failure, PeerEvent, PeerMachine, Target};
use crate::client::nat;
use crate::client::signalling::Signalling;
use crate::client::tls::Trust;
use crate::protocol::{Health, PeerInfo};

/// What runs SRT for a peer.
pub trait PeerHost: Send {
    /// Run SRT towards `target` with `peer`'s passphrase and latency (called again when the
    /// coordinates change).
    fn apply(&mut self, peer: &PeerInfo, target: SocketAddr);

    /// Whether the SRT link is up now; `None` while there is no SRT to ask (polled every
    /// [`DriverConfig::status_poll`]).
    fn srt_connected(&mut self) -> Option<bool> {
        None
    }

    /// Whether SRT holds the local port now (no priming from it then).
    fn srt_running(&self) -> bool {
        false
    }

    /// A health report for the server, if there is one (polled every
    /// [`DriverConfig::health_interval`]).
    fn health(&mut self) -> Option<Health> {
        None
    }

    /// Something happened that the host may show.
    fn event(&mut self, event: PeerEvent);
}

/// Where and how the driver connects.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// HTTP(S) base URL of the server.
    pub server: String,
    pub token: String,
    /// The address SRT binds: discovery and priming use it, and the server's address is looked
    /// up in its family.
    pub local_address: IpAddr,
    pub connect_timeout: Duration,
    /// How long one STUN probe waits.
    pub stun_timeout: Duration,
    /// IP TTL of the priming datagrams (used when the machine asks for priming).
    pub prime_ttl: u32,
    /// How often [`PeerHost::srt_connected`] is asked; `None`: never (the peer does not report).
    pub status_poll: Option<Duration>,
    /// How often [`PeerHost::health`] is asked; `None`: never.
    pub health_interval: Option<Duration>,
    /// Whom `wss://` trusts.
    pub trust: Trust,
}

/// Runs `machine` until it stops; returns why, `None` when it ended without a failure.
pub async fn run(
    machine: &mut PeerMachine,
    config: &DriverConfig,
    host: &mut impl PeerHost,
) -> Option<Failure> {
    let session = machine.config().session.clone();
    let Some(server_host) = crate::protocol::uri::server_host(&config.server) else {
        return Some(Failure {
            kind: super::FailureKind::Settings,
            message: format!("server {:?} has no host", config.server),
        });
    };
    let mut driver = Driver {
        config,
        server_host,
        sig: None,
        tunnel: None,
    };
    loop {
        // a peer admitted from the waiting room reconnects as its side
        let token = machine
            .admitted_token()
            .unwrap_or(&config.token)
            .to_string();
        let actions = match Signalling::connect_with(
            &config.server,
            &session,
            &token,
            config.connect_timeout,
            &config.trust,
        )
        .await
        {
            Ok(sig) => {
                driver.sig = Some(sig);
                let first = machine.connected(std::time::Instant::now());
                match driver.execute(machine, host, first).await {
                    Flow::Continue => driver.session(machine, host).await,
                    end => end,
                }
            }
            Err(e) => {
                let actions = machine.connect_failed(&e);
                driver.execute(machine, host, actions).await
            }
        };
        match actions {
            Flow::Continue => {}
            Flow::Reconnect(after) => {
                driver.close();
                sleep(after).await;
            }
            Flow::Stop(failure) => {
                driver.close();
                return failure;
            }
        }
    }
}

enum Flow {
    Continue,
    Reconnect(Duration),
    Stop(Option<Failure>),
}

struct Driver<'a> {
    config: &'a DriverConfig,
    /// The server's host name or address, for its STUN service and relay.
    server_host: String,
    /// The open connection.
    sig: Option<Signalling>,
    /// The tunnel, while this side's media goes over it (it outlives signalling reconnects).
    tunnel: Option<crate::client::tunnel::Tunnel>,
}

impl Driver<'_> {
    /// Closes the connection in the background: whoever waits for the driver's result (an
    /// element posting its error) is not held up by the close handshake.
    fn close(&mut self) {
        if let Some(sig) = self.sig.take() {
            tokio::spawn(sig.close());
        }
    }

    /// One connection, until it drops or the machine ends it.
    async fn session(&mut self, machine: &mut PeerMachine, host: &mut impl PeerHost) -> Flow {
        let ticker = |every: Option<Duration>| {
            let mut t = interval(every.unwrap_or(Duration::from_secs(3600)));
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
            t
        };
        let mut status_tick = ticker(self.config.status_poll);
        let mut health_tick = ticker(self.config.health_interval);
        health_tick.tick().await;
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        loop {
            let deadline = machine
                .next_deadline()
                .map(Instant::from_std)
                .unwrap_or(far);
            let Some(sig) = self.sig.as_mut() else {
                return Flow::Reconnect(Duration::ZERO);
            };
            let actions = tokio::select! {
                msg = sig.recv() => match msg {
                    Ok(Some(m)) => machine.message(m, std::time::Instant::now()),
                    Ok(None) | Err(_) => {
                        self.sig = None;
                        machine.disconnected()
                    }
                },
                _ = status_tick.tick(), if self.config.status_poll.is_some() => {
                    match host.srt_connected() {
                        Some(up) => machine.srt_link(up),
                        None => Vec::new(),
                    }
                }
                _ = health_tick.tick(), if self.config.health_interval.is_some() => {
                    match host.health() {
                        Some(h) => machine.health(h),
                        None => Vec::new(),
                    }
                }
                _ = sleep_until(deadline) => machine.tick(std::time::Instant::now()),
                note = tunnel_note(&mut self.tunnel) => {
                    host.event(PeerEvent::Warning(note));
                    Vec::new()
                }
            };
            match self.execute(machine, host, actions).await {
                Flow::Continue => {}
                end => return end,
            }
        }
    }

    /// Carries out `actions` in order, and those their results produce.
    async fn execute(
        &mut self,
        machine: &mut PeerMachine,
        host: &mut impl PeerHost,
        actions: Vec<Action>,
    ) -> Flow {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Send(msg) => {
                    let sent = match self.sig.as_mut() {
                        Some(sig) => sig.send(&msg).await.is_ok(),
                        None => false,
                    };
                    if !sent {
                        self.sig = None;
                        queue.extend(machine.disconnected());
                    }
                }
                Action::Discover {
                    stun_port,
                    alternate,
                    tag,
                } => {
                    let result = match self.server_address(machine.stun_host(), stun_port).await {
                        Some(server) => {
                            let local = SocketAddr::new(
                                self.config.local_address,
                                machine.config().local_port,
                            );
                            nat::discover_either(
                                local,
                                server,
                                alternate,
                                self.config.stun_timeout,
                                tag.as_deref(),
                            )
                            .await
                        }
                        None => Err(nat::DiscoveryError::local(format!(
                            "cannot resolve {} to an address of the local address's family",
                            self.server_host
                        ))),
                    };
                    queue.extend(machine.discovered(result));
                }
                Action::Prime { .. } if host.srt_running() => {}
                Action::Prime { to } => {
                    let local =
                        SocketAddr::new(self.config.local_address, machine.config().local_port);
                    if let Err(e) = nat::prime(
                        local,
                        to,
                        self.config.prime_ttl,
                        nat::PRIME_COUNT,
                        nat::PRIME_GAP,
                    )
                    .await
                    {
                        host.event(PeerEvent::Note(format!("priming towards {to} failed: {e}")));
                    }
                }
                Action::Apply { peer, target } => {
                    let to = match target {
                        Target::Addr(a) => {
                            self.tunnel = None;
                            Some(a)
                        }
                        Target::ServerPort(port) => {
                            self.tunnel = None;
                            self.server_address(machine.stun_host(), port).await
                        }
                        Target::Tunnel {
                            stream,
                            slot,
                            ticket,
                        } => self.open_tunnel(machine, host, stream, slot, ticket).await,
                    };
                    match to {
                        Some(to) => host.apply(&peer, to),
                        None => {
                            machine.unapplied();
                            host.event(PeerEvent::Warning(format!(
                                "relayed coordinates, but {} does not resolve to an address SRT can reach",
                                self.server_host
                            )));
                        }
                    }
                }
                Action::Event(e) => host.event(e),
                Action::Reconnect { after } => return Flow::Reconnect(after),
                Action::Stop(failure) => return Flow::Stop(failure),
            }
        }
        if self.sig.is_none() {
            // The connection broke while carrying out the actions; `disconnected` queued the
            // reconnect, which returned above. Only a machine that did not ask reaches here.
            return Flow::Reconnect(Duration::ZERO);
        }
        Flow::Continue
    }

    /// The tunnel of this side (kept while it carries the same link); its local end.
    async fn open_tunnel(
        &mut self,
        machine: &PeerMachine,
        host: &mut impl PeerHost,
        stream: String,
        slot: u8,
        ticket: String,
    ) -> Option<SocketAddr> {
        use crate::client::tunnel::{Tunnel, TunnelKey, TunnelServer};
        let key = TunnelKey {
            stream,
            role: machine.config().role,
            slot,
            ticket,
        };
        if let Some(t) = &self.tunnel
            && t.carries(&key)
        {
            return Some(t.local_addr());
        }
        // (the old one, of another link or ticket, closes first)
        self.tunnel = None;
        let srt = SocketAddr::new(self.config.local_address, machine.config().local_port);
        let to = TunnelServer {
            server: self.config.server.clone(),
            session: machine.config().session.clone(),
            token: machine
                .admitted_token()
                .unwrap_or(&self.config.token)
                .to_string(),
            timeout: self.config.connect_timeout,
            trust: self.config.trust.clone(),
        };
        match Tunnel::open(to, key, srt).await {
            Ok(t) => {
                let local = t.local_addr();
                host.event(PeerEvent::Note(format!(
                    "no UDP: SRT goes over the TCP tunnel (local end {local})"
                )));
                self.tunnel = Some(t);
                Some(local)
            }
            Err(e) => {
                host.event(PeerEvent::Warning(format!("cannot open the tunnel: {e}")));
                None
            }
        }
    }

    /// The server's address for UDP `port`, of the family SRT binds, within a bounded time.
    /// `port` on `host` (the hello's `stun_host`), else on the host the server was reached by.
    async fn server_address(&self, host: Option<&str>, port: u16) -> Option<SocketAddr> {
        let v4 = self.config.local_address.is_ipv4();
        let host = host.unwrap_or(&self.server_host);
        let lookup = tokio::net::lookup_host((host, port));
        tokio::time::timeout(self.config.connect_timeout, lookup)
            .await
            .ok()?
            .ok()?
            .find(|a| a.is_ipv4() == v4)
    }
}

/// The open tunnel's next note; never, without a tunnel.
async fn tunnel_note(tunnel: &mut Option<crate::client::tunnel::Tunnel>) -> String {
    match tunnel {
        Some(t) => match t.note().await {
            Some(note) => note,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}
