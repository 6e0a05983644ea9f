//! HTTP routes. Every error is `{"error": {"code", "message"}}` with a meaningful status.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, FromRequestParts, Path, Query, RawQuery, State,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::{Map, Value, json};
use std::sync::atomic::Ordering;

use super::connect::stream_strings;
use super::error::ApiError;
use super::session::{self, SessionHandle};
use super::store::{SessionRecord, StoreOp, StreamRecord};
use super::token::{Claims, Scope};
use super::ui;
use super::{AppState, now_ms, ws};
use crate::protocol::{
    ConnectResponse, CreatedSession, DEFAULT_LATENCY_MS, DEFAULT_PBKEYLEN, DEFAULT_STREAM,
    ErrorCode, LatencyRequest, MAX_LABEL_LEN, MAX_LATENCY_MS, MIN_LATENCY_MS, Role, SessionState,
    StreamSpec, StreamTokens, TallyRequest, uri::PunchUri, validate_name,
};

pub fn router(state: Arc<AppState>) -> Router {
    let body_limit = state.config.limits.http_max_body;
    Router::new()
        .route("/api/session", post(create_session))
        .route("/api/session/{id}", get(get_session).delete(delete_session))
        .route("/api/session/{id}/tally", post(set_tally))
        .route("/api/session/{id}/latency", post(set_latency))
        .route("/api/session/{id}/connect", get(connection_strings))
        .route("/api/ws/{id}", get(ws_upgrade))
        .route("/s/{id}", get(dashboard))
        .route("/s/{id}/qr", get(session_qr))
        .route("/s/{id}/qr/{stream}/{role}", get(stream_qr))
        .route("/ui/{file}", get(ui::asset))
        .route("/favicon.ico", get(ui::favicon))
        .route("/healthz", get(healthz))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::MethodNotAllowed,
                "method not allowed on this endpoint",
            )
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// Per-client-IP token bucket for session creation.
#[derive(Default)]
pub struct CreateLimiter {
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl CreateLimiter {
    fn allow(&self, ip: IpAddr, per_minute: u32) -> bool {
        if per_minute == 0 {
            return true;
        }
        let burst = f64::from(per_minute);
        let rate = burst / 60.0;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap();
        if buckets.len() > 10_000 {
            // forget clients whose bucket has refilled anyway
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = buckets.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The client's address: the TCP peer, or the proxy's record of it with `--trust-proxy`.
fn client_ip(state: &AppState, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    if state.config.trust_proxy {
        // The last hop is the one our trusted proxy added.
        let forwarded_for = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .last()
            .and_then(|v| v.trim().parse::<IpAddr>().ok());
        let forwarded = headers
            .get_all(header::FORWARDED)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|elem| {
                elem.split(';').find_map(|pair| {
                    let (k, v) = pair.trim().split_once('=')?;
                    if !k.eq_ignore_ascii_case("for") {
                        return None;
                    }
                    let v = v.trim_matches('"');
                    let v = v
                        .strip_prefix('[')
                        .and_then(|v| v.split_once(']'))
                        .map(|(ip, _)| ip)
                        .unwrap_or(v);
                    v.parse::<IpAddr>()
                        .ok()
                        .or_else(|| v.parse::<SocketAddr>().ok().map(|s| s.ip()))
                })
            })
            .next_back();
        if let Some(ip) = forwarded_for.or(forwarded) {
            return ip.to_canonical();
        }
    }
    peer.ip().to_canonical()
}

/// The base URL handed out in links: `--public-url`, else what the client used to reach us.
fn base_url(state: &AppState, headers: &HeaderMap) -> String {
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
    let https = state.config.trust_proxy
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            == Some("https");
    format!("{}://{host}", if https { "https" } else { "http" })
}

/// The token from `Authorization: Bearer`, else from `?token=` or `?t=`.
fn token_from(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
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

fn authenticate(
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
struct AuthedSession {
    id: String,
    handle: SessionHandle,
    claims: Claims,
    ip: IpAddr,
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
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::Internal,
                    "no client address",
                )
            })?;
        let ip = client_ip(state, peer, &parts.headers);
        let claims = authenticate(state, &parts.headers, parts.uri.query(), &id, ip)?;
        let handle = state.registry.lookup(&id, &claims).inspect_err(|e| {
            tracing::info!(session = id, %ip, status = e.status.as_u16(), "request refused: {}", e.message);
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
struct AdminSession(AuthedSession);

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

/// The request body, with 413 for an oversize one.
fn body_bytes(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::TooLarge,
                format!("request body is larger than {limit} bytes"),
            )
        } else {
            ApiError::bad_request(format!("cannot read the request body: {e}"))
        }
    })
}

fn random_string(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// POST /api/session

#[derive(Debug)]
struct CreateRequest {
    name: Option<String>,
    streams: Vec<(String, StreamSpec)>,
    latency: u32,
    ttl: u64,
    pbkeylen: u8,
}

fn integer_in(
    obj: &Map<String, Value>,
    key: &str,
    min: u64,
    max: u64,
    unit: &str,
) -> Result<Option<u64>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::bad_request(format!(
                "{key} must be a whole number of {unit} between {min} and {max}, got {v}"
            ))),
        },
    }
}

