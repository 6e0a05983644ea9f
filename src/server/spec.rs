//! The protocol's machine-readable spec, generated from the Rust types so that it cannot drift:
//! an OpenAPI 3.1 document of every HTTP route (`GET /api/openapi.json`) and a JSON Schema
//! 2020-12 of every WebSocket message, both ways (`GET /api/schema/messages.json`). Both are
//! committed under `docs/spec/` (`punch spec docs/spec` writes them; a test fails when they
//! differ from what the code generates). The schemas come from `schemars` deriving them from the
//! `src/protocol` types, their doc comments becoming descriptions; the routes are listed once,
//! below, with the types their bodies are.

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

use crate::protocol::{
    AdmissionAnswer, AdmissionRequest, ClientMessage, ClosedSession, ConnectResponse,
    CreateRequest, CreatedSession, CueRequest, ErrorResponse, LatencyRequest, ServerHealth,
    ServerMessage, SessionView, SideSpec, TallyRequest,
};

/// Where a generated document says it lives.
const MESSAGES_ID: &str = "https://punch.invalid/spec/messages.schema.json";

/// What a route's answer (or request) is.
#[derive(Clone, Copy)]
enum Body {
    /// JSON of a protocol type, through its schema.
    Json(fn(&mut SchemaGenerator) -> Schema),
    Html,
    Svg,
    /// Any file of the compiled-in assets.
    Asset,
    /// The Prometheus text format.
    Metrics,
    /// `101 Switching Protocols` to the WebSocket of `messages.schema.json`.
    WebSocket,
    /// No body (204).
    Empty,
}

/// What a route's error answers are.
#[derive(Clone, Copy)]
enum Errors {
    /// `ErrorResponse` JSON (every API route).
    Json,
    /// An HTML page saying why (the pages people open).
    Page,
    /// Plain text (the assets).
    Text,
}

/// Who may call a route.
#[derive(Clone, Copy, PartialEq)]
enum Auth {
    /// No token.
    Open,
    /// The server's create key, when it has one.
    CreateKey,
    /// The session's admin token.
    Admin,
    /// Any token of the session (admin, stream, join: each reads what its scope allows).
    Session,
    /// A stream or join token (the camera-operator and venue pages).
    Side,
}

