//! Failover benchmark (it prints numbers, it asserts nothing): three `punch serve` nodes on one
//! throwaway PostgreSQL database behind HAProxy, on this machine, `--peers` peers (two per
//! session) connected through the balancer; then one node is killed (SIGKILL) and every peer
//! whose connection went through it reconnects through the balancer, registers its slot again
//! and waits for its `peer` message.
//!
//! Reports: the time from the kill until the last of those peers has its `peer` again, how many
//! never did (failures), and register→peer latency during that storm next to the same latency
//! at full load before the kill (one probe session at a time).
//!
//! ```sh
//! cargo build --release --bin punch --example cluster-bench
//! target/release/examples/cluster-bench --peers 9000
//! ```
//! Needs Debian's `postgresql` and `haproxy` (scripts/install-deps.sh installs them).

#[path = "common/bench.rs"]
mod bench;
#[path = "../tests/common/cluster.rs"]
mod cluster;
#[path = "../tests/common/postgres.rs"]
#[allow(dead_code)]
mod postgres;
#[path = "../tests/common/serve.rs"]
mod serve;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bench::{register, report};
use clap::Parser;
use punch::client::Signalling;
use punch::client::rest::Rest;
use punch::protocol::{Role, ServerMessage};
use serde_json::json;
use tokio::sync::Semaphore;

#[derive(Parser)]
struct Args {
    /// Peers to connect (two per session), spread over the nodes by the balancer.
    #[arg(long, default_value_t = 9000)]
    peers: usize,
    /// Sessions registered one at a time at full load, for the steady-state latency.
    #[arg(long, default_value_t = 200)]
    probes: usize,
    /// Peers being set up at once while ramping up.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// How long the storm may take before the peers still missing count as failures.
    #[arg(long, default_value_t = 60)]
    give_up: u64,
}

/// What the peers report.
#[derive(Default)]
struct Stats {
    /// Peers registered and paired once.
    paired: AtomicUsize,
    /// Peers whose connection ended after the kill.
    lost: AtomicUsize,
    /// Of those, paired again.
    repaired: AtomicUsize,
    /// Connection attempts refused during the storm (retried with backoff).
    refused: AtomicUsize,
    /// register→peer of every re-registration after the kill.
    storm: Mutex<Vec<Duration>>,
    /// When the last peer was paired again.
    last_repair: Mutex<Option<Instant>>,
    /// What went wrong, for the report.
    errors: Mutex<Vec<String>>,
    /// The report is out: what the peers meet while the cluster stops is not news.
    reported: std::sync::atomic::AtomicBool,
}

/// What the node at `base` holds.
async fn print_node(base: &str) {
    let rest = Rest::with_timeout(base, Duration::from_secs(30)).unwrap();
    match rest.healthz().await {
        Ok(h) => println!(
            "  {base}: {} sessions, {} WebSockets",
            h["sessions"], h["connections"]
        ),
        Err(e) => println!("  {base}: {e}"),
    }
}

/// Registers and waits for `peer`: register→peer.
async fn register_and_pair(
    sig: &mut Signalling,
    role: Role,
    port: u16,
) -> Result<Duration, String> {
    let t0 = Instant::now();
    sig.send(&register(role, port))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        match tokio::time::timeout(Duration::from_secs(60), sig.recv()).await {
            Ok(Ok(Some(ServerMessage::Peer(_)))) => return Ok(t0.elapsed()),
            Ok(Ok(Some(ServerMessage::Error(e)))) => {
                return Err(format!("{}: {}", e.code, e.message));
            }
            Ok(Ok(Some(_))) => continue,
            other => return Err(format!("no peer: {other:?}")),
        }
    }
}

