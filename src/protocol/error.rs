//! The one error vocabulary of the protocol: every `code` an HTTP error body or a WebSocket
//! `error` message carries, and the WebSocket close codes the server uses.
//!
//! Codes are stable wire strings (snake_case); clients match on the enum, never on the text.
//! An HTTP status is chosen per code by the server's HTTP layer, in one place.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A stable, machine-readable error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    // -- requests -------------------------------------------------------------------------
    /// A request (body, query, path) is malformed or out of range.
    BadRequest,
    /// A body or message is not JSON at all.
    InvalidJson,
    /// A WebSocket message is JSON but not a valid Punch message.
    BadMessage,
    /// A request body is larger than the server accepts.
    TooLarge,
    /// A request (its body) did not arrive in time.
    Timeout,
    /// No such endpoint.
    NotFound,
    /// The endpoint exists but not with this HTTP method.
    MethodNotAllowed,
    // -- authentication and scope -----------------------------------------------------------
    /// No token, or one that does not verify.
    Unauthorized,
    /// The token is valid but does not allow this.
    Forbidden,
    // -- sessions ---------------------------------------------------------------------------
    /// The session has ended (closed or expired).
    Gone,
    /// A session of that name already exists.
    SessionExists,
    /// The server holds as many sessions as it may.
    TooManySessions,
    /// The session holds as many connections as it may.
    TooManyConnections,
    /// The session has no stream of that name.
    UnknownStream,
    /// Connection strings need both sides of a stream registered.
    PeersMissing,
    // -- signalling -------------------------------------------------------------------------
    /// A message that needs a registration came before `register`.
    NotRegistered,
    /// This connection already holds another slot.
    AlreadyRegistered,
    /// Another live connection holds the slot.
    SlotTaken,
    /// The producer turned down a peer waiting with a join token.
    Rejected,
    /// No peer waits under that name (it left, or was admitted or rejected already).
    UnknownPeer,
    /// A registered public address the server's STUN service did not see for this connection:
    /// the signalling address is used instead (registration goes on).
    AddressNotVerified,
    /// Too many requests or messages in too short a time.
    RateLimited,
    // -- the server itself ------------------------------------------------------------------
    /// The database did not take a change.
    Storage,
    /// A QR code could not be drawn.
    Qr,
    /// Anything else that is the server's fault.
    Internal,
    /// A code this build does not know (sent by a newer server): not an error to parse.
    /// (Not part of the spec: no server sends it.)
    #[serde(other)]
    #[cfg_attr(feature = "spec", schemars(skip))]
    Unknown,
}

impl ErrorCode {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Timeout => "timeout",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Gone => "gone",
            ErrorCode::SessionExists => "session_exists",
            ErrorCode::TooManySessions => "too_many_sessions",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::UnknownStream => "unknown_stream",
            ErrorCode::PeersMissing => "peers_missing",
            ErrorCode::NotRegistered => "not_registered",
            ErrorCode::AlreadyRegistered => "already_registered",
            ErrorCode::SlotTaken => "slot_taken",
            ErrorCode::Rejected => "rejected",
            ErrorCode::UnknownPeer => "unknown_peer",
            ErrorCode::AddressNotVerified => "address_not_verified",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Storage => "storage",
            ErrorCode::Qr => "qr",
            ErrorCode::Internal => "internal",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// WebSocket close codes (RFC 6455 §7.4.1) the server closes a connection with.
pub mod close_code {
    /// The session ended (closed or expired), or the connection was refused.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down, or the peer stopped answering keepalives.
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke a rule: rate limit, or a send queue it did not read.
    pub const POLICY: u16 = 1008;
    /// A message larger than the server accepts.
    pub const TOO_BIG: u16 = 1009;
    /// A limit that frees itself (too many connections): try again later.
    pub const TRY_AGAIN: u16 = 1013;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_strings_are_the_serde_names() {
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::InvalidJson,
            ErrorCode::BadMessage,
            ErrorCode::TooLarge,
            ErrorCode::Timeout,
            ErrorCode::NotFound,
            ErrorCode::MethodNotAllowed,
            ErrorCode::Unauthorized,
            ErrorCode::Forbidden,
            ErrorCode::Gone,
            ErrorCode::SessionExists,
            ErrorCode::TooManySessions,
            ErrorCode::TooManyConnections,
            ErrorCode::UnknownStream,
            ErrorCode::PeersMissing,
            ErrorCode::NotRegistered,
            ErrorCode::AlreadyRegistered,
            ErrorCode::SlotTaken,
            ErrorCode::AddressNotVerified,
            ErrorCode::RateLimited,
            ErrorCode::Storage,
            ErrorCode::Qr,
            ErrorCode::Internal,
        ] {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
        // A newer server's code is not a parse error.
        assert_eq!(
            serde_json::from_str::<ErrorCode>("\"brand_new\"").unwrap(),
            ErrorCode::Unknown
        );
    }
}