struct Route {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    auth: Auth,
    request: Option<Body>,
    /// The success status and body.
    ok: (u16, Body),
    /// Error statuses it may answer, and as what.
    errors: &'static [u16],
    errors_as: Errors,
    /// Query parameters besides the token: `(name, description)`.
    query: &'static [(&'static str, &'static str)],
}

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// Every route of the server (`http/mod.rs`), in its order.
fn routes() -> Vec<Route> {
    use Auth::*;
    use Body::*;
    let r = |method, path, summary, auth, request, ok: (u16, Body), errors| Route {
        method,
        path,
        summary,
        auth,
        request,
        ok,
        errors,
        errors_as: match ok.1 {
            Html => Errors::Page,
            Asset => Errors::Text,
            _ => Errors::Json,
        },
        query: &[],
    };
    const SESSION_ERRORS: &[u16] = &[401, 403, 404, 410, 429, 500];
    const COMMAND_ERRORS: &[u16] = &[400, 401, 403, 404, 408, 410, 413, 429, 500, 503];
    let mut routes = vec![
        r(
            "get",
            "/",
            "The start page: a form that creates a session.",
            Open,
            None,
            (200, Html),
            &[],
        ),
        r(
            "post",
            "/api/session",
            "Create a session: its admin token, dashboard link, QR code and a token per stream side.",
            CreateKey,
            Some(Json(schema::<CreateRequest>)),
            (201, Json(schema::<CreatedSession>)),
            &[400, 401, 408, 409, 413, 429, 500, 503],
        ),
        r(
            "get",
            "/api/session/{id}",
            "The session's view: the whole session (admin token), its own stream (stream token), nothing but its state (join token).",
            Session,
            None,
            (200, Json(schema::<SessionView>)),
            SESSION_ERRORS,
        ),
        r(
            "delete",
            "/api/session/{id}",
            "Close the session: every peer is told and disconnected.",
            Admin,
            None,
            (200, Json(schema::<ClosedSession>)),
            &[401, 403, 404, 410, 429, 500, 503],
        ),
        r(
            "post",
            "/api/session/{id}/tally",
            "Set a stream's tally; its peers get a `tally` message.",
            Admin,
            Some(Json(schema::<TallyRequest>)),
            (200, Json(schema::<TallyRequest>)),
            COMMAND_ERRORS,
        ),
        r(
            "post",
            "/api/session/{id}/latency",
            "Set a stream's SRT latency; its peers get new coordinates.",
            Admin,
            Some(Json(schema::<LatencyRequest>)),
            (200, Json(schema::<LatencyRequest>)),
            COMMAND_ERRORS,
        ),
        r(
            "post",
            "/api/session/{id}/cue",
            "Send the people at a stream (or one side of it) a cue.",
            Admin,
            Some(Json(schema::<CueRequest>)),
            (200, Json(schema::<CueRequest>)),
            COMMAND_ERRORS,
        ),
        r(
            "post",
            "/api/session/{id}/admission",
            "Give a peer of the waiting room a side (or a new stream), or turn it down.",
            Admin,
            Some(Json(schema::<AdmissionRequest>)),
            (200, Json(schema::<AdmissionAnswer>)),
            &[400, 401, 403, 404, 408, 409, 410, 413, 429, 500, 503],
        ),
        r(
            "put",
            "/api/session/{id}/stream/{stream}/{role}",
            "Who holds one side of a stream: a Punch peer, or an SRT caller or listener device.",
            Admin,
            Some(Json(schema::<SideSpec>)),
            (200, Json(schema::<SessionView>)),
            COMMAND_ERRORS,
        ),
        r(
            "patch",
            "/api/session/{id}/stream/{stream}/{role}",
            "As PUT.",
            Admin,
            Some(Json(schema::<SideSpec>)),
            (200, Json(schema::<SessionView>)),
            COMMAND_ERRORS,
        ),
        r(
            "get",
            "/api/session/{id}/connect",
            "Connection strings for third-party SRT tools, from the registered sides' coordinates.",
            Admin,
            None,
            (200, Json(schema::<ConnectResponse>)),
            &[400, 401, 403, 404, 409, 410, 429, 500],
        ),
        r(
            "get",
            "/api/tunnel/{id}",
            "The tunnel of one side without UDP: its SRT datagrams as binary frames (protocol::tunnel), through the stream's relay.",
            Session,
            None,
            (101, WebSocket),
            &[400, 401, 403, 404, 410, 429],
        ),
        r(
            "get",
            "/api/ws/{id}",
            "The session's WebSocket: signalling for peers, live views for dashboards (messages.schema.json).",
            Session,
            None,
            (101, WebSocket),
            &[400, 401, 403, 404, 410, 429],
        ),
        r(
            "get",
            "/s/{id}",
            "The operator dashboard (HTML).",
            Admin,
            None,
            (200, Html),
            SESSION_ERRORS,
        ),
        r(
            "get",
            "/s/{id}/qr",
            "QR code of the dashboard link.",
            Admin,
            None,
            (200, Svg),
            SESSION_ERRORS,
        ),
        r(
            "get",
            "/s/{id}/qr/{stream}/{role}",
            "QR code of one side's camera-operator page (a token for that side only).",
            Admin,
            None,
            (200, Svg),
            SESSION_ERRORS,
        ),
        r(
            "get",
            "/s/{id}/join-qr",
            "The venue QR code: the venue page with the session's join token.",
            Admin,
            None,
            (200, Svg),
            SESSION_ERRORS,
        ),
        r(
            "get",
            "/j/{id}",
            "The camera-operator page of one side (stream token), or the venue page (join token).",
            Side,
            None,
            (200, Html),
            SESSION_ERRORS,
        ),
        r(
            "get",
            "/j/{id}/qr",
            "QR code of that side's settings (its punch:// URI or device URL), or the venue's punch:// URI.",
            Side,
            None,
            (200, Svg),
            SESSION_ERRORS,
        ),
        r(
            "get",
            "/ui/{file}",
            "The pages' scripts and style sheets.",
            Open,
            None,
            (200, Asset),
            &[404],
        ),
        r(
            "get",
            "/favicon.ico",
            "Nothing (204).",
            Open,
            None,
            (204, Empty),
            &[],
        ),
        r(
            "get",
            "/healthz",
            "Counters: sessions, connections, STUN, relays. No names, addresses or tokens.",
            Open,
            None,
            (200, Json(schema::<ServerHealth>)),
            &[],
        ),
        r(
            "get",
            "/metrics",
            "The Prometheus text exposition (here unless --metrics-listen moves it: then 404 here).",
            Open,
            None,
            (200, Metrics),
            &[404],
        ),
        r(
            "get",
            "/api/openapi.json",
            "This document.",
            Open,
            None,
            (200, Json(|_| Schema::from(true))),
            &[],
        ),
        r(
            "get",
            "/api/schema/messages.json",
            "The JSON Schema of every WebSocket message.",
            Open,
            None,
            (200, Json(|_| Schema::from(true))),
            &[],
        ),
    ];
    for route in &mut routes {
        if route.path == "/api/tunnel/{id}" {
            route.query = &[
                ("stream", "The stream (required)."),
                (
                    "role",
                    "sender or receiver (required): the side the token holds.",
                ),
                ("receiver", "The receiver slot, 1…N (default 1)."),
                (
                    "ticket",
                    "The ticket of the side's `peer` coordinates (required): ties the tunnel to that side.",
                ),
            ];
        }
        if route.path == "/api/session/{id}/connect" {
            route.query = &[(
                "stream",
                "Only this stream's strings (default: every stream's).",
            )];
        }
    }
    routes
}

