//! The signalling connection: a typed WebSocket to one Punch session. It carries
//! [`ClientMessage`]s up and [`ServerMessage`]s down and turns a refused handshake into the
//! server's own error (`401 unauthorized`, `410 gone`, ...).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::error::ClientError;
use super::tls::Trust;
use crate::protocol::{ClientMessage, ServerMessage};

/// The WebSocket URL of `session` on `server` (`http(s)://host[:port][/prefix]` or `ws(s)://…`).
pub fn ws_url(server: &str, session: &str) -> Result<String, ClientError> {
    let server = server.trim_end_matches('/');
    let (scheme, rest) = server.split_once("://").ok_or_else(|| {
        ClientError::BadUrl(format!(
            "{server:?} has no scheme (expected http://, https://, ws:// or wss://)"
        ))
    })?;
    let ws_scheme = match scheme {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        other => {
            return Err(ClientError::BadUrl(format!(
                "unsupported scheme {other:?} in {server:?}"
            )));
        }
    };
    if rest.is_empty() {
        return Err(ClientError::BadUrl(format!("{server:?} has no host")));
    }
    crate::protocol::validate_name("session", session).map_err(ClientError::BadUrl)?;
    Ok(format!("{ws_scheme}://{rest}/api/ws/{session}"))
}

pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// An open signalling connection.
pub struct Signalling {
    socket: Socket,
}

impl Signalling {
    /// Opens the session's WebSocket, authenticating with `token` in the `Authorization` header
    /// (over TLS, trusting the system's roots).
    pub async fn connect(
        server: &str,
        session: &str,
        token: &str,
        timeout: Duration,
    ) -> Result<Signalling, ClientError> {
        Self::connect_with(server, session, token, timeout, &Trust::default()).await
    }

    /// [`connect`](Self::connect), trusting `trust`'s roots for `wss://`.
    pub async fn connect_with(
        server: &str,
        session: &str,
        token: &str,
        timeout: Duration,
        trust: &Trust,
    ) -> Result<Signalling, ClientError> {
        let url = ws_url(server, session)?;
        // Signalling messages are small, but an admin connection also gets the session's whole
        // view (dashboards): about 5 KB per stream.
        let socket = open(url, token, timeout, trust, 1024 * 1024).await?;
        Ok(Signalling { socket })
    }

    pub async fn send(&mut self, msg: &ClientMessage) -> Result<(), ClientError> {
        let text = serde_json::to_string(msg).map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.socket
            .send(Message::text(text))
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// The next server message; `Ok(None)` once the server closed the connection.
    pub async fn recv(&mut self) -> Result<Option<ServerMessage>, ClientError> {
        Ok(self.recv_text().await?.map(|(_, msg)| msg))
    }

    /// The next server message with its text as it came (for tools that log or check it).
    pub async fn recv_text(&mut self) -> Result<Option<(String, ServerMessage)>, ClientError> {
        loop {
            match self.socket.next().await {
                None | Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Ok(Message::Text(text))) => {
                    let text = text.as_str().to_string();
                    return match serde_json::from_str(&text) {
                        Ok(msg) => Ok(Some((text, msg))),
                        Err(e) => Err(ClientError::Protocol(format!(
                            "unexpected message {text}: {e}"
                        ))),
                    };
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(ClientError::Protocol(e.to_string())),
            }
        }
    }

    /// Sends a close frame and waits briefly for the server's.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.socket.close(None)).await;
    }
}

/// Opens a WebSocket to `url` with `token` as a Bearer token, within `timeout`; a refused
/// handshake is the server's own error. Used by the signalling connection and the tunnel.
pub(crate) async fn open(
    url: String,
    token: &str,
    timeout: Duration,
    trust: &Trust,
    max_message: usize,
) -> Result<Socket, ClientError> {
    let connector = if url.starts_with("wss://") {
        Some(tokio_tungstenite::Connector::Rustls(
            trust.client_config().map_err(ClientError::Trust)?,
        ))
    } else {
        None
    };
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| ClientError::BadUrl(format!("{url}: {e}")))?;
    let auth = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        ClientError::BadUrl("the token contains characters not allowed in a header".into())
    })?;
    request.headers_mut().insert("authorization", auth);
    let config = WebSocketConfig::default()
        .max_message_size(Some(max_message))
        .read_buffer_size(4096);
    let connect =
        tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, connector);
    let (socket, _) = match tokio::time::timeout(timeout, connect).await {
        Err(_) => {
            return Err(ClientError::Unreachable {
                url,
                reason: format!("no answer within {timeout:?}"),
            });
        }
        Ok(Err(tungstenite::Error::Http(resp))) => {
            let status = resp.status().as_u16();
            let body = resp.body().as_deref().unwrap_or_default();
            return Err(ClientError::refused(status, body, &url));
        }
        Ok(Err(e)) => {
            return Err(ClientError::Unreachable {
                url,
                reason: super::error::with_causes(&e),
            });
        }
        Ok(Ok(ok)) => ok,
    };
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_urls() {
        assert_eq!(
            ws_url("http://h:8787", "s1").unwrap(),
            "ws://h:8787/api/ws/s1"
        );
        assert_eq!(
            ws_url("https://h/punch/", "s1").unwrap(),
            "wss://h/punch/api/ws/s1"
        );
        assert!(matches!(
            ws_url("h:8787", "s1"),
            Err(ClientError::BadUrl(_))
        ));
        assert!(matches!(
            ws_url("ftp://h", "s1"),
            Err(ClientError::BadUrl(_))
        ));
        assert!(matches!(
            ws_url("http://h", "a/b"),
            Err(ClientError::BadUrl(_))
        ));
    }
}
