//! The STUN service: answers Binding requests (RFC 8489, and RFC 3489's classic form) on two UDP
//! ports, primary and alternate. A peer probes both from the port its SRT socket will use: the
//! mapped address tells the server where that socket is reachable, and whether the two mappings
//! differ tells an endpoint-independent NAT from a symmetric one (OTHER-ADDRESS names the
//! alternate). A request asking for an answer from the other port gets it from there; one asking
//! for another IP gets none, since the service has one address (what RFC 5780 prescribes).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::protocol::stun::{CHANGE_IP, CHANGE_PORT, parse_binding_request, write_binding_success};

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
    let Ok(local) = sockets[0]
        .local_addr()
        .and_then(|a| Ok([a, sockets[1].local_addr()?]))
    else {
        return;
    };
    let mut bufs = [[0u8; 1500], [0u8; 1500]];
    let mut out = Vec::with_capacity(128);
    loop {
        let [buf_a, buf_b] = &mut bufs;
        let (at, got) = tokio::select! {
            _ = stop.cancelled() => return,
            r = sockets[0].recv_from(buf_a) => (0, r),
            r = sockets[1].recv_from(buf_b) => (1, r),
        };
        let Ok((len, from)) = got else { continue };
        let Some(req) = parse_binding_request(&bufs[at][..len]) else {
            continue;
        };
        requests.fetch_add(1, Ordering::Relaxed);
        if req.change & CHANGE_IP != 0 {
            continue;
        }
        let answer_from = if req.change & CHANGE_PORT != 0 {
            1 - at
        } else {
            at
        };
        // (On a dual-stack socket IPv4 clients arrive as ::ffff:a.b.c.d.)
        let mapped = SocketAddr::new(from.ip().to_canonical(), from.port());
        write_binding_success(
            &mut out,
            &req,
            mapped,
            local[answer_from],
            local[1 - answer_from],
        );
        let _ = sockets[answer_from].send_to(&out, from).await;
    }
}
