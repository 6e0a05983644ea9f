//! The routes people open in a browser: the create page, the dashboard and the QR codes.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::auth::{AdminSession, base_url, token_from};
use super::error::ApiError;
use super::sessions::stream_uri;
use crate::protocol::{ErrorCode, Role};
use crate::server::state::AppState;
use crate::server::ui;

/// `GET /`: the page that creates a session.
pub(super) async fn create_page(State(state): State<Arc<AppState>>) -> Response {
    ui::create_page(state.config.create_key.is_some())
}

/// `GET /s/:id?t=ADMIN`: the operator dashboard, or a page saying why not.
pub(super) async fn dashboard(session: Result<AdminSession, ApiError>) -> Response {
    let view = match session {
        Ok(AdminSession(session)) => session
            .handle
            .view(&session.claims.scope)
            .await
            .map_err(ApiError::from),
        Err(e) => Err(e),
    };
    match view {
        Ok(view) => ui::dashboard(&view),
        Err(e) => ui::error_page(e.status, &e.message),
    }
}

/// An SVG image response of a QR code of `data`, with the UI headers.
fn qr_response(data: &str) -> Result<Response, ApiError> {
    let svg = qr_svg(data).map_err(|e| ApiError::new(ErrorCode::Qr, e))?;
    let mut resp = svg.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("image/svg+xml"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    ui::security_headers(&mut resp);
    Ok(resp)
}

/// `GET /s/:id/qr`: the dashboard link (it carries the admin token: for the production team).
pub(super) async fn session_qr(
    State(state): State<Arc<AppState>>,
    AdminSession(session): AdminSession,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let token = token_from(&headers, query.as_deref()).unwrap_or_default();
    qr_response(&format!(
        "{}/s/{}?t={token}",
        base_url(&state, &headers),
        session.id
    ))
}

/// `GET /s/:id/qr/:stream/:role`: what one camera operator needs, the `punch://` URI of one
/// side of one stream with a token for just that side (never the admin token).
pub(super) async fn stream_qr(
    State(state): State<Arc<AppState>>,
    AdminSession(session): AdminSession,
    Path((_, stream, role)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let role = Role::parse(&role).ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            format!("{role:?} is not a side of a stream; use sender or receiver"),
        )
    })?;
    let known = session.handle.coordinates().await?;
    if !known.iter().any(|c| c.name == stream) {
        return Err(ApiError::with_status(
            StatusCode::NOT_FOUND,
            ErrorCode::UnknownStream,
            format!("session {} has no stream {stream:?}", session.id),
        ));
    }
    let base = base_url(&state, &headers);
    qr_response(&stream_uri(&state, &base, &session, &stream, role)?)
}

/// An SVG QR code of `data`.
pub fn qr_svg(data: &str) -> Result<String, String> {
    let code = qrcode::QrCode::new(data.as_bytes())
        .map_err(|e| format!("cannot encode a QR code: {e}"))?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(256, 256)
        .quiet_zone(true)
        .build())
}
