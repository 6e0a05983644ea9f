//! Accepting HTTP connections, with the bounds a server on the open internet needs and that a
//! plain `axum::serve` lacks: a cap of connections per client address, and three timeouts —
//! the request head (from the connection's opening or the first byte of a request), the request
//! body (from its head), and an idle kept-alive connection. A connection that breaks one is
//! closed; a WebSocket upgrade leaves these rules (it has its own keepalive) but keeps its place
//! in the per-address count for as long as it is open. With built-in TLS the handshake comes
//! first, and must be done within the head timeout.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http_body::Frame;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::limit::client_key;

/// What bounds a connection.
#[derive(Debug, Clone)]
pub struct ConnectionRules {
    /// Connections open at once per client address (`None`: no cap, e.g. behind a proxy whose
    /// address every connection has).
    pub per_ip: Option<usize>,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub keepalive_timeout: Duration,
    /// Built-in TLS: every connection is HTTPS (and WSS).
    pub tls: Option<Arc<super::tls::Tls>>,
    /// Where refused connections are counted.
    pub metrics: Option<Arc<super::metrics::Metrics>>,
}

/// A request body that did not arrive in time.
#[derive(Debug)]
pub struct BodyTimeout(pub Duration);

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the request body did not arrive within {:?}", self.0)
    }
}

impl std::error::Error for BodyTimeout {}

/// Open connections per client address.
#[derive(Debug, Default)]
struct Counts(Mutex<HashMap<IpAddr, usize>>);

/// A connection's place in [`Counts`], given back when the socket closes.
struct Place {
    counts: Arc<Counts>,
    key: IpAddr,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut map = self.counts.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

impl Counts {
    fn take(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Option<Place> {
        let key = client_key(ip);
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(key).or_default();
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(Place {
            counts: self.clone(),
            key,
        })
    }
}

/// Where one connection stands, seen by its socket reads and its requests.
#[derive(Debug)]
struct Activity {
    /// Requests being answered.
    in_flight: usize,
    /// Since when no request has been under way (the connection's opening at first).
    idle_since: Instant,
    /// The first byte of a request head not complete yet.
    head_since: Option<Instant>,
    /// Whether a request was answered (then the idle limit is the keep-alive one).
    served: bool,
}

type Shared = Arc<Mutex<Activity>>;

fn lock(a: &Shared) -> std::sync::MutexGuard<'_, Activity> {
    a.lock().unwrap_or_else(|e| e.into_inner())
}

/// The socket, noting when request bytes arrive; holds the connection's [`Place`].
struct Watched<S> {
    inner: S,
    activity: Shared,
    _place: Option<Place>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let mut a = lock(&self.activity);
            if a.in_flight == 0 && a.head_since.is_none() {
                a.head_since = Some(Instant::now());
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

pin_project_lite::pin_project! {
    /// A request body that must arrive in full before a deadline.
    struct DeadlineBody {
        #[pin]
        inner: hyper::body::Incoming,
        #[pin]
        deadline: tokio::time::Sleep,
        limit: Duration,
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match this.deadline.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(*this.limit))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Accepts connections on `listener` and serves `router` on each until `cancel`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    rules: ConnectionRules,
    cancel: CancellationToken,
    connections: TaskTracker,
) {
    let counts = Arc::new(Counts::default());
    loop {
        let (tcp, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let place = match rules.per_ip {
            Some(cap) => match counts.take(peer.ip(), cap) {
                Some(place) => Some(place),
                None => {
                    if let Some(m) = &rules.metrics {
                        m.connections_refused.with_label_values(&["per_ip"]).inc();
                    }
                    tracing::info!(client = %peer.ip(), "connection refused: too many from this address (--connections-per-ip)");
                    drop(tcp);
                    continue;
                }
            },
            None => None,
        };
        connections.spawn(connection(
            tcp,
            peer,
            place,
            router.clone(),
            rules.clone(),
            cancel.clone(),
        ));
    }
}

/// Serves one connection under the rules, after its TLS handshake when there is TLS.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    place: Option<Place>,
    router: Router,
    rules: ConnectionRules,
    cancel: CancellationToken,
) {
    // Signalling messages are tiny and latency-bound: never let Nagle hold them back.
    let _ = tcp.set_nodelay(true);
    // the head timeout counts from here, the TLS handshake included
    let accepted = Instant::now();
    let Some(tls) = rules.tls.clone() else {
        return serve_http(tcp, peer, place, router, rules, cancel, accepted).await;
    };
    let handshake = tls.acceptor().accept(tcp);
    let stream = tokio::select! {
        _ = cancel.cancelled() => return,
        done = tokio::time::timeout(rules.header_timeout, handshake) => match done {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(client = %peer, "TLS handshake failed: {e}");
                refused_tls(&rules);
                return;
            }
            Err(_) => {
                tracing::debug!(client = %peer, "TLS handshake too slow");
                refused_tls(&rules);
                return;
            }
        },
    };
    serve_http(stream, peer, place, router, rules, cancel, accepted).await
}

fn refused_tls(rules: &ConnectionRules) {
    if let Some(m) = &rules.metrics {
        m.connections_refused
            .with_label_values(&["tls_handshake"])
            .inc();
    }
}

/// Serves HTTP (and upgrades) on one connection's byte stream.
async fn serve_http<S>(
    stream: S,
    peer: SocketAddr,
    place: Option<Place>,
    router: Router,
    rules: ConnectionRules,
    cancel: CancellationToken,
    accepted: Instant,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity: Shared = Arc::new(Mutex::new(Activity {
        in_flight: 0,
        idle_since: accepted,
        head_since: None,
        served: false,
    }));
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
        _place: place,
    });
    let service = {
        let activity = activity.clone();
        let body_timeout = rules.body_timeout;
        hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            {
                let mut a = lock(&activity);
                a.in_flight += 1;
                a.head_since = None;
            }
            let (mut parts, body) = req.into_parts();
            parts.extensions.insert(ConnectInfo(peer));
            let body = DeadlineBody {
                inner: body,
                deadline: tokio::time::sleep(body_timeout),
                limit: body_timeout,
            };
            let req = hyper::Request::from_parts(parts, Body::new(body));
            let mut router = router.clone();
            let activity = activity.clone();
            async move {
                let resp = tower_service::Service::call(&mut router, req).await;
                let mut a = lock(&activity);
                a.in_flight -= 1;
                a.idle_since = Instant::now();
                a.served = true;
                resp
            }
        })
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        // The rules below time request heads (hyper's own header timer also counts idle
        // keep-alive time).
        .header_read_timeout(None)
        .keep_alive(true);
    let conn = http.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let mut check = tokio::time::interval(Duration::from_millis(200));
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutting_down = false;
    loop {
        tokio::select! {
            _ = &mut conn => return,
            _ = cancel.cancelled(), if !shutting_down => {
                shutting_down = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = check.tick() => {
                let why = {
                    let a = lock(&activity);
                    if a.in_flight > 0 {
                        None
                    } else if let Some(since) = a.head_since {
                        (since.elapsed() > rules.header_timeout).then_some("request head too slow")
                    } else if a.served {
                        (a.idle_since.elapsed() > rules.keepalive_timeout).then_some("idle keep-alive")
                    } else {
                        (a.idle_since.elapsed() > rules.header_timeout).then_some("no request")
                    }
                };
                if let Some(why) = why {
                    tracing::debug!(client = %peer, why, "closing a connection");
                    return;
                }
            }
        }
    }
}
