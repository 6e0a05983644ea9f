//! Test helpers: a real server on 127.0.0.1:0, real HTTP and WebSocket clients, bounded waits.
#![allow(dead_code)]

pub mod certs;
pub mod cluster;
pub mod conform;
pub mod postgres;
pub mod serve;

use std::future::Future;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use punch::client::Signalling;
use punch::client::rest::Rest;
use punch::protocol::{ClientMessage, ErrorCode, PeerMeta, Port, Register, Role, ServerMessage};
use punch::server::{Limits, Server, ServerConfig};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub const WAIT: Duration = Duration::from_secs(10);

pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

pub struct TestServer {
    pub server: Server,
    pub base: String,
}

pub async fn start(config: ServerConfig) -> TestServer {
    let server = Server::start(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..config
    })
    .await
    .expect("server starts");
    let base = format!("http://{}", server.local_addr());
    TestServer { server, base }
}

pub async fn start_with_limits(limits: Limits) -> TestServer {
    start(ServerConfig {
        limits,
        ..ServerConfig::default()
    })
    .await
}

/// The typed REST client of the server at `base`.
pub fn rest(base: &str) -> Rest {
    Rest::with_timeout(base, WAIT).expect("a server URL")
}

/// `GET /healthz`.
pub async fn healthz(base: &str) -> Value {
    rest(base).healthz().await.expect("healthz answers")
}

pub async fn start_default() -> TestServer {
    start(ServerConfig::default()).await
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(WAIT).build().unwrap()
}

/// `POST /api/session` with `body` as it is; returns status and JSON body.
pub async fn create_raw(base: &str, body: &str) -> (u16, Value) {
    let resp = rest(base)
        .raw(
            reqwest::Method::POST,
            "/api/session",
            None,
            Some(("application/json", body.as_bytes().to_vec())),
        )
        .await
        .expect("the server answers");
    conform::http_response(
        "POST",
        "/api/session",
        resp.status,
        Some(&resp.body).filter(|b| !b.is_null()),
    );
    (resp.status, resp.body)
}

/// Creates a session; returns the `201` body as the server sent it (tests look at its wire
/// form), checked to be a `CreatedSession`.
pub async fn create(base: &str, body: Value) -> Value {
    let (status, v) = create_raw(base, &body.to_string()).await;
    assert_eq!(status, 201, "create failed: {v}");
    serde_json::from_value::<punch::protocol::CreatedSession>(v.clone())
        .unwrap_or_else(|e| panic!("the 201 body is not a CreatedSession ({e}): {v}"));
    v
}

/// A request on `base` + `path` with a bearer token and an optional JSON body; status and
/// JSON answer.
pub async fn api_request(
    base: &str,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|b| ("application/json", b.to_string().into_bytes()));
    let resp = rest(base)
        .raw(method.clone(), path, Some(token), body)
        .await
        .expect("the server answers");
    // (pages and images are not JSON: the raw client reads them as null)
    conform::http_response(
        method.as_str(),
        path,
        resp.status,
        Some(&resp.body).filter(|b| !b.is_null()),
    );
    (resp.status, resp.body)
}

/// A request on `/api/session/{session}` with a bearer token; status and JSON body.
pub async fn session_request(
    method: reqwest::Method,
    base: &str,
    session: &str,
    token: &str,
) -> (u16, Value) {
    api_request(
        base,
        method,
        &format!("/api/session/{session}"),
        token,
        None,
    )
    .await
}

pub async fn get_session(base: &str, session: &str, token: &str) -> (u16, Value) {
    session_request(reqwest::Method::GET, base, session, token).await
}

pub async fn delete_session(base: &str, session: &str, token: &str) -> (u16, Value) {
    session_request(reqwest::Method::DELETE, base, session, token).await
}

/// The error code of an `{"error": {...}}` body.
pub fn code(v: &Value) -> &str {
    v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {v}"))
}

