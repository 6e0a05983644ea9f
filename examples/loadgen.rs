//! Load generator for the Punch server (a benchmark: it prints numbers, it asserts nothing).
//!
//! Starts `punch serve` as a child process on loopback (in-memory database), opens
//! `--sessions` sessions × 2 peers over WebSocket, and reports:
//! * register→`peer` latency (p50/p99/max) while the load ramps up, and again for probe sessions
//!   registered once every peer is connected,
//! * health messages per second the server handles with every peer sending,
//! * server RSS per idle connected peer.
//!
//! ```sh
//! cargo build --release --bin punch
//! cargo run --release --example loadgen -- --sessions 5000
//! ```

#[path = "common/bench.rs"]
mod bench;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::{register, report};
use clap::Parser;
use punch::client::Signalling;
use punch::client::rest::Rest;
use punch::protocol::{ClientMessage, Health, Role, ServerMessage};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};

#[derive(Parser)]
struct Args {
    /// Sessions to open (two peers each).
    #[arg(long, default_value_t = 5000)]
    sessions: usize,
    /// Sessions registered one at a time at full load for the latency probe.
    #[arg(long, default_value_t = 200)]
    probes: usize,
    /// Health messages each peer sends in the throughput phase.
    #[arg(long, default_value_t = 10)]
    health: usize,
    /// Connections being set up at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// The punch binary to start.
    #[arg(long, default_value = "target/release/punch")]
    server_bin: String,
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(String::from)
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

async fn wait_for(
    sig: &mut Signalling,
    pred: impl Fn(&ServerMessage) -> bool,
) -> Result<(), String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), sig.recv()).await {
            Ok(Ok(Some(m))) if pred(&m) => return Ok(()),
            Ok(Ok(Some(_))) => continue,
            other => return Err(format!("{other:?}")),
        }
    }
}

/// Opens both peers of a session; returns register→peer latency of the second one.
async fn pair(
    base: &str,
    session: &str,
    token: &str,
) -> Result<(Duration, Signalling, Signalling), String> {
    let mut a = Signalling::connect(base, session, token, Duration::from_secs(30))
        .await
        .map_err(|e| e.to_string())?;
    let mut b = Signalling::connect(base, session, token, Duration::from_secs(30))
        .await
        .map_err(|e| e.to_string())?;
    a.send(&register(Role::Sender, 9000))
        .await
        .map_err(|e| e.to_string())?;
    wait_for(&mut a, |m| matches!(m, ServerMessage::Registered(_))).await?;
    let t0 = Instant::now();
    b.send(&register(Role::Receiver, 9001))
        .await
        .map_err(|e| e.to_string())?;
    wait_for(&mut b, |m| matches!(m, ServerMessage::Peer(_))).await?;
    let latency = t0.elapsed();
    wait_for(&mut a, |m| matches!(m, ServerMessage::Peer(_))).await?;
    Ok((latency, a, b))
}

/// Keeps a peer alive (answers pings) and sends `health` messages when the phase says so.
async fn hold(mut sig: Signalling, mut phase: watch::Receiver<usize>, health: usize) {
    loop {
        tokio::select! {
            m = sig.recv() => if !matches!(m, Ok(Some(_))) { return },
            changed = phase.changed() => {
                if changed.is_err() { return }
                let now = *phase.borrow_and_update();
                match now {
                    1 => {
                        for i in 0..health {
                            let h = Health { rtt: Some(10.0 + i as f64), bitrate: Some(5e6), ..Default::default() };
                            if sig.send(&ClientMessage::Health(h)).await.is_err() { return }
                        }
                    }
                    2 => { sig.close().await; return }
                    _ => {}
                }
            }
        }
    }
}

