//! The tunnel's server end (`GET /api/tunnel/{session}`): a side without UDP sends its SRT
//! datagrams as binary WebSocket frames (`protocol::tunnel`); this task turns them into UDP
//! datagrams to the side's relay port, from a socket of its own on the server, and the relay's
//! datagrams back into frames. The relay then does what it does for every relayed side — admits
//! this socket's address for that side, forwards to the other side (over UDP, or over its own
//! tunnel), applies the bandwidth caps — so SRT stays end to end.
//!
//! Towards the peer the frames wait in a bounded queue that drops its oldest when full (a slow
//! TCP connection loses media like a congested UDP path would, never memory); the drops are
//! counted.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use tokio::net::UdpSocket;
use tokio::sync::Notify;

use super::session::SessionHandle;
use super::state::AppState;
use crate::protocol::Role;
use crate::protocol::tunnel::{HEADER_LEN, KIND_DATAGRAM, MAX_DATAGRAM, TunnelHeader};

/// Frames waiting for the peer's TCP connection, at most (about 1.3 s at 5 Mbit/s).
const QUEUE: usize = 600;
/// How often the relay port is asked for again while there is none (and checked after that,
/// for a new pairing).
const LOOKUP_EVERY: Duration = Duration::from_millis(500);

/// The link one tunnel carries.
#[derive(Debug, Clone)]
pub struct TunnelLink {
    pub stream: String,
    pub role: Role,
    pub slot: u8,
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

/// Runs one tunnel until either end closes it or the server stops.
pub async fn run(
    socket: WebSocket,
    state: Arc<AppState>,
    session: SessionHandle,
    link: TunnelLink,
) {
    let ip = state.sessions.policy.tunnel_ip;
    let udp = match UdpSocket::bind(SocketAddr::new(ip, 0)).await {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(
                session = &*session.name,
                "cannot open a tunnel socket on {ip}: {e}"
            );
            return;
        }
    };
    state.metrics.tunnels.inc();
    tracing::info!(session = &*session.name, stream = link.stream, role = %link.role, "tunnel open");
    let (mut tx, mut rx) = socket.split();
    let outbox = Arc::new(Outbox::default());
    let writer = {
        let outbox = outbox.clone();
        tokio::spawn(async move {
            loop {
                match outbox.pop() {
                    Some(frame) => {
                        if tx.send(Message::Binary(frame.into())).await.is_err() {
                            return;
                        }
                    }
                    None => outbox.ready.notified().await,
                }
            }
        })
    };
    let header = TunnelHeader::datagram(link.role, link.slot);
    let mut relay: Option<SocketAddr> = None;
    let mut lookup = tokio::time::interval(LOOKUP_EVERY);
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut frame = Vec::with_capacity(HEADER_LEN + MAX_DATAGRAM);
    loop {
        tokio::select! {
            _ = state.cancel.cancelled() => break,
            _ = lookup.tick() => {
                match session.tunnel_port(link.stream.clone(), link.role, link.slot).await {
                    Ok(port) => relay = port.map(|p| SocketAddr::new(ip, p)),
                    // the session or the stream is gone
                    Err(_) => break,
                }
            }
            got = udp.recv_from(&mut buf) => {
                let Ok((len, from)) = got else { continue };
                // the relay's datagrams only
                if Some(from) != relay || len > MAX_DATAGRAM {
                    continue;
                }
                header.encode(&buf[..len], &mut frame);
                outbox.push(frame.clone(), &state);
            }
            msg = rx.next() => match msg {
                Some(Ok(Message::Binary(data))) => {
                    let Ok((h, payload)) = TunnelHeader::decode(&data) else { break };
                    // one side of one link per tunnel
                    if h.kind != KIND_DATAGRAM || h.role != link.role || h.slot != link.slot {
                        continue;
                    }
                    if let Some(to) = relay {
                        let _ = udp.send_to(payload, to).await;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    writer.abort();
    state.metrics.tunnels.dec();
    tracing::info!(session = &*session.name, stream = link.stream, role = %link.role, "tunnel closed");
}