/// The paths the server routes (for the test that every route is in the spec).
pub fn route_paths() -> Vec<(&'static str, &'static str)> {
    routes().iter().map(|r| (r.method, r.path)).collect()
}

fn generator(definitions: &str) -> SchemaGenerator {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = definitions.to_string().into();
    SchemaGenerator::new(settings)
}

fn content(g: &mut SchemaGenerator, body: Body) -> Value {
    match body {
        Body::Json(f) => json!({ "application/json": { "schema": f(g) } }),
        Body::Html => json!({ "text/html": { "schema": { "type": "string" } } }),
        Body::Svg => json!({ "image/svg+xml": { "schema": { "type": "string" } } }),
        Body::Asset => json!({ "*/*": { "schema": { "type": "string" } } }),
        Body::Metrics => json!({ "text/plain": { "schema": { "type": "string" } } }),
        Body::WebSocket | Body::Empty => json!({}),
    }
}

fn status_text(status: u16) -> &'static str {
    match status {
        101 => "Switching to the WebSocket",
        200 => "OK",
        201 => "Created",
        204 => "No content",
        400 => "Bad request: the `error.code` and message say what",
        500 => "The server's fault (a QR code that cannot be drawn, an internal error)",
        401 => "Missing or invalid token (or create key)",
        403 => "The token is valid but does not allow this",
        404 => "No such session, stream, peer or endpoint",
        408 => "The request body did not arrive in time",
        409 => "Conflict: a name, a side or coordinates",
        410 => "The session has ended",
        413 => "The request body is too large",
        429 => "Rate limited, or a limit reached",
        503 => "The database did not take the change",
        _ => "See the protocol",
    }
}

