//! A stream with several receivers over the real HTTP API and real WebSockets: what creation
//! accepts, how receivers find their slots, what the API shows, and that it all survives a
//! restart.

mod common;

use common::*;
use punch::protocol::{
    ClientMessage, ErrorCode, Health, PeerInfo, Register, Registered, Role, ServerMessage,
    SrtStatus, StatusReport,
};
use punch::server::ServerConfig;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn creation_checks_the_receiver_count() {
    let srv = start_default().await;
    for (body, says) in [
        (
            json!({"streams": {"pgm": {"receivers": 0}}}),
            "streams.pgm.receivers must be a whole number of receivers between 1 and 16",
        ),
        (
            json!({"streams": {"pgm": {"receivers": 17}}}),
            "between 1 and 16, got 17",
        ),
        (json!({"streams": {"pgm": {"receivers": "3"}}}), "got \"3\""),
        (
            json!({"streams": {"pgm": {"receivers": 2, "receiver": {"device": "caller"}}}}),
            "a stream with several receivers is sent and received by Punch peers",
        ),
        (
            json!({"streams": {"a": {"receivers": 12}, "b": {"receivers": 12}, "c": {"receivers": 12}}}),
            "at most 32 receivers over all its streams",
        ),
    ] {
        let (status, v) = create_raw(&srv.base, &body.to_string()).await;
        assert_eq!((status, code(&v)), (400, "bad_request"), "{body}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }
    // the server's own maximum is a flag
    let srv = start(ServerConfig {
        limits: punch::server::Limits {
            max_receivers: 2,
            ..Default::default()
        },
        ..ServerConfig::default()
    })
    .await;
    let (status, v) = create_raw(&srv.base, r#"{"streams": {"pgm": {"receivers": 3}}}"#).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("between 1 and 2")
    );
}

fn with_slot(role: Role, port: u16, receiver: Option<u8>) -> ClientMessage {
    match register(Some("pgm"), role, port) {
        ClientMessage::Register(r) => ClientMessage::Register(Register { receiver, ..r }),
        _ => unreachable!(),
    }
}

async fn registered(sig: &mut punch::client::Signalling) -> Registered {
    expect_msg(sig, "registered", |m| match m {
        ServerMessage::Registered(r) => Some(r.clone()),
        _ => None,
    })
    .await
}

async fn peer(sig: &mut punch::client::Signalling) -> PeerInfo {
    expect_msg(sig, "peer", |m| match m {
        ServerMessage::Peer(p) => Some(p.clone()),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn every_receiver_gets_its_own_link_and_the_api_lists_them_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        db: dir.path().join("punch.db").display().to_string(),
        ..ServerConfig::default()
    };
    let srv = start(config.clone()).await;
    let created = create(
        &srv.base,
        json!({"name": "show", "streams": {"pgm": {"receivers": 3, "label": "PGM"}, "cam1": null}}),
    )
    .await;
    assert_eq!(created["streams"], json!(["pgm", "cam1"]));
    assert!(created["stream_tokens"].get("pgm~2").is_none());
    let admin = created["token"].as_str().unwrap().to_string();
    let send = stream_token(&created, "pgm", "sender");
    let recv = stream_token(&created, "pgm", "receiver");

    // the sender: one connection and one port per receiver
    let mut legs = Vec::new();
    for k in 1..=3u8 {
        let mut sig = connect(&srv.base, "show", &send).await;
        sig.send(&with_slot(Role::Sender, 9000 + u16::from(k), Some(k)))
            .await
            .unwrap();
        let r = registered(&mut sig).await;
        assert_eq!((r.receiver, r.receivers), (Some(k), 3));
        legs.push(sig);
    }
    // three receivers with the one receiver token: the next free slot each
    let mut receivers = Vec::new();
    for n in 1..=3u16 {
        let mut sig = connect(&srv.base, "show", &recv).await;
        sig.send(&with_slot(Role::Receiver, 7000 + n, None))
            .await
            .unwrap();
        let r = registered(&mut sig).await;
        assert_eq!(r.receiver, Some(n as u8));
        let to_receiver = peer(&mut sig).await;
        assert_eq!(
            to_receiver.port,
            9000 + n,
            "receiver {n} links with the sender's leg {n}"
        );
        let to_leg = peer(&mut legs[usize::from(n) - 1]).await;
        assert_eq!((to_leg.stream.as_str(), to_leg.port), ("pgm", 7000 + n));
        assert_eq!(to_leg.passphrase, to_receiver.passphrase);
        receivers.push(sig);
    }
    // a fourth finds them all taken
    let mut fourth = connect(&srv.base, "show", &recv).await;
    fourth
        .send(&with_slot(Role::Receiver, 7009, None))
        .await
        .unwrap();
    let why = expect_error(&mut fourth, ErrorCode::SlotTaken).await;
    assert!(why.contains("all 3 receivers"), "{why}");

    // two links up, with health from both ends
    for (i, sig) in receivers.iter_mut().enumerate().take(2) {
        for s in [&mut legs[i], sig] {
            s.send(&ClientMessage::Status(StatusReport {
                srt: SrtStatus::Connected,
            }))
            .await
            .unwrap();
            s.send(&ClientMessage::Health(Health {
                rtt: Some(12.0),
                bitrate: Some(3_000_000.0),
                ..Health::default()
            }))
            .await
            .unwrap();
        }
    }
    let shows = |v: &serde_json::Value| {
        let pgm = &v["streams"][0];
        pgm["receivers"].as_array().is_some_and(|l| {
            l.len() == 3
                && l[0]["state"] == "CONNECTED"
                && l[1]["state"] == "CONNECTED"
                && l[2]["state"] == "READY"
        }) && pgm["sent_bitrate"] == 6_000_000.0
    };
    let began = std::time::Instant::now();
    let view = loop {
        let (status, v) = get_session(&srv.base, "show", &admin).await;
        assert_eq!(status, 200);
        if shows(&v) {
            break v;
        }
        assert!(
            began.elapsed() < WAIT,
            "the view never showed the links: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        view["streams"].as_array().unwrap().len(),
        2,
        "links are not streams: {view}"
    );
    assert_eq!(view["streams"][0]["name"], "pgm");
    assert_eq!(
        view["streams"][0]["receivers"][1]["receiver_peer"]["address"]["port"],
        7002
    );
    // a receiver's token reads its stream, not the other receivers' details
    let (_, mine) = get_session(&srv.base, "show", &recv).await;
    assert_eq!(mine["streams"].as_array().unwrap().len(), 1);
    assert!(mine["streams"][0]["receivers"][1]["receiver_peer"]["meta"].is_null());
    assert!(mine["streams"][0]["receivers"][1]["sender"]["last_health"].is_null());

    // tally reaches every link's peers
    let (status, v) = api_request(
        &srv.base,
        Method::POST,
        "/api/session/show/tally",
        &admin,
        Some(json!({"stream": "pgm", "state": "on-air"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    for sig in legs.iter_mut().chain(receivers.iter_mut()) {
        expect_msg(sig, "tally", |m| match m {
            ServerMessage::Tally(t) if t.stream == "pgm" => Some(()),
            _ => None,
        })
        .await;
    }

    // connection strings are for one link: the stream says why it has none
    let (status, v) = api_request(
        &srv.base,
        Method::GET,
        "/api/session/show/connect",
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 409, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("has 3 receivers"),
        "{v}"
    );

    // a restart keeps the stream and its three receivers
    drop((legs, receivers, fourth));
    srv.server.shutdown().await;
    let srv = start(config).await;
    let (status, v) = get_session(&srv.base, "show", &admin).await;
    assert_eq!(status, 200, "{v}");
    let pgm = &v["streams"][0];
    assert_eq!(
        (pgm["name"].as_str(), pgm["tally"].as_str()),
        (Some("pgm"), Some("on-air"))
    );
    let slots: Vec<u64> = pgm["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["receiver"].as_u64().unwrap())
        .collect();
    assert_eq!(slots, vec![1, 2, 3]);
    assert_eq!(
        pgm["receivers"][2]["receiver_peer"]["address"]["port"], 7003,
        "the last holders are remembered"
    );
    // and the receiver that comes back from where it was gets its slot again
    let mut again = connect(&srv.base, "show", &recv).await;
    again
        .send(&with_slot(Role::Receiver, 7003, Some(3)))
        .await
        .unwrap();
    assert_eq!(registered(&mut again).await.receiver, Some(3));
}
