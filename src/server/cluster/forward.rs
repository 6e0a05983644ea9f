//! Requests for a session another node serves: forwarded to that node's internal URL as they
//! are (method, path, headers, body; a WebSocket upgrade becomes a byte pipe between the client
//! and the owner), with the client's address appended to `X-Forwarded-For`. The owner trusts
//! that header with `--trust-proxy`, which the nodes of a cluster run with behind their balancer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use super::{Located, OWNER_WAIT};
use crate::protocol::ErrorCode;
use crate::server::http::{ApiError, client_ip};
use crate::server::state::AppState;

/// Marks a request one node forwarded to another: it is not forwarded again.
const FORWARDED: &str = "x-punch-forwarded-by";
/// How long connecting to the owner may take before it is asked again (a dead node refuses at
/// once; a loaded one may drop a first SYN, which is sent again after 1 s).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Between two looks at a lease that has not run out yet.
const POLL: Duration = Duration::from_millis(200);
/// How long the owner may take to answer a forwarded request (a WebSocket: its upgrade) before
/// the client is told 504 and asks again: a frozen owner accepts connections but answers none.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// Names the node that answered, on every answer of a clustered server.
const NODE_HEADER: &str = "x-punch-node";

/// The session a path names, for the routes on one session.
fn session_of(path: &str) -> Option<&str> {
    let mut parts = path.trim_start_matches('/').split('/');
    let name = match (parts.next()?, parts.next()) {
        ("api", Some("session" | "ws" | "tunnel")) => parts.next()?,
        ("s" | "j", Some(name)) => name,
        _ => return None,
    };
    (!name.is_empty()).then_some(name)
}

/// Middleware on every route: a request for a session served elsewhere is forwarded, one for
/// a session nobody serves takes it over first; everything else goes on here.
pub async fn route(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(cluster) = state.cluster.clone() else {
        return next.run(req).await;
    };
    let mut resp = locate_and_run(&state, &cluster, req, next).await;
    if !resp.headers().contains_key(NODE_HEADER)
        && let Ok(v) = HeaderValue::from_str(&cluster.node)
    {
        resp.headers_mut().insert(NODE_HEADER, v);
    }
    resp
}

async fn locate_and_run(
    state: &Arc<AppState>,
    cluster: &Arc<super::Cluster>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(name) = session_of(req.uri().path()).map(str::to_string) else {
        return next.run(req).await;
    };
    let hop = req.headers().get(FORWARDED).cloned();
    let deadline = Instant::now() + OWNER_WAIT;
    loop {
        let wait = match cluster.locate(&name).await {
            Err(e) => {
                return ApiError::new(
                    ErrorCode::Storage,
                    format!("cannot tell which server serves session {name}: {e}"),
                )
                .into_response();
            }
            Ok(Located::Here) => return next.run(req).await,
            Ok(Located::Owner { owner, .. }) if hop.is_some() => {
                // forwarded here by a node that thought this one the owner: not again (the
                // lease moved meanwhile); asked again here until the deadline (503: the client
                // asks again through the balancer)
                tracing::info!(
                    session = name,
                    owner,
                    "a forwarded request for a session another node holds"
                );
                POLL
            }
            Ok(Located::Owner { owner, url }) => match connect(&url).await {
                Ok(stream) => match forward(state, req, stream, &cluster.node).await {
                    Ok(resp) => return resp,
                    // the owner dropped the request (a GET, given back unsent): once it is dead
                    // for good, the next connection attempt says so
                    Err((again, e)) => {
                        tracing::info!(
                            session = name,
                            owner,
                            "the node serving this session dropped the request ({e}); asking again"
                        );
                        req = *again;
                        POLL
                    }
                },
                Err(e) => {
                    // dead (asked again until its lease runs out and the session is taken) or
                    // too loaded to accept (asked again)
                    tracing::info!(
                        session = name,
                        owner,
                        "the node serving this session does not answer ({e}); asking again"
                    );
                    POLL
                }
            },
            Ok(Located::Wait(d)) => d.min(POLL),
        };
        if Instant::now() + wait > deadline {
            return ApiError::new(
                ErrorCode::Storage,
                format!(
                    "the server serving session {name} does not answer and still holds it; try again in a few seconds"
                ),
            )
            .into_response();
        }
        tokio::time::sleep(wait).await;
    }
}

async fn connect(url: &str) -> Result<tokio::net::TcpStream, String> {
    let authority = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url} is not an http:// URL"))?
        .split('/')
        .next()
        .unwrap_or_default();
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(authority)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => Err(format!("{authority}: {e}")),
        Err(_) => Err(format!(
            "{authority}: no answer within {} s",
            CONNECT_TIMEOUT.as_secs()
        )),
    }
}

