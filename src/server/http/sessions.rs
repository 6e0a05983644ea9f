//! The routes on one session: read, close, tally, latency, connection strings and the
//! WebSocket upgrade.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::auth::{AdminSession, AuthedSession, base_url};
use super::body_bytes;
use super::error::ApiError;
use crate::protocol::ClosedSession;
use crate::protocol::{
    ConnectResponse, ErrorCode, LatencyRequest, Role, SessionState, TallyRequest, uri::PunchUri,
};
use crate::server::connect::stream_strings;
use crate::server::state::AppState;
use crate::server::token::Scope;
use crate::server::ws;

pub(super) async fn get_session(session: AuthedSession) -> Result<Response, ApiError> {
    Ok(Json(session.handle.view(&session.claims.scope).await?).into_response())
}

pub(super) async fn delete_session(
    AdminSession(session): AdminSession,
) -> Result<Response, ApiError> {
    session.handle.close("closed by operator").await?;
    tracing::info!(session = session.id, client = %session.ip, "session closed by operator");
    Ok(Json(ClosedSession {
        session: session.id.clone(),
        state: SessionState::Closed,
    })
    .into_response())
}

/// A JSON request body of type `T`; the error shows the `expected` form.
pub(super) fn json_body<T: serde::de::DeserializeOwned>(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
    expected: &str,
) -> Result<T, ApiError> {
    let body = body_bytes(body, state.config.limits.http_max_body)?;
    serde_json::from_slice(&body).map_err(|e| {
        let code = if e.is_data() {
            ErrorCode::BadRequest
        } else {
            ErrorCode::InvalidJson
        };
        ApiError::new(code, format!("expected {expected}: {e}"))
    })
}

pub(super) async fn set_tally(
    State(state): State<Arc<AppState>>,
    AdminSession(session): AdminSession,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: TallyRequest = json_body(
        &state,
        body,
        r#"{"stream": NAME, "state": "on-air"|"preview"|"off"}"#,
    )?;
    session
        .handle
        .set_tally(req.stream.clone(), req.state)
        .await?;
    Ok(Json(req).into_response())
}

pub(super) async fn set_latency(
    State(state): State<Arc<AppState>>,
    AdminSession(session): AdminSession,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: LatencyRequest =
        json_body(&state, body, r#"{"stream": NAME, "latency": MILLISECONDS}"#)?;
    session
        .handle
        .set_latency(req.stream.clone(), req.latency)
        .await?;
    tracing::info!(
        session = session.id,
        stream = req.stream,
        latency = req.latency,
        "latency set by operator"
    );
    Ok(Json(req).into_response())
}

/// The `punch://` URI (on the server at `base`) of one side of a stream, with a token for
/// exactly that side.
pub(super) fn stream_uri(
    state: &AppState,
    base: &str,
    session: &AuthedSession,
    stream: &str,
    role: Role,
) -> Result<String, ApiError> {
    let token = state.key.issue(
        &session.id,
        &session.handle.nonce,
        &Scope::Stream {
            stream: stream.to_string(),
            role,
        },
    );
    PunchUri::for_server(base, &session.id, Some(stream), &token)
        .map(|u| u.to_string())
        .map_err(|e| ApiError::new(ErrorCode::Internal, e))
}

#[derive(serde::Deserialize)]
pub(super) struct ConnectQuery {
    stream: Option<String>,
}

pub(super) async fn connection_strings(
    State(state): State<Arc<AppState>>,
    AdminSession(session): AdminSession,
    query: Result<Query<ConnectQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| {
        ApiError::bad_request(format!(
            "bad query ({}); expected ?stream=NAME",
            e.body_text()
        ))
    })?;
    let coordinates = session.handle.coordinates().await?;
    let single = coordinates.len() == 1;
    let selected: Vec<_> = match &query.stream {
        Some(name) => {
            let c = coordinates
                .into_iter()
                .find(|c| &c.name == name)
                .ok_or_else(|| {
                    ApiError::with_status(
                        StatusCode::NOT_FOUND,
                        ErrorCode::UnknownStream,
                        format!("session {} has no stream {name:?}", session.id),
                    )
                })?;
            vec![c]
        }
        None => coordinates,
    };
    // The relay is on this server: the host the operator reached it by.
    let base = base_url(&state, &headers);
    let relay_host = crate::protocol::uri::server_host(&base).unwrap_or_default();
    let mut streams = std::collections::BTreeMap::new();
    let mut missing = std::collections::BTreeMap::new();
    for c in &selected {
        if c.receivers > 1 {
            missing.insert(
                c.name.clone(),
                format!(
                    "stream {} has {} receivers, each its own SRT link from the sender: connection strings cannot name them all. Run punchsink for the sender, and punchsrc (or punch peer) for each receiver",
                    c.name, c.receivers
                ),
            );
            continue;
        }
        let uris = [
            stream_uri(&state, &base, &session, &c.name, Role::Sender)?,
            stream_uri(&state, &base, &session, &c.name, Role::Receiver)?,
        ];
        match stream_strings(c, &relay_host, uris) {
            Ok(s) => {
                streams.insert(c.name.clone(), s);
            }
            Err(why) => {
                missing.insert(c.name.clone(), why);
            }
        }
    }
    if streams.is_empty() {
        let why: Vec<&str> = missing.values().map(String::as_str).collect();
        return Err(ApiError::new(ErrorCode::PeersMissing, why.join("; ")));
    }
    let top = single.then(|| streams.values().next().cloned()).flatten();
    Ok(Json(ConnectResponse {
        session: session.id.clone(),
        for_peer_a: top.as_ref().map(|s| s.for_peer_a.clone()),
        for_peer_b: top.map(|s| s.for_peer_b),
        streams,
        missing,
    })
    .into_response())
}

