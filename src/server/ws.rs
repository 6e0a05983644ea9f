//! One task per WebSocket connection: reads and parses frames, forwards messages to the
//! session task, writes what the session queues for it, and keeps the connection alive.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, timeout};
use tokio_tungstenite::tungstenite;

use super::limit::TokenBucket;
use super::session::{ConnId, Outbound, SessionError, SessionHandle};
use super::state::AppState;
use super::token::Scope;
use crate::protocol::{
    ClientMessage, ErrorBody, ErrorCode, Hello, Register, ServerMessage, close_code,
};

/// How a refused attach is told to the peer: the `error` message, and the close code (a full
/// session may have room later).
fn refusal(e: &SessionError) -> (ServerMessage, u16) {
    let close = match e.code {
        ErrorCode::TooManyConnections => close_code::TRY_AGAIN,
        _ => close_code::NORMAL,
    };
    (ServerMessage::Error(e.body()), close)
}

enum Flow {
    Continue,
    Stop,
}

struct Connection {
    socket: WebSocket,
    state: Arc<AppState>,
    session: SessionHandle,
    conn: ConnId,
    /// The name its STUN requests carry (given in the hello).
    stun_tag: Option<String>,
    write_timeout: Duration,
}

impl Connection {
    async fn send_text(&mut self, text: Utf8Bytes) -> Flow {
        match timeout(self.write_timeout, self.socket.send(Message::Text(text))).await {
            Ok(Ok(())) => {
                self.state.metrics.ws_out.inc();
                Flow::Continue
            }
            _ => Flow::Stop,
        }
    }

    async fn send_message(&mut self, msg: &ServerMessage) -> Flow {
        match serde_json::to_string(msg) {
            Ok(text) => self.send_text(text.into()).await,
            Err(_) => Flow::Continue,
        }
    }

    async fn send_error(&mut self, code: ErrorCode, message: String) -> Flow {
        self.state.metrics.refused(code);
        self.send_message(&ServerMessage::Error(ErrorBody { code, message }))
            .await
    }

    async fn close(&mut self, code: u16, reason: &str) {
        // Close reasons are limited to 123 bytes by the protocol.
        let mut reason = reason.to_string();
        while reason.len() > 123 {
            reason.pop();
        }
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = timeout(
            self.write_timeout,
            self.socket.send(Message::Close(Some(frame))),
        )
        .await;
    }

    /// Whether this server's STUN service saw a request of this connection's tag from exactly
    /// the registered `nat.mapped` (true when there is none, or it is not an address at all:
    /// the session refuses that). The session takes an unseen address only from a side
    /// returning to the address it had (`SessionCore::register`): a peer cannot point another
    /// peer's SRT, or the relay's admission, at a host of its choice.
    fn mapping_seen(&self, r: &Register) -> bool {
        let Some(m) = r.nat.as_ref().and_then(|n| n.mapped.as_ref()) else {
            return true;
        };
        let Ok(ip) = m.ip.parse::<IpAddr>() else {
            return true;
        };
        if m.port == 0 {
            return true;
        }
        let addr = SocketAddr::new(ip.to_canonical(), m.port);
        self.stun_tag
            .as_deref()
            .is_some_and(|tag| self.state.stun_ledger.saw(tag, addr))
    }

    /// Handles one frame from the peer.
    async fn incoming(&mut self, frame: Message) -> Flow {
        match frame {
            Message::Text(text) => {
                self.state.stats.messages.fetch_add(1, Ordering::Relaxed);
                match serde_json::from_str::<ClientMessage>(text.as_str()) {
                    Ok(msg) => {
                        let seen = match &msg {
                            ClientMessage::Register(r) => self.mapping_seen(r),
                            _ => true,
                        };
                        if self.session.message(self.conn, msg, seen).await {
                            Flow::Continue
                        } else {
                            Flow::Stop
                        }
                    }
                    Err(e) => {
                        let code = if e.is_data() {
                            ErrorCode::BadMessage
                        } else {
                            ErrorCode::InvalidJson
                        };
                        self.send_error(code, e.to_string()).await
                    }
                }
            }
            Message::Binary(_) => {
                self.send_error(
                    ErrorCode::BadMessage,
                    "binary frames are not supported; send JSON text frames".into(),
                )
                .await
            }
            Message::Ping(_) | Message::Pong(_) => Flow::Continue,
            Message::Close(_) => Flow::Stop,
        }
    }
}

