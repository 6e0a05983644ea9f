//! Why a session operation was refused: a protocol error code and a message for people.
//! Transport-neutral; the HTTP layer maps it to a status, the WebSocket layer to an `error`
//! message, each in one place.

use std::fmt;

use crate::protocol::{ErrorBody, ErrorCode};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionError {
    pub code: ErrorCode,
    pub message: String,
}

impl SessionError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        SessionError {
            code,
            message: message.into(),
        }
    }

    /// The session has ended (its task is gone).
    pub fn gone(session: &str) -> Self {
        Self::new(ErrorCode::Gone, format!("session {session} is closed"))
    }

    pub fn unknown_stream(session: &str, stream: &str) -> Self {
        Self::new(
            ErrorCode::UnknownStream,
            format!("session {session} has no stream {stream:?}"),
        )
    }

    /// The body of a WebSocket `error` message or an HTTP error.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code,
            message: self.message.clone(),
        }
    }
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for SessionError {}
