//! punchsink → punchsrc over loopback with the real server, srtsink and srtsrc.

mod common;

use std::time::Duration;

use common::*;
use gst::prelude::*;
use serde_json::json;

fn transfer(receiver_first: bool, session: &str) {
    let env = Env::new();
    let created = env.create(json!({ "name": session }));
    let (tx, src, _) = sender(&env.uri(&created, "default", "sender"));
    let (rx, sink, _) = receiver(&env.uri(&created, "default", "receiver"));
    if receiver_first {
        play(&rx);
        play(&tx);
    } else {
        play(&tx);
        std::thread::sleep(Duration::from_millis(300));
        play(&rx);
    }
    wait_connected(&tx);
    const N: u32 = 300;
    push_chunks(&src, 0, N);
    let got = pull_chunks(&sink, N as usize, WAIT);
    assert_eq!(
        got.len(),
        N as usize,
        "received {} of {N} chunks",
        got.len()
    );
    for (i, c) in got.iter().enumerate() {
        assert_eq!(c, &chunk(i as u32), "chunk {i} differs");
    }
    stop(&tx);
    stop(&rx);
}

#[test]
fn bytes_arrive_intact_receiver_started_first() {
    transfer(true, "order-rx-first");
}

#[test]
fn bytes_arrive_intact_sender_started_first() {
    transfer(false, "order-tx-first");
}

