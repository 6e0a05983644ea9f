//! What reaches the decoder: a camera's picture from the moment its link is up, a file whole,
//! and a source faster than the link never leaving a link connected with nothing moving.
//! Real encoders, muxers, decoders, srtsink and srtsrc, the real server on loopback.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;
use serde_json::json;

/// Counts the buffers leaving `pad`; with `after`, only once it is set.
fn count_buffers(pad: &gst::Pad, after: Option<Arc<AtomicBool>>) -> Arc<AtomicU64> {
    let n = Arc::new(AtomicU64::new(0));
    let counter = n.clone();
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        if after.as_ref().is_none_or(|a| a.load(Ordering::SeqCst)) {
            counter.fetch_add(1, Ordering::SeqCst);
        }
        gst::PadProbeReturn::Ok
    });
    n
}

fn wait_eos(p: &gst::Pipeline) {
    wait_msg(p, "EOS", |m| {
        matches!(m.view(), gst::MessageView::Eos(_)).then_some(())
    });
}

/// Waits until the server has the `role` side of the session's default stream registered.
fn wait_registered(env: &Env, created: &serde_json::Value, role: &str) {
    let session = created["session"].as_str().unwrap();
    let admin = created["token"].as_str().unwrap();
    env.wait_view(session, admin, &format!("the {role} registered"), |v| {
        v["streams"][0][role]["status"] != "waiting"
    });
}

/// The receiver's cumulative byte count (srtsrc's, kept across reconnections).
fn received_bytes(punchsrc: &gst::Element) -> u64 {
    punchsrc
        .property::<Option<gst::Structure>>("stats")
        .and_then(|s| s.get::<u64>("bytes-received-total").ok())
        .unwrap_or(0)
}

#[test]
fn a_camera_started_after_its_decoder_is_decoded_from_the_moment_its_link_is_up() {
    require(&[
        "videotestsrc",
        "openh264enc",
        "openh264dec",
        "h264parse",
        "mpegtsmux",
        "tsdemux",
    ]);
    let env = Env::new();
    let created = env.create(json!({ "name": "first-picture" }));
    let rx = launch(&format!(
        "punchsrc uri=\"{}\" ! tsdemux ! h264parse ! openh264dec ! fakesink name=out sync=false",
        env.uri(&created, "default", "receiver")
    ));
    let decoded = count_buffers(
        &rx.by_name("out").unwrap().static_pad("sink").unwrap(),
        None,
    );
    play(&rx);
    wait_registered(&env, &created, "receiver");

    // 300 frames, GOP 90 (openh264enc's default): without a key frame on demand the receiver
    // waits up to 90 frames for its first picture.
    let tx = launch(&format!(
        "videotestsrc is-live=true num-buffers=300 ! video/x-raw,width=320,height=240,framerate=50/1 \
         ! openh264enc name=enc ! h264parse ! mpegtsmux ! punchsink name=punch uri=\"{}\"",
        env.uri(&created, "default", "sender")
    ));
    let linked = Arc::new(AtomicBool::new(false));
    let flag = linked.clone();
    // in the posting thread: the flag is set the moment the element sees its link up
    tx.bus().unwrap().set_sync_handler(move |_, msg| {
        if let Some(s) = element_msg(msg, "punch-link")
            && s.get::<bool>("connected").unwrap()
        {
            flag.store(true, Ordering::SeqCst);
        }
        gst::BusSyncReply::Pass
    });
    let encoded = count_buffers(
        &tx.by_name("enc").unwrap().static_pad("src").unwrap(),
        Some(linked.clone()),
    );
    play(&tx);
    wait_eos(&tx);
    stop(&tx);
    let sent = encoded.load(Ordering::SeqCst);
    assert!(
        linked.load(Ordering::SeqCst) && sent > 250,
        "the link came up late: {sent} frames after it"
    );
    // the demuxer keeps the last frame until the next one starts
    let enough = sent * 95 / 100;
    let within = Duration::from_secs(5);
    let start = Instant::now();
    while decoded.load(Ordering::SeqCst) < enough && start.elapsed() < within {
        std::thread::sleep(Duration::from_millis(20));
    }
    let got = decoded.load(Ordering::SeqCst);
    stop(&rx);
    assert!(
        got >= enough,
        "decoded {got} of the {sent} frames sent after the link came up (needs 95 %)"
    );
}

/// Deterministic content that a shifted or truncated copy cannot match.
fn file_content(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[test]
fn a_file_sent_before_its_receiver_exists_arrives_whole() {
    require(&["filesrc"]);
    let env = Env::new();
    let created = env.create(json!({ "name": "file" }));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.ts");
    let content = file_content(1_000_000);
    std::fs::write(&path, &content).unwrap();
    // a file is not live: punchsink holds it until the receiver's link is up, then sends it
    // as fast as the link takes it and finishes only once it is out
    let tx = launch(&format!(
        "filesrc location=\"{}\" ! punchsink uri=\"{}\"",
        path.display(),
        env.uri(&created, "default", "sender")
    ));
    play(&tx);
    wait_registered(&env, &created, "sender");
    let (rx, sink, _) = receiver(&env.uri(&created, "default", "receiver"));
    play(&rx);
    wait_eos(&tx);
    // what gst-launch-1.0 does at EOS
    stop(&tx);
    let mut got = Vec::with_capacity(content.len());
    let start = Instant::now();
    while got.len() < content.len() && start.elapsed() < WAIT {
        if let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(100)) {
            got.extend_from_slice(&sample.buffer().unwrap().map_readable().unwrap());
        }
    }
    stop(&rx);
    assert_eq!(got.len(), content.len(), "bytes received");
    assert!(
        got == content,
        "the received file differs from the sent one"
    );
}

