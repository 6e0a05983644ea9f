//! `punch peer`: holds one side of a stream for another SRT tool (srt-live-transmit, OBS, vMix…).
//! It runs the same peer state machine as the elements, from the tool's local port, and prints
//! what the tool must be started with.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::{say, shutdown_signal};
use crate::client::peer::{self, DriverConfig, PeerConfig, PeerEvent, PeerHost, PeerMachine};
use crate::protocol::srt_url::Rendezvous;
use crate::protocol::uri::{PunchUri, url_host};
use crate::protocol::{PeerInfo, Role};

/// How long each STUN probe waits for an answer.
const STUN_TIMEOUT: Duration = Duration::from_millis(1500);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The role a stream token is for (`ps.<session>.<stream>.<role>.…`).
fn token_role(token: &str) -> Option<Role> {
    let mut parts = token.split('.');
    (parts.next()? == "ps").then_some(())?;
    Role::parse(parts.nth(2)?)
}

/// Prints what happens for the person running the tool.
struct Printer {
    port: u16,
}

impl PeerHost for Printer {
    fn apply(&mut self, peer: &PeerInfo, target: SocketAddr) {
        if peer.relay {
            say!("The stream is relayed through the server.");
        }
        let host = target.ip().to_string();
        say!(
            "Peer {}:{} passphrase {} pbkeylen {} latency {} ms",
            url_host(&host),
            target.port(),
            peer.passphrase,
            peer.pbkeylen,
            peer.latency
        );
        let link = Rendezvous {
            host: &host,
            port: target.port(),
            local_port: self.port,
            latency_ms: peer.latency,
            passphrase: &peer.passphrase,
            pbkeylen: peer.pbkeylen,
        };
        say!("srt-live-transmit: '{}'", link.srt_live_transmit());
    }

    fn event(&mut self, event: PeerEvent) {
        match event {
            PeerEvent::Discovered(found) => say!(
                "Local port {} is {} in public ({})",
                self.port,
                found.mapped,
                found.mapping().as_str()
            ),
            PeerEvent::Registered(r) => say!(
                "Registered as the {} of stream {} (public address {}:{}); waiting for the peer",
                r.role,
                r.stream,
                r.you.ip,
                r.you.port
            ),
            PeerEvent::Tally(t) => say!("Tally {}: {}", t.stream, t.state.as_str()),
            PeerEvent::Cue(c) => say!("Cue for {}: {}", c.stream, c.text),
            PeerEvent::Admission(a) => match (&a.stream, a.role) {
                (Some(stream), Some(role)) => say!("Admitted as the {role} of {stream}"),
                _ => say!("Waiting for the producer (as {})", a.peer),
            },
            PeerEvent::Rejected(why) => say!("Rejected: {why}"),
            PeerEvent::Warning(w) => eprintln!("warning: {w}"),
            PeerEvent::Note(n) => eprintln!("{n}"),
            PeerEvent::Session { .. } | PeerEvent::Srt(_) | PeerEvent::FanOut(_) => {}
        }
    }
}

pub async fn peer(
    uri: &str,
    port: u16,
    role: Option<String>,
    label: Option<String>,
    trust: crate::client::tls::Trust,
) -> Result<(), String> {
    let uri = PunchUri::parse(uri)?;
    let role = match role {
        Some(r) => Role::parse(&r).expect("clap checked the value"),
        None => token_role(&uri.token)
            .ok_or("the token is not a stream token: pass --role sender|receiver")?,
    };
    if port == 0 {
        return Err("--port must be the UDP port your SRT tool binds (1-65535)".into());
    }
    let stop = shutdown_signal()?;
    let mut machine = PeerMachine::new(PeerConfig {
        session: uri.session.clone(),
        stream: uri.stream.clone(),
        role,
        local_port: port,
        label,
        // The tool's SRT status is not ours to report.
        reports: false,
        stun: true,
        prime: true,
        peer_timeout: None,
        // one tool, one link: a sender serves receiver 1 of a stream with several
        receiver: None,
        fan_out: false,
        // (no UDP: the tunnel's local end is what the tool is told to rendezvous with)
        force_tunnel: false,
    });
    // The tool binds every interface of the server's address family.
    let local_address = tokio::net::lookup_host((uri.host.as_str(), uri.port))
        .await
        .ok()
        .and_then(|mut a| a.next())
        .map(|a| crate::client::nat::any_local(a.ip(), 0).ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let config = DriverConfig {
        server: uri.server_url(),
        token: uri.token.clone(),
        local_address,
        connect_timeout: CONNECT_TIMEOUT,
        stun_timeout: STUN_TIMEOUT,
        prime_ttl: crate::client::nat::PRIME_TTL,
        status_poll: None,
        health_interval: None,
        trust,
    };
    let mut printer = Printer { port };
    tokio::select! {
        _ = stop => Ok(()),
        failure = peer::run(&mut machine, &config, &mut printer) => match failure {
            Some(f) => Err(f.message),
            None => Ok(()),
        },
    }
}
