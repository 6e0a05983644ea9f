//! `punch doctor`: how this machine's NAT treats UDP, and whether direct SRT rendezvous can
//! work from here.

use std::net::SocketAddr;
use std::time::Duration;

use super::say;
use crate::client::nat::discover_host;
use crate::client::rest::{DEFAULT_TIMEOUT, Rest};
use crate::client::tls::Trust;
use crate::protocol::NatMapping;

/// How long each STUN probe waits for an answer.
const STUN_TIMEOUT: Duration = Duration::from_millis(1500);

/// The server's host name and STUN ports, from its `/healthz`.
async fn stun_service(server: &str, trust: &Trust) -> Result<(String, [u16; 2]), String> {
    let rest = Rest::with(server, DEFAULT_TIMEOUT, trust).map_err(|e| e.to_string())?;
    let base = rest.base();
    let health = rest
        .healthz()
        .await
        .map_err(|e| format!("{e} (--server / PUNCH_SERVER)"))?;
    let ports: Option<[u16; 2]> = serde_json::from_value(health["stun"].clone()).ok();
    let ports =
        ports.ok_or_else(|| format!("the server at {base} runs no STUN service (--no-stun)"))?;
    let host = crate::protocol::uri::server_host(base)
        .ok_or_else(|| format!("{base} is not a server URL"))?;
    Ok((host, ports))
}

/// The local address the kernel picks to reach `server` (no packet is sent).
fn local_ip_towards(server: SocketAddr) -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind(crate::client::nat::any_local(server.ip(), 0)).ok()?;
    s.connect(server).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

pub async fn doctor(server: &str, port: u16, trust: &Trust) -> Result<(), String> {
    let (host, [primary, alternate]) = stun_service(server, trust).await?;
    // the server answered over TCP: no STUN answer means UDP does not get through
    let found = match discover_host(&host, primary, Some(alternate), port, STUN_TIMEOUT).await {
        Ok(found) => found,
        // (a local failure says nothing about the network)
        Err(e) if !e.unanswered => return Err(format!("STUN discovery failed: {e}")),
        Err(e) => {
            say!("STUN service   no answer ({e})");
            say!(
                "UDP blocked: media will use the TCP tunnel (through the server's relay; give such links more latency, docs/nat-traversal.md)"
            );
            return Ok(());
        }
    };
    say!(
        "STUN service   {} (alternate port {alternate})",
        found.server
    );
    let local_ip = local_ip_towards(found.server);
    say!(
        "Local address  {}",
        local_ip
            .map(|ip| format!(
                "{ip} (UDP probes from port {})",
                if port == 0 {
                    "any".to_string()
                } else {
                    port.to_string()
                }
            ))
            .unwrap_or_else(|| "unknown".into())
    );
    say!("Public address {} (seen by the primary port)", found.mapped);
    match found.mapped_alt {
        Some(alt) => say!("               {alt} (seen by the alternate port)"),
        None => say!("               (the alternate port did not answer)"),
    }
    let behind_nat = local_ip.is_some_and(|ip| ip != found.mapped.ip());
    say!(
        "NAT            {}",
        if behind_nat {
            "yes"
        } else {
            "none seen (the public address is this machine's)"
        }
    );
    let verdict = match found.mapping() {
        NatMapping::EndpointIndependent => {
            "endpoint-independent mapping: direct SRT rendezvous can work (peers are given the public address above)"
        }
        NatMapping::EndpointDependent => {
            "endpoint-dependent mapping (symmetric NAT): a new public port per destination, so direct rendezvous cannot work; Punch relays such streams through the server"
        }
        NatMapping::Unknown => {
            "unknown: the alternate STUN port did not answer (is UDP to it blocked?); Punch tries direct and falls back to the relay"
        }
    };
    say!("Mapping        {verdict}");
    Ok(())
}
