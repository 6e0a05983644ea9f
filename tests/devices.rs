//! SRT devices hold sides of streams: real ffmpeg and srt-live-transmit as caller and listener
//! devices, with the settings the API gives them, against real punchsrc and punchsink.
//! MPEG-TS with H.264, decoded by ffprobe.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const MEDIA_WAIT: Duration = Duration::from_secs(30);

struct Setup {
    rt: tokio::runtime::Runtime,
    server: TestServer,
    created: Value,
    dir: tempfile::TempDir,
}

fn setup(name: &str, cam: Value) -> Setup {
    require("srt-live-transmit", "srt-tools");
    require("ffmpeg", "ffmpeg");
    require("gst-launch-1.0", "gstreamer1.0-tools");
    let rt = runtime();
    let server = rt.block_on(start_default());
    let created = rt.block_on(create(
        &server.base,
        json!({ "name": name, "streams": { "cam": cam } }),
    ));
    Setup {
        rt,
        server,
        created,
        dir: tempfile::tempdir().unwrap(),
    }
}

impl Setup {
    fn session(&self) -> &str {
        self.created["session"].as_str().unwrap()
    }

    fn uri(&self, role: &str) -> String {
        format!(
            "punch://{}/{}/cam?token={}",
            self.server.server.local_addr(),
            self.session(),
            stream_token(&self.created, "cam", role)
        )
    }

    fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let (base, token) = (
            self.server.base.clone(),
            self.created["token"].as_str().unwrap().to_string(),
        );
        let path = format!("/api/session/{}{path}", self.session());
        self.rt
            .block_on(async move { api_request(&base, method, &path, &token, body).await })
    }

    /// The device fields of side `role`, once the server has them (a caller's relay starts
    /// with the session).
    fn device(&self, role: &str) -> Value {
        let start = std::time::Instant::now();
        loop {
            let (status, view) = self.admin(reqwest::Method::GET, "", None);
            assert_eq!(status, 200, "{view}");
            let device = &view["streams"][0][role]["device"];
            if device.is_object() {
                return device.clone();
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "no device fields for the {role}: {view}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn strings(&self) -> Value {
        let (status, v) = self.admin(reqwest::Method::GET, "/connect", None);
        assert_eq!(status, 200, "{v}");
        v
    }

    fn healthz(&self) -> Value {
        self.rt.block_on(healthz(&self.server.base))
    }

    fn clip(&self, seconds: u32) {
        let made = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg("testsrc=size=320x240:rate=25")
            .args(["-t", &seconds.to_string(), "-c:v", "libx264", "-preset"])
            .args(["ultrafast", "-g", "25", "-f", "mpegts", "clip.ts"])
            .current_dir(self.dir.path())
            .status()
            .unwrap();
        assert!(made.success(), "ffmpeg could not make a test clip");
    }
}

fn size(file: &std::path::Path) -> u64 {
    std::fs::metadata(file).map(|m| m.len()).unwrap_or(0)
}

/// An ffmpeg camera that can only call (ffmpeg cannot rendezvous), with the generated ffmpeg
/// string, reaches punchsrc through the relay; a stranger calling the camera's relay port with
/// a wrong stream ID is refused and the picture keeps coming.
#[test]
fn an_ffmpeg_caller_camera_reaches_punchsrc_and_a_stranger_is_refused() {
    let s = setup("dev-ffmpeg", json!({ "sender": { "device": "caller" } }));
    s.clip(30);
    let device = s.device("sender");
    assert_eq!(device["mode"], "caller");
    assert_eq!(device["host"], "127.0.0.1");
    let sid = device["streamid"].as_str().unwrap().to_string();
    assert!(sid.starts_with("#!::r=cam,s="), "{sid}");
    let received = s.dir.path().join("received.ts");
    let decoder = Proc::shell(
        s.dir.path(),
        "decoder",
        &format!(
            "gst-launch-1.0 -e punchsrc uri={} ! queue ! filesink location={}",
            sh_quote(&s.uri("receiver")),
            received.display()
        ),
    );
    let strings = s.strings();
    let ffmpeg = strings["for_peer_a"]["ffmpeg"].as_str().unwrap();
    assert!(
        ffmpeg.starts_with("ffmpeg -re -i INPUT -c copy -f mpegts 'srt://127.0.0.1:")
            && ffmpeg.contains("mode=caller")
            && ffmpeg.contains(&format!("latency={}", 200 * 1000))
            && ffmpeg.contains(&format!("streamid={sid}"))
            && !ffmpeg.contains("srt-live-transmit"),
        "{ffmpeg}"
    );
    let camera = Proc::shell(
        s.dir.path(),
        "ffmpeg",
        &ffmpeg.replacen("INPUT", "clip.ts", 1),
    );
    let context = || {
        format!(
            "decoder:\n{}\nffmpeg:\n{}",
            decoder.output(),
            camera.output()
        )
    };
    wait_file(&received, 150_000, MEDIA_WAIT, &context);

    // A stranger calls the camera's port with a guessed stream ID.
    let wrong = device["url"]
        .as_str()
        .unwrap()
        .replace(&sid, "#!::r=cam,s=guessed");
    let before = s.healthz()["relay_strangers"].as_u64().unwrap();
    let mut stranger = Proc::shell(
        s.dir.path(),
        "stranger",
        &format!(
            "exec srt-live-transmit -t:6 udp://:{} {}",
            free_udp_port(),
            sh_quote(&wrong)
        ),
    );
    let start = std::time::Instant::now();
    let exited = loop {
        if let Ok(Some(status)) = stranger.child.try_wait() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the stranger's caller never gave up"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        !stranger.output().contains("connected"),
        "the stranger connected ({exited}):\n{}",
        stranger.output()
    );
    assert!(
        s.healthz()["relay_strangers"].as_u64().unwrap() > before,
        "the relay counts the stranger's handshakes"
    );
    // The stream was not disturbed.
    let now = size(&received);
    wait_file(&received, now + 50_000, MEDIA_WAIT, &context);
    let view = s.admin(reqwest::Method::GET, "", None).1;
    assert_eq!(view["streams"][0]["via"], "caller device", "{view}");
    assert_eq!(view["streams"][0]["path"], "relay", "{view}");
    assert_eq!(
        view["streams"][0]["sender"]["status"], "connected",
        "{view}"
    );
    drop(camera);
    drop(decoder);
    assert_eq!(
        probe_codecs(&received),
        "h264",
        "ffprobe of what punchsrc received"
    );
}

/// A decoder that calls (srt-live-transmit in caller mode, from the generated string) receives
/// what punchsink sends.
#[test]
fn punchsink_reaches_a_caller_decoder() {
    let s = setup("dev-decoder", json!({ "receiver": { "device": "caller" } }));
    let device = s.device("receiver");
    assert_eq!(device["mode"], "caller");
    let camera = Proc::shell(
        s.dir.path(),
        "camera",
        &camera_pipeline(&format!("punchsink uri={}", sh_quote(&s.uri("sender")))),
    );
    let strings = s.strings();
    let slt = strings["for_peer_b"]["srt_live_transmit"].as_str().unwrap();
    assert!(
        slt.starts_with("srt-live-transmit 'srt://127.0.0.1:")
            && slt.contains("mode=caller")
            && slt.contains("latency=200&")
            && slt.ends_with("file://con > received.ts"),
        "{slt}"
    );
    let decoder = Proc::shell(s.dir.path(), "decoder", slt);
    let received = s.dir.path().join("received.ts");
    wait_file(&received, 150_000, MEDIA_WAIT, &|| {
        format!(
            "camera:\n{}\ndecoder:\n{}",
            camera.output(),
            decoder.output()
        )
    });
    drop(decoder);
    drop(camera);
    assert_eq!(probe_codecs(&received), "h264");
}

/// A decoder listening at a known address (srt-live-transmit listening, with the device URL)
/// is called directly by punchsink: no relay.
#[test]
fn punchsink_calls_a_listener_decoder_directly() {
    let port = free_udp_port();
    let s = setup(
        "dev-listener",
        json!({ "receiver": { "device": "listener", "address": format!("127.0.0.1:{port}") } }),
    );
    let device = s.device("receiver");
    let url = device["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("srt://:{port}?mode=listener&passphrase=")),
        "{url}"
    );
    let received = s.dir.path().join("received.ts");
    let decoder = Proc::shell(
        s.dir.path(),
        "decoder",
        &format!(
            "exec srt-live-transmit {} file://con > received.ts",
            sh_quote(url)
        ),
    );
    let camera = Proc::shell(
        s.dir.path(),
        "camera",
        &camera_pipeline(&format!("punchsink uri={}", sh_quote(&s.uri("sender")))),
    );
    wait_file(&received, 150_000, MEDIA_WAIT, &|| {
        format!(
            "camera:\n{}\ndecoder:\n{}",
            camera.output(),
            decoder.output()
        )
    });
    let view = s.admin(reqwest::Method::GET, "", None).1;
    assert_eq!(view["streams"][0]["path"], "direct", "{view}");
    assert_eq!(view["streams"][0]["via"], "listener device", "{view}");
    assert_eq!(s.healthz()["relays"], 0, "no relay for a listener device");
    drop(camera);
    drop(decoder);
    assert_eq!(probe_codecs(&received), "h264");
}

/// Every way of getting a device side wrong is refused with a message that says what to fix,
/// and a caller device the relay has no room for says it waits for relay capacity (and gets
/// its port once a relay frees).
#[tokio::test]
async fn device_settings_errors_and_a_full_relay_are_explained() {
    let srv = start(punch::server::ServerConfig {
        relay: punch::server::relay::RelayConfig {
            max_relays: 1,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    for (cam, expected) in [
        (
            json!({ "sender": { "device": "camera" } }),
            "unknown variant `camera`",
        ),
        (
            json!({ "receiver": { "device": "listener" } }),
            "needs `address`",
        ),
        (
            json!({ "receiver": { "device": "listener", "address": "decoder.local" } }),
            "is not ip:port",
        ),
        (
            json!({ "sender": { "device": "caller", "address": "198.51.100.7:9000" } }),
            "no `address`",
        ),
        (
            json!({ "sender": { "device": "caller" }, "receiver": { "device": "caller" } }),
            "at least one side of a stream must be a Punch peer",
        ),
        (
            json!({ "sender": { "device": "caller", "colour": 1 } }),
            "unknown field `colour`",
        ),
    ] {
        let body = json!({ "streams": { "cam": cam } }).to_string();
        let (status, v) = create_raw(&srv.base, &body).await;
        assert_eq!(status, 400, "{cam}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{cam}: {message}");
        assert!(
            message.contains("streams.cam"),
            "{cam}: names the field: {message}"
        );
    }

    // A server that does not relay cannot have caller devices.
    let no_relay = start(punch::server::ServerConfig {
        path: punch::server::PathPolicy {
            relay: false,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let body = json!({ "streams": { "cam": { "sender": { "device": "caller" } } } }).to_string();
    let (status, v) = create_raw(&no_relay.base, &body).await;
    assert_eq!(status, 400, "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("--no-relay") && message.contains("streams.cam.sender"),
        "{message}"
    );

    // The one relay goes to the first caller device; the second waits, and says so.
    let first = create(
        &srv.base,
        json!({ "streams": { "cam": { "sender": { "device": "caller" } } } }),
    )
    .await;
    let second = create(
        &srv.base,
        json!({ "streams": { "cam": { "sender": { "device": "caller" } } } }),
    )
    .await;
    let view = |created: &Value| {
        let (base, session, token) = (
            srv.base.clone(),
            created["session"].as_str().unwrap().to_string(),
            created["token"].as_str().unwrap().to_string(),
        );
        async move { get_session(&base, &session, &token).await.1 }
    };
    let waiting = within("the second stream to explain", async {
        loop {
            let v = view(&second).await;
            if v["streams"][0]["path_reason"]
                .as_str()
                .is_some_and(|r| r.contains("waiting"))
            {
                break v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let reason = waiting["streams"][0]["path_reason"].as_str().unwrap();
    assert!(
        reason.contains("no relay capacity") && reason.contains("--relay-max"),
        "{reason}"
    );
    assert!(waiting["streams"][0]["sender"]["device"].is_object());
    // Changing the first side to a Punch peer frees its relay: the second gets one.
    let (status, v) = api_request(
        &srv.base,
        reqwest::Method::PUT,
        &format!(
            "/api/session/{}/stream/cam/sender",
            first["session"].as_str().unwrap()
        ),
        first["token"].as_str().unwrap(),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert!(v["streams"][0]["sender"]["device"].is_null(), "{v}");
    within("the second stream's relay", async {
        loop {
            let v = view(&second).await;
            if v["streams"][0]["path"] == "relay" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // A bad side change is refused and changes nothing.
    let (status, v) = api_request(
        &srv.base,
        reqwest::Method::PUT,
        &format!(
            "/api/session/{}/stream/cam/camera",
            second["session"].as_str().unwrap()
        ),
        second["token"].as_str().unwrap(),
        Some(json!({ "device": "caller" })),
    )
    .await;
    assert_eq!(status, 404, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("use sender or receiver")
    );
}

/// What was typed into a device stays right: a caller device's port, stream ID and passphrase,
/// and a listener device's address, survive a server restart, and the relay takes the same port
/// again.
#[tokio::test]
async fn device_settings_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = punch::server::ServerConfig {
        db: dir.path().join("punch.db").display().to_string(),
        ..Default::default()
    };
    let srv = start(config.clone()).await;
    let created = create(
        &srv.base,
        json!({ "name": "kept", "streams": {
            "cam": { "sender": { "device": "caller" } },
            "pgm": { "receiver": { "device": "listener", "address": "198.51.100.7:9000" } }
        } }),
    )
    .await;
    let token = created["token"].as_str().unwrap().to_string();
    let device = |base: String, token: String| async move {
        within("the caller device's fields", async {
            loop {
                let (_, v) = get_session(&base, "kept", &token).await;
                if v["streams"][0]["sender"]["device"].is_object() {
                    break v;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
    };
    let before = device(srv.base.clone(), token.clone()).await;
    srv.server.shutdown().await;
    let srv = start(config).await;
    let after = device(srv.base.clone(), token.clone()).await;
    for field in ["port", "streamid", "passphrase", "url"] {
        assert_eq!(
            after["streams"][0]["sender"]["device"][field],
            before["streams"][0]["sender"]["device"][field],
            "{field}"
        );
    }
    assert_eq!(after["streams"][0]["path"], "relay", "{after}");
    assert_eq!(
        after["streams"][1]["receiver"]["device"]["url"],
        before["streams"][1]["receiver"]["device"]["url"]
    );
    assert_eq!(
        after["streams"][1]["receiver"]["device"]["host"],
        "198.51.100.7"
    );
    assert_eq!(healthz(&srv.base).await["relays"], 1);
}
