//! Element test helpers: the real server in-process on 127.0.0.1:0, real pipelines with the
//! real srtsrc/srtsink, bounded bus waits.
#![allow(dead_code)]

#[path = "../../../tests/common/conform.rs"]
pub mod conform;

use std::net::SocketAddr;
use std::sync::Once;
use std::time::{Duration, Instant};

use gst::prelude::*;
use punch::client::rest::Rest;
use punch::server::{Server, ServerConfig};
use serde_json::{Value, json};

pub const WAIT: Duration = Duration::from_secs(15);
/// Payload chunk: one SRT live-mode message.
pub const CHUNK: usize = 1316;

pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstpunch::plugin_register_static().expect("plugin registers");
        for f in ["srtsrc", "srtsink", "appsrc", "appsink"] {
            assert!(
                gst::ElementFactory::find(f).is_some(),
                "GStreamer element {f} is missing: install gstreamer1.0-plugins-bad and gstreamer1.0-plugins-base (scripts/install-deps.sh)"
            );
        }
    });
}

/// A server on its own runtime, so the test thread can drive GStreamer synchronously.
pub struct Env {
    pub rt: tokio::runtime::Runtime,
    pub server: Option<Server>,
    pub addr: SocketAddr,
    pub config: ServerConfig,
}

impl Env {
    pub fn new() -> Env {
        Self::with_config(ServerConfig::default())
    }

