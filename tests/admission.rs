//! The waiting room: peers with the session's join token wait until the producer admits them
//! into a free side (they then go on as that side) or rejects them; the join token does nothing
//! else. Real server, real WebSocket clients.

mod common;

use common::*;
use punch::protocol::{AdmissionState, ClientMessage, ErrorCode, Role, ServerMessage};
use serde_json::json;

/// The name a peer is told it waits under in the waiting room.
async fn waits(sig: &mut punch::client::Signalling) -> String {
    expect_msg(sig, "admission waiting", |m| match m {
        ServerMessage::Admission(a) if a.state == AdmissionState::Waiting => Some(a.peer.clone()),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn a_join_token_waits_until_admitted_or_rejected_and_does_nothing_else() {
    let srv = start_default().await;
    let created = create(
        &srv.base,
        json!({ "name": "venue", "streams": ["cam1", "cam2"], "join": true }),
    )
    .await;
    let join = created["join_token"]
        .as_str()
        .expect("a join token")
        .to_string();
    let admin = created["token"].as_str().unwrap().to_string();
    let plain = create(&srv.base, json!({ "name": "plain" })).await;
    assert!(
        plain.get("join_token").is_none(),
        "only on request: {plain}"
    );

    // The join token reads nothing of the session and may do nothing.
    let (status, v) = get_session(&srv.base, "venue", &join).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["streams"], json!([]), "{v}");
    assert!(v.get("waiting").is_none(), "{v}");
    for (path, body) in [
        ("/tally", json!({"stream": "cam1", "state": "on-air"})),
        ("/admission", json!({"peer": "p1", "stream": "cam1"})),
        ("/cue", json!({"stream": "cam1", "text": "hi"})),
    ] {
        let (status, v) = api_request(
            &srv.base,
            reqwest::Method::POST,
            &format!("/api/session/venue{path}"),
            &join,
            Some(body),
        )
        .await;
        assert_eq!(status, 403, "{path}: {v}");
    }
    // Watching with it (the venue page) reads the peers waiting from the watcher's place only.
    let mut watcher = connect(&srv.base, "venue", &join).await;
    watcher.send(&ClientMessage::Watch).await.unwrap();
    let venue_view = |want: usize| {
        move |m: &ServerMessage| match m {
            ServerMessage::View(v) if v.waiting.len() == want => {
                assert!(
                    v.streams.is_empty() && !v.join,
                    "the venue page reads no stream: {v:?}"
                );
                Some(v.waiting.clone())
            }
            _ => None,
        }
    };
    expect_msg(
        &mut watcher,
        "the venue view, nobody waiting",
        venue_view(0),
    )
    .await;

    // A camera operator arrives and waits.
    let mut cam = connect(&srv.base, "venue", &join).await;
    cam.send(&register(None, Role::Sender, 9000)).await.unwrap();
    let peer = waits(&mut cam).await;
    let waiting = expect_msg(
        &mut watcher,
        "the venue view with the camera",
        venue_view(1),
    )
    .await;
    assert_eq!(waiting[0].label.as_deref(), Some("sender-9000"));
    let (_, v) = get_session(&srv.base, "venue", &admin).await;
    assert_eq!(v["waiting"][0]["peer"], peer.as_str(), "{v}");
    assert_eq!(v["waiting"][0]["label"], "sender-9000");
    assert_eq!(v["waiting"][0]["role"], "sender");

    // The decoder of cam1 is there with its own token.
    let rx_token = stream_token(&created, "cam1", "receiver");
    let mut rx = connect(&srv.base, "venue", &rx_token).await;
    rx.send(&register(None, Role::Receiver, 9001))
        .await
        .unwrap();

    // Admission into the wrong role, a taken side, an unknown peer: refused, clearly.
    let admit = |body: serde_json::Value| {
        let (base, admin) = (srv.base.clone(), admin.clone());
        async move {
            api_request(
                &base,
                reqwest::Method::POST,
                "/api/session/venue/admission",
                &admin,
                Some(body),
            )
            .await
        }
    };
    let (status, v) = admit(json!({"peer": peer, "stream": "cam1", "role": "receiver"})).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is a sender"),
        "{v}"
    );
    let (status, v) = admit(json!({"peer": "p999", "stream": "cam1"})).await;
    assert_eq!((status, code(&v)), (404, "unknown_peer"), "{v}");
    let (status, v) = admit(json!({"peer": peer, "stream": "nope"})).await;
    assert_eq!((status, code(&v)), (400, "unknown_stream"), "{v}");

    // Admitted as cam1's sender: it goes on exactly as that side, and gets that side's token.
    let (status, v) = admit(json!({"peer": peer, "stream": "cam1"})).await;
    assert_eq!(status, 200, "{v}");
    let token = expect_msg(&mut cam, "admission admitted", |m| match m {
        ServerMessage::Admission(a) if a.state == AdmissionState::Admitted => {
            assert_eq!(
                (a.stream.as_deref(), a.role),
                (Some("cam1"), Some(Role::Sender))
            );
            a.token.clone()
        }
        _ => None,
    })
    .await;
    expect_msg(&mut cam, "registered", |m| {
        matches!(m, ServerMessage::Registered(r) if r.stream == "cam1").then_some(())
    })
    .await;
    let to_cam = expect_msg(&mut cam, "peer", |m| match m {
        ServerMessage::Peer(p) => Some(p.clone()),
        _ => None,
    })
    .await;
    assert_eq!(to_cam.port, 9001, "the decoder's coordinates");
    assert_eq!(
        token,
        stream_token(&created, "cam1", "sender"),
        "that side's own token"
    );
    let (_, v) = get_session(&srv.base, "venue", &admin).await;
    assert!(v.get("waiting").is_none(), "{v}");
    assert_eq!(v["streams"][0]["sender"]["status"], "registered", "{v}");
    // the venue page sees it leave the room
    expect_msg(
        &mut watcher,
        "the venue view after the admission",
        venue_view(0),
    )
    .await;

    // Another arrives; cam1's sender is taken ...
    let mut other = connect(&srv.base, "venue", &join).await;
    other
        .send(&register(None, Role::Sender, 9002))
        .await
        .unwrap();
    let peer2 = waits(&mut other).await;
    let (status, v) = admit(json!({"peer": peer2, "stream": "cam1"})).await;
    assert_eq!((status, code(&v)), (409, "slot_taken"), "{v}");
    // ... so the producer makes it a stream of its own.
    let (status, v) = admit(json!({"peer": peer2, "stream": "cam1", "create": true})).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("already"),
        "{v}"
    );
    let (status, v) = admit(json!({"peer": peer2, "stream": "cam3", "create": true})).await;
    assert_eq!(status, 200, "{v}");
    expect_msg(&mut other, "admitted into the new stream", |m| match m {
        ServerMessage::Admission(a) if a.state == AdmissionState::Admitted => {
            (a.stream.as_deref() == Some("cam3")).then_some(())
        }
        _ => None,
    })
    .await;
    let (_, v) = get_session(&srv.base, "venue", &admin).await;
    assert_eq!(v["streams"][2]["name"], "cam3", "{v}");
    assert_eq!(v["streams"][2]["sender"]["status"], "registered", "{v}");

    // The next one is turned down.
    let mut third = connect(&srv.base, "venue", &join).await;
    third
        .send(&register(None, Role::Sender, 9003))
        .await
        .unwrap();
    let peer3 = waits(&mut third).await;
    let (status, v) = admit(json!({"peer": peer3, "reject": true})).await;
    assert_eq!(status, 200, "{v}");
    assert!(
        expect_error(&mut third, ErrorCode::Rejected)
            .await
            .contains("turned this peer down")
    );
    expect_closed(&mut third).await;
}

/// A stream made for an admitted peer is stored like the others: it is there after a restart.
#[tokio::test]
async fn a_stream_made_at_admission_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = punch::server::ServerConfig {
        db: dir.path().join("punch.db").display().to_string(),
        ..Default::default()
    };
    let srv = start(config.clone()).await;
    let created = create(&srv.base, json!({ "name": "grow", "join": true })).await;
    let admin = created["token"].as_str().unwrap().to_string();
    let mut cam = connect(&srv.base, "grow", created["join_token"].as_str().unwrap()).await;
    cam.send(&register(None, Role::Sender, 9000)).await.unwrap();
    let peer = waits(&mut cam).await;
    let (status, v) = api_request(
        &srv.base,
        reqwest::Method::POST,
        "/api/session/grow/admission",
        &admin,
        Some(json!({"peer": peer, "stream": "late-cam", "create": true})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    srv.server.shutdown().await;
    let srv = start(config).await;
    let (status, v) = get_session(&srv.base, "grow", &admin).await;
    assert_eq!(status, 200, "{v}");
    let names: Vec<&str> = v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "late-cam"], "{v}");
}
