//! The connection strings work with the real third-party tools: a session's generated
//! srt-live-transmit string receives what a punchsink sends, and the generated ffmpeg pipe
//! sends what a punchsrc receives. MPEG-TS with H.264, decoded by ffprobe.
//!
//! The tool's side of the stream is held by `punch peer` (the CLI a tool user runs), which
//! registers the tool's UDP port with the session.

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

fn setup(name: &str) -> Setup {
    require("srt-live-transmit", "srt-tools");
    require("ffmpeg", "ffmpeg");
    require("gst-launch-1.0", "gstreamer1.0-tools");
    let rt = runtime();
    let server = rt.block_on(start_default());
    let created = rt.block_on(create(&server.base, json!({ "name": name })));
    Setup {
        rt,
        server,
        created,
        dir: tempfile::tempdir().unwrap(),
    }
}

impl Setup {
    fn uri(&self, role: &str) -> String {
        format!(
            "punch://{}/{}/default?token={}",
            self.server.server.local_addr(),
            self.created["session"].as_str().unwrap(),
            stream_token(&self.created, "default", role)
        )
    }

    /// `punch peer` holding `role` for a tool bound to `port`, once it has the peer's coordinates.
    fn tool_peer(&self, role: &str, port: u16) -> Proc {
        let script = format!(
            "exec {} peer {} --port {port}",
            sh_quote(env!("CARGO_BIN_EXE_punch")),
            sh_quote(&self.uri(role))
        );
        Proc::shell(self.dir.path(), &format!("punch-peer-{role}"), &script)
    }

    fn connection_strings(&self) -> Value {
        let base = self.server.base.clone();
        let session = self.created["session"].as_str().unwrap().to_string();
        let token = self.created["token"].as_str().unwrap().to_string();
        self.rt.block_on(async move {
            let path = format!("/api/session/{session}/connect");
            let (status, v) = api_request(&base, reqwest::Method::GET, &path, &token, None).await;
            assert_eq!(status, 200, "{v}");
            v
        })
    }
}

#[test]
fn srt_live_transmit_receives_from_punchsink_with_the_generated_string() {
    let s = setup("interop-slt");
    let mut peer = s.tool_peer("receiver", free_udp_port());
    peer.wait_for("Registered as the receiver", MEDIA_WAIT);
    let camera = Proc::shell(
        s.dir.path(),
        "camera",
        &camera_pipeline(&format!("punchsink uri={}", sh_quote(&s.uri("sender")))),
    );
    // `punch peer` prints the coordinates once it has them (and has primed its port).
    peer.wait_for("srt-live-transmit: ", MEDIA_WAIT);
    let strings = s.connection_strings();
    let slt = strings["for_peer_b"]["srt_live_transmit"].as_str().unwrap();
    assert!(slt.ends_with("file://con > received.ts"), "{slt}");
    let tool = Proc::shell(s.dir.path(), "srt-live-transmit", slt);
    let received = s.dir.path().join("received.ts");
    wait_file(&received, 150_000, MEDIA_WAIT, &|| {
        format!(
            "camera:\n{}\ntool:\n{}\npeer:\n{}",
            camera.output(),
            tool.output(),
            peer.output()
        )
    });
    drop(tool);
    drop(camera);
    assert_eq!(
        probe_codecs(&received),
        "h264",
        "ffprobe of what srt-live-transmit received"
    );
}

#[test]
fn the_generated_ffmpeg_pipe_sends_to_punchsrc() {
    let s = setup("interop-ffmpeg");
    // A short H.264 clip to send (the generated string says INPUT).
    let clip = s.dir.path().join("clip.ts");
    let made = std::process::Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=25",
            "-t",
            "20",
        ])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-f",
            "mpegts",
        ])
        .arg(&clip)
        .status()
        .unwrap();
    assert!(made.success(), "ffmpeg could not make a test clip");
    let mut peer = s.tool_peer("sender", free_udp_port());
    peer.wait_for("Registered as the sender", MEDIA_WAIT);
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
    peer.wait_for("srt-live-transmit: ", MEDIA_WAIT);
    let strings = s.connection_strings();
    let ffmpeg = strings["for_peer_a"]["ffmpeg"].as_str().unwrap();
    assert!(ffmpeg.starts_with("ffmpeg -re -i INPUT "), "{ffmpeg}");
    assert!(
        strings["for_peer_a"]["notes"]["ffmpeg"]
            .as_str()
            .unwrap()
            .contains("cannot be an SRT rendezvous peer")
    );
    let tool = Proc::shell(
        s.dir.path(),
        "ffmpeg",
        &ffmpeg.replacen("INPUT", "clip.ts", 1),
    );
    wait_file(&received, 150_000, MEDIA_WAIT, &|| {
        format!(
            "decoder:\n{}\nffmpeg:\n{}\npeer:\n{}",
            decoder.output(),
            tool.output(),
            peer.output()
        )
    });
    drop(tool);
    drop(decoder);
    assert_eq!(
        probe_codecs(&received),
        "h264",
        "ffprobe of what punchsrc received"
    );
}
