//! SRT over the tunnel (`GET /api/tunnel/{session}`): a side with `tunnel=true` carries its
//! datagrams over TCP through the server's relay; the other side is on UDP, or tunnelled too.
//! Real elements, srtsink and srtsrc, the real server on loopback.

mod common;

use common::*;
use gst::prelude::*;
use serde_json::json;

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
