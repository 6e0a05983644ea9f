//! Benchmark (prints numbers, asserts nothing): punchsink/punchsrc against hand-configured
//! srtsink/srtsrc rendezvous on this machine.
//!
//! * setup: from setting both pipelines to PLAYING to the receiver's first buffer, each side's
//!   pipeline started at once; the Punch pair also registers with an in-process server first.
//! * first picture: a camera (test pattern → openh264enc → mpegtsmux) started once its decoder
//!   is up, from the camera's PLAYING to the first decoded frame;
//! * throughput: once connected, the sender pushes `--megabytes` of 1316-byte buffers paced at
//!   `--rate` Mbit/s; the receiver's byte rate from its first to its last buffer, the share of
//!   bytes delivered, and the process's CPU time per MB.
//!
//! With `--tunnel`: the Punch pair on UDP against the Punch pair with both sides tunnelled
//! (`tunnel=true`: SRT over WebSockets through the server's relay), side by side: setup and
//! throughput at `--rate`.
//!
//! ```sh
//! cargo run --release -p gst-plugin-punch --example elements-bench -- --runs 10
//! cargo run --release -p gst-plugin-punch --example elements-bench -- --tunnel --runs 5 --rate 20
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gst::prelude::*;
use punch::protocol::Role;

const CHUNK: usize = 1316;

fn free_port() -> u16 {
    punch::client::net::free_udp_port([127, 0, 0, 1].into()).unwrap()
}

fn pipeline(desc: &str) -> gst::Pipeline {
    gst::parse::launch(desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap()
}

/// Sender and receiver descriptions for one run.
struct Pair {
    sender: String,
    receiver: String,
}

fn punch_pair(
    rt: &tokio::runtime::Runtime,
    base: &str,
    addr: std::net::SocketAddr,
    n: usize,
) -> Pair {
    punch_pair_with(rt, base, addr, n, false)
}

fn punch_pair_with(
    rt: &tokio::runtime::Runtime,
    base: &str,
    addr: std::net::SocketAddr,
    n: usize,
    tunnel: bool,
) -> Pair {
    let rest = punch::client::rest::Rest::new(base).expect("a server URL");
    let created = rt
        .block_on(rest.create(&serde_json::json!({ "name": format!("bench-{n}") }), None))
        .expect("create");
    let tokens = &created.stream_tokens["default"];
    let uri = |role| format!("punch://{addr}/bench-{n}?token={}", tokens.get(role));
    Pair {
        sender: format!(
            "punchsink name=sink tunnel={tunnel} uri=\"{}\"",
            uri(Role::Sender)
        ),
        receiver: format!(
            "punchsrc name=src tunnel={tunnel} uri=\"{}\"",
            uri(Role::Receiver)
        ),
    }
}

fn bare_pair() -> Pair {
    let (a, b) = (free_port(), free_port());
    let srt = |peer: u16, local: u16| {
        format!(
            "srt://127.0.0.1:{peer}?mode=rendezvous&localaddress=0.0.0.0&localport={local}&latency=200"
        )
    };
    Pair {
        // as a user would type it
        sender: format!("srtsink name=sink uri=\"{}\"", srt(b, a)),
        receiver: format!("srtsrc name=src uri=\"{}\"", srt(a, b)),
    }
}

/// PLAYING → first received buffer.
fn setup_time(pair: &Pair) -> Duration {
    let tx = pipeline(&format!(
        "fakesrc is-live=true sizetype=fixed sizemax={CHUNK} filltype=zero format=time datarate=1316000 ! {}",
        pair.sender
    ));
    let rx = pipeline(&format!("{} ! appsink name=out sync=false", pair.receiver));
    let out = rx
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let t0 = Instant::now();
    rx.set_state(gst::State::Playing).unwrap();
    tx.set_state(gst::State::Playing).unwrap();
    let got = out.try_pull_sample(gst::ClockTime::from_seconds(20));
    let elapsed = t0.elapsed();
    assert!(got.is_some(), "no buffer within 20 s");
    tx.set_state(gst::State::Null).unwrap();
    rx.set_state(gst::State::Null).unwrap();
    elapsed
}

/// A camera (live test pattern, H.264 with its parameter sets before every key frame, MPEG-TS)
/// started once its decoder is up: from the camera's PLAYING to the first decoded frame.
/// The camera pipeline is the one `docs/elements.md` recommends.
fn first_frame(pair: &Pair) -> Duration {
    let rx = pipeline(&format!(
        "{} ! tsdemux ! h264parse ! openh264dec ! appsink name=out sync=false",
        pair.receiver
    ));
    let out = rx
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    rx.set_state(gst::State::Playing).unwrap();
    // the decoder is up: srtsrc binds at once; punchsrc once it registered
    if pair.receiver.starts_with("punchsrc") {
        let bus = rx.bus().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(Instant::now() < deadline, "the receiver never registered");
            let msg = bus.timed_pop_filtered(
                gst::ClockTime::from_mseconds(100),
                &[gst::MessageType::Element],
            );
            if msg.and_then(|m| m.structure().map(|s| s.name() == "punch-session")) == Some(true) {
                break;
            }
        }
    }
    let tx = pipeline(&format!(
        "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=50/1 \
         ! openh264enc ! h264parse config-interval=-1 ! mpegtsmux alignment=7 ! {}",
        pair.sender
    ));
    let t0 = Instant::now();
    tx.set_state(gst::State::Playing).unwrap();
    let got = out.try_pull_sample(gst::ClockTime::from_seconds(20));
    let elapsed = t0.elapsed();
    assert!(got.is_some(), "no decoded frame within 20 s");
    tx.set_state(gst::State::Null).unwrap();
    rx.set_state(gst::State::Null).unwrap();
    elapsed
}