#[test]
fn health_reaches_the_bus_and_the_server_and_tally_reaches_the_sink() {
    let env = Env::new();
    let created = env.create(json!({ "name": "health" }));
    let admin = created["token"].as_str().unwrap().to_string();
    let (tx, src, tx_punch) = sender(&env.uri(&created, "default", "sender"));
    let (rx, _sink, rx_punch) = receiver(&env.uri(&created, "default", "receiver"));
    let notified = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    for name in ["stats", "tally", "session-state", "peer-address"] {
        let notified = notified.clone();
        tx_punch.connect_notify(Some(name), move |_, pspec| {
            notified.lock().unwrap().push(pspec.name().to_string())
        });
    }
    play(&rx);
    play(&tx);
    wait_connected(&tx);
    let pusher = std::thread::spawn(move || push_chunks(&src, 0, 1000));
    for (p, role) in [(&tx, "sender"), (&rx, "receiver")] {
        let h = wait_msg(p, "plausible health", |m| {
            element_msg(m, "punch-health").filter(|s| {
                s.get::<bool>("connected").unwrap_or(false)
                    && s.get::<f64>("bitrate").unwrap_or(0.0) > 100_000.0
            })
        });
        assert_eq!(h.get::<&str>("role").unwrap(), role);
        assert_eq!(h.get::<&str>("stream").unwrap(), "default");
        let rtt = h.get::<f64>("rtt-ms").unwrap();
        assert!((0.0..100.0).contains(&rtt), "loopback rtt {rtt}");
        assert_eq!(h.get::<i32>("negotiated-latency-ms").unwrap(), 200);
        assert!(h.get::<u64>("bytes-total").unwrap() > 0);
    }
    let v = env.wait_view(
        "health",
        &admin,
        "CONNECTED with health on both sides",
        |v| {
            v["state"] == "CONNECTED"
                && v["streams"][0]["sender"]["last_health"]["bitrate"]
                    .as_f64()
                    .unwrap_or(0.0)
                    > 0.0
                && v["streams"][0]["receiver"]["last_health"]["rtt"].is_number()
        },
    );
    assert_eq!(v["streams"][0]["sender"]["srt"], "connected");
    assert_eq!(
        tx_punch.property::<gstpunch::PunchSessionState>("session-state"),
        gstpunch::PunchSessionState::Connected
    );
    assert!(
        rx_punch
            .property::<Option<String>>("peer-address")
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    let stats = tx_punch.property::<gst::Structure>("stats");
    assert!(stats.has_field("rtt-ms"), "{stats}");

    let (status, _) = env.request(
        punch::client::rest::Method::POST,
        "/api/session/health/tally",
        &admin,
        Some(json!({"stream": "default", "state": "on-air"})),
    );
    assert_eq!(status, 200);
    let t = wait_msg(&tx, "punch-tally on-air", |m| {
        element_msg(m, "punch-tally").filter(|s| s.get::<&str>("state") == Ok("on-air"))
    });
    assert_eq!(t.get::<&str>("stream").unwrap(), "default");
    assert_eq!(
        tx_punch.property::<gstpunch::PunchTally>("tally"),
        gstpunch::PunchTally::OnAir
    );
    // A cue for the sender's side reaches its bus as punch-cue.
    let (status, _) = env.request(
        punch::client::rest::Method::POST,
        "/api/session/health/cue",
        &admin,
        Some(json!({"stream": "default", "role": "sender", "text": "Stand by camera 1"})),
    );
    assert_eq!(status, 200);
    let cue = wait_msg(&tx, "punch-cue", |m| element_msg(m, "punch-cue"));
    assert_eq!(cue.get::<&str>("text").unwrap(), "Stand by camera 1");
    assert_eq!(cue.get::<&str>("stream").unwrap(), "default");
    assert!(cue.get::<&str>("at").unwrap().ends_with('Z'));
    let notified = notified.lock().unwrap().clone();
    for name in ["stats", "tally", "session-state", "peer-address"] {
        assert!(
            notified.iter().any(|n| n == name),
            "no notify::{name} in {notified:?}"
        );
    }
    pusher.join().unwrap();
    stop(&tx);
    stop(&rx);
}

#[test]
fn receiver_restarted_mid_stream_media_resumes() {
    let env = Env::new();
    let Pair {
        created,
        tx,
        src,
        rx,
        sink,
        ..
    } = env.connected_pair("rx-restart");
    let pusher = std::thread::spawn(move || push_chunks(&src, 0, 5000));
    assert_eq!(pull_chunks(&sink, 100, WAIT).len(), 100);
    stop(&rx);
    drop(sink);
    // a new receiver (a new local port: the sender must follow it)
    let (rx2, sink2, _) = receiver(&env.uri(&created, "default", "receiver"));
    play(&rx2);
    let got = pull_chunks(&sink2, 200, WAIT);
    assert_eq!(got.len(), 200, "media resumed after the receiver restart");
    for c in &got {
        assert_eq!(c, &chunk(seq_of(c)), "intact chunk");
    }
    assert!(
        got.windows(2).all(|w| seq_of(&w[1]) > seq_of(&w[0])),
        "in order"
    );
    stop(&rx2);
    stop(&tx);
    pusher.join().unwrap();
}

#[test]
fn server_restarted_mid_stream_media_continues_and_elements_reregister() {
    let dir = tempfile::tempdir().unwrap();
    let config = punch::server::ServerConfig {
        db: dir.path().join("p.db").display().to_string(),
        ..Default::default()
    };
    let mut env = Env::with_config(config);
    let Pair {
        admin,
        tx,
        src,
        rx,
        sink,
        ..
    } = env.connected_pair("srv-restart");
    let pusher = std::thread::spawn(move || push_chunks(&src, 0, 4000));
    assert_eq!(pull_chunks(&sink, 100, WAIT).len(), 100);
    let server = env.server.take().unwrap();
    env.rt.block_on(server.shutdown());
    // the server is down: media keeps flowing
    let during = pull_chunks(&sink, 200, WAIT);
    assert_eq!(
        during.len(),
        200,
        "media continues while the server is down"
    );
    env.server = Some(
        env.rt
            .block_on(punch::server::Server::start(env.config.clone()))
            .expect("restart"),
    );
    env.wait_view(
        "srv-restart",
        &admin,
        "both elements re-registered and connected",
        |v| v["state"] == "CONNECTED",
    );
    let after = pull_chunks(&sink, 200, WAIT);
    assert_eq!(after.len(), 200);
    assert!(
        seq_of(&after[0]) > seq_of(&during[199]),
        "no restart of the media"
    );
    stop(&tx);
    stop(&rx);
    pusher.join().unwrap();
}
