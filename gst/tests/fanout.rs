//! One `punchsink`, several `punchsrc`: each receiver its own SRT link from the sender. Real
//! H.264 encoder and decoders, srtsink and srtsrc, the real server on loopback; the receiver
//! that is killed is a `gst-launch-1.0` process killed with SIGKILL.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;
use serde_json::{Value, json};

const FPS: u64 = 25;
const LATENCY_MS: u64 = 200;
/// The largest gap a receiver that is not disturbed may show: two frames and the SRT latency.
const GAP_BOUND: Duration = Duration::from_millis(2 * 1000 / FPS + LATENCY_MS);

/// What the sender's bus said: the receivers its `punch-health` messages were about, warnings,
/// errors.
#[derive(Default)]
struct SenderBus {
    healthy: BTreeSet<u32>,
    warnings: Vec<String>,
    errors: Vec<String>,
}

/// A live H.264 camera into `punchsink`; a key frame only every `gop` frames unless asked.
fn camera(uri: &str, gop: u32) -> (gst::Pipeline, Arc<Mutex<SenderBus>>) {
    let tx = launch(&format!(
        "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate={FPS}/1 \
         ! openh264enc gop-size={gop} ! h264parse config-interval=-1 ! mpegtsmux alignment=7 \
         ! punchsink name=punch uri=\"{uri}\""
    ));
    let seen = Arc::new(Mutex::new(SenderBus::default()));
    let log = seen.clone();
    tx.bus().unwrap().set_sync_handler(move |_, msg| {
        let mut log = log.lock().unwrap();
        if let Some(s) = element_msg(msg, "punch-health")
            && s.get::<bool>("connected").unwrap_or(false)
            && let Ok(k) = s.get::<u32>("receiver")
        {
            log.healthy.insert(k);
        }
        match msg.view() {
            gst::MessageView::Warning(w) => log.warnings.push(w.error().to_string()),
            gst::MessageView::Error(e) => log.errors.push(e.error().to_string()),
            _ => {}
        }
        gst::BusSyncReply::Drop
    });
    (tx, seen)
}

/// A decoder behind `punchsrc`, with the arrival time of every decoded frame.
struct Decoder {
    pipeline: gst::Pipeline,
    frames: Arc<Mutex<Vec<Instant>>>,
}

impl Decoder {
    fn new(uri: &str) -> Decoder {
        let d = Decoder::idle(uri);
        play(&d.pipeline);
        d
    }

