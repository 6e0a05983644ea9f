//! The STUN service: answers RFC 8489 Binding requests on two UDP ports (primary and alternate).
//! A peer probes both from the port its SRT socket will use: the mapped address tells the
//! server where that socket is reachable, and whether the two mappings differ tells an
//! endpoint-independent NAT from a symmetric one (RFC 5780's OTHER-ADDRESS names the alternate).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::protocol::stun::{parse_binding_request, write_binding_success};

/// Binds the STUN sockets: `port` and `port + 1` (both any free port when `port` is 0).
pub async fn bind(addr: SocketAddr) -> std::io::Result<[UdpSocket; 2]> {
    let primary = UdpSocket::bind(addr).await?;
    let alt_port = if addr.port() == 0 {
        0
    } else {
        addr.port().checked_add(1).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the STUN port must leave room for the alternate port above it",
            )
        })?
    };
    let alternate = UdpSocket::bind(SocketAddr::new(addr.ip(), alt_port)).await?;
    Ok([primary, alternate])
}

/// Answers Binding requests on both sockets until `stop`.
pub async fn serve(sockets: [UdpSocket; 2], requests: Arc<AtomicU64>, stop: CancellationToken) {
    let ports = sockets
        .each_ref()
        .map(|s| s.local_addr().map(|a| a.port()).unwrap_or(0));
    let [primary, alternate] = sockets;
    // Each socket names the other as the alternate; the address part is left unspecified so
    // that clients use the address they already reach the server at.
    let unspecified = primary
        .local_addr()
        .map(|a| a.ip())
        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
    let other_of = |port: u16| SocketAddr::new(unspecified, port);
    tokio::join!(
        answer(primary, other_of(ports[1]), &requests, &stop),
        answer(alternate, other_of(ports[0]), &requests, &stop),
    );
}

async fn answer(
    socket: UdpSocket,
    other: SocketAddr,
    requests: &AtomicU64,
    stop: &CancellationToken,
) {
    let mut buf = [0u8; 1500];
    let mut out = Vec::with_capacity(128);
    loop {
        let got = tokio::select! {
            _ = stop.cancelled() => return,
            r = socket.recv_from(&mut buf) => r,
        };
        let Ok((len, from)) = got else { continue };
        let Some(tid) = parse_binding_request(&buf[..len]) else {
            continue;
        };
        requests.fetch_add(1, Ordering::Relaxed);
        write_binding_success(&mut out, &tid, from, Some(other));
        let _ = socket.send_to(&out, from).await;
    }
}