/// A request as it came, to send again: method, URI, version, headers and extensions (the
/// client address, the route's path parameters, the pending upgrade).
type Replay = (
    axum::http::Method,
    axum::http::Uri,
    axum::http::Version,
    axum::http::HeaderMap,
    axum::http::Extensions,
);

/// Sends `req` over `stream` to the owner and hands back its answer; an upgrade is piped. A
/// `GET` (or `HEAD`: no body) the owner dropped before answering, the connection failing under
/// it (a node that is dying), is given back unsent with the error, to be sent again.
async fn forward(
    state: &Arc<AppState>,
    mut req: Request,
    stream: tokio::net::TcpStream,
    node: &str,
) -> Result<Response, (Box<Request>, String)> {
    let replay: Option<Replay> = matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    )
    .then(|| {
        (
            req.method().clone(),
            req.uri().clone(),
            req.version(),
            req.headers().clone(),
            req.extensions().clone(),
        )
    });
    let bad_gateway = |e: String| {
        tracing::warn!("a request forwarded to the node serving its session failed: {e}");
        ApiError::with_status(
            StatusCode::BAD_GATEWAY,
            ErrorCode::Storage,
            format!("the server serving this session failed to answer: {e}"),
        )
        .into_response()
    };
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    if let Some(peer) = peer {
        let ip = client_ip(state, peer, req.headers());
        let chain = match req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(before) => format!("{before}, {ip}"),
            None => ip.to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&chain) {
            req.headers_mut().insert("x-forwarded-for", v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(node) {
        req.headers_mut().insert(FORWARDED, v);
    }
    // origin form: the owner routes on the path; Host stays the client's (links use it)
    if let Some(pq) = req.uri().path_and_query().cloned()
        && let Ok(uri) = pq.as_str().parse()
    {
        *req.uri_mut() = uri;
    }
    let upgrade = req
        .headers()
        .contains_key(axum::http::header::UPGRADE)
        .then(|| hyper::upgrade::on(&mut req));
    let give_back = |replay: Option<Replay>, e: String| {
        let Some((method, uri, version, headers, extensions)) = replay else {
            return Ok(bad_gateway(e));
        };
        let mut again = Request::new(Body::empty());
        *again.method_mut() = method;
        *again.uri_mut() = uri;
        *again.version_mut() = version;
        *again.headers_mut() = headers;
        *again.extensions_mut() = extensions;
        Err((Box::new(again), e))
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(pair) => pair,
        Err(e) => return give_back(replay, e.to_string()),
    };
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("forwarded connection ended: {e}");
        }
    });
    let mut resp = match tokio::time::timeout(ANSWER_TIMEOUT, sender.send_request(req)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return give_back(replay, e.to_string()),
        Err(_) => {
            return Ok(ApiError::with_status(
                StatusCode::GATEWAY_TIMEOUT,
                ErrorCode::Timeout,
                format!(
                    "the server serving this session did not answer within {} s; try again",
                    ANSWER_TIMEOUT.as_secs()
                ),
            )
            .into_response());
        }
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client) = upgrade
    {
        let owner = hyper::upgrade::on(&mut resp);
        let cancel = state.cancel.clone();
        tokio::spawn(async move {
            let (client, owner) = match tokio::try_join!(client, owner) {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!("a forwarded upgrade failed: {e}");
                    return;
                }
            };
            let (mut client, mut owner) = (TokioIo::new(client), TokioIo::new(owner));
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut owner) => {}
                _ = cancel.cancelled() => {}
            }
        });
    }
    Ok(resp.map(Body::new))
}

#[cfg(test)]
mod tests {
    use super::session_of;

    #[test]
    fn the_session_routes_name_their_session() {
        for (path, name) in [
            ("/api/session/show1", Some("show1")),
            ("/api/session/show1/tally", Some("show1")),
            ("/api/session/show1/stream/cam1/sender", Some("show1")),
            ("/api/ws/show1", Some("show1")),
            ("/api/tunnel/show1", Some("show1")),
            ("/s/show1", Some("show1")),
            ("/s/show1/qr/cam1/sender", Some("show1")),
            ("/j/show1", Some("show1")),
            ("/api/session", None),
            ("/api/session/", None),
            ("/healthz", None),
            ("/ui/app.js", None),
            ("/", None),
        ] {
            assert_eq!(session_of(path), name, "{path}");
        }
    }
}