    /// Not started yet.
    fn idle(uri: &str) -> Decoder {
        let pipeline = launch(&format!(
            "punchsrc name=punch uri=\"{uri}\" ! tsdemux ! h264parse ! openh264dec ! fakesink name=out sync=false"
        ));
        let frames = Arc::new(Mutex::new(Vec::new()));
        let log = frames.clone();
        pipeline
            .by_name("out")
            .unwrap()
            .static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                log.lock().unwrap().push(Instant::now());
                gst::PadProbeReturn::Ok
            });
        Decoder { pipeline, frames }
    }

    fn decoded(&self) -> usize {
        self.frames.lock().unwrap().len()
    }

    /// Waits until `n` frames were decoded.
    fn wait_frames(&self, n: usize, what: &str) {
        let start = Instant::now();
        while self.decoded() < n {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{what}: {} frames decoded, waited for {n}",
                self.decoded()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The largest gap between decoded frames in `[from, to]`.
    fn largest_gap(&self, from: Instant, to: Instant) -> Duration {
        let frames = self.frames.lock().unwrap();
        let window: Vec<Instant> = frames
            .iter()
            .copied()
            .filter(|t| *t >= from && *t <= to)
            .collect();
        assert!(
            window.len() > 10,
            "only {} frames in the window",
            window.len()
        );
        window
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default()
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// A receiver in a `gst-launch-1.0` process of its own (killed on drop).
struct Process(std::process::Child);

impl Process {
    fn receiver(uri: &str) -> Process {
        let plugin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug");
        assert!(
            plugin.join("libgstpunch.so").exists(),
            "{} has no libgstpunch.so: run `cargo build --workspace` first",
            plugin.display()
        );
        let child = std::process::Command::new("gst-launch-1.0")
            .args([
                "-q",
                "punchsrc",
                &format!("uri=\"{uri}\""),
                "!",
                "tsdemux",
                "!",
            ])
            .args([
                "h264parse",
                "!",
                "openh264dec",
                "!",
                "fakesink",
                "sync=false",
            ])
            .env("GST_PLUGIN_PATH", &plugin)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("gst-launch-1.0 runs (gstreamer1.0-tools, scripts/install-deps.sh)");
        Process(child)
    }

    fn alive(&mut self) -> bool {
        self.0.try_wait().is_ok_and(|status| status.is_none())
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The stream's view once `pred` holds for its `receivers` list.
fn wait_links(env: &Env, created: &Value, what: &str, pred: impl Fn(&[Value]) -> bool) -> Value {
    let session = created["session"].as_str().unwrap();
    let admin = created["token"].as_str().unwrap();
    let view = env.wait_view(session, admin, what, |v| {
        v["streams"][0]["receivers"]
            .as_array()
            .is_some_and(|l| pred(l))
    });
    view["streams"][0].clone()
}

fn connected(link: &Value) -> bool {
    link["state"] == "CONNECTED" || link["state"] == "RELAYING"
}

#[test]
fn three_receivers_decode_and_one_killed_does_not_disturb_the_others() {
    require(&[
        "videotestsrc",
        "openh264enc",
        "openh264dec",
        "h264parse",
        "mpegtsmux",
        "tsdemux",
    ]);
    let env = Env::new();
    let created = env.create(json!({
        "name": "pgm-return",
        "latency": LATENCY_MS,
        "streams": { "pgm": { "receivers": 3, "label": "PGM" } }
    }));
    assert_eq!(
        created["streams"],
        json!(["pgm"]),
        "one stream, however many receivers"
    );
    let rx_uri = env.uri(&created, "pgm", "receiver");
    let (tx, sender_bus) = camera(&env.uri(&created, "pgm", "sender"), 50);
    play(&tx);
    let rx1 = Decoder::new(&rx_uri);
    let mut rx2 = Process::receiver(&rx_uri);
    let rx3 = Decoder::new(&rx_uri);
    rx1.wait_frames(25, "receiver 1");
    rx3.wait_frames(25, "receiver 3");
    let stream = wait_links(&env, &created, "three linked receivers with health", |l| {
        l.len() == 3
            && l.iter().all(|r| {
                connected(r)
                    && r["receiver_peer"]["last_health"].is_object()
                    && r["sender"]["last_health"].is_object()
            })
    });
    assert!(
        stream["sent_bitrate"].as_f64().is_some_and(|b| b > 0.0),
        "the sender's total bitrate: {stream}"
    );
    {
        let bus = sender_bus.lock().unwrap();
        assert_eq!(
            bus.healthy,
            BTreeSet::from([1, 2, 3]),
            "punch-health on the sender's bus names each receiver"
        );
    }

    // the receiver in its own process dies; the others keep decoding without a gap
    assert!(rx2.alive(), "the gst-launch-1.0 receiver ended by itself");
    let killed_at = Instant::now();
    rx2.kill();
    std::thread::sleep(Duration::from_secs(4));
    let until = Instant::now();
    for (name, rx) in [("receiver 1", &rx1), ("receiver 3", &rx3)] {
        let gap = rx.largest_gap(killed_at - Duration::from_millis(500), until);
        assert!(
            gap < GAP_BOUND,
            "{name}: a {gap:?} gap in its pictures while another receiver was killed (bound {GAP_BOUND:?})"
        );
    }

    // it comes back (a new process would be the same): the free slot is its own again
    let rx2 = Decoder::new(&rx_uri);
    rx2.wait_frames(25, "the killed receiver after its restart");
    wait_links(&env, &created, "the killed receiver linked again", |l| {
        l.len() == 3 && l.iter().all(connected)
    });
    assert!(
        sender_bus.lock().unwrap().errors.is_empty(),
        "the sender posted errors: {:?}",
        sender_bus.lock().unwrap().errors
    );
    drop((rx1, rx2, rx3));
    stop(&tx);
}

#[test]
fn a_receiver_joining_late_decodes_within_a_second_of_its_link() {
    require(&[
        "videotestsrc",
        "openh264enc",
        "openh264dec",
        "h264parse",
        "mpegtsmux",
        "tsdemux",
    ]);
    let env = Env::new();
    let created = env.create(json!({
        "name": "late-joiner",
        "latency": LATENCY_MS,
        "streams": { "pgm": { "receivers": 2 } }
    }));
    let rx_uri = env.uri(&created, "pgm", "receiver");
    // a key frame every 20 s unless one is asked for
    let (tx, _bus) = camera(&env.uri(&created, "pgm", "sender"), 500);
    play(&tx);
    let first = Decoder::new(&rx_uri);
    first.wait_frames(25, "the first receiver");
    std::thread::sleep(Duration::from_secs(5));

    let late = Decoder::idle(&rx_uri);
    let linked = Arc::new(Mutex::new(None::<Instant>));
    let flag = linked.clone();
    late.pipeline
        .bus()
        .unwrap()
        .set_sync_handler(move |_, msg| {
            if let Some(s) = element_msg(msg, "punch-link")
                && s.get::<bool>("connected").unwrap_or(false)
            {
                flag.lock().unwrap().get_or_insert_with(Instant::now);
            }
            gst::BusSyncReply::Drop
        });
    play(&late.pipeline);
    late.wait_frames(1, "the late receiver");
    let up = linked
        .lock()
        .unwrap()
        .expect("the late receiver's link came up");
    let first_picture = late.frames.lock().unwrap()[0];
    let after = first_picture.saturating_duration_since(up);
    assert!(
        after < Duration::from_secs(1),
        "the late receiver's first picture came {after:?} after its link (key frame request)"
    );
    // and the first receiver was not disturbed by the key frame or the new link
    let gap = first.largest_gap(up - Duration::from_secs(1), Instant::now());
    assert!(gap < GAP_BOUND, "{gap:?}");
    drop((first, late));
    stop(&tx);
}

#[test]
fn a_receiver_link_that_fails_for_good_restarts_alone_and_the_others_go_on() {
    require(&[
        "videotestsrc",
        "openh264enc",
        "openh264dec",
        "h264parse",
        "mpegtsmux",
        "tsdemux",
    ]);
    let env = Env::new();
    let created = env.create(json!({
        "name": "leg-fails",
        "latency": LATENCY_MS,
        "streams": { "pgm": { "receivers": 2 } }
    }));
    let (tx, sender_bus) = camera(&env.uri(&created, "pgm", "sender"), 50);
    // receiver 2 never comes: its leg gives up after 2 s (peer-timeout), and again after each
    // restart
    tx.by_name("punch")
        .unwrap()
        .set_property("peer-timeout", 2u32);
    let warnings = || sender_bus.lock().unwrap().warnings.clone();
    play(&tx);
    let rx = Decoder::new(&env.uri(&created, "pgm", "receiver"));
    rx.wait_frames(25, "receiver 1");
    let from = Instant::now();
    // past two failures of the empty leg, with a restart in between
    let start = Instant::now();
    while warnings()
        .iter()
        .filter(|w| w.contains("receiver 2"))
        .count()
        < 2
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the empty leg did not fail twice: {:?}",
            warnings()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let gap = rx.largest_gap(from, Instant::now());
    assert!(
        gap < GAP_BOUND,
        "receiver 1 had a {gap:?} gap while receiver 2's link failed"
    );
    assert!(
        warnings()[0].contains("the other receivers are not affected"),
        "{:?}",
        warnings()
    );
    // and the restarted leg works: receiver 2 comes and decodes
    let rx2 = Decoder::new(&env.uri(&created, "pgm", "receiver"));
    rx2.wait_frames(25, "receiver 2, on the restarted leg");
    assert!(
        sender_bus.lock().unwrap().errors.is_empty(),
        "{:?}",
        sender_bus.lock().unwrap().errors
    );
    drop((rx, rx2));
    stop(&tx);
}
