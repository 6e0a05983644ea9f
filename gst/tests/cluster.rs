//! Failover: a real punchsink → punchsrc link signalled through HAProxy in front of three
//! `punch serve` nodes on one PostgreSQL database; the node owning the session is killed with
//! SIGKILL while the media flows.

#[path = "../../tests/common/cluster.rs"]
mod cluster;
mod common;
#[path = "../../tests/common/postgres.rs"]
#[allow(dead_code)]
mod postgres;
#[path = "../../tests/common/serve.rs"]
mod serve;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use punch::client::rest::{Method, Rest};
use serde_json::{Value, json};

/// How soon after its node died a session is served again, as `docs/architecture.md` documents
/// (the lease, plus a reconnect): the test allows twice that on a loaded machine.
const FAILOVER_BOUND: Duration = Duration::from_secs(8);
/// The largest gap between chunks the receiver may see while signalling fails over: the
/// media does not depend on the server, so about the pacing and scheduling jitter.
const GAP_BOUND: Duration = Duration::from_millis(250);

/// Every `passphrase` in `v`.
fn passphrases(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("passphrase", Value::String(p)) => out.push(p.clone()),
                    _ => passphrases(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| passphrases(v, out)),
        _ => {}
    }
}

#[test]
fn killing_the_node_that_owns_a_session_does_not_interrupt_its_media() {
    init();
    let mut cluster = cluster::Cluster::start(3, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rest = Rest::with_timeout(&cluster.lb.base, WAIT).unwrap();
    let created: Value = rt
        .block_on(rest.raw(
            Method::POST,
            "/api/session",
            None,
            Some((
                "application/json",
                json!({"name": "failover"}).to_string().into_bytes(),
            )),
        ))
        .unwrap()
        .body;
    let admin = created["token"].as_str().unwrap().to_string();
    let lb = cluster.lb.base.trim_start_matches("http://").to_string();
    let uri = |role: &str| {
        let token = created["stream_tokens"]["default"][role].as_str().unwrap();
        format!("punch://{lb}/failover/default?token={token}")
    };
    let view = |what: &str, pred: &dyn Fn(&punch::protocol::SessionView) -> bool| {
        let start = Instant::now();
        loop {
            if let Ok(v) = rt.block_on(rest.session("failover", &admin))
                && pred(&v)
            {
                return v;
            }
            assert!(start.elapsed() < WAIT * 2, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let secrets = || {
        let strings = rt
            .block_on(rest.connect_strings("failover", &admin, None))
            .unwrap();
        let mut out = Vec::new();
        passphrases(&serde_json::to_value(strings).unwrap(), &mut out);
        out
    };

    let (tx, src, _) = sender(&uri("sender"));
    let (rx, sink, _) = receiver(&uri("receiver"));
    play(&rx);
    play(&tx);
    wait_connected(&tx);
    let before = view("connected", &|v| {
        v.state == punch::protocol::SessionState::Connected
    });
    let owner = before.node.clone().expect("the view names the node");
    let passphrases_before = secrets();

    // paced chunks in; every arrival timed
    let pusher = std::thread::spawn(move || push_chunks(&src, 0, 6000));
    let arrivals: Arc<Mutex<Vec<(Instant, u32)>>> = Arc::default();
    let puller = {
        let arrivals = arrivals.clone();
        std::thread::spawn(move || {
            while let Some(s) = sink.try_pull_sample(gst::ClockTime::from_seconds(5)) {
                let buf = s.buffer().unwrap().map_readable().unwrap();
                arrivals
                    .lock()
                    .unwrap()
                    .push((Instant::now(), seq_of(&buf)));
            }
        })
    };
    let count = || arrivals.lock().unwrap().len();
    let start = Instant::now();
    while count() < 300 {
        assert!(start.elapsed() < WAIT, "no media before the failover");
        std::thread::sleep(Duration::from_millis(10));
    }

    let killed_at = Instant::now();
    cluster.kill(&owner);
    // the session is served by another node, both elements registered again
    let after = view("the session on another node, connected", &|v| {
        // (a session taken over starts WAITING: both re-registered and reported their link)
        v.node.as_deref().is_some_and(|n| n != owner)
            && v.state == punch::protocol::SessionState::Connected
    });
    let failover = killed_at.elapsed();
    assert!(
        failover < FAILOVER_BOUND,
        "served again {failover:?} after its node died (bound {FAILOVER_BOUND:?})"
    );
    assert_eq!(secrets(), passphrases_before, "the same passphrases");
    // a while on the new node, then the verdict on the media
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let seen = arrivals.lock().unwrap().clone();
    let during: Vec<&(Instant, u32)> = seen
        .iter()
        .filter(|(at, _)| *at + Duration::from_millis(500) >= killed_at)
        .collect();
    assert!(
        during.len() > 500,
        "{} chunks arrived around the failover",
        during.len()
    );
    let gap = during.windows(2).map(|w| w[1].0 - w[0].0).max().unwrap();
    let lost = during.windows(2).filter(|w| w[1].1 != w[0].1 + 1).count();
    println!(
        "failover to {:?} in {failover:?}; largest gap between chunks {gap:?}; {lost} discontinuities",
        after.node
    );
    assert!(
        gap < GAP_BOUND,
        "a {gap:?} gap in the media while its signalling failed over (bound {GAP_BOUND:?})"
    );
    assert_eq!(lost, 0, "chunks lost or reordered: the media was restarted");
    stop(&tx);
    stop(&rx);
    pusher.join().unwrap();
    puller.join().unwrap();
}
