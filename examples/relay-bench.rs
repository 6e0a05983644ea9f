//! Loopback relay benchmark: how many 1316-byte SRT-sized datagrams one relay forwards per
//! second on one core, and what a relayed Mbit/s costs, with datagrams taken and sent one per
//! system call (as before batching) and in batches of `recvmmsg`/`sendmmsg`, side by side in
//! one run. Prints numbers, not a verdict.
//!
//! ```sh
//! cargo run --release --example relay-bench [SECONDS]   # default 5 per row
//! ```
//!
//! The relay runs alone on one thread (a current-thread runtime); a sender thread blasts
//! datagrams at its first port as fast as the kernel takes them, a receiver thread counts what
//! comes out of its second. The relay's CPU is its thread's utime + stime
//! (`/proc/self/task/TID/stat`), so "per core" = forwarded per second / (relay CPU seconds per
//! second). Loopback only: no NIC, no NAT, so this is the relay's own cost.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use punch::server::relay::{RelayConfig, RelayService, RelaySpec};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const DATAGRAM: usize = 1316;

/// utime + stime of thread `tid` of this process, in seconds.
fn thread_cpu(tid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

struct Row {
    forwarded_per_s: f64,
    cpu_share: f64,
}

fn run(batch: usize, seconds: u64) -> Row {
    let (ports_tx, ports_rx) = std::sync::mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let relay_stop = stop.clone();
    // The relay on its own thread and runtime.
    let relay_thread = std::thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let service = RelayService::new(RelayConfig {
                bind: LOCAL,
                batch,
                max_bitrate: u64::MAX / 4,
                max_total_bitrate: u64::MAX / 4,
                ..RelayConfig::default()
            });
            let relay = service
                .allocate(RelaySpec::peers("bench", [LOCAL, LOCAL]), |_| {})
                .await
                .expect("a relay on loopback");
            ports_tx.send((relay.ports, tid)).unwrap();
            while !relay_stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            drop(relay);
        });
    });
    let (ports, tid) = ports_rx.recv().unwrap();
    let a = UdpSocket::bind((LOCAL, 0)).unwrap();
    let b = UdpSocket::bind((LOCAL, 0)).unwrap();
    b.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    // The receiver makes itself known first (as SRT's handshake would).
    b.send_to(b"hello", (LOCAL, ports[1])).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let received = Arc::new(AtomicU64::new(0));
    let counting = received.clone();
    let receiver_stop = stop.clone();
    let receiver = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !receiver_stop.load(Ordering::Relaxed) {
            if b.recv(&mut buf).is_ok() {
                counting.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let sender_stop = stop.clone();
    let sender = std::thread::spawn(move || {
        let payload = [0x11u8; DATAGRAM];
        while !sender_stop.load(Ordering::Relaxed) {
            let _ = a.send_to(&payload, (LOCAL, ports[0]));
        }
    });
    // Warm up, then measure a window.
    std::thread::sleep(Duration::from_millis(500));
    let (n0, c0, t0) = (
        received.load(Ordering::Relaxed),
        thread_cpu(tid),
        Instant::now(),
    );
    std::thread::sleep(Duration::from_secs(seconds));
    let (n1, c1, wall) = (
        received.load(Ordering::Relaxed),
        thread_cpu(tid),
        t0.elapsed().as_secs_f64(),
    );
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    receiver.join().unwrap();
    relay_thread.join().unwrap();
    Row {
        forwarded_per_s: (n1 - n0) as f64 / wall,
        cpu_share: (c1 - c0) / wall,
    }
}

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    println!("relay on loopback, {DATAGRAM}-byte datagrams, {seconds} s per row");
    println!(
        "{:<28} {:>14} {:>10} {:>16} {:>18}",
        "forwarding", "forwarded/s", "relay CPU", "datagrams/s/core", "CPU-ms per Mbit/s"
    );
    let mut rows = Vec::new();
    for (label, batch) in [
        ("one datagram per syscall", 1),
        ("recvmmsg/sendmmsg x32", 32),
    ] {
        let r = run(batch, seconds);
        let per_core = r.forwarded_per_s / r.cpu_share.max(1e-9);
        let mbit = r.forwarded_per_s * DATAGRAM as f64 * 8.0 / 1e6;
        let cpu_ms_per_mbit = r.cpu_share * 1000.0 / mbit.max(1e-9);
        println!(
            "{label:<28} {:>14.0} {:>9.0}% {:>16.0} {:>18.3}",
            r.forwarded_per_s,
            r.cpu_share * 100.0,
            per_core,
            cpu_ms_per_mbit
        );
        rows.push(per_core);
    }
    println!(
        "batched / one per syscall, datagrams per core: {:.2}",
        rows[1] / rows[0]
    );
}
