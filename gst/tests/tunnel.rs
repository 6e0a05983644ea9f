//! SRT over the tunnel (`GET /api/tunnel/{session}`): a side with `tunnel=true` carries its
//! datagrams over TCP through the server's relay; the other side is on UDP, or tunnelled too.
//! Real elements, srtsink and srtsrc, the real server on loopback.

mod common;

use common::*;
use gst::prelude::*;
use serde_json::json;
use std::time::{Duration, Instant};

fn path_of(env: &Env, created: &serde_json::Value) -> serde_json::Value {
    let session = created["session"].as_str().unwrap();
    let admin = created["token"].as_str().unwrap();
    env.wait_view(session, admin, "the stream connected", |v| {
        v["streams"][0]["state"] == "RELAYING" && v["streams"][0]["receiver"]["srt"] == "connected"
    })["streams"][0]
        .clone()
}

fn flows(tunnel_sender: bool, tunnel_receiver: bool, name: &str) {
    let env = Env::new();
    let created = env.create(json!({ "name": name }));
    let (tx, src, punch_tx) = sender(&env.uri(&created, "default", "sender"));
    let (rx, sink, punch_rx) = receiver(&env.uri(&created, "default", "receiver"));
    punch_tx.set_property("tunnel", tunnel_sender);
    punch_rx.set_property("tunnel", tunnel_receiver);
    play(&rx);
    play(&tx);
    wait_connected(&tx);
    let pusher = std::thread::spawn(move || push_chunks(&src, 0, 400));
    let got = pull_chunks(&sink, 200, WAIT);
    pusher.join().unwrap();
    assert!(
        got.len() >= 200,
        "{} chunks arrived over the tunnel",
        got.len()
    );
    // in order and intact
    let seqs: Vec<u32> = got.iter().map(|c| seq_of(c)).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] > w[0]),
        "out of order: {seqs:?}"
    );
    let stream = path_of(&env, &created);
    assert_eq!(stream["path"], "tunnel", "{stream}");
    assert!(
        stream["path_reason"].as_str().unwrap().contains("no UDP"),
        "{stream}"
    );
    stop(&tx);
    stop(&rx);
}

#[test]
fn a_sender_without_udp_reaches_a_receiver_on_udp_through_the_tunnel() {
    flows(true, false, "tunnel-one");
}

#[test]
fn two_sides_without_udp_meet_through_their_tunnels() {
    flows(true, true, "tunnel-both");
}

/// A TCP forwarder to the server that can cut every tunnel connection through it (a proxy
/// restarting, a NAT forgetting the connection), leaving the signalling alone.
struct TunnelCutter {
    addr: std::net::SocketAddr,
    cut: tokio::sync::watch::Sender<u32>,
    /// Tunnel connections opened through it so far.
    tunnels: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl TunnelCutter {
    fn new(env: &Env) -> TunnelCutter {
        use std::sync::atomic::Ordering;
        let listener = env
            .rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, cut_rx) = tokio::sync::watch::channel(0u32);
        let tunnels = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (upstream, count) = (env.addr, tunnels.clone());
        env.rt.spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut cut_rx = cut_rx.clone();
                let count = count.clone();
                tokio::spawn(async move {
                    // the request line says which endpoint (bounded: a client that sends
                    // nothing is dropped)
                    let mut head = [0u8; 32];
                    let seen = tokio::time::timeout(WAIT, async {
                        loop {
                            let n = client.peek(&mut head).await.unwrap_or(0);
                            if n == 0 || n >= 16 {
                                return n;
                            }
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    })
                    .await
                    .unwrap_or(0);
                    let tunnel = head[..seen].starts_with(b"GET /api/tunnel/");
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    if tunnel {
                        count.fetch_add(1, Ordering::SeqCst);
                        cut_rx.borrow_and_update();
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = cut_rx.changed() => {}
                        }
                    } else {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        TunnelCutter { addr, cut, tunnels }
    }

    fn uri(&self, env: &Env, created: &serde_json::Value, role: &str) -> String {
        env.uri(created, "default", role)
            .replacen(&env.addr.to_string(), &self.addr.to_string(), 1)
    }

    /// Drops every tunnel connection open now.
    fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

#[test]
fn a_tunnel_that_drops_is_reopened_and_the_media_goes_on() {
    use std::sync::atomic::Ordering;
    let env = Env::new();
    let cutter = TunnelCutter::new(&env);
    let created = env.create(json!({ "name": "tunnel-cut" }));
    let (tx, src, punch_tx) = sender(&cutter.uri(&env, &created, "sender"));
    let (rx, sink, _) = receiver(&cutter.uri(&env, &created, "receiver"));
    punch_tx.set_property("tunnel", true);
    play(&rx);
    play(&tx);
    wait_connected(&tx);
    // about 8 s of chunks; the tunnel is cut after the first 300 arrived
    let pusher = std::thread::spawn(move || push_chunks(&src, 0, 4000));
    let before = pull_chunks(&sink, 300, WAIT);
    assert!(
        before.len() >= 300,
        "{} chunks before the cut",
        before.len()
    );
    assert_eq!(cutter.tunnels.load(Ordering::SeqCst), 1);
    let cut_at = Instant::now();
    cutter.cut();
    // after the cut: chunks keep arriving, in order, with no gap of more than a second
    let mut last = seq_of(before.last().unwrap());
    let (mut after, mut longest, mut heard) = (0, Duration::ZERO, Instant::now());
    while after < 1000 && cut_at.elapsed() < WAIT {
        if let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(100)) {
            let buf = sample.buffer().unwrap().map_readable().unwrap().to_vec();
            let seq = seq_of(&buf);
            assert!(seq > last, "out of order after the cut: {seq} after {last}");
            last = seq;
            after += 1;
            longest = longest.max(heard.elapsed());
            heard = Instant::now();
        }
    }
    pusher.join().unwrap();
    assert!(after >= 1000, "only {after} chunks after the cut");
    assert!(
        cutter.tunnels.load(Ordering::SeqCst) >= 2,
        "the tunnel was opened again"
    );
    assert!(
        longest < Duration::from_secs(1),
        "the longest gap after the cut was {longest:?}"
    );
    // still the tunnel
    let stream = path_of(&env, &created);
    assert_eq!(stream["path"], "tunnel", "{stream}");
    stop(&tx);
    stop(&rx);
}
