//! The tunnel's client end: when a side has no UDP, its SRT element talks to a local UDP
//! socket on the loopback, and every datagram goes to the server as one binary frame of a
//! second WebSocket (`GET /api/tunnel/{session}`), and back (`protocol::tunnel` has the
//! framing). The signalling connection stays as it is: media frames never queue behind it, nor
//! it behind them.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::Message;

use super::error::ClientError;
use super::signalling::{self, ws_url};
use super::tls::Trust;
use crate::protocol::Role;
use crate::protocol::tunnel::{HEADER_LEN, KIND_DATAGRAM, MAX_DATAGRAM, TunnelHeader};

/// The tunnel URL of one side of one link.
pub fn tunnel_url(
    server: &str,
    session: &str,
    stream: &str,
    role: Role,
    slot: u8,
) -> Result<String, ClientError> {
    let ws = ws_url(server, session)?;
    crate::protocol::validate_name("stream", stream).map_err(ClientError::BadUrl)?;
    Ok(format!(
        "{}?stream={stream}&role={role}&receiver={slot}",
        ws.replacen("/api/ws/", "/api/tunnel/", 1)
    ))
}

/// An open tunnel; closed when dropped.
pub struct Tunnel {
    /// Where SRT sends to: the local end.
    local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    /// The link it carries.
    key: (String, Role, u8),
}

impl Tunnel {
    /// Opens the tunnel of `role` of `stream` (receiver slot `slot`), for an SRT socket bound
    /// at `srt` (its loopback end is bound on the same IP, the loopback for an unspecified one).
    #[allow(clippy::too_many_arguments)]
    pub async fn open(
        server: &str,
        session: &str,
        token: &str,
        stream: &str,
        role: Role,
        slot: u8,
        srt: SocketAddr,
        timeout: Duration,
        trust: &Trust,
    ) -> Result<Tunnel, ClientError> {
        let url = tunnel_url(server, session, stream, role, slot)?;
        let socket =
            signalling::open(url, token, timeout, trust, HEADER_LEN + MAX_DATAGRAM).await?;
        let ip = if srt.ip().is_unspecified() {
            match srt.ip() {
                IpAddr::V4(_) => IpAddr::from([127, 0, 0, 1]),
                IpAddr::V6(_) => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            }
        } else {
            srt.ip()
        };
        let udp = UdpSocket::bind((ip, 0)).await.map_err(|e| {
            ClientError::Protocol(format!("cannot bind the tunnel's local end: {e}"))
        })?;
        let local = udp
            .local_addr()
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let srt = SocketAddr::new(ip, srt.port());
        let task = tokio::spawn(bridge(socket, udp, srt, TunnelHeader::datagram(role, slot)));
        Ok(Tunnel {
            local,
            task,
            key: (stream.to_string(), role, slot),
        })
    }

    /// The address SRT is to send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Whether it carries this link and still runs.
    pub fn carries(&self, stream: &str, role: Role, slot: u8) -> bool {
        !self.task.is_finished() && self.key == (stream.to_string(), role, slot)
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Datagrams from the SRT socket at `srt` into frames, frames into datagrams to it, until the
/// WebSocket ends.
async fn bridge(socket: signalling::Socket, udp: UdpSocket, srt: SocketAddr, header: TunnelHeader) {
    let (mut tx, mut rx) = socket.split();
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut frame = Vec::with_capacity(HEADER_LEN + MAX_DATAGRAM);
    loop {
        tokio::select! {
            got = udp.recv_from(&mut buf) => {
                let Ok((len, from)) = got else { continue };
                // only the SRT socket's datagrams, whole
                if from != srt || len > MAX_DATAGRAM {
                    continue;
                }
                header.encode(&buf[..len], &mut frame);
                if tx.send(Message::binary(frame.clone())).await.is_err() {
                    return;
                }
            }
            msg = rx.next() => match msg {
                Some(Ok(Message::Binary(data))) => {
                    if let Ok((h, payload)) = TunnelHeader::decode(&data)
                        && h.kind == KIND_DATAGRAM
                    {
                        let _ = udp.send_to(payload, srt).await;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
