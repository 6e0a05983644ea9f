//! The tunnel's server end (`GET /api/tunnel/{session}`): a side without UDP sends its SRT
//! datagrams as binary WebSocket frames (`protocol::tunnel`); this task turns them into UDP
//! datagrams to the side's relay port, from a socket of its own on the server, and the relay's
//! datagrams back into frames. The relay then does what it does for every relayed side — admits
//! this socket's address (and only it) for that side, forwards to the other side (over UDP, or
//! over its own tunnel), applies the bandwidth caps — so SRT stays end to end.
//!
//! The session ties the tunnel to its side ([`open`]: the ticket of the side's `peer`
//! coordinates); a newer tunnel of the same side replaces this one, which then ends. Towards
//! the peer the frames wait in a bounded queue that drops its oldest when full (a slow TCP
//! connection loses media like a congested UDP path would, never memory); the drops are
//! counted. A connection that stops answering is closed: pings every [`PING_EVERY`], nothing
//! heard for [`SILENT`] or a frame not written within [`WRITE_TIMEOUT`] ends it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use tokio::net::UdpSocket;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::session::{SessionError, SessionHandle};
use super::state::AppState;
use crate::protocol::tunnel::{HEADER_LEN, KIND_DATAGRAM, MAX_DATAGRAM, TunnelHeader};
use crate::protocol::{ErrorCode, Role};

/// Frames waiting for the peer's TCP connection, at most (about 1.3 s at 5 Mbit/s).
const QUEUE: usize = 600;
/// How often the server pings the tunnel's client.
pub const PING_EVERY: Duration = Duration::from_secs(5);
/// A tunnel that sent nothing (no frame, no pong) this long is dead: SRT alone sends a
/// keep-alive every second.
pub const SILENT: Duration = Duration::from_secs(15);
/// A frame the connection does not take within this time ends it.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The link one tunnel carries.
#[derive(Debug, Clone)]
pub struct TunnelLink {
    pub stream: String,
    pub role: Role,
    pub slot: u8,
}

/// A tunnel the session accepted, before its WebSocket is up.
pub struct Opened {
    udp: UdpSocket,
    /// The relay port to send to (`None`: no relay yet); ends when the tunnel is replaced.
    port: watch::Receiver<Option<u16>>,
}

/// Opens the tunnel socket and ties it to `link`'s side in `session` with `ticket`: refused
/// (and nothing opened) when the ticket is not that side's.
pub async fn open(
    state: &AppState,
    session: &SessionHandle,
    link: TunnelLink,
    ticket: String,
) -> Result<Opened, SessionError> {
    let ip = state.sessions.policy.tunnel_ip;
    let udp = UdpSocket::bind(SocketAddr::new(ip, 0)).await.map_err(|e| {
        tracing::error!(
            session = &*session.name,
            "cannot open a tunnel socket on {ip}: {e}"
        );
        SessionError::new(
            ErrorCode::Internal,
            format!("the server cannot open a tunnel socket on {ip}: {e}"),
        )
    })?;
    let at = udp
        .local_addr()
        .map_err(|e| SessionError::new(ErrorCode::Internal, e.to_string()))?;
    let port = session.attach_tunnel(link, ticket, at).await?;
    Ok(Opened { udp, port })
}

/// Frames for the peer, oldest dropped when full.
#[derive(Default)]
struct Outbox {
    frames: Mutex<VecDeque<Vec<u8>>>,
    ready: Notify,
}

impl Outbox {
    fn push(&self, frame: Vec<u8>, state: &AppState) {
        let mut q = self.frames.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= QUEUE {
            q.pop_front();
            state.metrics.tunnel_dropped.inc();
        }
        q.push_back(frame);
        drop(q);
        self.ready.notify_one();
    }

    fn pop(&self) -> Option<Vec<u8>> {
        self.frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }
}

/// Writes the outbox and the pings until the connection fails or stalls.
async fn write(mut tx: SplitSink<WebSocket, Message>, outbox: Arc<Outbox>) {
    let mut ping = tokio::time::interval(PING_EVERY);
    loop {
        let msg = match outbox.pop() {
            Some(frame) => Message::Binary(frame.into()),
            None => tokio::select! {
                _ = outbox.ready.notified() => continue,
                _ = ping.tick() => Message::Ping(Default::default()),
            },
        };
        match tokio::time::timeout(WRITE_TIMEOUT, tx.send(msg)).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
}

/// Runs one tunnel until either end closes it, it is replaced, it falls silent, or the server
/// stops.
pub async fn run(
    socket: WebSocket,
    state: Arc<AppState>,
    session: SessionHandle,
    link: TunnelLink,
    opened: Opened,
) {
    let Opened { udp, mut port } = opened;
    let ip = udp
        .local_addr()
        .map(|a| a.ip())
        .unwrap_or(state.sessions.policy.tunnel_ip);
    state.metrics.tunnels.inc();
    tracing::info!(session = &*session.name, stream = link.stream, role = %link.role, slot = link.slot, "tunnel open");
    let (tx, mut rx) = socket.split();
    let outbox = Arc::new(Outbox::default());
    let mut writer = tokio::spawn(write(tx, outbox.clone()));
    let header = TunnelHeader::datagram(link.role, link.slot);
    let mut relay = port.borrow().map(|p| SocketAddr::new(ip, p));
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut frame = Vec::with_capacity(HEADER_LEN + MAX_DATAGRAM);
    let silent = tokio::time::sleep(SILENT);
    tokio::pin!(silent);
    let why = loop {
        tokio::select! {
            _ = state.cancel.cancelled() => break "the server stops",
            _ = &mut writer => break "the connection stopped taking frames",
            _ = &mut silent => break "nothing heard from the client",
            changed = port.changed() => match changed {
                Ok(()) => relay = port.borrow_and_update().map(|p| SocketAddr::new(ip, p)),
                Err(_) => break "replaced by a newer tunnel of its side, or the session ended",
            },
            got = udp.recv_from(&mut buf) => {
                let Ok((len, from)) = got else { continue };
                // the relay's datagrams only
                if Some(from) != relay || len > MAX_DATAGRAM {
                    continue;
                }
                header.encode(&buf[..len], &mut frame);
                outbox.push(frame.clone(), &state);
            }
            msg = rx.next() => {
                silent.as_mut().reset(Instant::now() + SILENT);
                match msg {
                    Some(Ok(Message::Binary(data))) => {
                        let Ok((h, payload)) = TunnelHeader::decode(&data) else {
                            break "a malformed frame";
                        };
                        // one side of one link per tunnel
                        if h.kind != KIND_DATAGRAM || h.role != link.role || h.slot != link.slot {
                            continue;
                        }
                        if let Some(to) = relay {
                            let _ = udp.send_to(payload, to).await;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break "the client closed it",
                    Some(Ok(_)) => {}
                }
            }
        }
    };
    writer.abort();
    state.metrics.tunnels.dec();
    tracing::info!(session = &*session.name, stream = link.stream, role = %link.role, slot = link.slot, "tunnel closed: {why}");
}
