//! What the signalling benchmarks share: a peer's `register`, and latency percentiles.

use std::time::Duration;

use punch::protocol::{ClientMessage, PeerMeta, Port, Register, Role};

/// A `register` for `role` on `port`, without a NAT report (the benchmarks' peers do not STUN).
pub fn register(role: Role, port: u16) -> ClientMessage {
    ClientMessage::Register(Register {
        stream: None,
        port: Port(port),
        role,
        meta: PeerMeta::default(),
        nat: None,
        reports: true,
        receiver: None,
        tunnel: false,
    })
}

/// The `p` quantile (0..=1) of `sorted`.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Prints `label: n= p50= p99= max=` of `v`; its p99.
pub fn report(label: &str, mut v: Vec<Duration>) -> Duration {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label}: n={} p50={:.2} ms p99={:.2} ms max={:.2} ms",
        v.len(),
        ms(percentile(&v, 0.5)),
        ms(percentile(&v, 0.99)),
        ms(v.last().copied().unwrap_or_default())
    );
    percentile(&v, 0.99)
}