    pub fn with_config(config: ServerConfig) -> Env {
        init();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = rt
            .block_on(Server::start(config.clone()))
            .expect("server starts");
        let addr = server.local_addr();
        Env {
            rt,
            server: Some(server),
            addr,
            config: ServerConfig {
                listen: addr,
                ..config
            },
        }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The typed REST client of the test server.
    pub fn rest(&self) -> Rest {
        Rest::with_timeout(&self.base(), WAIT).expect("a server URL")
    }

    /// Creates a session; the `201` body as the server sent it.
    pub fn create(&self, body: Value) -> Value {
        let (status, v) = self.request(
            punch::client::rest::Method::POST,
            "/api/session",
            "",
            Some(body),
        );
        assert_eq!(status, 201, "create failed: {v}");
        v
    }

    pub fn request(
        &self,
        method: punch::client::rest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let rest = self.rest();
        let body = body.map(|b| ("application/json", b.to_string().into_bytes()));
        let asked = method.clone();
        let resp = self
            .rt
            .block_on(async move {
                let token = (!token.is_empty()).then_some(token);
                rest.raw(method.clone(), path, token, body).await
            })
            .expect("the server answers");
        conform::http_response(
            asked.as_str(),
            path,
            resp.status,
            Some(&resp.body).filter(|b| !b.is_null()),
        );
        (resp.status, resp.body)
    }

    /// Polls `GET /api/session` until `pred` holds.
    pub fn wait_view(
        &self,
        session: &str,
        token: &str,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            let (status, v) = self.request(
                punch::client::rest::Method::GET,
                &format!("/api/session/{session}"),
                token,
                None,
            );
            if status == 200 && pred(&v) {
                return v;
            }
            assert!(
                start.elapsed() < WAIT,
                "timed out waiting for {what}; last view: {v}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET /healthz`.
    pub fn healthz(&self) -> Value {
        let rest = self.rest();
        self.rt
            .block_on(async move { rest.healthz().await })
            .expect("healthz answers")
    }

    pub fn restart_server(&mut self) {
        let server = self.server.take().unwrap();
        self.rt.block_on(server.shutdown());
        let server = self
            .rt
            .block_on(Server::start(self.config.clone()))
            .expect("server restarts");
        self.server = Some(server);
    }

    /// A session `name` whose punchsink and punchsrc are playing, the link up.
    pub fn connected_pair(&self, name: &str) -> Pair {
        let created = self.create(json!({ "name": name }));
        let admin = created["token"].as_str().unwrap().to_string();
        let (tx, src, _) = sender(&self.uri(&created, "default", "sender"));
        let (rx, sink, _) = receiver(&self.uri(&created, "default", "receiver"));
        play(&rx);
        play(&tx);
        wait_connected(&tx);
        Pair {
            created,
            admin,
            tx,
            src,
            rx,
            sink,
        }
    }

    pub fn uri(&self, created: &Value, stream: &str, role: &str) -> String {
        let token = created["stream_tokens"][stream][role].as_str().unwrap();
        format!(
            "punch://{}/{}/{stream}?token={token}",
            self.addr,
            created["session"].as_str().unwrap()
        )
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            self.rt.block_on(s.shutdown());
        }
    }
}

/// A streaming punchsink → punchsrc pair (see [`Env::connected_pair`]).
pub struct Pair {
    pub created: Value,
    pub admin: String,
    pub tx: gst::Pipeline,
    pub src: gst_app::AppSrc,
    pub rx: gst::Pipeline,
    pub sink: gst_app::AppSink,
}

/// A UDP port free right now.
pub fn free_udp_port() -> u16 {
    punch::client::net::free_udp_port([127, 0, 0, 1].into()).unwrap()
}

/// The deterministic chunk number `seq`.
pub fn chunk(seq: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(CHUNK);
    v.extend_from_slice(&seq.to_be_bytes());
    let mut x = seq.wrapping_mul(2_654_435_761).wrapping_add(1);
    while v.len() < CHUNK {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.push(x as u8);
    }
    v
}

pub fn sender(uri: &str) -> (gst::Pipeline, gst_app::AppSrc, gst::Element) {
    let p = gst::parse::launch(&format!(
        "appsrc name=src is-live=true format=time caps=application/x-punch-test ! punchsink name=punch health-interval=200 uri=\"{uri}\""
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let src = p
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let punch = p.by_name("punch").unwrap();
    (p, src, punch)
}

pub fn receiver(uri: &str) -> (gst::Pipeline, gst_app::AppSink, gst::Element) {
    let p = gst::parse::launch(&format!(
        "punchsrc name=punch health-interval=200 uri=\"{uri}\" ! appsink name=sink sync=false max-buffers=100000"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = p
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let punch = p.by_name("punch").unwrap();
    (p, sink, punch)
}

pub fn play(p: &gst::Pipeline) {
    p.set_state(gst::State::Playing).expect("pipeline starts");
}

/// Sets NULL and checks that it returns promptly.
pub fn stop(p: &gst::Pipeline) {
    let t = Instant::now();
    p.set_state(gst::State::Null).unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "NULL took {:?}",
        t.elapsed()
    );
}

/// Waits for a message on `p`'s bus matching `pred`; panics on an error message or timeout.
pub fn wait_msg<T>(
    p: &gst::Pipeline,
    what: &str,
    mut pred: impl FnMut(&gst::Message) -> Option<T>,
) -> T {
    let bus = p.bus().unwrap();
    let start = Instant::now();
    while start.elapsed() < WAIT {
        if let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) {
            if let Some(t) = pred(&msg) {
                return t;
            }
            if let gst::MessageView::Error(e) = msg.view() {
                panic!(
                    "error while waiting for {what}: {} ({:?})",
                    e.error(),
                    e.debug()
                );
            }
        }
    }
    panic!("timed out waiting for {what}");
}

/// Waits for an error message; returns (domain error, text). On timeout the panic shows what
/// the bus carried instead.
pub fn wait_error(p: &gst::Pipeline, within: Duration) -> (glib::Error, String) {
    let bus = p.bus().unwrap();
    let start = Instant::now();
    let mut seen = Vec::new();
    while start.elapsed() < within {
        if let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) {
            if let gst::MessageView::Error(e) = msg.view() {
                return (e.error(), e.error().to_string());
            }
            if seen.len() < 50 {
                seen.push(format!(
                    "{:?}: {:?}",
                    msg.type_(),
                    msg.structure().map(|s| s.to_string())
                ));
            }
        }
    }
    panic!("no error within {within:?}; the bus carried: {seen:#?}");
}

pub use gst::glib;

/// An element message's structure named `name` from `punch`.
pub fn element_msg(msg: &gst::Message, name: &str) -> Option<gst::Structure> {
    match msg.view() {
        gst::MessageView::Element(e) => e
            .structure()
            .filter(|s| s.name() == name)
            .map(|s| s.to_owned()),
        _ => None,
    }
}

/// Waits until a `punch-health` says connected.
pub fn wait_connected(p: &gst::Pipeline) -> gst::Structure {
    wait_msg(p, "punch-health connected", |m| {
        element_msg(m, "punch-health").filter(|s| s.get::<bool>("connected").unwrap_or(false))
    })
}

/// Pushes chunks `from..to`, paced (about 5 Mbit/s); stops early once the pipeline stops.
pub fn push_chunks(src: &gst_app::AppSrc, from: u32, to: u32) {
    for seq in from..to {
        if src
            .push_buffer(gst::Buffer::from_mut_slice(chunk(seq)))
            .is_err()
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Pulls chunks until `n` arrived or the time is up.
pub fn pull_chunks(sink: &gst_app::AppSink, n: usize, within: Duration) -> Vec<Vec<u8>> {
    let start = Instant::now();
    let mut got = Vec::new();
    while got.len() < n && start.elapsed() < within {
        if let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(100)) {
            let buf = sample.buffer().unwrap();
            got.push(buf.map_readable().unwrap().to_vec());
        }
    }
    got
}

pub fn seq_of(c: &[u8]) -> u32 {
    u32::from_be_bytes(c[..4].try_into().unwrap())
}

pub fn single() -> Value {
    json!({})
}

/// Fails with the install hint when a GStreamer element is missing (a skip would hide it).
pub fn require(elements: &[&str]) {
    init();
    for f in elements {
        assert!(
            gst::ElementFactory::find(f).is_some(),
            "GStreamer element {f} is missing: install gstreamer1.0-plugins-base, -good and -bad (scripts/install-deps.sh)"
        );
    }
}

/// A pipeline from a gst-launch description; panics with the description when it does not parse.
pub fn launch(desc: &str) -> gst::Pipeline {
    gst::parse::launch(desc)
        .unwrap_or_else(|e| panic!("{desc}: {e}"))
        .downcast::<gst::Pipeline>()
        .unwrap()
}
