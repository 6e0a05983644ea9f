//! The one error type of the HTTP API: a status, a stable code and a message for people; and
//! the one place an error code becomes an HTTP status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::protocol::{ErrorBody, ErrorCode, ErrorResponse};
use crate::server::session::SessionError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
}

/// The status an error code answers with, unless a route says otherwise (a stream named in the
/// path that does not exist is 404, one named in a body 400).
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadRequest
        | ErrorCode::InvalidJson
        | ErrorCode::BadMessage
        | ErrorCode::UnknownStream
        | ErrorCode::NotRegistered
        | ErrorCode::AlreadyRegistered
        | ErrorCode::AddressNotVerified => StatusCode::BAD_REQUEST,
        ErrorCode::Rejected => StatusCode::FORBIDDEN,
        ErrorCode::UnknownPeer => StatusCode::NOT_FOUND,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::SessionExists | ErrorCode::SlotTaken | ErrorCode::PeersMissing => {
            StatusCode::CONFLICT
        }
        ErrorCode::Gone => StatusCode::GONE,
        ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::Timeout => StatusCode::REQUEST_TIMEOUT,
        ErrorCode::TooManySessions | ErrorCode::TooManyConnections | ErrorCode::RateLimited => {
            StatusCode::TOO_MANY_REQUESTS
        }
        // The database is locked or failing: try again later.
        ErrorCode::Storage => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Qr | ErrorCode::Internal | ErrorCode::Unknown => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

impl ApiError {
    /// An error with its code's usual status.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::with_status(status_of(code), code, message)
    }

    /// An error with a status its code does not usually have.
    pub fn with_status(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code,
            message: self.message.clone(),
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        ApiError::new(e.code, e.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorResponse { error: self.body() };
        let mut resp = (self.status, Json(body)).into_response();
        // for the refusals metric (`http/mod.rs`)
        resp.extensions_mut().insert(self.code);
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_refusals_keep_their_statuses() {
        for (code, status) in [
            (ErrorCode::TooManyConnections, 429),
            (ErrorCode::TooManySessions, 429),
            (ErrorCode::SessionExists, 409),
            (ErrorCode::Gone, 410),
            (ErrorCode::NotFound, 404),
            (ErrorCode::Forbidden, 403),
            (ErrorCode::UnknownStream, 400),
            (ErrorCode::BadRequest, 400),
        ] {
            let e = ApiError::from(SessionError::new(code, "x"));
            assert_eq!(e.status.as_u16(), status, "{code}");
        }
    }
}
