//! How media gets from one side to the other: STUN discovery reported at registration, the
//! latency an operator applies reaching both elements, and the relay carrying real, encrypted
//! SRT between the two registered peers. (Real NATs are in tests/natlab.rs.)

mod common;

use std::time::Duration;

use common::*;
use gst::prelude::*;
use punch::client::Signalling;
use punch::protocol::{
    ClientMessage, Endpoint, NatMapping, NatReport, PeerInfo, Port, Register, Role, ServerMessage,
};
use serde_json::json;

#[test]
fn elements_report_their_nat_and_follow_a_latency_change() {
    let env = Env::new();
    let Pair {
        admin, tx, src, rx, ..
    } = env.connected_pair("latency");
    let pusher = std::thread::spawn(move || push_chunks(&src, 0, 100_000));
    // Connected, and the receiver's health (sent once a second) has reached the server.
    let view = env.wait_view("latency", &admin, "both connected", |v| {
        v["state"] == "CONNECTED"
            && v["streams"][0]["receiver"]["last_health"]["latency"].is_number()
    });
    let s = &view["streams"][0];
    assert_eq!(s["path"], "direct");
    for side in ["sender", "receiver"] {
        // Loopback has no NAT: STUN maps the SRT port to itself.
        assert_eq!(
            s[side]["nat"]["mapping"], "endpoint-independent",
            "{side}: {s}"
        );
        assert_eq!(s[side]["nat"]["mapped"]["ip"], "127.0.0.1");
        assert_eq!(s[side]["nat"]["mapped"]["port"], s[side]["address"]["port"]);
    }
    assert_eq!(s["receiver"]["last_health"]["latency"], 200.0);

    let (status, body) = env.request(
        punch::client::rest::Method::POST,
        "/api/session/latency/latency",
        &admin,
        Some(json!({ "stream": "default", "latency": 360 })),
    );
    assert_eq!(status, 200, "{body}");
    // Both inner elements restart with the new latency, and their SRT link negotiates it. The
    // two restarts are not simultaneous, so one side may connect and be cut once more: wait for
    // the link to hold (five reports in a row on each side) before stopping.
    for (side, p) in [("receiver", &rx), ("sender", &tx)] {
        let mut in_a_row = 0;
        wait_msg(p, &format!("{side}: a steady link at 360 ms"), |m| {
            let s = element_msg(m, "punch-health")?;
            let up = s.get::<bool>("connected").unwrap_or(false)
                && s.get::<i32>("negotiated-latency-ms").ok() == Some(360);
            in_a_row = if up { in_a_row + 1 } else { 0 };
            (in_a_row >= 5).then_some(())
        });
    }
    stop(&tx);
    stop(&rx);
    let _ = pusher.join();
}

#[test]
fn without_a_stun_service_elements_fall_back_to_the_declared_port() {
    let env = Env::with_config(punch::server::ServerConfig {
        stun_port: None,
        ..Default::default()
    });
    let Pair {
        admin,
        tx,
        src,
        rx,
        sink,
        ..
    } = env.connected_pair("nostun");
    let pusher = std::thread::spawn(move || push_chunks(&src, 0, 300));
    let got = pull_chunks(&sink, 200, WAIT);
    assert!(got.len() >= 200, "only {} chunks", got.len());
    let view = env.wait_view("nostun", &admin, "connected", |v| v["state"] == "CONNECTED");
    assert!(view["streams"][0]["sender"]["nat"].is_null(), "{view}");
    stop(&tx);
    stop(&rx);
    let _ = pusher.join();
}

/// Registers one side over a plain signalling connection, claiming `mapping`.
fn fake_peer(
    env: &Env,
    created: &serde_json::Value,
    role: Role,
    port: u16,
    mapping: NatMapping,
) -> Signalling {
    let token = created["stream_tokens"]["default"][role.as_str()]
        .as_str()
        .unwrap()
        .to_string();
    let base = env.base();
    let session = created["session"].as_str().unwrap().to_string();
    env.rt.block_on(async move {
        let mut sig = Signalling::connect(&base, &session, &token, WAIT)
            .await
            .unwrap();
        sig.send(&ClientMessage::Register(Register {
            stream: None,
            port: Port(port),
            role,
            meta: Default::default(),
            nat: Some(NatReport {
                mapped: Some(Endpoint {
                    ip: "127.0.0.1".into(),
                    port,
                }),
                mapping,
            }),
            reports: true,
            receiver: None,
            tunnel: false,
        }))
        .await
        .unwrap();
        sig
    })
}

