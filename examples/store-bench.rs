//! Benchmark (prints numbers, asserts nothing): what durable commits cost. The same REST calls
//! against the server with its SQLite database in a file (every acknowledged change —
//! create, close, tally, latency — synced to disk before the answer) and with `:memory:`
//! (nothing written), side by side in one run; with `--postgres URL`, also with the server's
//! database in PostgreSQL (an empty database the benchmark may fill; every acknowledged change
//! committed before the answer, as PostgreSQL's own settings make a commit durable).
//!
//! * one client, one call at a time: the latency of a create and of a tally change;
//! * `--concurrency` creates in flight: creates per second (changes queued together are
//!   committed in one transaction, one sync).
//!
//! ```sh
//! cargo run --release --example store-bench -- --calls 300 --concurrency 32 \
//!     [--postgres postgres://punch@127.0.0.1:5432/bench]
//! ```
//! The database file is created in `--dir` (default: the system's temporary directory): put it
//! on the disk the server will use.

use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use punch::client::rest::Rest;
use punch::protocol::TallyState;
use punch::server::{Limits, Server, ServerConfig};
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// Calls per sequential measurement.
    #[arg(long, default_value_t = 300)]
    calls: usize,
    /// Creates in flight for the throughput measurement.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Where the database file goes.
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Also measure with this (empty) PostgreSQL database.
    #[arg(long)]
    postgres: Option<String>,
}

struct Figures {
    create: Vec<f64>,
    tally: Vec<f64>,
    creates_per_s: f64,
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

async fn measure(db: String, args: &Args) -> Figures {
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        db,
        stun_port: None,
        limits: Limits {
            creates_per_minute: u32::MAX,
            sessions_per_ip: usize::MAX,
            max_sessions: usize::MAX,
            ..Limits::default()
        },
        ..ServerConfig::default()
    };
    let server = Server::start(config).await.expect("server starts");
    let rest = Rest::new(&format!("http://{}", server.local_addr())).unwrap();

    let mut create = Vec::with_capacity(args.calls);
    for n in 0..args.calls {
        let t = Instant::now();
        rest.create(&json!({ "name": format!("seq-{n}") }), None)
            .await
            .expect("create");
        create.push(t.elapsed().as_secs_f64() * 1000.0);
    }

    let created = rest
        .create(&json!({ "name": "tally" }), None)
        .await
        .unwrap();
    let mut tally = Vec::with_capacity(args.calls);
    for n in 0..args.calls {
        let state = if n % 2 == 0 {
            TallyState::OnAir
        } else {
            TallyState::Off
        };
        let t = Instant::now();
        rest.tally(&created.session, &created.token, "default", state)
            .await
            .expect("tally");
        tally.push(t.elapsed().as_secs_f64() * 1000.0);
    }

    let rest = Arc::new(rest);
    let total = args.calls * 4;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t = Instant::now();
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (rest, next) = (rest.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= total {
                        break;
                    }
                    rest.create(&json!({ "name": format!("par-{n}") }), None)
                        .await
                        .expect("create");
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let creates_per_s = total as f64 / t.elapsed().as_secs_f64();
    server.shutdown().await;
    Figures {
        create,
        tally,
        creates_per_s,
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let dir = match &args.dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("a temporary directory");
    let file = dir.path().join("punch.db").display().to_string();
    println!("database file: {file}");
    let mut on_disk = measure(file, &args).await;
    let mut in_memory = measure(":memory:".into(), &args).await;
    let row = |what: &str, d: &mut Vec<f64>, m: &mut Vec<f64>| {
        let (d50, d99) = (percentile(d, 0.5), percentile(d, 0.99));
        let (m50, m99) = (percentile(m, 0.5), percentile(m, 0.99));
        println!(
            "{what:<22} file p50 {d50:7.3} ms p99 {d99:7.3} ms | :memory: p50 {m50:7.3} ms p99 {m99:7.3} ms | p50 ratio {:.1}",
            d50 / m50
        );
    };
    row(
        "create (one at a time)",
        &mut on_disk.create,
        &mut in_memory.create,
    );
    row(
        "tally (one at a time)",
        &mut on_disk.tally,
        &mut in_memory.tally,
    );
    println!(
        "creates/s, {} in flight: file {:.0} | :memory: {:.0} | ratio {:.2}",
        args.concurrency,
        on_disk.creates_per_s,
        in_memory.creates_per_s,
        on_disk.creates_per_s / in_memory.creates_per_s
    );
    if let Some(url) = args.postgres.clone() {
        let mut pg = measure(url, &args).await;
        for (what, p, d) in [
            (
                "create (one at a time)",
                &mut pg.create,
                &mut on_disk.create,
            ),
            ("tally (one at a time)", &mut pg.tally, &mut on_disk.tally),
        ] {
            let (p50, p99) = (percentile(p, 0.5), percentile(p, 0.99));
            println!(
                "{what:<22} postgres p50 {p50:7.3} ms p99 {p99:7.3} ms | p50 ratio to the file {:.1}",
                p50 / percentile(d, 0.5)
            );
        }
        println!(
            "creates/s, {} in flight: postgres {:.0} | ratio to the file {:.2}",
            args.concurrency,
            pg.creates_per_s,
            pg.creates_per_s / on_disk.creates_per_s
        );
    }
}