/// `GET /api/tunnel/{id}`: which link, and the side's ticket (from its `peer` coordinates).
#[derive(serde::Deserialize)]
pub(super) struct TunnelQuery {
    stream: String,
    role: Role,
    #[serde(default)]
    receiver: Option<u8>,
    ticket: String,
}

/// `GET /api/tunnel/{id}?stream=S&role=R[&receiver=K]&ticket=T`: the tunnel of one side without
/// UDP (`tunnel.rs`), with that side's token (or the admin token) and the ticket the server
/// gave that side.
pub(super) async fn tunnel_upgrade(
    State(state): State<Arc<AppState>>,
    session: AuthedSession,
    query: Result<Query<TunnelQuery>, axum::extract::rejection::QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| {
        ApiError::bad_request(format!(
            "bad query ({}); expected ?stream=NAME&role=sender|receiver[&receiver=N]&ticket=T",
            e.body_text()
        ))
    })?;
    let allowed = match &session.claims.scope {
        Scope::Admin => true,
        Scope::Stream { stream, role } => *stream == q.stream && *role == q.role,
        Scope::Join => false,
    };
    if !allowed {
        return Err(ApiError::with_status(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            format!(
                "this token does not hold the {} of stream {:?}",
                q.role, q.stream
            ),
        ));
    }
    let upgrade =
        upgrade.map_err(|e| ApiError::bad_request(format!("expected a WebSocket upgrade: {e}")))?;
    let max = crate::protocol::tunnel::HEADER_LEN + crate::protocol::tunnel::MAX_DATAGRAM;
    let tracker = state.sessions.tracker.clone();
    let task_state = state.clone();
    let link = crate::server::tunnel::TunnelLink {
        stream: q.stream,
        role: q.role,
        slot: q.receiver.unwrap_or(1),
    };
    let handle = session.handle;
    // refused here, with a status and a reason, rather than after the upgrade
    let opened = crate::server::tunnel::open(&state, &handle, link.clone(), q.ticket).await?;
    Ok(upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| {
            tracker.track_future(crate::server::tunnel::run(
                socket, task_state, handle, link, opened,
            ))
        }))
}

pub(super) async fn ws_upgrade(
    State(state): State<Arc<AppState>>,
    session: AuthedSession,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let AuthedSession {
        handle, claims, ip, ..
    } = session;
    let upgrade =
        upgrade.map_err(|e| ApiError::bad_request(format!("expected a WebSocket upgrade: {e}")))?;
    let limits = &state.config.limits;
    let max = limits.ws_max_message;
    let tracker = state.sessions.tracker.clone();
    let task_state = state.clone();
    Ok(upgrade
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_write_buffer_size(1024 * 1024)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| {
            tracker.track_future(ws::run(socket, task_state, handle, ip, claims.scope))
        }))
}
