//! The routes that say who holds a side (a Punch peer, an SRT device, a peer from the waiting
//! room) and send cues.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::auth::{AdminSession, base_url};
use super::create::random_string;
use super::error::ApiError;
use super::sessions::json_body;
use crate::protocol::AdmissionAnswer;
use crate::protocol::{AdmissionRequest, CueRequest, SideSpec, uri::server_host};
use crate::server::session::AdmitTo;
use crate::server::state::AppState;
use crate::server::token::Scope;

/// `PUT /api/session/:id/stream/:stream/:role`: who holds that side from now on.
pub(super) async fn set_side(
    State(state): State<Arc<AppState>>,
    AdminSession(session): AdminSession,
    path: Result<Path<(String, String, String)>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (stream, role) = super::auth::side_path(path)?;
    let spec: SideSpec = json_body(
        &state,
        body,
        r#"{"device": "caller"|"listener"|"rendezvous"|null, "address": "IP:PORT" (listener), "streamid": true|false (caller)}"#,
    )?;
    let host = server_host(&base_url(&state, &headers));
    session
        .handle
        .set_side(stream.clone(), role, spec.clone(), random_string(20), host)
        .await?;
    tracing::info!(
        session = session.id,
        stream,
        %role,
        device = spec.device.map_or("punch peer", |d| d.as_str()),
        "side changed by operator"
    );
    let view = session.handle.view(&session.claims.scope).await?;
    Ok(Json(view).into_response())
}

/// `POST /api/session/:id/cue`.
pub(super) async fn send_cue(
    State(state): State<Arc<AppState>>,
    AdminSession(session): AdminSession,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: CueRequest = json_body(
        &state,
        body,
        r#"{"stream": NAME, "role": "sender"|"receiver" (optional), "text": TEXT}"#,
    )?;
    session
        .handle
        .cue(req.stream.clone(), req.role, req.text.clone())
        .await?;
    Ok(Json(CueRequest {
        text: req.text.trim().to_string(),
        ..req
    })
    .into_response())
}

/// `POST /api/session/:id/admission`: a waiting peer gets a side, or is turned down.
pub(super) async fn admission(
    State(state): State<Arc<AppState>>,
    AdminSession(session): AdminSession,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: AdmissionRequest = json_body(
        &state,
        body,
        r#"{"peer": NAME, "stream": NAME, "role": "sender"|"receiver", "create": true|false} or {"peer": NAME, "reject": true}"#,
    )?;
    if req.reject {
        if req.stream.is_some() || req.role.is_some() || req.create {
            return Err(ApiError::bad_request(
                "a rejection takes only `peer` and `reject`",
            ));
        }
        session.handle.admission(req.peer.clone(), None).await?;
        tracing::info!(
            session = session.id,
            peer = req.peer,
            "waiting peer rejected"
        );
        return Ok(Json(AdmissionAnswer {
            peer: req.peer,
            stream: None,
            role: None,
            rejected: true,
        })
        .into_response());
    }
    let Some(stream) = req.stream.clone() else {
        return Err(ApiError::bad_request(
            "an admission needs `stream` (and optionally `role`: the side it asked for), or `reject: true`",
        ));
    };
    let role = match req.role {
        Some(role) => role,
        None => session.handle.waiting_role(req.peer.clone()).await?,
    };
    let scope = Scope::Stream {
        stream: stream.clone(),
        role,
    };
    let token = state.key.issue(&session.id, &session.handle.nonce, &scope);
    let create = req
        .create
        .then(|| (random_string(32), state.config.limits.max_streams));
    session
        .handle
        .admission(
            req.peer.clone(),
            Some(AdmitTo {
                stream: stream.clone(),
                role,
                token,
                create,
            }),
        )
        .await?;
    tracing::info!(session = session.id, peer = req.peer, stream, %role, "waiting peer admitted");
    Ok(Json(AdmissionAnswer {
        peer: req.peer,
        stream: Some(stream),
        role: Some(role),
        rejected: false,
    })
    .into_response())
}
