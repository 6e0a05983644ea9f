//! `POST /api/session`: the request as users write it (every field checked with a message that
//! says what is wrong), the new session's record, its task, its tokens.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::{Map, Value};

use super::auth::{base_url, client_ip, token_from};
use super::body_bytes;
use super::error::ApiError;
use crate::protocol::{
    CreatedSession, DEFAULT_LATENCY_MS, DEFAULT_PBKEYLEN, DEFAULT_STREAM, DeviceMode, ErrorCode,
    MAX_LABEL_LEN, MAX_LATENCY_MS, MIN_LATENCY_MS, Role, SessionState, SideSpec, StreamSpec,
    StreamTokens, uri::server_host, validate_name,
};
use crate::server::limit::client_key;
use crate::server::session::model::{DeviceSide, SessionRecord, StreamRecord, link_name};
use crate::server::session::persist::StoreOp;
use crate::server::session::{self, check_pair, device_side};
use crate::server::state::AppState;
use crate::server::time::{format_time, now_ms};
use crate::server::token::Scope;

#[derive(Debug)]
struct CreateRequest {
    name: Option<String>,
    streams: Vec<(String, StreamSpec)>,
    /// Per stream, `[sender, receiver]` devices (checked).
    devices: Vec<[Option<DeviceSide>; 2]>,
    latency: u32,
    ttl: u64,
    pbkeylen: u8,
    /// Issue a join token (the waiting room).
    join: bool,
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

/// The fields of the body (`protocol::CreateRequest` says what each is).
const FIELDS: [&str; 6] = ["name", "streams", "latency", "ttl", "pbkeylen", "join"];
/// The fields of one stream's settings (`protocol::StreamSpec`).
const STREAM_FIELDS: [&str; 6] = ["label", "role", "audio", "sender", "receiver", "receivers"];

fn parse_create(body: &[u8], state: &AppState) -> Result<CreateRequest, ApiError> {
    let limits = &state.config.limits;
    let value: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidJson,
                format!("request body is not valid JSON: {e}"),
            )
        })?
    };
    let Value::Object(obj) = value else {
        return Err(ApiError::bad_request("request body must be a JSON object"));
    };
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
                        if let Some(k) = o.keys().find(|k| !STREAM_FIELDS.contains(&k.as_str())) {
                            return Err(ApiError::bad_request(format!(
                                "unknown field {k:?} in streams.{name}; expected {}",
                                STREAM_FIELDS.join(", ")
                            )));
                        }
                        let side = |field: &str| -> Result<Option<SideSpec>, ApiError> {
                            match o.get(field) {
                                None | Some(Value::Null) => Ok(None),
                                Some(v) => serde_json::from_value(v.clone()).map(Some).map_err(|e| {
                                    ApiError::bad_request(format!(
                                        "streams.{name}.{field}: {e} (expected {{\"device\": \"caller\" | \"listener\" | \"rendezvous\", \"address\": \"ip:port\", \"streamid\": true | false}})"
                                    ))
                                }),
                            }
                        };
                        StreamSpec {
                            label: label_field(o, "label", name)?,
                            role: label_field(o, "role", name)?,
                            audio: label_field(o, "audio", name)?,
                            sender: side("sender")?,
                            receiver: side("receiver")?,
                            receivers: integer_in(
                                o,
                                "receivers",
                                1,
                                limits.max_receivers as u64,
                                "receivers",
                            )
                            .map_err(|e| {
                                ApiError::bad_request(format!("streams.{name}.{}", e.message))
                            })?
                            .map(|n| n as u8),
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
    let mut devices = Vec::with_capacity(streams.len());
    for (i, (name, spec)) in streams.iter().enumerate() {
        validate_name("stream", name).map_err(ApiError::bad_request)?;
        if streams[..i].iter().any(|(n, _)| n == name) {
            return Err(ApiError::bad_request(format!(
                "stream {name:?} is listed twice"
            )));
        }
        let side = |role: &str, spec: &Option<SideSpec>| {
            let spec = spec.clone().unwrap_or_default();
            device_side(&spec, None, random_string(20))
                .map_err(|e| ApiError::bad_request(format!("streams.{name}.{role}: {e}")))
        };
        let pair = [
            side("sender", &spec.sender)?,
            side("receiver", &spec.receiver)?,
        ];
        for (role, d) in ["sender", "receiver"].iter().zip(&pair) {
            if d.as_ref().is_some_and(|d| d.mode == DeviceMode::Caller) && !state.config.path.relay
            {
                return Err(ApiError::bad_request(format!(
                    "streams.{name}.{role}: this server does not relay (--no-relay), and a caller device calls the relay: make it a listener device or hold the side with a Punch peer"
                )));
            }
        }
        check_pair(&pair).map_err(|e| ApiError::bad_request(format!("streams.{name}: {e}")))?;
        if spec.receivers.unwrap_or(1) > 1 && pair.iter().any(Option::is_some) {
            return Err(ApiError::bad_request(format!(
                "streams.{name}: a stream with several receivers is sent and received by Punch peers; give a device its own stream"
            )));
        }
        devices.push(pair);
    }
    let slots: usize = streams
        .iter()
        .map(|(_, s)| usize::from(s.receivers.unwrap_or(1)))
        .sum();
    if slots > limits.max_streams {
        return Err(ApiError::bad_request(format!(
            "a session holds at most {} receivers over all its streams (each is its own SRT link); these streams have {slots}",
            limits.max_streams
        )));
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
    let join = match obj.get("join") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "join must be true or false, got {v}"
            )));
        }
    };
    Ok(CreateRequest {
        name,
        streams,
        devices,
        latency,
        ttl,
        pbkeylen,
        join,
    })
}

