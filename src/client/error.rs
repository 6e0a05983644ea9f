//! Why talking to a Punch server failed, for the signalling WebSocket and the REST client
//! alike.

use std::fmt;

use crate::protocol::{ErrorCode, ErrorResponse};

/// Why a request to the server, or its signalling connection, failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The server URL is not usable.
    BadUrl(String),
    /// The client's TLS trust cannot be set up (an unreadable or invalid CA file).
    Trust(String),
    /// The server could not be reached (DNS, TCP, TLS or timeout).
    Unreachable { url: String, reason: String },
    /// The server answered the handshake with an HTTP error.
    Refused {
        status: u16,
        /// The server's error code; `None` when the answer was not a Punch error body.
        code: Option<ErrorCode>,
        message: String,
    },
    /// The connection broke or the server sent something that is not Punch protocol.
    Protocol(String),
}

/// An error with its causes (`outer: inner: innermost`), the way a person can act on: a TLS
/// refusal hides under "error sending request" otherwise.
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = cause.source();
    }
    if let Some(why) = certificate_problem(&text) {
        text.push_str(&format!(" ({why})"));
    }
    text
}

/// What a refused server certificate means, for people (from rustls's reasons).
fn certificate_problem(text: &str) -> Option<&'static str> {
    if !text.contains("certificate") {
        return None;
    }
    Some(
        if text.contains("UnknownIssuer") || text.contains("unknown issuer") {
            "unknown issuer: no CA this client trusts signed the server's certificate; for a private CA give --ca-file / ca-file"
        } else if text.contains("NotValidForName") || text.contains("not valid for name") {
            "name mismatch: the server's certificate is not for the host name in the URL"
        } else if text.contains("Expired") || text.contains("expired") {
            "expired: the server's certificate is past its end date (or this machine's clock is wrong)"
        } else if text.contains("NotValidYet") || text.contains("not valid yet") {
            "not valid yet: the server's certificate starts later (or this machine's clock is wrong)"
        } else if text.contains("Revoked") {
            "revoked: the server's certificate was withdrawn"
        } else {
            "the server's certificate was refused; a server whose certificate a private CA signed needs --ca-file / ca-file"
        },
    )
}

impl ClientError {
    /// What an HTTP error answer from the server at `url` says: its Punch error body (a code
    /// this build does not know keeps its text in the message), or that it is not one.
    pub fn refused(status: u16, body: &[u8], url: &str) -> ClientError {
        let Ok(e) = serde_json::from_slice::<ErrorResponse>(body) else {
            return ClientError::Refused {
                status,
                code: None,
                message: format!("HTTP {status} from {url}; is this a Punch server?"),
            };
        };
        let mut message = e.error.message;
        if e.error.code == ErrorCode::Unknown
            && let Some(raw) = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v["error"]["code"].as_str().map(String::from))
        {
            message.push_str(&format!(" (code {raw})"));
        }
        ClientError::Refused {
            status,
            code: Some(e.error.code),
            message,
        }
    }

    /// True when retrying cannot help (bad URL, bad token, unknown or closed session).
    pub fn is_permanent(&self) -> bool {
        match self {
            ClientError::BadUrl(_) | ClientError::Trust(_) => true,
            ClientError::Refused { status, .. } => matches!(status, 400 | 401 | 403 | 404 | 410),
            _ => false,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::BadUrl(m) => write!(f, "bad server URL: {m}"),
            ClientError::Trust(m) => write!(f, "cannot set up TLS: {m}"),
            ClientError::Unreachable { url, reason } => {
                write!(f, "cannot reach the Punch server at {url}: {reason}")
            }
            ClientError::Refused {
                status,
                code,
                message,
            } => match code {
                Some(code) => write!(f, "server refused ({status} {code}): {message}"),
                None => write!(f, "server refused (HTTP {status}): {message}"),
            },
            ClientError::Protocol(m) => write!(f, "signalling error: {m}"),
        }
    }
}

impl std::error::Error for ClientError {}