async fn healthz(rest: &Rest) -> Value {
    rest.healthz().await.expect("healthz answers")
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    punch::client::net::raise_fd_limit();
    let mut child = std::process::Command::new(&args.server_bin)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db",
            ":memory:",
            "--creates-per-minute",
            "0",
        ])
        .args([
            "--max-sessions",
            &(args.sessions + args.probes + 10).to_string(),
            // every session is created, and every peer connects, from this one address
            "--sessions-per-ip",
            &(args.sessions + args.probes + 10).to_string(),
            "--connections-per-ip",
            "100000",
        ])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({e}); run `cargo build --release --bin punch` first",
                args.server_bin
            )
        });
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let base = {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stdout).lines();
        loop {
            let line = lines.next().expect("server printed its address").unwrap();
            if let Some(rest) = line.strip_prefix("Punch server listening on ") {
                // keep draining the server's output so it never writes into a closed pipe
                std::thread::spawn(move || lines.for_each(drop));
                break rest.trim().to_string();
            }
        }
    };
    println!(
        "server pid {pid} at {base}; {} sessions x 2 peers",
        args.sessions
    );
    // Under full load a request may wait long: no client-side timeout worth the name.
    let rest = Rest::with_timeout(&base, Duration::from_secs(600)).expect("a server URL");

    let t = Instant::now();
    let sem = Arc::new(Semaphore::new(64));
    let mut creates = Vec::new();
    for _ in 0..args.sessions + args.probes {
        let (rest, sem) = (rest.clone(), sem.clone());
        creates.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.unwrap();
            let created = rest.create(&json!({}), None).await.expect("create");
            (created.session, created.token)
        }));
    }
    let mut sessions = Vec::new();
    for c in creates {
        sessions.push(c.await.unwrap());
    }
    let probes = sessions.split_off(args.sessions);
    println!(
        "created {} sessions in {:.2} s",
        sessions.len() + probes.len(),
        t.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_sessions = rss_kib(pid);

    let (phase_tx, phase_rx) = watch::channel(0usize);
    let t = Instant::now();
    let sem = Arc::new(Semaphore::new(args.concurrency));
    let mut pairs = Vec::new();
    for (name, token) in sessions {
        let (base, sem, phase) = (base.clone(), sem.clone(), phase_rx.clone());
        let health = args.health;
        pairs.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await.unwrap();
            let (lat, a, b) = pair(&base, &name, &token).await?;
            drop(permit);
            tokio::spawn(hold(a, phase.clone(), health));
            tokio::spawn(hold(b, phase, health));
            Ok::<_, String>(lat)
        }));
    }
    let mut ramp = Vec::new();
    let mut failures = 0;
    for p in pairs {
        match p.await.unwrap() {
            Ok(l) => ramp.push(l),
            Err(e) => {
                failures += 1;
                if failures <= 3 {
                    eprintln!("pair failed: {e}");
                }
            }
        }
    }
    let peers = ramp.len() * 2;
    println!(
        "{peers} peers connected and registered in {:.2} s ({failures} failures)",
        t.elapsed().as_secs_f64()
    );
    report(
        "register->peer while ramping up (200 sessions in flight)",
        ramp,
    );

    let mut probe_lat = Vec::new();
    let mut probe_peers = Vec::new();
    for (name, token) in &probes {
        if let Ok((l, a, b)) = pair(&base, name, token).await {
            probe_lat.push(l);
            probe_peers.push((a, b));
        }
    }
    report(
        &format!("register->peer at full load ({peers} peers held, one session at a time)"),
        probe_lat,
    );
    for (a, b) in probe_peers {
        a.close().await;
        b.close().await;
    }

    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_peers = rss_kib(pid);
    let connections = healthz(&rest).await["connections"].as_u64().unwrap_or(0);
    println!(
        "server RSS: {rss_sessions} KiB with {} idle sessions, {rss_peers} KiB with {connections} idle peers connected",
        args.sessions
    );
    if peers > 0 {
        println!(
            "RSS per idle connected peer: {:.2} KiB",
            rss_peers.saturating_sub(rss_sessions) as f64 / peers as f64
        );
    }

    let before = healthz(&rest).await["messages"].as_u64().unwrap_or(0);
    let expected = before + (peers * args.health) as u64;
    let t = Instant::now();
    phase_tx.send(1).unwrap();
    let mut handled = before;
    while handled < expected && t.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        handled = healthz(&rest).await["messages"].as_u64().unwrap_or(0);
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "health: {} messages from {peers} peers handled in {secs:.2} s = {:.0} msg/s",
        handled - before,
        (handled - before) as f64 / secs
    );
    println!("server RSS after the health burst: {} KiB", rss_kib(pid));

    phase_tx.send(2).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = child.wait();
}
