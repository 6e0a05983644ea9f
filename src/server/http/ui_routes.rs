//! The routes people open in a browser: the create page, the dashboard and the QR codes.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use std::net::SocketAddr;

use axum::extract::ConnectInfo;

use super::auth::{AdminSession, AuthedSession, base_url, client_ip, token_from};
use super::error::ApiError;
use super::sessions::stream_uri;
use crate::protocol::{ErrorCode, Role};
use crate::server::state::AppState;
use crate::server::token::Scope;
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

/// The side a camera-operator link is for: its token must be a stream token.
fn operator_side(session: &AuthedSession) -> Result<(String, Role), ApiError> {
    match &session.claims.scope {
        Scope::Stream { stream, role } => Ok((stream.clone(), *role)),
        Scope::Admin | Scope::Join => Err(ApiError::with_status(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "this is a camera-operator link: it takes the token of one side of a stream (scan that side's QR code on the dashboard), not the admin token",
        )),
    }
}

/// `GET /j/:id?t=STREAM_TOKEN`: the camera-operator page of one side; with the join token the
/// venue page (the cameras waiting from the reader's place, the URI to point cameras at); or a
/// page saying why not.
pub(super) async fn operator_page(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    session: Result<AuthedSession, ApiError>,
    headers: HeaderMap,
) -> Response {
    let page = async {
        let session = session?;
        if session.claims.scope == Scope::Join {
            let place = client_ip(&state, peer, &headers);
            let view = session.handle.view_from(&Scope::Join, place).await?;
            let punch = join_uri(
                &state,
                &base_url(&state, &headers),
                &session.id,
                &session.handle.nonce,
            )?;
            return Ok(ui::venue(&view, &punch));
        }
        let (stream, role) = operator_side(&session)?;
        let view = session.handle.view(&session.claims.scope).await?;
        let punch = stream_uri(&state, &base_url(&state, &headers), &session, &stream, role)?;
        Ok::<_, ApiError>(ui::operator(&view, &stream, role, &punch))
    };
    match page.await {
        Ok(page) => page,
        Err(e) => ui::error_page(e.status, &e.message),
    }
}

/// `GET /j/:id/qr?t=STREAM_TOKEN`: the QR code of one side's settings: its device's `srt://`
/// URL, or its `punch://` URI.
pub(super) async fn operator_qr(
    State(state): State<Arc<AppState>>,
    session: AuthedSession,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if session.claims.scope == Scope::Join {
        let base = base_url(&state, &headers);
        return qr_response(&join_uri(
            &state,
            &base,
            &session.id,
            &session.handle.nonce,
        )?);
    }
    let (stream, role) = operator_side(&session)?;
    let view = session.handle.view(&session.claims.scope).await?;
    let device = view
        .streams
        .iter()
        .find(|s| s.name == stream)
        .and_then(|s| match role {
            Role::Sender => s.sender.device.clone(),
            Role::Receiver => s.receiver.device.clone(),
        });
    match device {
        Some(d) => qr_response(&d.url),
        None => qr_response(&stream_uri(
            &state,
            &base_url(&state, &headers),
            &session,
            &stream,
            role,
        )?),
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

/// The `punch://` URI with the session's join token: what cameras at the venue point at (its
/// peers wait in the waiting room).
fn join_uri(state: &AppState, base: &str, id: &str, nonce: &str) -> Result<String, ApiError> {
    let token = state.key.issue(id, nonce, &Scope::Join);
    crate::protocol::uri::PunchUri::for_server(base, id, None, &token)
        .map(|u| u.to_string())
        .map_err(|e| ApiError::new(ErrorCode::Internal, e))
}

/// `GET /s/:id/join-qr?t=ADMIN`: the venue QR code: the link to the venue page
/// (`/j/:id?t=JOIN`), which shows the `punch://` URI for the cameras and each camera's wait;
/// `404` for a session without a waiting room.
pub(super) async fn join_qr(
    State(state): State<Arc<AppState>>,
    AdminSession(session): AdminSession,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let view = session.handle.view(&Scope::Admin).await?;
    if !view.join {
        return Err(ApiError::with_status(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!(
                "session {} has no waiting room (create it with \"join\": true)",
                session.id
            ),
        ));
    }
    let token = state
        .key
        .issue(&session.id, &session.handle.nonce, &Scope::Join);
    qr_response(&format!(
        "{}/j/{}?t={token}",
        base_url(&state, &headers),
        session.id
    ))
}

/// `GET /s/:id/qr/:stream/:role`: what one camera operator needs, the link to the
/// camera-operator page of one side of one stream with a token for just that side (never the
/// admin token); the page has the side's `punch://` URI or device settings.
pub(super) async fn stream_qr(
    State(state): State<Arc<AppState>>,
    AdminSession(session): AdminSession,
    path: Result<Path<(String, String, String)>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (stream, role) = super::auth::side_path(path)?;
    let known = session.handle.coordinates().await?;
    if !known.iter().any(|c| c.name == stream) {
        return Err(ApiError::with_status(
            StatusCode::NOT_FOUND,
            ErrorCode::UnknownStream,
            format!("session {} has no stream {stream:?}", session.id),
        ));
    }
    // The link to that side's camera-operator page, with a token for exactly that side.
    let token = state.key.issue(
        &session.id,
        &session.handle.nonce,
        &Scope::Stream {
            stream: stream.clone(),
            role,
        },
    );
    qr_response(&format!(
        "{}/j/{}?t={token}",
        base_url(&state, &headers),
        session.id
    ))
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