fn label_field(
    obj: &Map<String, Value>,
    key: &str,
    stream: &str,
) -> Result<Option<String>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= MAX_LABEL_LEN => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(ApiError::bad_request(format!(
            "streams.{stream}.{key} is longer than {MAX_LABEL_LEN} characters"
        ))),
        Some(v) => Err(ApiError::bad_request(format!(
            "streams.{stream}.{key} must be a string, got {v}"
        ))),
    }
}

fn parse_create(body: &[u8], state: &AppState) -> Result<CreateRequest, ApiError> {
    let limits = &state.config.limits;
    let value: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidJson,
                format!("request body is not valid JSON: {e}"),
            )
        })?
    };
    let Value::Object(obj) = value else {
        return Err(ApiError::bad_request("request body must be a JSON object"));
    };
    const FIELDS: [&str; 5] = ["name", "streams", "latency", "ttl", "pbkeylen"];
    if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "unknown field {unknown:?}; expected one of {}",
            FIELDS.join(", ")
        )));
    }
    let name = match obj.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            validate_name("session", s).map_err(ApiError::bad_request)?;
            Some(s.clone())
        }
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "name must be a string, got {v}"
            )));
        }
    };
    let streams: Vec<(String, StreamSpec)> = match obj.get("streams") {
        None | Some(Value::Null) => vec![(DEFAULT_STREAM.to_string(), StreamSpec::default())],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok((s.clone(), StreamSpec::default())),
                other => Err(ApiError::bad_request(format!(
                    "streams must be a list of names, found {other}"
                ))),
            })
            .collect::<Result<_, _>>()?,
        Some(Value::Object(map)) => map
            .iter()
            .map(|(name, spec)| {
                let spec = match spec {
                    Value::Null => StreamSpec::default(),
                    Value::Object(o) => {
                        if let Some(k) = o
                            .keys()
                            .find(|k| !["label", "role", "audio"].contains(&k.as_str()))
                        {
                            return Err(ApiError::bad_request(format!(
                                "unknown field {k:?} in streams.{name}; expected label, role, audio"
                            )));
                        }
                        StreamSpec {
                            label: label_field(o, "label", name)?,
                            role: label_field(o, "role", name)?,
                            audio: label_field(o, "audio", name)?,
                        }
                    }
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "streams.{name} must be an object with label, role, audio; got {other}"
                        )));
                    }
                };
                Ok((name.clone(), spec))
            })
            .collect::<Result<_, _>>()?,
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "streams must be a list of names or a map of name to {{label, role, audio}}, got {v}"
            )));
        }
    };
    if streams.is_empty() {
        return Err(ApiError::bad_request(
            "streams must name at least one stream",
        ));
    }
    if streams.len() > limits.max_streams {
        return Err(ApiError::bad_request(format!(
            "a session holds at most {} streams",
            limits.max_streams
        )));
    }
    for (i, (name, _)) in streams.iter().enumerate() {
        validate_name("stream", name).map_err(ApiError::bad_request)?;
        if streams[..i].iter().any(|(n, _)| n == name) {
            return Err(ApiError::bad_request(format!(
                "stream {name:?} is listed twice"
            )));
        }
    }
    let latency = integer_in(
        &obj,
        "latency",
        MIN_LATENCY_MS.into(),
        MAX_LATENCY_MS.into(),
        "milliseconds",
    )?
    .map_or(DEFAULT_LATENCY_MS, |v| v as u32);
    let ttl = integer_in(&obj, "ttl", 1, limits.max_ttl_s, "seconds")?
        .unwrap_or(state.config.default_ttl_s);
    let pbkeylen = match integer_in(&obj, "pbkeylen", 16, 32, "bytes")? {
        None => DEFAULT_PBKEYLEN,
        Some(n @ (16 | 24 | 32)) => n as u8,
        Some(n) => {
            return Err(ApiError::bad_request(format!(
                "pbkeylen must be 16, 24 or 32, got {n}"
            )));
        }
    };
    Ok(CreateRequest {
        name,
        streams,
        latency,
        ttl,
        pbkeylen,
    })
}

