//! Who is asking: the client address, the base URL links are built on, and the extractors that
//! authenticate a session route's token in one place.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};

use super::error::ApiError;
use crate::protocol::ErrorCode;
use crate::server::session::SessionHandle;
use crate::server::state::AppState;
use crate::server::token::{Claims, Scope};

/// The value of `key` in the last element of the `Forwarded` header (RFC 7239): the one our
/// trusted proxy added.
fn forwarded(headers: &HeaderMap, key: &str) -> Option<String> {
    headers
        .get_all(header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|elem| {
            elem.split(';').find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case(key)
                    .then(|| v.trim().trim_matches('"').to_string())
            })
        })
        .next_back()
}

/// The client's address: the TCP peer, or the proxy's record of it with `--trust-proxy`.
pub(crate) fn client_ip(state: &AppState, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    if state.config.trust_proxy {
        // The last hop is the one our trusted proxy added.
        let forwarded_for = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .last()
            .and_then(|v| v.trim().parse::<IpAddr>().ok());
        let forwarded = forwarded(headers, "for").and_then(|v| {
            let v = v
                .strip_prefix('[')
                .and_then(|v| v.split_once(']'))
                .map(|(ip, _)| ip)
                .unwrap_or(&v);
            v.parse::<IpAddr>()
                .ok()
                .or_else(|| v.parse::<SocketAddr>().ok().map(|s| s.ip()))
        });
        if let Some(ip) = forwarded_for.or(forwarded) {
            return ip.to_canonical();
        }
    }
    peer.ip().to_canonical()
}

/// The base URL handed out in links: `--public-url`, else what the client used to reach us.
pub(super) fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(u) = &state.config.public_url {
        return u.trim_end_matches('/').to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".:-[]".contains(c))
        })
        .map(String::from)
        .unwrap_or_else(|| state.config.listen.to_string());
    // Behind a TLS proxy the links must say https:// (and punch URIs punchs://), or tokens go
    // in clear: the proxy says so in X-Forwarded-Proto or Forwarded's proto.
    let https = state.config.tls.is_some()
        || state.config.trust_proxy
            && headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .map(|v| v.split(',').next_back().unwrap_or("").trim().to_string())
                .or_else(|| forwarded(headers, "proto"))
                .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    format!("{}://{host}", if https { "https" } else { "http" })
}

/// The token from `Authorization: Bearer`, else from `?token=` or `?t=`.
pub(super) fn token_from(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if let Some(t) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
        {
            return Some(t.trim().to_string());
        }
    }
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "token" || k == "t")
        .map(|(_, v)| v.into_owned())
}

pub(super) fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    query: Option<&str>,
    session: &str,
    ip: IpAddr,
) -> Result<Claims, ApiError> {
    let refuse = |e: ApiError| {
        tracing::info!(session, %ip, status = e.status.as_u16(), "request refused: {}", e.message);
        e
    };
    let token = token_from(headers, query).ok_or_else(|| {
        refuse(ApiError::unauthorized(
            "missing token: send `Authorization: Bearer <token>` or add `?token=<token>`",
        ))
    })?;
    state.key.verify(&token).ok_or_else(|| {
        refuse(ApiError::unauthorized(
            "invalid token (forged, truncated, or issued by another server)",
        ))
    })
}

/// A request on one session, authenticated: its task, the token's claims, the client address.
/// Every session route takes this (or [`AdminSession`]), so auth is checked in one place.
pub(super) struct AuthedSession {
    /// The session's name, from the path.
    pub(super) id: String,
    pub(super) handle: SessionHandle,
    /// What the token allows.
    pub(super) claims: Claims,
    /// The client's address (for logs and per-client limits).
    pub(super) ip: IpAddr,
}

impl FromRequestParts<Arc<AppState>> for AuthedSession {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("invalid session in the path: {e}")))?;
        let id = params.get("id").cloned().unwrap_or_default();
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
            .ok_or_else(|| ApiError::new(ErrorCode::Internal, "no client address"))?;
        let ip = client_ip(state, peer, &parts.headers);
        let claims = authenticate(state, &parts.headers, parts.uri.query(), &id, ip)?;
        let handle = state.registry.lookup(&id, &claims).inspect_err(|e| {
            tracing::info!(session = id, %ip, code = %e.code, "request refused: {}", e.message);
        })?;
        Ok(AuthedSession {
            id,
            handle,
            claims,
            ip,
        })
    }
}

/// An [`AuthedSession`] whose token is the session's admin token.
pub(super) struct AdminSession(pub(super) AuthedSession);

impl FromRequestParts<Arc<AppState>> for AdminSession {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let session = AuthedSession::from_request_parts(parts, state).await?;
        if session.claims.scope != Scope::Admin {
            tracing::info!(session = session.id, ip = %session.ip, "request refused: stream token on an admin route");
            return Err(ApiError::forbidden(
                "this needs the session's admin token; a stream token was given",
            ));
        }
        Ok(AdminSession(session))
    }
}

/// The `{stream}/{role}` of a route on one side of a stream, with an error a person can act on
/// (a path that does not decode is a JSON 400 like every other error).
pub(super) fn side_path(
    path: Result<
        axum::extract::Path<(String, String, String)>,
        axum::extract::rejection::PathRejection,
    >,
) -> Result<(String, crate::protocol::Role), ApiError> {
    let axum::extract::Path((_, stream, role)) =
        path.map_err(|e| ApiError::bad_request(format!("bad path: {}", e.body_text())))?;
    let role = crate::protocol::Role::parse(&role).ok_or_else(|| {
        ApiError::new(
            crate::protocol::ErrorCode::NotFound,
            format!("{role:?} is not a side of a stream; use sender or receiver"),
        )
    })?;
    Ok((stream, role))
}
