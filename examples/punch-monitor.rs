//! Runs a GStreamer pipeline that uses `punchsink`/`punchsrc` and prints their health, tally and
//! session messages from the bus, one line each.
//!
//! ```sh
//! cargo run --release -p gst-plugin-punch --example punch-monitor -- \
//!     "punchsrc uri=punch://127.0.0.1:8787/show?token=TOKEN ! tsdemux ! fakesink"
//! cargo run --release -p gst-plugin-punch --example punch-monitor -- --seconds 10 "…pipeline…"
//! ```
//!
//! Exits on end of stream, on an error (printed, exit code 1), after `--seconds`, or on Ctrl-C.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use gst::prelude::*;

fn describe(s: &gst::StructureRef) -> String {
    let field = |name: &str| -> String {
        match s.value(name) {
            Ok(v) => {
                if let Ok(f) = v.get::<f64>() {
                    format!("{f:.2}")
                } else {
                    v.serialize().map(|g| g.to_string()).unwrap_or_default()
                }
            }
            Err(_) => "-".into(),
        }
    };
    match s.name().as_str() {
        "punch-health" => format!(
            "health  {:<8} stream={} connected={} rtt={} ms bitrate={} kbit/s retransmit={} % loss={} % latency={} ms",
            field("role"),
            field("stream"),
            field("connected"),
            field("rtt-ms"),
            s.get::<f64>("bitrate")
                .map(|b| format!("{:.0}", b / 1000.0))
                .unwrap_or("-".into()),
            field("retransmit-percent"),
            field("loss-percent"),
            field("negotiated-latency-ms"),
        ),
        "punch-tally" => format!(
            "tally   stream={} state={}",
            field("stream"),
            field("state")
        ),
        "punch-session" => format!(
            "session {} state={} stream-state={} connected={}/{}",
            field("session"),
            field("state"),
            field("stream-state"),
            field("connected"),
            field("total")
        ),
        _ => s.to_string(),
    }
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut limit = None;
    if args.first().map(String::as_str) == Some("--seconds") && args.len() >= 2 {
        limit = args[1].parse::<u64>().ok().map(Duration::from_secs);
        args.drain(..2);
    }
    let Some(description) = args.first() else {
        eprintln!("usage: punch-monitor [--seconds N] \"PIPELINE\"");
        return ExitCode::from(2);
    };
    if let Err(e) = gst::init() {
        eprintln!("cannot initialise GStreamer: {e}");
        return ExitCode::FAILURE;
    }
    if let Err(e) = gstpunch::plugin_register_static() {
        eprintln!("cannot register the punch plugin: {e}");
        return ExitCode::FAILURE;
    }
    let pipeline = match gst::parse::launch(description) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("invalid pipeline: {e}");
            return ExitCode::from(2);
        }
    };
    let interrupted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        // SAFETY: the handler only stores into an atomic.
        let _ = unsafe { signal_hook(flag) };
    }
    if pipeline.set_state(gst::State::Playing).is_err() {
        eprintln!("the pipeline could not start; the error follows");
    }
    let bus = pipeline.bus().expect("pipelines have a bus");
    let start = Instant::now();
    let mut code = ExitCode::SUCCESS;
    loop {
        if interrupted.load(std::sync::atomic::Ordering::Relaxed)
            || limit.is_some_and(|l| start.elapsed() >= l)
        {
            break;
        }
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else {
            continue;
        };
        let src = msg.src().map(|s| s.name().to_string()).unwrap_or_default();
        match msg.view() {
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure().filter(|s| s.name().starts_with("punch-")) {
                    println!(
                        "[{:6.2}s] {src}: {}",
                        start.elapsed().as_secs_f64(),
                        describe(s)
                    );
                }
            }
            gst::MessageView::Error(e) => {
                eprintln!(
                    "[{:6.2}s] {src}: ERROR {}",
                    start.elapsed().as_secs_f64(),
                    e.error()
                );
                code = ExitCode::FAILURE;
                break;
            }
            gst::MessageView::Warning(w) => {
                eprintln!(
                    "[{:6.2}s] {src}: warning {}",
                    start.elapsed().as_secs_f64(),
                    w.error()
                );
            }
            gst::MessageView::Eos(_) => break,
            _ => {}
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    code
}

/// SIGINT/SIGTERM set `flag` so the pipeline is stopped cleanly.
unsafe fn signal_hook(flag: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Result<(), ()> {
    static FLAG: std::sync::OnceLock<std::sync::Arc<std::sync::atomic::AtomicBool>> =
        std::sync::OnceLock::new();
    let _ = FLAG.set(flag);
    extern "C" fn on_signal(_: libc::c_int) {
        if let Some(f) = FLAG.get() {
            f.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    // SAFETY: installing a handler that only touches an atomic is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    Ok(())
}