/// Received Mbit/s, % of bytes delivered, process CPU seconds, for a paced sender.
fn throughput(pair: &Pair, bytes: usize, rate_mbps: f64) -> (f64, f64, f64) {
    let tx = pipeline(&format!(
        "appsrc name=in is-live=true format=bytes block=true max-bytes=262144 caps=application/x-bench ! {}",
        pair.sender
    ));
    let rx = pipeline(&format!(
        "{} ! appsink name=out sync=false emit-signals=true",
        pair.receiver
    ));
    let out = rx
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let first = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let last = Arc::new(std::sync::Mutex::new(None::<Instant>));
    {
        let (received, first, last) = (received.clone(), first.clone(), last.clone());
        out.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let now = Instant::now();
                    first.lock().unwrap().get_or_insert(now);
                    *last.lock().unwrap() = Some(now);
                    received.fetch_add(
                        sample.buffer().map_or(0, |b| b.size() as u64),
                        Ordering::Relaxed,
                    );
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    rx.set_state(gst::State::Playing).unwrap();
    tx.set_state(gst::State::Playing).unwrap();
    let sink = tx.by_name("sink").unwrap();
    let start = Instant::now();
    while !sink.property::<gst::Structure>("stats").has_field("rtt-ms") {
        assert!(start.elapsed() < Duration::from_secs(20), "never connected");
        std::thread::sleep(Duration::from_millis(5));
    }
    let src = tx
        .by_name("in")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let chunk = gst::Buffer::from_slice(vec![0x47u8; CHUNK]);
    // paced: live SRT delivers what arrives within the latency, so an unpaced burst measures
    // packet drops, not the element
    let total = bytes / CHUNK;
    let per_ms = (rate_mbps * 1e6 / 8.0 / CHUNK as f64 / 1000.0).max(1.0);
    let cpu0 = cpu_seconds();
    let t = Instant::now();
    for i in 0..total {
        src.push_buffer(chunk.copy()).unwrap();
        let due = Duration::from_secs_f64(i as f64 / per_ms / 1000.0);
        if let Some(wait) = due.checked_sub(t.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    // wait until the receiver has been quiet for a second
    let mut seen = 0;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = received.load(Ordering::Relaxed);
        if now == seen {
            break;
        }
        seen = now;
    }
    tx.set_state(gst::State::Null).unwrap();
    rx.set_state(gst::State::Null).unwrap();
    let cpu = cpu_seconds() - cpu0;
    let (f, l) = (
        first.lock().unwrap().unwrap(),
        last.lock().unwrap().unwrap(),
    );
    let secs = l.duration_since(f).as_secs_f64().max(1e-6);
    (
        seen as f64 * 8.0 / secs / 1e6,
        seen as f64 / (total * CHUNK) as f64 * 100.0,
        cpu,
    )
}

fn stats(mut v: Vec<f64>) -> String {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = v[v.len() / 2];
    format!(
        "median {median:.1} (min {:.1}, max {:.1}, n={})",
        v[0],
        v[v.len() - 1],
        v.len()
    )
}

fn main() {
    let mut runs = 10;
    let mut megabytes = 60;
    let mut rate = 100.0;
    let args: Vec<String> = std::env::args().collect();
    for w in args.windows(2) {
        match w[0].as_str() {
            "--runs" => runs = w[1].parse().expect("--runs N"),
            "--megabytes" => megabytes = w[1].parse().expect("--megabytes N"),
            "--rate" => rate = w[1].parse().expect("--rate MBIT_PER_S"),
            _ => {}
        }
    }
    gst::init().unwrap();
    gstpunch::plugin_register_static().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = rt
        .block_on(punch::server::Server::start(
            punch::server::ServerConfig::default(),
        ))
        .unwrap();
    let addr = server.local_addr();
    let base = format!("http://{addr}");
    if args.iter().any(|a| a == "--tunnel") {
        tunnel_bench(&rt, &base, addr, runs, megabytes * 1_000_000, rate);
        rt.block_on(server.shutdown());
        return;
    }

    let mut bare = Vec::new();
    let mut punch = Vec::new();
    for n in 0..runs {
        bare.push(setup_time(&bare_pair()).as_secs_f64() * 1000.0);
        punch.push(setup_time(&punch_pair(&rt, &base, addr, n)).as_secs_f64() * 1000.0);
    }
    println!(
        "setup, PLAYING -> first buffer (ms): srtsrc/srtsink hand-configured {}",
        stats(bare.clone())
    );
    println!(
        "setup, PLAYING -> first buffer (ms): punchsrc/punchsink              {}",
        stats(punch.clone())
    );
    let (b, p) = (stats_median(&bare), stats_median(&punch));
    println!(
        "target: punch <= 1.5 x bare + 100 ms = {:.1} ms; measured {p:.1} ms",
        1.5 * b + 100.0
    );

    let mut bare_f = Vec::new();
    let mut punch_f = Vec::new();
    for n in 0..runs {
        bare_f.push(first_frame(&bare_pair()).as_secs_f64() * 1000.0);
        punch_f.push(first_frame(&punch_pair(&rt, &base, addr, 2000 + n)).as_secs_f64() * 1000.0);
    }
    println!(
        "camera PLAYING -> first decoded frame (ms), GOP 90 at 50 fps: srtsink hand-configured {}",
        stats(bare_f.clone())
    );
    println!(
        "camera PLAYING -> first decoded frame (ms), GOP 90 at 50 fps: punchsink              {}",
        stats(punch_f.clone())
    );
    println!(
        "first-frame ratio punchsink/srtsink (medians): {:.2}",
        stats_median(&punch_f) / stats_median(&bare_f)
    );

    let bytes = megabytes * 1_000_000;
    let mut bare_t = Vec::new();
    let mut punch_t = Vec::new();
    // interleaved, alternating which goes first: the two cores are shared by sender, receiver
    // and server, so single runs vary a lot
    for n in 0..5 {
        let mut run = |punch_side: bool| {
            let (label, pair) = if punch_side {
                ("punchsink", punch_pair(&rt, &base, addr, 1000 + n))
            } else {
                ("srtsink  ", bare_pair())
            };
            let (mbps, pct, cpu) = throughput(&pair, bytes, rate);
            println!(
                "throughput {label}: {mbps:.1} Mbit/s received, {pct:.2} % of the bytes, {:.1} ms CPU per MB (whole process)",
                cpu * 1000.0 / (bytes as f64 / 1e6)
            );
            if punch_side {
                punch_t.push(mbps)
            } else {
                bare_t.push(mbps)
            }
        };
        run(n % 2 == 1);
        run(n % 2 == 0);
    }
    let ratio = stats_median(&punch_t) / stats_median(&bare_t);
    println!(
        "throughput ratio punchsink/srtsink (medians of 5): {ratio:.3}  (srtsink {}, punchsink {})",
        stats(bare_t),
        stats(punch_t)
    );
    rt.block_on(server.shutdown());
}

/// The Punch pair on UDP against the Punch pair with both sides tunnelled, interleaved.
fn tunnel_bench(
    rt: &tokio::runtime::Runtime,
    base: &str,
    addr: std::net::SocketAddr,
    runs: usize,
    bytes: usize,
    rate: f64,
) {
    let mut setups = [Vec::new(), Vec::new()];
    let mut rates = [Vec::new(), Vec::new()];
    let mut cpus = [Vec::new(), Vec::new()];
    for n in 0..runs {
        for (i, tunnel) in [(n % 2 == 1), (n % 2 == 0)].into_iter().enumerate() {
            let k = usize::from(tunnel);
            let id = 3000 + 10 * n + i;
            setups[k].push(
                setup_time(&punch_pair_with(rt, base, addr, id, tunnel)).as_secs_f64() * 1000.0,
            );
            let (mbps, pct, cpu) = throughput(
                &punch_pair_with(rt, base, addr, id + 5, tunnel),
                bytes,
                rate,
            );
            let label = if tunnel { "tunnel" } else { "UDP   " };
            println!(
                "{label}: {mbps:.2} Mbit/s received at {rate} Mbit/s, {pct:.2} % of the bytes, {:.1} ms CPU per MB (whole process: both elements and the server)",
                cpu * 1000.0 / (bytes as f64 / 1e6)
            );
            rates[k].push(mbps);
            cpus[k].push(cpu * 1000.0 / (bytes as f64 / 1e6));
        }
    }
    for (k, label) in [(0, "UDP (direct)"), (1, "both sides tunnelled")] {
        println!(
            "{label}: setup {} ms; throughput {} Mbit/s; CPU per MB {} ms",
            stats(setups[k].clone()),
            stats(rates[k].clone()),
            stats(cpus[k].clone())
        );
    }
    println!(
        "tunnel/UDP: setup {:.2}, throughput {:.3}, CPU per MB {:.2} (medians)",
        stats_median(&setups[1]) / stats_median(&setups[0]),
        stats_median(&rates[1]) / stats_median(&rates[0]),
        stats_median(&cpus[1]) / stats_median(&cpus[0])
    );
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct passed in.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn stats_median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}
