//! Bad input never panics the server nor disturbs other sessions: each gets a clear error.

mod common;

use common::*;
use punch::protocol::Role;
use punch::server::Limits;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn bad_session_requests_get_400_409_413_with_the_reason() {
    let srv = start_default().await;
    let cases: &[(&str, u16, &str, &str)] = &[
        ("{", 400, "invalid_json", "not valid JSON"),
        ("[1,2]", 400, "bad_request", "JSON object"),
        (
            r#"{"name": 5}"#,
            400,
            "bad_request",
            "name must be a string",
        ),
        (r#"{"name": "has space"}"#, 400, "bad_request", "' '"),
        (r#"{"name": ""}"#, 400, "bad_request", "empty"),
        (
            &format!(r#"{{"name": "{}"}}"#, "x".repeat(65)),
            400,
            "bad_request",
            "longer than 64",
        ),
        (r#"{"streams": []}"#, 400, "bad_request", "at least one"),
        (r#"{"streams": ["a", "a"]}"#, 400, "bad_request", "twice"),
        (r#"{"streams": [1]}"#, 400, "bad_request", "list of names"),
        (
            r#"{"streams": "cam"}"#,
            400,
            "bad_request",
            "streams must be",
        ),
        (
            r#"{"streams": {"cam": {"label": 3}}}"#,
            400,
            "bad_request",
            "label must be a string",
        ),
        (
            r#"{"streams": {"cam": {"colour": "red"}}}"#,
            400,
            "bad_request",
            "unknown field \"colour\"",
        ),
        (
            r#"{"latency": 5}"#,
            400,
            "bad_request",
            "between 20 and 8000",
        ),
        (
            r#"{"latency": "200"}"#,
            400,
            "bad_request",
            "latency must be",
        ),
        (r#"{"ttl": 0}"#, 400, "bad_request", "ttl must be"),
        (r#"{"ttl": -5}"#, 400, "bad_request", "ttl must be"),
        (r#"{"pbkeylen": 20}"#, 400, "bad_request", "16, 24 or 32"),
        (
            r#"{"latancy": 200}"#,
            400,
            "bad_request",
            "unknown field \"latancy\"",
        ),
    ];
    for (body, status, code_, needle) in cases {
        let (got, v) = create_raw(&srv.base, body).await;
        assert_eq!((got, code(&v)), (*status, *code_), "{body} → {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(needle),
            "{body}: message {msg:?} lacks {needle:?}"
        );
    }
    let streams: Vec<String> = (0..33).map(|i| format!("s{i}")).collect();
    let (got, v) = create_raw(&srv.base, &json!({"streams": streams}).to_string()).await;
    assert_eq!((got, code(&v)), (400, "bad_request"));

    create(&srv.base, json!({"name": "taken"})).await;
    let (got, v) = create_raw(&srv.base, r#"{"name": "taken"}"#).await;
    assert_eq!((got, code(&v)), (409, "session_exists"));

    let big = json!({"name": "big", "streams": {"cam": {"label": "x".repeat(20_000)}}}).to_string();
    let (got, v) = create_raw(&srv.base, &big).await;
    assert_eq!((got, code(&v)), (413, "too_large"));

    // an empty body is a session with every default
    let (got, v) = create_raw(&srv.base, "").await;
    assert_eq!(got, 201, "{v}");
    assert!(v["session"].as_str().unwrap().starts_with("punch-"));
    srv.server.shutdown().await;
}

#[tokio::test]
async fn session_creation_is_rate_limited_per_client() {
    let limits = Limits {
        creates_per_minute: 3,
        ..Limits::default()
    };
    let srv = start_with_limits(limits).await;
    for _ in 0..3 {
        assert_eq!(create_raw(&srv.base, "{}").await.0, 201);
    }
    let (got, v) = create_raw(&srv.base, "{}").await;
    assert_eq!((got, code(&v)), (429, "rate_limited"));
    srv.server.shutdown().await;
}

#[tokio::test]
async fn session_limit_is_429() {
    let limits = Limits {
        max_sessions: 2,
        ..Limits::default()
    };
    let srv = start_with_limits(limits).await;
    create(&srv.base, json!({})).await;
    create(&srv.base, json!({})).await;
    let (got, v) = create_raw(&srv.base, "{}").await;
    assert_eq!((got, code(&v)), (429, "too_many_sessions"));
    srv.server.shutdown().await;
}

#[tokio::test]
async fn bad_websocket_messages_get_errors_and_the_connection_survives() {
    let srv = start_default().await;
    let created = create(&srv.base, json!({"name": "bad"})).await;
    let token = created["token"].as_str().unwrap();
    let mut ws = raw_ws(&srv.base, "bad", token).await;
    let cases: &[(&str, &str, &str)] = &[
        ("not json", "invalid_json", "expected"),
        (
            r#"{"type":"hello"}"#,
            "bad_message",
            "unknown variant `hello`",
        ),
        (r#"{"port":9000}"#, "bad_message", "missing field `type`"),
        (
            r#"{"type":"register","role":"sender"}"#,
            "bad_message",
            "missing field `port`",
        ),
        (
            r#"{"type":"register","port":"9000","role":"sender"}"#,
            "bad_message",
            "invalid type",
        ),
        (
            r#"{"type":"register","port":0,"role":"sender"}"#,
            "bad_message",
            "between 1 and 65535",
        ),
        (
            r#"{"type":"register","port":70000,"role":"sender"}"#,
            "bad_message",
            "between 1 and 65535",
        ),
        (
            r#"{"type":"register","port":9000,"role":"viewer"}"#,
            "bad_message",
            "unknown variant `viewer`",
        ),
        (r#"{"type":"health","rtt":5}"#, "not_registered", "register"),
        (
            r#"{"type":"status","srt":"connected"}"#,
            "not_registered",
            "register",
        ),
        (
            r#"{"type":"register","stream":"zz","port":9000,"role":"sender"}"#,
            "unknown_stream",
            "default",
        ),
    ];
    for (text, want, needle) in cases {
        raw_send(&mut ws, Message::text(*text)).await;
        let (code_, msg) = raw_error(&mut ws).await;
        assert_eq!(code_, *want, "{text}: {msg}");
        assert!(msg.contains(needle), "{text}: {msg:?} lacks {needle:?}");
    }
    raw_send(&mut ws, Message::binary(vec![1u8, 2, 3])).await;
    let (code_, msg) = raw_error(&mut ws).await;
    assert_eq!(code_, "bad_message");
    assert!(msg.contains("binary"), "{msg}");

    // still usable: a valid registration goes through, and a bad health value is refused
    raw_send(
        &mut ws,
        Message::text(r#"{"type":"register","port":9000,"role":"sender"}"#),
    )
    .await;
    loop {
        let v = raw_next(&mut ws).await.unwrap();
        if v["type"] == "registered" {
            break;
        }
    }
    raw_send(&mut ws, Message::text(r#"{"type":"health","loss":250}"#)).await;
    let (code_, msg) = raw_error(&mut ws).await;
    assert_eq!(code_, "bad_message");
    assert!(msg.contains("loss"), "{msg}");

    // an oversize frame closes this connection with 1009 ...
    let huge = format!(
        r#"{{"type":"health","rtt":1,"pad":"{}"}}"#,
        "x".repeat(10_000)
    );
    raw_send(&mut ws, Message::text(huge)).await;
    let (close_code, reason) = raw_close_frame(&mut ws).await.expect("a close frame");
    assert_eq!(close_code, 1009, "{reason}");

    // ... and everyone else is still served: a fresh session works end to end
    let other = create(&srv.base, json!({"name": "other"})).await;
    let t = other["token"].as_str().unwrap();
    let mut a = connect(&srv.base, "other", t).await;
    let mut b = connect(&srv.base, "other", t).await;
    a.send(&register(None, Role::Sender, 1234)).await.unwrap();
    b.send(&register(None, Role::Receiver, 1235)).await.unwrap();
    expect_msg(&mut a, "peer", |m| {
        matches!(m, punch::protocol::ServerMessage::Peer(_)).then_some(())
    })
    .await;
    // the slot of the closed connection was freed
    let (_, v) = get_session(&srv.base, "bad", token).await;
    assert_eq!(v["streams"][0]["sender"]["status"], "waiting");
    srv.server.shutdown().await;
}

#[tokio::test]
async fn message_floods_are_cut_off() {
    let limits = Limits {
        messages_per_second: 1.0,
        message_burst: 5.0,
        ..Limits::default()
    };
    let srv = start_with_limits(limits).await;
    let created = create(&srv.base, json!({"name": "flood"})).await;
    let mut ws = raw_ws(&srv.base, "flood", created["token"].as_str().unwrap()).await;
    for _ in 0..20 {
        if futures_util::SinkExt::send(&mut ws, Message::text(r#"{"type":"health"}"#))
            .await
            .is_err()
        {
            break;
        }
    }
    let (close_code, reason) = raw_close_frame(&mut ws).await.expect("a close frame");
    assert_eq!(close_code, 1008);
    assert!(reason.contains("rate"), "{reason}");
    srv.server.shutdown().await;
}

#[tokio::test]
async fn websocket_endpoint_without_upgrade_is_a_json_400() {
    let srv = start_default().await;
    let created = create(&srv.base, json!({"name": "plain"})).await;
    let resp = http()
        .get(format!("{}/api/ws/plain", srv.base))
        .bearer_auth(created["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(code(&resp.json().await.unwrap()), "bad_request");
    srv.server.shutdown().await;
}

#[tokio::test]
async fn a_connection_that_never_reads_is_dropped_not_buffered() {
    let limits = Limits {
        send_queue: 4,
        messages_per_second: 1e9,
        message_burst: 1e9,
        ..Limits::default()
    };
    let srv = start_with_limits(limits).await;
    let created = create(&srv.base, json!({"name": "slow"})).await;
    let token = created["token"].as_str().unwrap();
    // a monitor (it watches: no idle close) that never reads: every session change is queued
    // for it
    let mut silent = raw_ws(&srv.base, "slow", token).await;
    raw_send(&mut silent, Message::text(r#"{"type":"watch"}"#)).await;
    let mut busy = raw_ws(&srv.base, "slow", token).await;
    raw_send(
        &mut busy,
        Message::text(r#"{"type":"register","port":9000,"role":"sender"}"#),
    )
    .await;
    let connections = || async {
        let v = healthz(&srv.base).await;
        v["connections"].as_u64().unwrap()
    };
    assert_eq!(connections().await, 2);
    // Each status change is a `session` broadcast. The busy peer waits for each one; the silent
    // one's socket buffers fill, then its queue, and the server lets it go.
    let dropped = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        for i in 0u64.. {
            let srt = if i % 2 == 0 {
                "connected"
            } else {
                "connecting"
            };
            raw_send(
                &mut busy,
                Message::text(format!(r#"{{"type":"status","srt":"{srt}"}}"#)),
            )
            .await;
            while raw_next(&mut busy)
                .await
                .expect("the busy peer stays connected")["type"]
                != "session"
            {}
            if i % 1000 == 999 && connections().await == 1 {
                return i;
            }
        }
        unreachable!()
    })
    .await
    .expect("the silent connection is dropped within 60 s");
    assert!(dropped > 0);
    drop(silent);
    srv.server.shutdown().await;
}