pub fn stream_token(created: &Value, stream: &str, role: &str) -> String {
    created["stream_tokens"][stream][role]
        .as_str()
        .unwrap()
        .to_string()
}

pub async fn connect(base: &str, session: &str, token: &str) -> Signalling {
    within(
        "ws connect",
        Signalling::connect(base, session, token, WAIT),
    )
    .await
    .expect("ws connects")
}

pub fn register(stream: Option<&str>, role: Role, port: u16) -> ClientMessage {
    ClientMessage::Register(Register {
        stream: stream.map(String::from),
        port: Port(port),
        role,
        meta: PeerMeta {
            label: Some(format!("{role}-{port}")),
            ..Default::default()
        },
        nat: None,
        reports: true,
        receiver: None,
        tunnel: false,
    })
}

/// The next `peer` coordinates (bounded).
pub async fn peer_of(sig: &mut Signalling) -> punch::protocol::PeerInfo {
    expect_msg(sig, "peer", |m| match m {
        ServerMessage::Peer(p) => Some(p.clone()),
        _ => None,
    })
    .await
}

/// Polls `GET /api/session` (bounded) until `pred` holds.
pub async fn eventually_view(
    base: &str,
    session: &str,
    token: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    within(what, async {
        loop {
            let (status, v) = get_session(base, session, token).await;
            if status == 200 && pred(&v) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// Reads messages until one matches `pred`; panics on close or timeout.
pub async fn expect_msg<T>(
    sig: &mut Signalling,
    what: &str,
    mut pred: impl FnMut(&ServerMessage) -> Option<T>,
) -> T {
    within(what, async {
        loop {
            match sig.recv_text().await {
                Ok(Some((text, m))) => {
                    conform::server_message(&text);
                    if let Some(t) = pred(&m) {
                        return t;
                    }
                }
                other => panic!("connection ended while waiting for {what}: {other:?}"),
            }
        }
    })
    .await
}

pub async fn expect_error(sig: &mut Signalling, code: ErrorCode) -> String {
    expect_msg(sig, &format!("error {code}"), |m| match m {
        ServerMessage::Error(e) if e.code == code => Some(e.message.clone()),
        ServerMessage::Error(e) => panic!("expected error {code}, got {e:?}"),
        _ => None,
    })
    .await
}

/// Reads until the server closes the connection; returns the close frame's code and reason.
pub async fn expect_closed(sig: &mut Signalling) {
    within("close", async {
        loop {
            match sig.recv().await {
                Ok(Some(_)) => continue,
                _ => return,
            }
        }
    })
    .await
}

pub type RawWs =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A raw WebSocket (for malformed frames), token in the query string.
pub async fn raw_ws(base: &str, session: &str, token: &str) -> RawWs {
    let url = format!(
        "{}/api/ws/{session}?token={token}",
        base.replace("http://", "ws://")
    );
    let req = url.into_client_request().unwrap();
    within("raw ws", tokio_tungstenite::connect_async(req))
        .await
        .expect("raw ws connects")
        .0
}

pub async fn raw_send(ws: &mut RawWs, msg: Message) {
    within("raw send", ws.send(msg)).await.expect("raw send");
}

/// Next text message as JSON, skipping others; `None` on close.
pub async fn raw_next(ws: &mut RawWs) -> Option<Value> {
    within("raw recv", async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    conform::server_message(t.as_str());
                    return Some(serde_json::from_str(t.as_str()).unwrap());
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await
}

/// Next error message's code, skipping `session` updates.
pub async fn raw_error(ws: &mut RawWs) -> (String, String) {
    loop {
        let v = raw_next(ws).await.expect("connection stays open");
        if v["type"] == "error" {
            return (
                v["code"].as_str().unwrap().into(),
                v["message"].as_str().unwrap().into(),
            );
        }
    }
}

/// The close frame the server sends.
pub async fn raw_close_frame(ws: &mut RawWs) -> Option<(u16, String)> {
    within("close frame", async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(f))) => {
                    return f.map(|f| (u16::from(f.code), f.reason.to_string()));
                }
                Some(Ok(_)) => continue,
                None | Some(Err(_)) => return None,
            }
        }
    })
    .await
}