#[test]
fn a_file_without_a_receiver_fails_after_hold_timeout() {
    require(&["filesrc"]);
    let env = Env::new();
    let created = env.create(json!({ "name": "file-alone" }));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.ts");
    std::fs::write(&path, file_content(50_000)).unwrap();
    let tx = launch(&format!(
        "filesrc location=\"{}\" ! punchsink hold-timeout=2 uri=\"{}\"",
        path.display(),
        env.uri(&created, "default", "sender")
    ));
    let start = Instant::now();
    play(&tx);
    let (err, text) = wait_error(&tx, WAIT);
    let took = start.elapsed();
    assert!(err.matches(gst::ResourceError::OpenWrite), "{err}");
    assert!(
        text.contains("hold-timeout=2 s") && text.contains("Start the receiver"),
        "{text}"
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(8),
        "failed after {took:?}"
    );
    stop(&tx);
}

/// An unpaced source into punchsink: samples the receiver's bytes every 100 ms for `run`
/// after the link came up. Returns (bytes received, the longest time the sender was connected
/// while the receiver got nothing, the sender's bus warnings).
fn flood(latency: u32, max_bitrate: Option<u64>, run: Duration) -> (u64, Duration, Vec<String>) {
    let env = Env::new();
    let created = env.create(json!({ "name": "flood" }));
    let rx = launch(&format!(
        "punchsrc name=punch uri=\"{}\" ! fakesink sync=false",
        env.uri(&created, "default", "receiver")
    ));
    let rx_punch = rx.by_name("punch").unwrap();
    play(&rx);
    wait_registered(&env, &created, "receiver");
    let cap = max_bitrate
        .map(|b| format!("max-bitrate={b}"))
        .unwrap_or_default();
    let tx = launch(&format!(
        "fakesrc sizetype=fixed sizemax=1316 filltype=zero ! punchsink name=punch latency={latency} {cap} uri=\"{}\"",
        env.uri(&created, "default", "sender")
    ));
    let tx_punch = tx.by_name("punch").unwrap();
    play(&tx);
    wait_msg(&tx, "the link up", |m| {
        element_msg(m, "punch-link").filter(|s| s.get::<bool>("connected").unwrap())
    });
    let connected = || {
        tx_punch
            .property::<Option<gst::Structure>>("stats")
            .is_some_and(|s| s.has_field("rtt-ms"))
    };
    let start = Instant::now();
    let (mut last, mut last_change) = (received_bytes(&rx_punch), Instant::now());
    let mut frozen = Duration::ZERO;
    let mut warnings = Vec::new();
    let bus = tx.bus().unwrap();
    while start.elapsed() < run {
        std::thread::sleep(Duration::from_millis(100));
        let now = received_bytes(&rx_punch);
        if now != last || !connected() {
            (last, last_change) = (now, Instant::now());
        }
        frozen = frozen.max(last_change.elapsed());
        while let Some(msg) = bus.pop() {
            match msg.view() {
                gst::MessageView::Warning(w) => warnings.push(w.error().to_string()),
                gst::MessageView::Error(e) => panic!("sender error: {}", e.error()),
                _ => {}
            }
        }
    }
    stop(&tx);
    stop(&rx);
    (last, frozen, warnings)
}

/// libsrt's default receiver buffer, in payload bytes: what the defect froze at.
const RECEIVER_BUFFER: u64 = 8192 * 1316;

#[test]
fn a_source_faster_than_the_link_keeps_flowing() {
    // at 1 s latency the receiver's buffer holds 86 Mbit/s: unpaced, the source fills it in a
    // fraction of a second, and without a rate cap libsrt never sends again
    let (bytes, frozen, warnings) = flood(1000, None, Duration::from_secs(6));
    assert!(
        bytes > 2 * RECEIVER_BUFFER,
        "received only {bytes} bytes; warnings: {warnings:?}"
    );
    assert!(
        frozen < Duration::from_secs(5),
        "connected for {frozen:?} with nothing received; warnings: {warnings:?}"
    );
}

#[test]
fn a_link_that_stops_carrying_data_is_restarted_with_a_warning() {
    // no cap (libsrt's 1 Gbit/s) and 2 s latency: the receiver's buffer overflows for sure
    let (bytes, frozen, warnings) = flood(2000, Some(1_000_000_000), Duration::from_secs(10));
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("stalled") && w.contains("max-bitrate")),
        "no stall warning; warnings: {warnings:?}"
    );
    assert!(
        frozen < Duration::from_secs(5),
        "connected for {frozen:?} with nothing received"
    );
    assert!(
        bytes > RECEIVER_BUFFER + RECEIVER_BUFFER / 2,
        "nothing carried after the restart: {bytes} bytes"
    );
}