async fn create_session(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<CreatedSession>), ApiError> {
    let ip = client_ip(&state, peer, &headers);
    if !state
        .create_limiter
        .allow(ip, state.config.limits.creates_per_minute)
    {
        tracing::info!(%ip, "session creation refused: rate limit");
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            format!(
                "too many sessions created from {ip}; at most {} per minute",
                state.config.limits.creates_per_minute
            ),
        ));
    }
    let body = body_bytes(body, state.config.limits.http_max_body)?;
    let req = parse_create(&body, &state)?;
    let now = now_ms();
    let mut attempt = 0;
    let (handle, rec) = loop {
        let name = req
            .name
            .clone()
            .unwrap_or_else(|| format!("punch-{}", random_string(8).to_ascii_lowercase()));
        let rec = SessionRecord {
            name,
            nonce: random_string(12),
            created_ms: now,
            ttl_s: req.ttl,
            latency: req.latency,
            pbkeylen: req.pbkeylen,
            last_activity_ms: now,
            streams: req
                .streams
                .iter()
                .map(|(name, spec)| StreamRecord {
                    name: name.clone(),
                    label: spec.label.clone(),
                    role: spec.role.clone(),
                    audio: spec.audio.clone(),
                    passphrase: random_string(32),
                    latency: req.latency,
                    tally: Default::default(),
                    sender: None,
                    receiver: None,
                })
                .collect(),
        };
        let handle = session::spawn(rec.clone(), state.sessions.clone());
        match state
            .registry
            .insert(handle.clone(), state.config.limits.max_sessions)
        {
            Ok(()) => break (handle, rec),
            Err(e) if e.status == StatusCode::CONFLICT && req.name.is_none() && attempt < 5 => {
                attempt += 1
            }
            Err(e) => return Err(e),
        }
    };
    if let Err(e) = state
        .sessions
        .store
        .commit(|ack| StoreOp::Create(Box::new(rec.clone()), ack))
        .await
    {
        state.registry.remove(&rec.name);
        tracing::error!(session = rec.name, "cannot store a new session: {e}");
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Storage,
            "the session could not be saved",
        ));
    }
    drop(handle);

    let key = &state.key;
    let token = key.issue(&rec.name, &rec.nonce, &Scope::Admin);
    let mut stream_tokens = std::collections::BTreeMap::new();
    for s in &rec.streams {
        let scoped = |role| {
            key.issue(
                &rec.name,
                &rec.nonce,
                &Scope::Stream {
                    stream: s.name.clone(),
                    role,
                },
            )
        };
        stream_tokens.insert(
            s.name.clone(),
            StreamTokens {
                sender: scoped(Role::Sender),
                receiver: scoped(Role::Receiver),
            },
        );
    }
    let base = base_url(&state, &headers);
    tracing::info!(session = rec.name, streams = rec.streams.len(), client = %ip, "session created");
    let created = CreatedSession {
        url: format!("{base}/s/{}?t={token}", rec.name),
        qr: format!("{base}/s/{}/qr?t={token}", rec.name),
        session: rec.name.clone(),
        token,
        streams: rec.streams.iter().map(|s| s.name.clone()).collect(),
        latency: rec.latency,
        ttl: rec.ttl_s,
        state: SessionState::Waiting,
        created: super::format_time(rec.created_ms),
        stream_tokens,
    };
    Ok((StatusCode::CREATED, Json(created)))
}

