//! The server end to end: real server on 127.0.0.1:0, real HTTP and WebSocket clients.

mod common;

use std::time::Duration;

use common::*;
use punch::protocol::{
    ClientMessage, ErrorCode, Health, Role, ServerMessage, SrtStatus, StatusReport, TallyState,
};
use punch::server::{Limits, ServerConfig};
use serde_json::{Value, json};

async fn session_state(sig: &mut punch::client::Signalling, state: &str) {
    expect_msg(sig, &format!("session {state}"), |m| match m {
        ServerMessage::Session(s) if s.state.as_str() == state => Some(()),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn lifecycle_create_register_connect_close() {
    let srv = start_default().await;
    let created = create(&srv.base, json!({"name": "nab-floor-cam1"})).await;
    for field in [
        "session", "token", "url", "qr", "streams", "latency", "ttl", "state", "created",
    ] {
        assert!(created.get(field).is_some(), "missing {field} in {created}");
    }
    assert_eq!(created["session"], "nab-floor-cam1");
    assert_eq!(created["streams"], json!(["default"]));
    assert_eq!(created["state"], "WAITING");
    assert_eq!(created["latency"], 200);
    assert_eq!(created["ttl"], 1800);
    let token = created["token"].as_str().unwrap().to_string();
    assert_eq!(
        created["url"],
        format!("{}/s/nab-floor-cam1?t={token}", srv.base)
    );
    assert!(created["created"].as_str().unwrap().ends_with('Z'));

    let mut a = connect(
        &srv.base,
        "nab-floor-cam1",
        &stream_token(&created, "default", "sender"),
    )
    .await;
    let mut b = connect(
        &srv.base,
        "nab-floor-cam1",
        &stream_token(&created, "default", "receiver"),
    )
    .await;
    a.send(&register(None, Role::Sender, 9000)).await.unwrap();
    let ack = expect_msg(&mut a, "registered", |m| match m {
        ServerMessage::Registered(r) => Some(r.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        (ack.you.ip.as_str(), ack.you.port, ack.peer),
        ("127.0.0.1", 9000, None)
    );

    b.send(&register(None, Role::Receiver, 9100)).await.unwrap();
    let ack_b = expect_msg(&mut b, "registered", |m| match m {
        ServerMessage::Registered(r) => Some(r.clone()),
        _ => None,
    })
    .await;
    let to_a = peer_of(&mut a).await;
    let to_b = peer_of(&mut b).await;
    assert_eq!(ack_b.peer.as_ref(), Some(&to_b));
    assert_eq!((to_a.ip.as_str(), to_a.port), ("127.0.0.1", 9100));
    assert_eq!((to_b.ip.as_str(), to_b.port), ("127.0.0.1", 9000));
    assert_eq!(to_a.passphrase, to_b.passphrase);
    assert!(
        (10..=79).contains(&to_a.passphrase.len())
            && to_a.passphrase.chars().all(|c| c.is_ascii_alphanumeric())
    );
    assert_eq!((to_a.pbkeylen, to_a.latency), (16, 200));
    let (_, v) = get_session(&srv.base, "nab-floor-cam1", &token).await;
    assert_eq!(v["state"], "READY");
    assert_eq!(v["streams"][0]["sender"]["status"], "registered");

    for sig in [&mut a, &mut b] {
        sig.send(&ClientMessage::Status(StatusReport {
            srt: SrtStatus::Connected,
        }))
        .await
        .unwrap();
    }
    session_state(&mut a, "CONNECTED").await;
    a.send(&ClientMessage::Health(Health {
        rtt: Some(12.5),
        retransmit: Some(0.2),
        bitrate: Some(8.5e6),
        ..Default::default()
    }))
    .await
    .unwrap();
    let v = eventually_view(&srv.base, "nab-floor-cam1", &token, "health stored", |v| {
        v["streams"][0]["sender"]["last_health"]["rtt"] == 12.5
    })
    .await;
    assert_eq!(v["state"], "CONNECTED");
    assert_eq!(v["connected"], 1);
    assert_eq!(v["streams"][0]["receiver"]["status"], "connected");
    assert_eq!(v["streams"][0]["sender"]["last_health"]["bitrate"], 8.5e6);
    assert!(
        v["expires"].is_null(),
        "no expiry while peers are connected: {v}"
    );

    let (status, body) = delete_session(&srv.base, "nab-floor-cam1", &token).await;
    assert_eq!((status, &body["state"]), (200, &json!("CLOSED")));
    for sig in [&mut a, &mut b] {
        let reason = expect_msg(sig, "closed", |m| match m {
            ServerMessage::Closed(c) => Some(c.reason.clone()),
            _ => None,
        })
        .await;
        assert_eq!(reason, "closed by operator");
        expect_closed(sig).await;
    }
    let (status, v) = get_session(&srv.base, "nab-floor-cam1", &token).await;
    assert_eq!((status, code(&v)), (410, "gone"));
    srv.server.shutdown().await;
}

#[tokio::test]
async fn every_auth_failure() {
    let srv = start_default().await;
    let one = create(
        &srv.base,
        json!({"name": "one", "streams": ["cam1", "cam2"]}),
    )
    .await;
    let two = create(&srv.base, json!({"name": "two"})).await;
    let admin = one["token"].as_str().unwrap();

    // no token
    let resp = http()
        .get(format!("{}/api/session/one", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing token")
    );
    // forged: right shape, wrong MAC; and garbage
    let forged = format!("{}AAAA", &admin[..admin.len() - 4]);
    for bad in [forged.as_str(), "pa.one.x.y", "nonsense"] {
        let (status, v) = get_session(&srv.base, "one", bad).await;
        assert_eq!((status, code(&v)), (401, "unauthorized"), "{bad}");
    }
    // the other session's token
    let (status, v) = get_session(&srv.base, "one", two["token"].as_str().unwrap()).await;
    assert_eq!((status, code(&v)), (403, "forbidden"));
    // a stream token can read, but not close or set tally
    let cam1 = stream_token(&one, "cam1", "sender");
    assert_eq!(get_session(&srv.base, "one", &cam1).await.0, 200);
    let (status, v) = delete_session(&srv.base, "one", &cam1).await;
    assert_eq!((status, code(&v)), (403, "forbidden"));
    // query-string token works like the header
    let resp = http()
        .get(format!("{}/api/session/one?token={admin}", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // WebSocket handshake refusals carry the JSON error
    let err = punch::client::Signalling::connect(&srv.base, "one", "forged", WAIT)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            &err,
            punch::client::ClientError::Refused { status: 401, .. }
        ),
        "{err}"
    );
    let err = punch::client::Signalling::connect(&srv.base, "two", admin, WAIT)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            &err,
            punch::client::ClientError::Refused { status: 403, .. }
        ),
        "{err}"
    );
    // a stream token used on another stream, or for the other side
    let mut sig = connect(&srv.base, "one", &cam1).await;
    sig.send(&register(Some("cam2"), Role::Sender, 9000))
        .await
        .unwrap();
    let msg = expect_error(&mut sig, ErrorCode::Forbidden).await;
    assert!(msg.contains("cam1") && msg.contains("cam2"), "{msg}");
    sig.send(&register(Some("cam1"), Role::Receiver, 9000))
        .await
        .unwrap();
    expect_error(&mut sig, ErrorCode::Forbidden).await;
    sig.send(&register(None, Role::Sender, 9000)).await.unwrap();
    expect_msg(&mut sig, "registered on the token's stream", |m| match m {
        ServerMessage::Registered(r) if r.stream == "cam1" => Some(()),
        _ => None,
    })
    .await;
    // expired: a short-TTL session runs out, its tokens answer 410
    let short = create(&srv.base, json!({"name": "short", "ttl": 1})).await;
    let short_token = short["token"].as_str().unwrap();
    wait_until_expired(&srv.base, 2).await;
    let (status, v) = get_session(&srv.base, "short", short_token).await;
    assert_eq!((status, code(&v)), (410, "gone"));
    assert!(
        v["error"]["message"].as_str().unwrap().contains("expired"),
        "{v}"
    );
    let err = punch::client::Signalling::connect(&srv.base, "short", short_token, WAIT)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            &err,
            punch::client::ClientError::Refused { status: 410, .. }
        ),
        "{err}"
    );
    // a name reused after expiry does not accept the old session's tokens
    create(&srv.base, json!({"name": "short"})).await;
    let (status, _) = get_session(&srv.base, "short", short_token).await;
    assert_eq!(status, 410);
    srv.server.shutdown().await;
}

/// Waits (bounded) until `/healthz` counts `sessions` live sessions.
async fn wait_until_expired(base: &str, sessions: u64) -> Value {
    within("session expiry", async {
        loop {
            let v = healthz(base).await;
            if v["sessions"] == sessions {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

#[tokio::test]
async fn ttl_expiry_closes_idle_sessions_but_not_connected_ones() {
    let srv = start_default().await;
    let s = create(&srv.base, json!({"name": "ttl", "ttl": 1})).await;
    let token = s["token"].as_str().unwrap();
    let mut peer = connect(&srv.base, "ttl", token).await;
    peer.send(&register(None, Role::Sender, 9000))
        .await
        .unwrap();
    expect_msg(&mut peer, "registered", |m| {
        matches!(m, ServerMessage::Registered(_)).then_some(())
    })
    .await;
    // An open connection keeps the session alive well past its TTL.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let v = healthz(&srv.base).await;
    assert_eq!(
        v["sessions"], 1,
        "a session with a connected peer must not expire"
    );
    peer.close().await;
    // After the last peer leaves, the TTL runs out.
    wait_until_expired(&srv.base, 0).await;
    let (status, v) = get_session(&srv.base, "ttl", token).await;
    assert_eq!((status, code(&v)), (410, "gone"));
    srv.server.shutdown().await;
}

#[tokio::test]
async fn slot_takeover_after_disconnect_and_refusal_while_live() {
    let srv = start_default().await;
    let created = create(&srv.base, json!({"name": "takeover"})).await;
    let token = created["token"].as_str().unwrap();
    let mut receiver = connect(&srv.base, "takeover", token).await;
    let mut first = connect(&srv.base, "takeover", token).await;
    receiver
        .send(&register(None, Role::Receiver, 7000))
        .await
        .unwrap();
    first
        .send(&register(None, Role::Sender, 9000))
        .await
        .unwrap();
    assert_eq!(peer_of(&mut receiver).await.port, 9000);

    let mut second = connect(&srv.base, "takeover", token).await;
    second
        .send(&register(None, Role::Sender, 9500))
        .await
        .unwrap();
    let msg = expect_error(&mut second, ErrorCode::SlotTaken).await;
    assert!(msg.contains("already has a sender"), "{msg}");

    first.close().await;
    session_state(&mut receiver, "WAITING").await;
    second
        .send(&register(None, Role::Sender, 9500))
        .await
        .unwrap();
    let p = peer_of(&mut receiver).await;
    assert_eq!(
        p.port, 9500,
        "the receiver learns the new sender's coordinates"
    );
    assert_eq!(peer_of(&mut second).await.port, 7000);
    srv.server.shutdown().await;
}

async fn post_tally(base: &str, session: &str, token: &str, body: Value) -> u16 {
    let path = format!("/api/session/{session}/tally");
    api_request(base, reqwest::Method::POST, &path, token, Some(body))
        .await
        .0
}

#[tokio::test]
async fn tally_reaches_the_peers_of_its_stream() {
    let srv = start_default().await;
    let created = create(
        &srv.base,
        json!({"name": "tally", "streams": ["cam1", "cam2"]}),
    )
    .await;
    let token = created["token"].as_str().unwrap();
    let mut cam1 = connect(
        &srv.base,
        "tally",
        &stream_token(&created, "cam1", "sender"),
    )
    .await;
    cam1.send(&register(None, Role::Sender, 9000))
        .await
        .unwrap();
    expect_msg(&mut cam1, "initial tally off", |m| match m {
        ServerMessage::Tally(t) if t.state == TallyState::Off => Some(()),
        _ => None,
    })
    .await;
    assert_eq!(
        post_tally(
            &srv.base,
            "tally",
            token,
            json!({"stream": "cam1", "state": "on-air"})
        )
        .await,
        200
    );
    expect_msg(&mut cam1, "on-air", |m| match m {
        ServerMessage::Tally(t) if t.stream == "cam1" && t.state == TallyState::OnAir => Some(()),
        _ => None,
    })
    .await;
    let (_, v) = get_session(&srv.base, "tally", token).await;
    assert_eq!(v["streams"][0]["tally"], "on-air");
    assert_eq!(
        post_tally(
            &srv.base,
            "tally",
            token,
            json!({"stream": "nope", "state": "on-air"})
        )
        .await,
        400
    );
    assert_eq!(
        post_tally(
            &srv.base,
            "tally",
            token,
            json!({"stream": "cam1", "state": "red"})
        )
        .await,
        400
    );
    srv.server.shutdown().await;
}

#[tokio::test]
async fn public_address_comes_from_the_proxy_only_when_trusted() {
    for (trust, expected) in [(false, "127.0.0.1"), (true, "198.51.100.9")] {
        let srv = start(ServerConfig {
            trust_proxy: trust,
            ..ServerConfig::default()
        })
        .await;
        let created = create(&srv.base, json!({"name": "proxy"})).await;
        let url = format!(
            "{}/api/ws/proxy?token={}",
            srv.base.replace("http", "ws"),
            created["token"].as_str().unwrap()
        );
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = url.into_client_request().unwrap();
        req.headers_mut().insert(
            "x-forwarded-for",
            "203.0.113.50, 198.51.100.9".parse().unwrap(),
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        raw_send(
            &mut ws,
            tokio_tungstenite::tungstenite::Message::text(
                r#"{"type":"register","port":9000,"role":"sender"}"#,
            ),
        )
        .await;
        let you = loop {
            let v = raw_next(&mut ws).await.unwrap();
            if v["type"] == "registered" {
                break v["you"]["ip"].clone();
            }
        };
        assert_eq!(you, expected, "trust_proxy={trust}");
        srv.server.shutdown().await;
    }
}

#[tokio::test]
async fn dead_connections_are_noticed_and_free_their_slot() {
    let limits = Limits {
        ping_interval: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(400),
        ..Limits::default()
    };
    let srv = start_with_limits(limits).await;
    let created = create(&srv.base, json!({"name": "dead"})).await;
    let token = created["token"].as_str().unwrap();
    // A client that registers and then never reads again: it never answers pings.
    let mut silent = raw_ws(&srv.base, "dead", token).await;
    raw_send(
        &mut silent,
        tokio_tungstenite::tungstenite::Message::text(
            r#"{"type":"register","port":9000,"role":"sender"}"#,
        ),
    )
    .await;
    eventually_view(&srv.base, "dead", token, "registered", |v| {
        v["streams"][0]["sender"]["status"] == "registered"
    })
    .await;
    let v = eventually_view(&srv.base, "dead", token, "slot freed", |v| {
        v["streams"][0]["sender"]["status"] == "waiting"
    })
    .await;
    assert_eq!(v["state"], "WAITING");
    drop(silent);
    srv.server.shutdown().await;
}

#[tokio::test]
async fn multi_stream_sessions_and_the_session_summary() {
    let srv = start_default().await;
    let created = create(
        &srv.base,
        json!({"name": "multi", "streams": {"cam-wide": {"label": "Wide", "role": "wide", "audio": "stereo"}, "cam-close": null}}),
    )
    .await;
    assert_eq!(created["streams"], json!(["cam-wide", "cam-close"]));
    let mut s = connect(
        &srv.base,
        "multi",
        &stream_token(&created, "cam-close", "sender"),
    )
    .await;
    let mut r = connect(
        &srv.base,
        "multi",
        &stream_token(&created, "cam-close", "receiver"),
    )
    .await;
    s.send(&register(None, Role::Sender, 9000)).await.unwrap();
    r.send(&register(None, Role::Receiver, 9001)).await.unwrap();
    for sig in [&mut s, &mut r] {
        sig.send(&ClientMessage::Status(StatusReport {
            srt: SrtStatus::Connected,
        }))
        .await
        .unwrap();
    }
    let summary = expect_msg(&mut s, "one stream connected", |m| match m {
        ServerMessage::Session(u) if u.connected == 1 => Some(u.clone()),
        _ => None,
    })
    .await;
    // A stream token reads its own stream: the session is, for it, that stream.
    assert_eq!((summary.total, summary.state.as_str()), (1, "CONNECTED"));
    assert_eq!(summary.streams.len(), 1);
    assert_eq!(summary.streams[0].name, "cam-close");
    // The admin token reads the whole session.
    let mut admin = connect(&srv.base, "multi", created["token"].as_str().unwrap()).await;
    let summary = expect_msg(&mut admin, "the session", |m| match m {
        ServerMessage::Session(u) => Some(u.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        (summary.total, summary.connected, summary.state.as_str()),
        (2, 1, "WAITING"),
        "the wide camera has nobody yet"
    );
    assert_eq!(summary.streams[0].label.as_deref(), Some("Wide"));
    assert_eq!(summary.streams[1].state.as_str(), "CONNECTED");
    srv.server.shutdown().await;
}

#[tokio::test]
async fn healthz_and_unknown_routes() {
    let srv = start_default().await;
    let v = healthz(&srv.base).await;
    assert_eq!(v["status"], "ok");
    let resp = http()
        .get(format!("{}/nope", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(code(&resp.json().await.unwrap()), "not_found");
    let resp = http()
        .put(format!("{}/api/session", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(code(&resp.json().await.unwrap()), "method_not_allowed");
    srv.server.shutdown().await;
}
