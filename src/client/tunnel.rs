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

/// How long the tunnel waits before its first attempt to reopen a dropped WebSocket; doubled
/// per failed attempt, up to [`REOPEN_MAX`].
pub const REOPEN_FIRST: Duration = Duration::from_millis(100);
/// The longest wait between attempts to reopen.
pub const REOPEN_MAX: Duration = Duration::from_secs(2);
/// A tunnel that heard nothing this long (the server pings every 5 s, SRT sends every second)
/// is dead and reopened.
const SILENT: Duration = Duration::from_secs(15);

/// The tunnel URL of one side of one link, with the ticket of its `peer` coordinates.
pub fn tunnel_url(server: &str, session: &str, link: &TunnelKey) -> Result<String, ClientError> {
    let ws = ws_url(server, session)?;
    crate::protocol::validate_name("stream", &link.stream).map_err(ClientError::BadUrl)?;
    if !link.ticket.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(ClientError::Protocol(format!(
            "the server's tunnel ticket {:?} is not alphanumeric",
            link.ticket
        )));
    }
    Ok(format!(
        "{}?stream={}&role={}&receiver={}&ticket={}",
        ws.replacen("/api/ws/", "/api/tunnel/", 1),
        link.stream,
        link.role,
        link.slot,
        link.ticket
    ))
}

/// Which side of which link a tunnel carries, and its ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelKey {
    pub stream: String,
    pub role: Role,
    pub slot: u8,
    pub ticket: String,
}

/// How to reach the server's tunnel endpoint.
#[derive(Debug, Clone)]
pub struct TunnelServer {
    pub server: String,
    pub session: String,
    pub token: String,
    pub timeout: Duration,
    pub trust: Trust,
}

/// A tunnel; closed when dropped. Its WebSocket is opened in the background, and one that fails
/// or drops is reopened (with backoff) behind the same local end, so SRT never notices more
/// than a gap; a refusal that retrying cannot change (a wrong ticket: coordinates from before a
/// server restart) ends it, and new coordinates bring a new tunnel.
pub struct Tunnel {
    /// Where SRT sends to: the local end, the same for the tunnel's life.
    local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    /// The link it carries.
    key: TunnelKey,
    /// What happened to it that a person should hear of (drops, reopens).
    notes: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Tunnel {
    /// Opens the tunnel of `key` for an SRT socket bound at `srt` (its loopback end is bound on
    /// the same IP, the loopback for an unspecified one). Fails only when the local end cannot
    /// be bound or the URL cannot be made.
    pub async fn open(
        to: TunnelServer,
        key: TunnelKey,
        srt: SocketAddr,
    ) -> Result<Tunnel, ClientError> {
        let url = tunnel_url(&to.server, &to.session, &key)?;
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
        let header = TunnelHeader::datagram(key.role, key.slot);
        let (notes_tx, notes) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut wait = REOPEN_FIRST;
            let mut opened_before = false;
            // the same failure is told once, not at every attempt
            let mut told: Option<String> = None;
            loop {
                let socket = match connect(&url, &to).await {
                    Ok(s) => s,
                    Err(e) if e.is_permanent() => {
                        let _ = notes_tx.send(format!(
                            "the server refused the tunnel ({e}); it stays closed until new coordinates come"
                        ));
                        return;
                    }
                    Err(e) => {
                        let text = e.to_string();
                        if told.as_deref() != Some(text.as_str()) {
                            let _ = notes_tx.send(format!(
                                "cannot open the tunnel ({text}); trying again, every {} s at most",
                                REOPEN_MAX.as_secs()
                            ));
                            told = Some(text);
                        }
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(REOPEN_MAX);
                        continue;
                    }
                };
                if std::mem::replace(&mut opened_before, true) || told.is_some() {
                    let _ = notes_tx.send("the tunnel is open again".to_string());
                }
                (wait, told) = (REOPEN_FIRST, None);
                let why = bridge(socket, &udp, srt, header).await;
                let _ = notes_tx.send(format!("the tunnel dropped ({why}); reopening it"));
                tokio::time::sleep(wait).await;
            }
        });
        Ok(Tunnel {
            local,
            task,
            key,
            notes,
        })
    }

    /// The address SRT is to send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Whether it carries this link with this ticket.
    pub fn carries(&self, key: &TunnelKey) -> bool {
        !self.task.is_finished() && self.key == *key
    }

    /// The next thing worth telling a person about the tunnel.
    pub async fn note(&mut self) -> Option<String> {
        self.notes.recv().await
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn connect(url: &str, to: &TunnelServer) -> Result<signalling::Socket, ClientError> {
    signalling::open(
        url.to_string(),
        &to.token,
        to.timeout,
        &to.trust,
        HEADER_LEN + MAX_DATAGRAM,
    )
    .await
}

/// Datagrams from the SRT socket at `srt` into frames, frames into datagrams to it, until the
/// WebSocket ends; says why it ended.
async fn bridge(
    socket: signalling::Socket,
    udp: &UdpSocket,
    srt: SocketAddr,
    header: TunnelHeader,
) -> String {
    let (mut tx, mut rx) = socket.split();
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut frame = Vec::with_capacity(HEADER_LEN + MAX_DATAGRAM);
    let silent = tokio::time::sleep(SILENT);
    tokio::pin!(silent);
    loop {
        tokio::select! {
            _ = &mut silent => {
                return format!("nothing from the server for {} s", SILENT.as_secs());
            }
            got = udp.recv_from(&mut buf) => {
                let Ok((len, from)) = got else { continue };
                // only the SRT socket's datagrams, whole
                if from != srt || len > MAX_DATAGRAM {
                    continue;
                }
                header.encode(&buf[..len], &mut frame);
                match tokio::time::timeout(SILENT, tx.send(Message::binary(frame.clone()))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return e.to_string(),
                    Err(_) => return "the connection stopped taking frames".to_string(),
                }
            }
            msg = rx.next() => {
                silent.as_mut().reset(tokio::time::Instant::now() + SILENT);
                match msg {
                Some(Ok(Message::Binary(data))) => {
                    if let Ok((h, payload)) = TunnelHeader::decode(&data)
                        && h.kind == KIND_DATAGRAM
                    {
                        let _ = udp.send_to(payload, srt).await;
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    return match frame {
                        Some(f) if !f.reason.is_empty() => format!("the server closed it: {}", f.reason),
                        _ => "the server closed it".to_string(),
                    };
                }
                None => return "the connection ended".to_string(),
                Some(Err(e)) => return e.to_string(),
                Some(Ok(_)) => {}
                }
            }
        }
    }
}