// ---------------------------------------------------------------------------------------------
// Other routes

async fn get_session(session: AuthedSession) -> Result<Response, ApiError> {
    Ok(Json(session.handle.view().await?).into_response())
}

async fn delete_session(AdminSession(session): AdminSession) -> Result<Response, ApiError> {
    session.handle.close("closed by operator").await?;
    tracing::info!(session = session.id, client = %session.ip, "session closed by operator");
    Ok(Json(json!({ "session": session.id, "state": SessionState::Closed })).into_response())
}

/// A JSON request body of type `T`; the error shows the `expected` form.
fn json_body<T: serde::de::DeserializeOwned>(
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
        ApiError::new(
            StatusCode::BAD_REQUEST,
            code,
            format!("expected {expected}: {e}"),
        )
    })
}

async fn set_tally(
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
    Ok(Json(json!({ "stream": req.stream, "state": req.state })).into_response())
}

async fn set_latency(
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
    Ok(Json(json!({ "stream": req.stream, "latency": req.latency })).into_response())
}

/// The `punch://` URI (on the server at `base`) of one side of a stream, with a token for
/// exactly that side.
fn stream_uri(
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
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, e))
}

#[derive(serde::Deserialize)]
struct ConnectQuery {
    stream: Option<String>,
}

async fn connection_strings(
    State(state): State<Arc<AppState>>,
    AdminSession(session): AdminSession,
    Query(query): Query<ConnectQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let coordinates = session.handle.coordinates().await?;
    let single = coordinates.len() == 1;
    let selected: Vec<_> = match &query.stream {
        Some(name) => {
            let c = coordinates
                .into_iter()
                .find(|c| &c.name == name)
                .ok_or_else(|| {
                    ApiError::new(
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
    let relay_host = crate::client::server_host(&base).unwrap_or_default();
    let mut streams = std::collections::BTreeMap::new();
    let mut missing = std::collections::BTreeMap::new();
    for c in &selected {
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
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::PeersMissing,
            why.join("; "),
        ));
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

/// `GET /s/:id?t=ADMIN`: the operator dashboard, or a page saying why not.
async fn dashboard(session: Result<AdminSession, ApiError>) -> Response {
    let view = match session {
        Ok(AdminSession(session)) => session.handle.view().await,
        Err(e) => Err(e),
    };
    match view {
        Ok(view) => ui::dashboard(&view),
        Err(e) => ui::error_page(&e),
    }
}

async fn ws_upgrade(
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

/// An SVG image response of a QR code of `data`, with the UI headers.
fn qr_response(data: &str) -> Result<Response, ApiError> {
    let svg = qr_svg(data)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Qr, e))?;
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
async fn session_qr(
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
async fn stream_qr(
    State(state): State<Arc<AppState>>,
    AdminSession(session): AdminSession,
    Path((_, stream, role)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let role = Role::parse(&role).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("{role:?} is not a side of a stream; use sender or receiver"),
        )
    })?;
    let known = session.handle.coordinates().await?;
    if !known.iter().any(|c| c.name == stream) {
        return Err(ApiError::new(
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

async fn healthz(State(state): State<Arc<AppState>>) -> Json<Value> {
    let relay = &state.relay.stats;
    Json(json!({
        "status": "ok",
        "sessions": state.registry.len(),
        "connections": state.stats.connections.load(Ordering::Relaxed),
        "messages": state.stats.messages.load(Ordering::Relaxed),
        "stun": state.stun_ports,
        "stun_requests": state.stats.stun_requests.load(Ordering::Relaxed),
        "relays": relay.active.load(Ordering::Relaxed),
        "relay_packets": relay.packets.load(Ordering::Relaxed),
        "relay_bytes": relay.bytes.load(Ordering::Relaxed),
        "relay_dropped": relay.dropped.load(Ordering::Relaxed),
    }))
}
