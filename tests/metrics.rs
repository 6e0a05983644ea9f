//! `GET /metrics` during a real session: the values a monitoring system would alert on move
//! with what happens (registrations, refusals, pairings, links, relays, STUN, WebSocket traffic,
//! database commits), the exposition passes `promtool check metrics`, and `--metrics-listen`
//! moves it off the main port. `--log-format json` writes one JSON object per line.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use punch::protocol::{ClientMessage, ErrorCode, Role, SrtStatus, StatusReport};
use punch::server::ServerConfig;
use serde_json::json;

async fn scrape(url: &str) -> String {
    let resp = http().get(url).send().await.expect("metrics answer");
    assert_eq!(resp.status(), 200);
    let kind = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    resp.text().await.unwrap()
}

/// The value of the sample `name` (with its labels as written, e.g. `{role="sender"}`).
fn value(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(sample)
                .filter(|rest| rest.starts_with(' '))
                .map(|rest| rest.trim().parse::<f64>().unwrap())
        })
        .unwrap_or_else(|| panic!("no sample {sample} in:\n{text}"))
}

fn promtool_check(text: &str) {
    require("promtool", "prometheus");
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn metrics_follow_a_real_session_and_pass_promtool() {
    let srv = start_default().await;
    let url = format!("{}/metrics", srv.base);
    let before = scrape(&url).await;
    promtool_check(&before);
    assert_eq!(
        value(&before, r#"punch_peers_connected{role="sender"}"#),
        0.0
    );
    assert_eq!(value(&before, "punch_registrations_total"), 0.0);
    assert!(before.contains(r#"punch_build_info{version=""#), "{before}");

    // a stream with a caller device has its relay from the start; a Punch pair on another
    let created = create(
        &srv.base,
        json!({"name": "m", "streams": {"cam1": null, "dev": {"sender": {"device": "caller"}}}}),
    )
    .await;
    let mut tx = connect(&srv.base, "m", &stream_token(&created, "cam1", "sender")).await;
    let mut rx = connect(&srv.base, "m", &stream_token(&created, "cam1", "receiver")).await;
    tx.send(&register(None, Role::Sender, 9000)).await.unwrap();
    rx.send(&register(None, Role::Receiver, 9001))
        .await
        .unwrap();
    for sig in [&mut tx, &mut rx] {
        expect_msg(sig, "peer", |m| {
            matches!(m, punch::protocol::ServerMessage::Peer(_)).then_some(())
        })
        .await;
    }
    tx.send(&ClientMessage::Status(StatusReport {
        srt: SrtStatus::Connected,
    }))
    .await
    .unwrap();
    // a refused registration, and a STUN request
    let admin = created["token"].as_str().unwrap();
    let mut bad = connect(&srv.base, "m", admin).await;
    bad.send(&register(Some("nope"), Role::Sender, 9002))
        .await
        .unwrap();
    expect_error(&mut bad, ErrorCode::UnknownStream).await;
    let [stun, _] = srv.server.stun_ports().expect("the STUN service runs");
    punch::client::nat::discover(
        "127.0.0.1:0".parse().unwrap(),
        std::net::SocketAddr::from(([127, 0, 0, 1], stun)),
        Duration::from_secs(2),
        None,
    )
    .await
    .expect("STUN answers");

    // an HTTP refusal counts too
    let (status, _) = get_session(&srv.base, "nope", admin).await;
    assert_eq!(status, 403);
    let start = std::time::Instant::now();
    let during = loop {
        let text = scrape(&url).await;
        if value(&text, r#"punch_links_up{path="direct"}"#) == 1.0 {
            break text;
        }
        assert!(start.elapsed() < WAIT, "the link never counted:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    promtool_check(&during);
    assert_eq!(
        value(&during, r#"punch_peers_connected{role="sender"}"#),
        1.0
    );
    assert_eq!(
        value(&during, r#"punch_peers_connected{role="receiver"}"#),
        1.0
    );
    assert_eq!(value(&during, "punch_registrations_total"), 2.0);
    assert_eq!(
        value(&during, r#"punch_refusals_total{code="unknown_stream"}"#),
        1.0
    );
    assert!(value(&during, "punch_pairings_total") >= 1.0);
    assert_eq!(value(&during, "punch_register_to_peer_seconds_count"), 2.0);
    // the session waits for its device's caller: its least advanced stream is WAITING
    assert_eq!(value(&during, r#"punch_sessions{state="WAITING"}"#), 1.0);
    assert_eq!(value(&during, "punch_relays_active"), 1.0);
    assert!(value(&during, "punch_stun_requests_total") >= 1.0);
    assert!(value(&during, "punch_ws_messages_received_total") >= 4.0);
    assert!(value(&during, "punch_ws_messages_sent_total") >= 6.0);
    assert!(value(&during, "punch_ws_connections") >= 3.0);
    assert!(value(&during, "punch_store_commit_seconds_count") >= 1.0);
    assert_eq!(
        value(&during, r#"punch_refusals_total{code="forbidden"}"#),
        1.0
    );
    assert_eq!(
        value(
            &during,
            r#"punch_connections_refused_total{reason="per_ip"}"#
        ),
        0.0
    );
    assert_eq!(value(&during, "punch_stun_rate_limited_sources_total"), 0.0);

    // the peers leave: their gauges go back
    drop((tx, rx, bad));
    let start = std::time::Instant::now();
    loop {
        let text = scrape(&url).await;
        if value(&text, r#"punch_peers_connected{role="sender"}"#) == 0.0
            && value(&text, r#"punch_links_up{path="direct"}"#) == 0.0
        {
            break;
        }
        assert!(
            start.elapsed() < WAIT,
            "the gauges never went back:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // a closed session counts no more
    let (status, _) = delete_session(&srv.base, "m", admin).await;
    assert_eq!(status, 200);
    let start = std::time::Instant::now();
    loop {
        let text = scrape(&url).await;
        if value(&text, r#"punch_sessions{state="WAITING"}"#) == 0.0
            && value(&text, "punch_relays_active") == 0.0
        {
            break;
        }
        assert!(
            start.elapsed() < WAIT,
            "the closed session still counts:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn metrics_listen_moves_metrics_off_the_main_port() {
    let srv = start(ServerConfig {
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..ServerConfig::default()
    })
    .await;
    let main = http()
        .get(format!("{}/metrics", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(main.status(), 404);
    let at = srv.server.metrics_addr().expect("a metrics listener");
    let text = scrape(&format!("http://{at}/metrics")).await;
    promtool_check(&text);
    let other = http()
        .get(format!("http://{at}/api/session/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404, "only /metrics there");
}

#[test]
fn log_format_json_writes_one_object_per_line() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_punch"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--no-stun",
            "--db",
            ":memory:",
            "--log-format",
            "json",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let listening = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no log line; so far: {seen:#?}"));
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        seen.push(line);
        if v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("listening on http://"))
        {
            break v;
        }
    };
    assert_eq!(listening["level"], "INFO");
    let _ = child.kill();
    let _ = child.wait();
}