/// The next `peer` message; panics if it comes before this side's `registered` (an element
/// ignores coordinates for a stream it does not know it holds yet).
fn next_peer(env: &Env, sig: &mut Signalling) -> PeerInfo {
    env.rt.block_on(async {
        tokio::time::timeout(WAIT, async {
            let mut registered = false;
            loop {
                match sig.recv().await {
                    Ok(Some(ServerMessage::Registered(_))) => registered = true,
                    Ok(Some(ServerMessage::Peer(p))) => {
                        assert!(registered, "`peer` came before `registered`");
                        return p;
                    }
                    Ok(Some(_)) => continue,
                    other => panic!("signalling ended: {other:?}"),
                }
            }
        })
        .await
        .expect("a peer message")
    })
}

#[test]
fn a_symmetric_nat_is_relayed_and_encrypted_srt_flows_through_the_relay() {
    let env = Env::new();
    let created = env.create(json!({ "name": "relayed" }));
    let admin = created["token"].as_str().unwrap().to_string();
    let (port_a, port_b) = (free_udp_port(), free_udp_port());
    let mut sig_a = fake_peer(
        &env,
        &created,
        Role::Sender,
        port_a,
        NatMapping::EndpointDependent,
    );
    let mut sig_b = fake_peer(
        &env,
        &created,
        Role::Receiver,
        port_b,
        NatMapping::EndpointIndependent,
    );
    let to_a = next_peer(&env, &mut sig_a);
    let to_b = next_peer(&env, &mut sig_b);
    assert!(to_a.relay && to_b.relay, "{to_a:?} {to_b:?}");
    assert_ne!(to_a.port, to_b.port, "one relay port per side");
    let view = env.wait_view("relayed", &admin, "RELAYING", |v| v["state"] == "RELAYING");
    assert_eq!(view["streams"][0]["path"], "relay");
    assert!(
        view["streams"][0]["path_reason"]
            .as_str()
            .unwrap()
            .contains("sender's NAT"),
        "{view}"
    );

    let srt = |relay_port: u16, local: u16, p: &PeerInfo| {
        format!(
            "srt://127.0.0.1:{relay_port}?mode=rendezvous&localaddress=0.0.0.0&localport={local}&latency=120&passphrase={}&pbkeylen={}",
            p.passphrase, p.pbkeylen
        )
    };
    let tx = gst::parse::launch(&format!(
        "appsrc name=src is-live=true format=time caps=application/x-punch-test ! srtsink sync=false wait-for-connection=false uri=\"{}\"",
        srt(to_a.port, port_a, &to_a)
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let rx = gst::parse::launch(&format!(
        "srtsrc uri=\"{}\" ! appsink name=sink sync=false max-buffers=100000",
        srt(to_b.port, port_b, &to_b)
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let src = tx
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let sink = rx
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    play(&rx);
    play(&tx);
    // srtsink drops while it connects: push until the first chunk arrives, then count a run.
    let pusher = std::thread::spawn(move || push_chunks(&src, 0, 4_000));
    let got = pull_chunks(&sink, 500, Duration::from_secs(20));
    assert!(
        got.len() >= 500,
        "only {} chunks came through the relay",
        got.len()
    );
    let first = seq_of(&got[0]);
    for (i, c) in got.iter().enumerate() {
        assert_eq!(
            c,
            &chunk(first + i as u32),
            "chunk {} differs",
            first + i as u32
        );
    }
    let health = env.healthz();
    assert!(health["relay_packets"].as_u64().unwrap() > 500, "{health}");
    assert_eq!(health["relays"], 1);
    stop(&tx);
    stop(&rx);
    let _ = pusher.join();

    // Closing the session frees the relay (a side merely leaving keeps it: its SRT may go on
    // while its signalling reconnects; unused, the relay frees itself).
    let (status, _) = env.request(
        punch::client::rest::Method::DELETE,
        "/api/session/relayed",
        &admin,
        None,
    );
    assert_eq!(status, 200);
    let start = std::time::Instant::now();
    loop {
        let health = env.healthz();
        if health["relays"] == 0 {
            break;
        }
        assert!(start.elapsed() < WAIT, "relay not freed: {health}");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop((sig_a, sig_b));
}

#[test]
fn a_receiver_connecting_to_an_absent_peer_stops_promptly() {
    let env = Env::new();
    let created = env.create(json!({ "name": "absent" }));
    // A sender registers (plain signalling) but never runs SRT: the receiver's srtsrc keeps
    // connecting, and stopping it must not wait for libsrt's 30 s rendezvous timeout.
    let _fake = fake_peer(
        &env,
        &created,
        Role::Sender,
        free_udp_port(),
        NatMapping::EndpointIndependent,
    );
    let (rx, _sink, _) = receiver(&env.uri(&created, "default", "receiver"));
    play(&rx);
    wait_msg(&rx, "the receiver's SRT element running", |m| {
        element_msg(m, "punch-health").filter(|s| !s.get::<bool>("connected").unwrap_or(true))
    });
    stop(&rx);
}