pub fn single_stream() -> Value {
    json!({})
}

// ---------------------------------------------------------------------------------------------
// External programs (gst-launch-1.0 with the built plugin, srt-live-transmit, ffmpeg, node)

/// A child process killed (whole process group) when dropped; its output goes to a log file.
pub struct Proc {
    pub child: std::process::Child,
    pub log: std::path::PathBuf,
}

impl Proc {
    /// Runs `script` with `sh -c` in `dir`, stdout+stderr to `dir/<name>.log`.
    pub fn shell(dir: &std::path::Path, name: &str, script: &str) -> Proc {
        use std::os::unix::process::CommandExt;
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .env("GST_PLUGIN_PATH", plugin_dir())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {name}: {e}"));
        Proc { child, log }
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `text`; panics with the log on timeout or exit.
    pub fn wait_for(&mut self, text: &str, within: Duration) {
        let start = std::time::Instant::now();
        while start.elapsed() < within {
            if self.output().contains(text) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before printing {text:?}:\n{}",
                    self.log.display(),
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{} did not print {text:?} within {within:?}:\n{}",
            self.log.display(),
            self.output()
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SIGINT first (gst-launch -e finishes its file), then SIGKILL.
        let pgid = self.child.id() as i32;
        unsafe_kill(-pgid, 2);
        for _ in 0..40 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        unsafe_kill(-pgid, 9);
        let _ = self.child.wait();
    }
}

fn unsafe_kill(pid: i32, sig: i32) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg("--")
        .arg(pid.to_string())
        .stderr(std::process::Stdio::null())
        .status();
}

/// Where `cargo build --workspace` put libgstpunch.so (next to the punch binary).
pub fn plugin_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_BIN_EXE_punch"))
        .parent()
        .unwrap()
        .to_path_buf();
    assert!(
        dir.join("libgstpunch.so").exists(),
        "{} has no libgstpunch.so: run `cargo build --workspace` first (scripts/test.sh does)",
        dir.display()
    );
    dir
}

/// Fails with the install hint when a program is missing (a skip would hide a missing install).
pub fn require(program: &str, package: &str) {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{program} is missing: apt-get install {package} (scripts/install-deps.sh)"
    );
}

/// A multi-thread runtime for tests that also block (on child processes) while a server runs.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A UDP port free right now (on every interface).
pub fn free_udp_port() -> u16 {
    punch::client::net::free_udp_port([0, 0, 0, 0].into()).unwrap()
}

/// Single-quotes `s` for sh.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What ffprobe finds in `file`: the distinct codec names of its streams, comma-separated.
pub fn probe_codecs(file: &std::path::Path) -> String {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    // MPEG-TS lists each stream under its program too: one entry per distinct codec.
    let mut codecs: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    codecs.sort();
    codecs.dedup();
    codecs.join(",")
}

/// Waits until `file` holds at least `bytes`; panics with `context` on timeout.
pub fn wait_file(
    file: &std::path::Path,
    bytes: u64,
    within: Duration,
    context: &dyn Fn() -> String,
) {
    let start = std::time::Instant::now();
    while start.elapsed() < within {
        if std::fs::metadata(file).map(|m| m.len()).unwrap_or(0) >= bytes {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{} has {} bytes, not {bytes}, after {within:?}\n{}",
        file.display(),
        std::fs::metadata(file).map(|m| m.len()).unwrap_or(0),
        context()
    );
}

/// A camera pipeline: test pattern → H.264 → MPEG-TS → `sink` (a gst-launch fragment).
pub fn camera_pipeline(sink: &str) -> String {
    format!(
        "gst-launch-1.0 -e videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=25/1 ! openh264enc ! h264parse config-interval=-1 ! mpegtsmux alignment=7 ! {sink}"
    )
}
