//! HTTP routes. Every error is `{"error": {"code", "message"}}` with a meaningful status.
//!
//! * `auth.rs`: client address, base URL, the authenticated-session extractors.
//! * `create.rs`: `POST /api/session`.
//! * `sessions.rs`: the routes on one session and the WebSocket upgrade.
//! * `ui_routes.rs`: the create page, the dashboard and QR codes.
//! * `error.rs`: [`ApiError`] and the one mapping from error codes to HTTP statuses.

mod auth;
mod create;
mod devices;
mod error;
mod sessions;
mod ui_routes;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};

pub(crate) use auth::client_ip;
pub use error::ApiError;
pub use ui_routes::qr_svg;

use super::listener::BodyTimeout;
use super::state::AppState;
use super::ui;
use crate::protocol::{ErrorCode, ServerHealth};
use create::create_session;
use sessions::{
    connection_strings, delete_session, get_session, set_latency, set_tally, ws_upgrade,
};
use ui_routes::{create_page, dashboard, session_qr, stream_qr};

pub fn router(state: Arc<AppState>) -> Router {
    let body_limit = state.config.limits.http_max_body;
    // `/metrics` here unless it has a listener of its own (`--metrics-listen`)
    let metrics_here = state.config.metrics_listen.is_none();
    let router = Router::new();
    let router = if metrics_here {
        router.route("/metrics", get(metrics))
    } else {
        router
    };
    router
        .route("/", get(create_page))
        .route("/api/session", post(create_session))
        .route("/api/session/{id}", get(get_session).delete(delete_session))
        .route("/api/session/{id}/tally", post(set_tally))
        .route("/api/session/{id}/latency", post(set_latency))
        .route("/api/session/{id}/cue", post(devices::send_cue))
        .route("/api/session/{id}/admission", post(devices::admission))
        .route(
            "/api/session/{id}/stream/{stream}/{role}",
            put(devices::set_side).patch(devices::set_side),
        )
        .route("/api/session/{id}/connect", get(connection_strings))
        .route("/api/ws/{id}", get(ws_upgrade))
        .route("/api/tunnel/{id}", get(sessions::tunnel_upgrade))
        .route("/s/{id}", get(dashboard))
        .route("/s/{id}/qr", get(session_qr))
        .route("/s/{id}/qr/{stream}/{role}", get(stream_qr))
        .route("/s/{id}/join-qr", get(ui_routes::join_qr))
        .route("/j/{id}", get(ui_routes::operator_page))
        .route("/j/{id}/qr", get(ui_routes::operator_qr))
        .route("/ui/{file}", get(ui::asset))
        .route("/favicon.ico", get(ui::favicon))
        .route("/healthz", get(healthz))
        .route("/api/openapi.json", get(openapi))
        .route("/api/schema/messages.json", get(message_schema))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                "method not allowed on this endpoint",
            )
        })
        .layer(DefaultBodyLimit::max(body_limit))
        // several nodes: a session served elsewhere is forwarded there (or taken over)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::server::cluster::route,
        ))
        .layer(axum::middleware::map_response_with_state(
            state.clone(),
            count_refusal,
        ))
        .with_state(state)
}

/// Every error answer counts in the refusals metric by its code (`ApiError` marks it).
async fn count_refusal(
    State(state): State<Arc<AppState>>,
    resp: axum::response::Response,
) -> axum::response::Response {
    if let Some(code) = resp.extensions().get::<ErrorCode>() {
        state.metrics.refused(*code);
    }
    resp
}

/// The request body, with 413 for an oversize one.
fn body_bytes(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorCode::TooLarge,
                format!("request body is larger than {limit} bytes"),
            )
        } else if let Some(timeout) = find_source::<BodyTimeout>(&e) {
            ApiError::new(ErrorCode::Timeout, timeout.to_string())
        } else {
            ApiError::bad_request(format!("cannot read the request body: {e}"))
        }
    })
}

/// The first error of type `T` in `e`'s chain of sources.
fn find_source<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut at = Some(e);
    while let Some(e) = at {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        at = e.source();
    }
    None
}

/// The `--metrics-listen` listener's routes: `/metrics` only.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found("only /metrics is served here") })
        .with_state(state)
}

/// `GET /api/openapi.json`: the generated OpenAPI document (`spec.rs`).
async fn openapi() -> impl axum::response::IntoResponse {
    static DOC: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| super::spec::openapi().to_string());
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        DOC.as_str(),
    )
}

/// `GET /api/schema/messages.json`: the generated JSON Schema of the WebSocket messages.
async fn message_schema() -> impl axum::response::IntoResponse {
    static DOC: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| super::spec::messages().to_string());
    (
        [(axum::http::header::CONTENT_TYPE, "application/schema+json")],
        DOC.as_str(),
    )
}

/// `GET /metrics`: the Prometheus text exposition (`metrics.rs`).
async fn metrics(State(state): State<Arc<AppState>>) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&state),
    )
}

async fn healthz(State(state): State<Arc<AppState>>) -> Json<ServerHealth> {
    let relay = &state.relay.stats;
    Json(ServerHealth {
        status: "ok".into(),
        sessions: state.registry.len(),
        connections: state.stats.connections.load(Ordering::Relaxed),
        messages: state.stats.messages.load(Ordering::Relaxed),
        stun: state.stun_ports,
        stun_requests: state.stats.stun.answered.load(Ordering::Relaxed),
        stun_limited: state.stats.stun.limited.load(Ordering::Relaxed),
        relays: relay.active.load(Ordering::Relaxed),
        relay_packets: relay.packets.load(Ordering::Relaxed),
        relay_bytes: relay.bytes.load(Ordering::Relaxed),
        relay_dropped: relay.dropped.load(Ordering::Relaxed),
        relay_strangers: relay.strangers.load(Ordering::Relaxed),
    })
}