/// One peer for its whole life: connect, register, hold; after the kill, again (with the real
/// client's backoff: 250 ms doubling to 5 s) until paired again.
async fn peer(
    lb: String,
    (session, token): (String, String),
    role: Role,
    stats: Arc<Stats>,
    killed: Arc<Mutex<Option<Instant>>>,
    ramp: Arc<Semaphore>,
) {
    let port = if role == Role::Sender { 9000 } else { 9001 };
    // held until this peer is paired the first time
    let mut setting_up = Some(ramp.acquire_owned().await.unwrap());
    let mut first = true;
    loop {
        let mut backoff = Duration::from_millis(250);
        let mut sig = loop {
            match Signalling::connect(&lb, &session, &token, Duration::from_secs(30)).await {
                Ok(s) => break s,
                Err(e) => {
                    if first || killed.lock().unwrap().is_none() {
                        stats.errors.lock().unwrap().push(format!("connect: {e}"));
                        return;
                    }
                    if stats.refused.fetch_add(1, Ordering::Relaxed) < 5
                        && !stats.reported.load(Ordering::Relaxed)
                    {
                        println!("refused after the kill (retried): {e}");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        match register_and_pair(&mut sig, role, port).await {
            Ok(_) if first => {
                stats.paired.fetch_add(1, Ordering::Relaxed);
                setting_up.take();
            }
            Ok(latency) => {
                stats.storm.lock().unwrap().push(latency);
                stats.repaired.fetch_add(1, Ordering::Relaxed);
                *stats.last_repair.lock().unwrap() = Some(Instant::now());
            }
            Err(e) => {
                stats
                    .errors
                    .lock()
                    .unwrap()
                    .push(format!("{session} {role}: {e}"));
                return;
            }
        }
        first = false;
        // held until the connection ends (answering pings)
        while let Ok(Some(_)) = sig.recv().await {}
        if killed.lock().unwrap().is_none() {
            stats
                .errors
                .lock()
                .unwrap()
                .push(format!("{session} {role}: closed before the kill"));
            return;
        }
        stats.lost.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    punch::client::net::raise_fd_limit();
    let sessions = args.peers / 2;
    let max = (sessions + args.probes + 100).to_string();
    // SAFETY: before any thread of ours reads the environment.
    if std::env::var_os("PUNCH_SERVE_LOG").is_none() {
        unsafe { std::env::set_var("PUNCH_SERVE_LOG", "warn") };
    }
    let mut cluster = tokio::task::spawn_blocking(move || {
        let limits = [
            "--creates-per-minute",
            "0",
            "--max-sessions",
            &max,
            "--sessions-per-ip",
            &max,
            // the peers run no SRT: nothing is relayed after the direct time-out
            "--no-relay",
        ];
        cluster::Cluster::start(3, &limits)
    })
    .await
    .unwrap();
    let lb = cluster.lb.base.clone();
    println!("3 nodes behind HAProxy at {lb}; {sessions} sessions x 2 peers");
    let rest = Rest::with_timeout(&lb, Duration::from_secs(600)).expect("a URL");

    let t = Instant::now();
    let sem = Arc::new(Semaphore::new(64));
    let mut creates = Vec::new();
    for _ in 0..sessions + args.probes {
        let (rest, sem) = (rest.clone(), sem.clone());
        creates.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.unwrap();
            let created = rest.create(&json!({}), None).await.expect("create");
            (created.session, created.token)
        }));
    }
    let mut made = Vec::new();
    for c in creates {
        made.push(c.await.unwrap());
    }
    let probes = made.split_off(sessions);
    println!(
        "created {} sessions in {:.2} s",
        made.len() + probes.len(),
        t.elapsed().as_secs_f64()
    );

    let stats = Arc::new(Stats::default());
    let killed: Arc<Mutex<Option<Instant>>> = Arc::default();
    let t = Instant::now();
    let ramp = Arc::new(Semaphore::new(args.concurrency));
    for pair in &made {
        for role in [Role::Sender, Role::Receiver] {
            tokio::spawn(peer(
                lb.clone(),
                pair.clone(),
                role,
                stats.clone(),
                killed.clone(),
                ramp.clone(),
            ));
        }
    }
    let peers = made.len() * 2;
    while stats.paired.load(Ordering::Relaxed) < peers && t.elapsed() < Duration::from_secs(300) {
        if !stats.errors.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "{} of {peers} peers connected, registered and paired in {:.2} s",
        stats.paired.load(Ordering::Relaxed),
        t.elapsed().as_secs_f64()
    );
    for node in &cluster.nodes {
        print_node(&node.base).await;
    }

    // steady state at full load: one probe session at a time
    let mut steady = Vec::new();
    for (session, token) in &probes {
        let mut a = Signalling::connect(&lb, session, token, Duration::from_secs(30))
            .await
            .expect("probe");
        let mut b = Signalling::connect(&lb, session, token, Duration::from_secs(30))
            .await
            .expect("probe");
        a.send(&register(Role::Sender, 9000)).await.unwrap();
        if let Ok(l) = register_and_pair(&mut b, Role::Receiver, 9001).await {
            steady.push(l);
        }
        a.close().await;
        b.close().await;
    }
    let steady_p99 = report(
        &format!("register->peer at full load ({peers} peers held, one session at a time)"),
        steady,
    );

    // the kill
    let at = Instant::now();
    *killed.lock().unwrap() = Some(at);
    cluster.kill("n1");
    let give_up = Duration::from_secs(args.give_up);
    let mut settled_since = Instant::now();
    let mut last = (0, 0);
    loop {
        let now = (
            stats.lost.load(Ordering::Relaxed),
            stats.repaired.load(Ordering::Relaxed),
        );
        if now != last {
            last = now;
            settled_since = Instant::now();
        }
        // every lost peer paired again, and nothing new for 3 s (the lease and more)
        if now.0 > 0 && now.0 == now.1 && settled_since.elapsed() > Duration::from_secs(3) {
            break;
        }
        if at.elapsed() > give_up {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (lost, repaired) = last;
    stats.reported.store(true, Ordering::Relaxed);
    let done = stats
        .last_repair
        .lock()
        .unwrap()
        .map(|t| t - at)
        .unwrap_or_default();
    println!(
        "killed node 1: {lost} peers lost their connection; {repaired} re-registered and re-paired, the last {:.2} s after the kill; {} failures; {} connection attempts refused and retried",
        done.as_secs_f64(),
        lost - repaired + stats.errors.lock().unwrap().len(),
        stats.refused.load(Ordering::Relaxed)
    );
    let storm = std::mem::take(&mut *stats.storm.lock().unwrap());
    let storm_p99 = report("register->peer during the storm", storm);
    if steady_p99 > Duration::ZERO {
        println!(
            "storm p99 / steady p99 = {:.1}",
            storm_p99.as_secs_f64() / steady_p99.as_secs_f64()
        );
    }
    for e in stats.errors.lock().unwrap().iter().take(5) {
        println!("error: {e}");
    }
    for node in cluster.nodes.iter().skip(1) {
        print_node(&node.base).await;
    }
    for (i, node) in cluster.nodes.iter().enumerate().skip(1) {
        let _ = std::fs::write(format!("/tmp/node{}.log", i + 1), node.log());
    }
    // the nodes, the balancer and the database stop; the peers' tasks end with the process
    drop(cluster);
    std::process::exit(0);
}