pub(super) async fn create_session(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<CreatedSession>), ApiError> {
    let ip = client_ip(&state, peer, &headers);
    let creator = client_key(ip);
    // Counted first: every attempt, a wrong create key included, so keys cannot be guessed
    // faster than sessions can be created.
    if !state.create_limiter.allow(creator) {
        tracing::info!(%ip, "session creation refused: rate limit");
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "too many sessions created from {ip}; at most {} per minute",
                state.config.limits.creates_per_minute
            ),
        ));
    }
    if let Some(key) = &state.config.create_key {
        let given = token_from(&headers, None).unwrap_or_default();
        if !state.key.same_secret(&given, key) {
            tracing::info!(%ip, "session creation refused: no or wrong create key");
            return Err(ApiError::unauthorized(
                "this server needs its create key to create sessions: send `Authorization: Bearer <create key>` (punch session create --create-key, or PUNCH_CREATE_KEY)",
            ));
        }
    }
    let body = body_bytes(body, state.config.limits.http_max_body)?;
    let req = parse_create(&body, &state)?;
    let now = now_ms();
    // several nodes: a name another node serves is taken too
    if let (Some(cluster), Some(name)) = (&state.cluster, &req.name)
        && !state.registry.is_live(name)
    {
        match cluster.exists(name).await {
            Ok(false) => {}
            Ok(true) => {
                return Err(ApiError::new(
                    ErrorCode::SessionExists,
                    format!("a session named {name} already exists; choose another name"),
                ));
            }
            Err(e) => {
                return Err(ApiError::new(
                    ErrorCode::Storage,
                    format!("cannot check the name {name} in the database ({e}); try again"),
                ));
            }
        }
    }
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
            creator: Some(creator),
            public_host: server_host(&base_url(&state, &headers)),
            join: req.join,
            streams: req
                .streams
                .iter()
                .zip(&req.devices)
                .flat_map(|((name, spec), devices)| {
                    // one record per receiver slot, all with the stream's passphrase
                    let passphrase = random_string(32);
                    (1..=spec.receivers.unwrap_or(1)).map(move |slot| StreamRecord {
                        name: link_name(name, slot),
                        label: spec.label.clone(),
                        role: spec.role.clone(),
                        audio: spec.audio.clone(),
                        passphrase: passphrase.clone(),
                        latency: req.latency,
                        tally: Default::default(),
                        sender: None,
                        receiver: None,
                        devices: devices.clone(),
                    })
                })
                .collect(),
        };
        let handle = session::spawn(rec.clone(), state.sessions.clone());
        match state.registry.insert(
            handle.clone(),
            state.config.limits.max_sessions,
            state.config.limits.sessions_per_ip,
        ) {
            Ok(()) => break (handle, rec),
            Err(e) if e.code == ErrorCode::SessionExists && req.name.is_none() && attempt < 5 => {
                attempt += 1
            }
            Err(e) => return Err(e.into()),
        }
    };
    if let Err(e) = state
        .sessions
        .store
        .commit(StoreOp::Create(Box::new(rec.clone())))
        .await
    {
        state.registry.remove(&rec.name);
        tracing::error!(session = rec.name, "cannot store a new session: {e}");
        return Err(ApiError::new(
            ErrorCode::Storage,
            format!("the session could not be saved ({e}); it was not created, try again"),
        ));
    }
    drop(handle);

    let key = &state.key;
    let token = key.issue(&rec.name, &rec.nonce, &Scope::Admin);
    let mut stream_tokens = std::collections::BTreeMap::new();
    for s in rec.streams.iter().filter(|s| s.slot() == 1) {
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
        streams: req.streams.iter().map(|(name, _)| name.clone()).collect(),
        latency: rec.latency,
        ttl: rec.ttl_s,
        state: SessionState::Waiting,
        created: format_time(rec.created_ms),
        stream_tokens,
        join_token: req
            .join
            .then(|| key.issue(&rec.name, &rec.nonce, &Scope::Join)),
    };
    Ok((StatusCode::CREATED, Json(created)))
}

pub(super) fn random_string(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{FIELDS, STREAM_FIELDS};

    /// The fields this parser takes are those of the protocol types the spec is made from.
    #[test]
    fn the_parser_takes_the_fields_of_the_spec_types() {
        let props = |schema: schemars::Schema| -> Vec<String> {
            let mut keys: Vec<String> = schema.as_value()["properties"]
                .as_object()
                .expect("an object schema")
                .keys()
                .cloned()
                .collect();
            keys.sort();
            keys
        };
        let sorted = |f: &[&str]| {
            let mut v: Vec<String> = f.iter().map(|s| s.to_string()).collect();
            v.sort();
            v
        };
        assert_eq!(
            props(schemars::schema_for!(crate::protocol::CreateRequest)),
            sorted(&FIELDS)
        );
        assert_eq!(
            props(schemars::schema_for!(crate::protocol::StreamSpec)),
            sorted(&STREAM_FIELDS)
        );
    }
}