/// Runs an upgraded connection until either side ends it.
pub async fn run(
    socket: WebSocket,
    state: Arc<AppState>,
    session: SessionHandle,
    ip: IpAddr,
    scope: Scope,
) {
    let limits = state.config.limits.clone();
    let conn = state.next_conn_id.fetch_add(1, Ordering::Relaxed);
    let (out_tx, mut out_rx) = mpsc::channel(limits.send_queue);
    // Retired when this function returns, however the connection ends.
    let issued = state.stun_ports.map(|_| state.stun_ledger.issue());
    let stun_tag = issued.as_ref().map(|i| i.tag.clone());
    let mut c = Connection {
        socket,
        state: state.clone(),
        session: session.clone(),
        conn,
        stun_tag: stun_tag.clone(),
        write_timeout: limits.write_timeout,
    };
    // Before anything the session queues: what the server offers besides signalling.
    let hello = ServerMessage::Hello(Hello {
        stun: state.stun_ports,
        stun_tag,
        stun_host: state
            .stun_ports
            .and_then(|_| state.config.stun_host.clone()),
    });
    if let Flow::Stop = c.send_message(&hello).await {
        return;
    }
    if let Err(e) = session.attach(conn, ip, scope, out_tx).await {
        let (msg, code) = refusal(&e);
        state.metrics.refused(e.code);
        c.send_message(&msg).await;
        c.close(code, &e.message).await;
        return;
    }
    state.stats.connections.fetch_add(1, Ordering::Relaxed);
    tracing::info!(session = &*session.name, conn, %ip, "peer connected");

    let mut ping = tokio::time::interval(limits.ping_interval);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ping.tick().await;
    let mut last_heard = Instant::now();
    let mut rate = TokenBucket::new(limits.messages_per_second, limits.message_burst);
    let why = loop {
        tokio::select! {
            _ = state.cancel.cancelled() => {
                c.close(close_code::GOING_AWAY, "server shutting down").await;
                break "server shutdown";
            }
            out = out_rx.recv() => match out {
                Some(Outbound::Text(bytes)) => {
                    // The session serialised it from a String: valid UTF-8, shared, not copied.
                    let Ok(text) = Utf8Bytes::try_from(bytes) else { continue };
                    if let Flow::Stop = c.send_text(text).await {
                        break "write failed";
                    }
                }
                Some(Outbound::Close(code, reason)) => {
                    c.close(code, &reason).await;
                    break "closed by the session";
                }
                None if state.cancel.is_cancelled() => {
                    c.close(close_code::GOING_AWAY, "server shutting down").await;
                    break "server shutdown";
                }
                None => {
                    c.close(close_code::POLICY, "too slow: the send queue overflowed").await;
                    break "send queue overflow";
                }
            },
            frame = c.socket.recv() => {
                last_heard = Instant::now();
                match frame {
                    None => break "peer closed",
                    Some(Err(e)) => {
                        if let Some(tungstenite::Error::Capacity(cap)) = e.into_inner().downcast_ref::<tungstenite::Error>() {
                            let reason = format!("message too large: {cap}");
                            c.close(close_code::TOO_BIG, &reason).await;
                        }
                        break "connection lost";
                    }
                    Some(Ok(frame)) => {
                        if matches!(frame, Message::Text(_) | Message::Binary(_)) && !rate.take(1.0, std::time::Instant::now()) {
                            c.send_error(ErrorCode::RateLimited, "too many messages; slow down".into()).await;
                            c.close(close_code::POLICY, "message rate limit exceeded").await;
                            break "rate limit";
                        }
                        if let Flow::Stop = c.incoming(frame).await {
                            break "session ended";
                        }
                    }
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > limits.idle_timeout {
                    c.close(close_code::GOING_AWAY, "keepalive timeout").await;
                    break "keepalive timeout";
                }
                if !matches!(timeout(limits.write_timeout, c.socket.send(Message::Ping(Default::default()))).await, Ok(Ok(()))) {
                    break "write failed";
                }
            }
        }
    };
    tracing::info!(session = &*session.name, conn, %ip, why, "peer disconnected");
    state.stats.connections.fetch_sub(1, Ordering::Relaxed);
    session.detach(conn).await;
}