/// The OpenAPI 3.1 document of every HTTP route.
pub fn openapi() -> Value {
    let mut g = generator("/components/schemas");
    let error = g.subschema_for::<ErrorResponse>();
    let mut paths = Map::new();
    for route in routes() {
        let mut op = Map::new();
        op.insert("summary".into(), json!(route.summary));
        let params: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .chain(route.query.iter().map(|(name, what)| {
                json!({ "name": name, "in": "query", "required": false, "description": what, "schema": { "type": "string" } })
            }))
            .collect();
        if !params.is_empty() {
            op.insert("parameters".into(), Value::Array(params));
        }
        if let Some(body) = route.request {
            op.insert(
                "requestBody".into(),
                json!({ "required": route.method != "post" || route.path != "/api/session", "content": content(&mut g, body) }),
            );
        }
        let security = match route.auth {
            Auth::Open => json!([]),
            Auth::CreateKey => json!([{}, { "bearer": [] }]),
            Auth::Admin | Auth::Session | Auth::Side => {
                json!([{ "bearer": [] }, { "query_t": [] }, { "query_token": [] }])
            }
        };
        op.insert("security".into(), security);
        let who = match route.auth {
            Auth::Open => "No token.",
            Auth::CreateKey => {
                "The server's create key as a Bearer token when it has one (`--create-key`)."
            }
            Auth::Admin => "The session's admin token.",
            Auth::Session => "Any token of the session; each reads what its scope allows.",
            Auth::Side => "A stream token (one side) or the session's join token.",
        };
        op.insert("description".into(), json!(who));
        let mut responses = Map::new();
        let (status, body) = route.ok;
        responses.insert(
            status.to_string(),
            json!({ "description": status_text(status), "content": content(&mut g, body) }),
        );
        for status in route.errors {
            let content = match route.errors_as {
                Errors::Json => json!({ "application/json": { "schema": error.clone() } }),
                Errors::Page => json!({ "text/html": { "schema": { "type": "string" } } }),
                Errors::Text => json!({ "text/plain": { "schema": { "type": "string" } } }),
            };
            responses.insert(
                status.to_string(),
                json!({ "description": status_text(*status), "content": content }),
            );
        }
        op.insert("responses".into(), Value::Object(responses));
        let entry = paths
            .entry(route.path.to_string())
            .or_insert_with(|| json!({}));
        entry[route.method] = Value::Object(op);
    }
    let schemas = Value::Object(g.take_definitions(true));
    json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "Punch",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The HTTP API of a Punch server, an SRT session broker. Generated from the server's Rust types (src/server/spec.rs); the WebSocket messages are in messages.schema.json, the normative text in punch-protocol.md.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "description": "Authorization: Bearer TOKEN" },
                "query_t": { "type": "apiKey", "in": "query", "name": "t", "description": "The token as ?t= (links people open)" },
                "query_token": { "type": "apiKey", "in": "query", "name": "token", "description": "The token as ?token=" },
            },
        },
    })
}

/// The JSON Schema 2020-12 of every WebSocket message: `ClientMessage` (peer → server) and
/// `ServerMessage` (server → peer), each a `$defs` entry, the document either.
pub fn messages() -> Value {
    let mut g = generator("/$defs");
    let client = g.subschema_for::<ClientMessage>();
    let server = g.subschema_for::<ServerMessage>();
    let defs = Value::Object(g.take_definitions(true));
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": MESSAGES_ID,
        "title": "Punch WebSocket messages",
        "description": "Every message on a Punch session's WebSocket (GET /api/ws/{id}): one JSON object per text frame, tagged by `type`. ClientMessage is what a peer sends, ServerMessage what the server sends. Generated from the server's Rust types (src/server/spec.rs).",
        "oneOf": [client, server],
        "$defs": defs,
    })
}

/// The two documents as committed under `docs/spec/`: `(file name, pretty JSON + newline)`.
pub fn files() -> Vec<(&'static str, String)> {
    let pretty = |v: Value| {
        let mut text = serde_json::to_string_pretty(&v).expect("a JSON value serialises");
        text.push('\n');
        text
    };
    vec![
        ("openapi.json", pretty(openapi())),
        ("messages.schema.json", pretty(messages())),
    ]
}
