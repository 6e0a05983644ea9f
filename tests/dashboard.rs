//! The operator-facing HTTP surface against a real server: dashboard and error pages with their
//! security headers, assets, QR codes, connection strings, latency and the live view pushed to
//! dashboards over the WebSocket. (The browser itself is driven in tests/browser.rs.)

mod common;

use common::*;
use punch::client::nat;
use punch::protocol::{
    ClientMessage, Health, HealthLevel, NatMapping, Role, ServerMessage, SessionView,
};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

/// The headers every UI response must carry.
fn assert_ui_headers(resp: &reqwest::Response, what: &str) {
    let h = resp.headers();
    let csp = h
        .get("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no CSP"))
        .to_str()
        .unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "connect-src 'self'",
    ] {
        assert!(
            csp.contains(directive),
            "{what}: CSP {csp:?} lacks {directive}"
        );
    }
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
    assert_eq!(h["referrer-policy"], "no-referrer", "{what}");
    assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
}

async fn get(url: &str) -> reqwest::Response {
    http().get(url).send().await.unwrap()
}

#[tokio::test]
async fn dashboard_page_error_pages_and_assets() {
    let t = start_default().await;
    let created = create(
        &t.base,
        json!({"name": "show", "streams": ["cam1", "cam2"]}),
    )
    .await;
    let admin = created["token"].as_str().unwrap();
    let url = created["url"].as_str().unwrap();
    assert_eq!(url, format!("{}/s/show?t={admin}", t.base));

    let resp = get(url).await;
    assert_eq!(resp.status(), 200);
    assert_ui_headers(&resp, "dashboard");
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = resp.text().await.unwrap();
    assert!(
        page.contains("show") && page.contains("WAITING"),
        "server-rendered header"
    );
    assert!(page.contains("/ui/dashboard.js") && page.contains("/ui/dashboard.css"));
    assert!(
        !page.contains("http://") || !page.contains("cdn"),
        "no external assets"
    );
    // The initial view is embedded as data, not script.
    let start = page
        .find("id=\"punch-initial\"")
        .expect("initial view block");
    let json_start = page[start..].find('>').unwrap() + start + 1;
    let json_end = page[json_start..].find("</script>").unwrap() + json_start;
    let view: SessionView = serde_json::from_str(&page[json_start..json_end]).unwrap();
    assert_eq!(view.streams.len(), 2);

    // Wrong, missing and stream tokens, unknown and closed sessions: a page saying so.
    let stream_token = stream_token(&created, "cam1", "sender");
    let cases = [
        (
            format!("{}/s/show?t=pa.show.bad.token", t.base),
            401,
            "not valid",
        ),
        (format!("{}/s/show", t.base), 401, "missing token"),
        (
            format!("{}/s/show?t={stream_token}", t.base),
            403,
            "admin token",
        ),
        (format!("{}/s/nosuch?t={admin}", t.base), 403, "token"),
    ];
    for (url, status, text) in cases {
        let resp = get(&url).await;
        assert_eq!(resp.status(), status, "{url}");
        assert_ui_headers(&resp, &url);
        let page = resp.text().await.unwrap();
        assert!(
            page.contains("error-page") && page.contains("<h1"),
            "{url}: {page}"
        );
        assert!(page.contains(text), "{url}: expected {text:?} in {page}");
    }
    delete_session(&t.base, "show", admin).await;
    let resp = get(url).await;
    assert_eq!(resp.status(), 410);
    assert_ui_headers(&resp, "closed");
    assert!(resp.text().await.unwrap().contains("ended"));

    for (asset, kind) in [
        ("dashboard.js", "text/javascript"),
        ("dashboard.css", "text/css"),
    ] {
        let resp = get(&format!("{}/ui/{asset}", t.base)).await;
        assert_eq!(resp.status(), 200);
        assert_ui_headers(&resp, asset);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
    }
    let resp = get(&format!("{}/ui/../../etc/passwd", t.base)).await;
    assert_eq!(resp.status(), 404);
    let resp = get(&format!("{}/ui/nope.js", t.base)).await;
    assert_eq!(resp.status(), 404);
    assert_ui_headers(&resp, "unknown asset");
    // Browsers ask for it on their own: no error, no icon.
    let resp = get(&format!("{}/favicon.ico", t.base)).await;
    assert_eq!(resp.status(), 204);
    assert_ui_headers(&resp, "favicon");
}

#[tokio::test]
async fn the_start_page_creates_sessions_and_asks_for_the_create_key_when_needed() {
    for (key, field_shown) in [(None, false), (Some("k3y-for-tests".to_string()), true)] {
        let t = start(punch::server::ServerConfig {
            create_key: key.clone(),
            ..punch::server::ServerConfig::default()
        })
        .await;
        let resp = get(&format!("{}/", t.base)).await;
        assert_eq!(resp.status(), 200);
        assert_ui_headers(&resp, "start page");
        let page = resp.text().await.unwrap();
        assert!(
            page.contains("id=\"create-form\"") && page.contains("/ui/create.js?v="),
            "{page}"
        );
        assert_eq!(
            page.contains("<div id=\"create-key-field\" >"),
            field_shown,
            "create-key field shown with key {key:?}: {page}"
        );
        assert!(!page.contains("{{"), "template not filled: {page}");
        let resp = get(&format!("{}/ui/create.js", t.base)).await;
        assert_eq!(resp.status(), 200);
        assert_ui_headers(&resp, "create.js");
        let script = resp.text().await.unwrap();
        assert!(script.contains("Authorization") && script.contains("/api/session"));
        t.server.shutdown().await;
    }
}

#[tokio::test]
async fn qr_codes_carry_stream_tokens_never_the_admin_token() {
    let t = start_default().await;
    let created = create(&t.base, json!({"name": "qr", "streams": ["cam1"]})).await;
    let admin = created["token"].as_str().unwrap();
    let svg = |resp: reqwest::Response| async move {
        assert_eq!(resp.status(), 200);
        assert_ui_headers(&resp, "qr");
        assert_eq!(resp.headers()["content-type"], "image/svg+xml");
        resp.text().await.unwrap()
    };
    let session_qr = svg(get(created["qr"].as_str().unwrap()).await).await;
    assert_eq!(
        session_qr,
        punch::server::qr_svg(created["url"].as_str().unwrap()).unwrap()
    );
    for role in ["sender", "receiver"] {
        let got = svg(get(&format!("{}/s/qr/qr/cam1/{role}?t={admin}", t.base)).await).await;
        let port = t.server.local_addr().port();
        // the side's camera-operator page, with that side's token
        let stream_token = stream_token(&created, "cam1", role);
        let page = format!("{}/j/qr?t={stream_token}", t.base);
        assert_eq!(got, punch::server::qr_svg(&page).unwrap(), "{role}");
        // whose settings QR is the side's punch:// URI
        let expected_uri = format!("punch://127.0.0.1:{port}/qr/cam1?token={stream_token}");
        let settings = svg(get(&format!("{}/j/qr/qr?t={stream_token}", t.base)).await).await;
        assert_eq!(
            settings,
            punch::server::qr_svg(&expected_uri).unwrap(),
            "{role}"
        );
        assert_ne!(
            got,
            punch::server::qr_svg(&format!("punch://127.0.0.1:{port}/qr/cam1?token={admin}"))
                .unwrap()
        );
    }
    let resp = get(&format!("{}/s/qr/qr/nope/sender?t={admin}", t.base)).await;
    assert_eq!(resp.status(), 404);
    let resp = get(&format!("{}/s/qr/qr/cam1/director?t={admin}", t.base)).await;
    assert_eq!(resp.status(), 404);
    let resp = get(&format!(
        "{}/s/qr/qr/cam1/sender?t={}",
        t.base,
        stream_token(&created, "cam1", "sender")
    ))
    .await;
    assert_eq!(resp.status(), 403, "a stream token cannot mint QR codes");
}

#[tokio::test]
async fn connection_strings_need_both_sides_and_follow_each_tool() {
    let t = start_default().await;
    let created = create(&t.base, json!({"name": "cs", "latency": 300})).await;
    let admin = created["token"].as_str().unwrap();
    let (status, body) =
        api_request(&t.base, Method::GET, "/api/session/cs/connect", admin, None).await;
    assert_eq!(status, 409);
    assert_eq!(code(&body), "peers_missing");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("sender (peer a) and no receiver (peer b)"),
        "{msg}"
    );

    let mut a = connect(&t.base, "cs", &stream_token(&created, "default", "sender")).await;
    a.send(&register(None, Role::Sender, 9100)).await.unwrap();
    expect_msg(&mut a, "registered", |m| {
        matches!(m, ServerMessage::Registered(_)).then_some(())
    })
    .await;
    let (status, body) =
        api_request(&t.base, Method::GET, "/api/session/cs/connect", admin, None).await;
    assert_eq!(status, 409);
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("no registered receiver (peer b)") && !msg.contains("sender"),
        "{msg}"
    );

    let mut b = connect(
        &t.base,
        "cs",
        &stream_token(&created, "default", "receiver"),
    )
    .await;
    b.send(&register(None, Role::Receiver, 9200)).await.unwrap();
    expect_msg(&mut b, "peer", |m| {
        matches!(m, ServerMessage::Peer(_)).then_some(())
    })
    .await;
    let (status, body) =
        api_request(&t.base, Method::GET, "/api/session/cs/connect", admin, None).await;
    assert_eq!(status, 200, "{body}");
    // Single stream: the original service's shape at the top level, and per stream.
    assert_eq!(body["for_peer_a"], body["streams"]["default"]["for_peer_a"]);
    let a_strings = &body["for_peer_a"];
    let gst = a_strings["gstreamer"].as_str().unwrap();
    assert!(gst.contains("srt://127.0.0.1:9200?mode=rendezvous&localaddress=0.0.0.0&localport=9100&latency=300&passphrase="), "{gst}");
    let slt = body["for_peer_b"]["srt_live_transmit"].as_str().unwrap();
    assert!(
        slt.contains(
            "'srt://127.0.0.1:9100?mode=rendezvous&adapter=0.0.0.0&port=9200&latency=300&"
        ),
        "{slt}"
    );
    assert!(
        a_strings["obs"]
            .as_str()
            .unwrap()
            .contains("latency=300000")
    );
    assert_eq!(a_strings["vmix"]["latency_ms"], 300);
    assert!(
        a_strings["punch"]
            .as_str()
            .unwrap()
            .starts_with("punch://127.0.0.1:")
    );
    assert!(
        a_strings["notes"]["ffmpeg"]
            .as_str()
            .unwrap()
            .contains("cannot be an SRT rendezvous peer")
    );

    let (status, _) = api_request(
        &t.base,
        Method::GET,
        "/api/session/cs/connect?stream=nope",
        admin,
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = api_request(
        &t.base,
        Method::GET,
        "/api/session/cs/connect",
        &stream_token(&created, "default", "sender"),
        None,
    )
    .await;
    assert_eq!(status, 403, "passphrases only for the admin");
}

#[tokio::test]
async fn latency_applies_to_both_peers_and_dashboards_get_live_views() {
    let t = start_default().await;
    let created = create(&t.base, json!({"name": "lat"})).await;
    let admin = created["token"].as_str().unwrap();
    let mut dash = connect(&t.base, "lat", admin).await;
    dash.send(&ClientMessage::Watch).await.unwrap();
    let first = expect_msg(&mut dash, "first view", |m| match m {
        ServerMessage::View(v) => Some(v.clone()),
        _ => None,
    })
    .await;
    assert_eq!(first.streams[0].level, None);

    let mut a = connect(&t.base, "lat", &stream_token(&created, "default", "sender")).await;
    let mut b = connect(
        &t.base,
        "lat",
        &stream_token(&created, "default", "receiver"),
    )
    .await;
    a.send(&register(None, Role::Sender, 9300)).await.unwrap();
    b.send(&register(None, Role::Receiver, 9301)).await.unwrap();
    for side in [&mut a, &mut b] {
        expect_msg(side, "peer", |m| {
            matches!(m, ServerMessage::Peer(p) if p.latency == 200).then_some(())
        })
        .await;
    }
    // Five seconds of reports with 60 ms RTT: 200 ms latency is only 3.3 × RTT (amber) and the
    // recommendation is 3 × 60 = 180 ms.
    for i in 0..6 {
        let h = Health {
            rtt: Some(if i == 5 { 55.0 } else { 60.0 }),
            retransmit: Some(0.2),
            bitrate: Some(4_000_000.0 + i as f64),
            ..Default::default()
        };
        b.send(&ClientMessage::Health(h)).await.unwrap();
    }
    let view = expect_msg(&mut dash, "view with health", |m| match m {
        ServerMessage::View(v) if v.streams[0].history.len() == 6 => Some(v.clone()),
        _ => None,
    })
    .await;
    let s = &view.streams[0];
    assert_eq!(s.level, Some(HealthLevel::Amber), "{:?}", s.level_reason);
    let rec = s.recommendation.as_ref().expect("recommendation");
    assert_eq!((rec.latency, rec.multiplier), (180, 3));
    assert_eq!(s.history.last().unwrap().bitrate, Some(4_000_005.0));
    // The same in GET /api/session/:id.
    let (_, got) = get_session(&t.base, "lat", admin).await;
    assert_eq!(got["streams"][0]["recommendation"]["latency"], 180);

    let (status, body) = api_request(
        &t.base,
        Method::POST,
        "/api/session/lat/latency",
        admin,
        Some(json!({"stream": "default", "latency": 180})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for side in [&mut a, &mut b] {
        expect_msg(side, "new latency", |m| {
            matches!(m, ServerMessage::Peer(p) if p.latency == 180).then_some(())
        })
        .await;
    }
    let (status, body) = api_request(
        &t.base,
        Method::POST,
        "/api/session/lat/latency",
        admin,
        Some(json!({"stream": "default", "latency": 9000})),
    )
    .await;
    assert_eq!((status, code(&body)), (400, "bad_request"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("between 20 and 8000")
    );
    let (status, body) = api_request(
        &t.base,
        Method::POST,
        "/api/session/lat/latency",
        admin,
        Some(json!({"stream": "default"})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"latency\": MILLISECONDS"),
        "{body}"
    );
    let (status, _) = api_request(
        &t.base,
        Method::POST,
        "/api/session/lat/latency",
        &stream_token(&created, "default", "sender"),
        Some(json!({"stream": "default", "latency": 300})),
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn stun_service_answers_and_classifies() {
    let t = start_default().await;
    let ports: [u16; 2] = serde_json::from_value(healthz(&t.base).await["stun"].clone()).unwrap();
    let local = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let found = within(
        "stun",
        nat::discover(
            local,
            format!("127.0.0.1:{}", ports[0]).parse().unwrap(),
            Duration::from_secs(2),
            None,
        ),
    )
    .await
    .unwrap();
    assert_eq!(found.mapped, local, "no NAT on loopback: mapped = local");
    assert_eq!(found.mapped_alt, Some(local));
    assert_eq!(found.mapping(), NatMapping::EndpointIndependent);
    assert!(healthz(&t.base).await["stun_requests"].as_u64().unwrap() >= 2);
    // Nobody answers on a closed port: a clear error, in bounded time.
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap();
    let err = nat::discover(
        "127.0.0.1:0".parse().unwrap(),
        dead,
        Duration::from_millis(300),
        None,
    )
    .await
    .unwrap_err();
    assert!(
        err.unanswered && err.message.contains("no STUN answer"),
        "{err}"
    );
}

#[tokio::test]
async fn multi_stream_sessions_get_the_ready_streams_and_what_the_others_miss() {
    let t = start_default().await;
    let created = create(
        &t.base,
        json!({"name": "multi", "streams": ["cam1", "cam2"]}),
    )
    .await;
    let admin = created["token"].as_str().unwrap();
    let mut sides = Vec::new();
    for (role, port) in [(Role::Sender, 9400), (Role::Receiver, 9401)] {
        let mut c = connect(
            &t.base,
            "multi",
            &stream_token(&created, "cam1", role.as_str()),
        )
        .await;
        c.send(&register(None, role, port)).await.unwrap();
        expect_msg(&mut c, "registered", |m| {
            matches!(m, ServerMessage::Registered(_)).then_some(())
        })
        .await;
        sides.push(c);
    }
    let (status, body) = api_request(
        &t.base,
        Method::GET,
        "/api/session/multi/connect",
        admin,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["streams"]["cam1"]["for_peer_a"]["gstreamer"].is_string());
    assert!(body["streams"].get("cam2").is_none());
    assert!(
        body.get("for_peer_a").is_none(),
        "top-level strings only for single-stream sessions"
    );
    let why = body["missing"]["cam2"].as_str().unwrap();
    assert!(
        why.contains("\"cam2\" has no registered sender (peer a) and no receiver (peer b)"),
        "{why}"
    );
    let (status, body) = api_request(
        &t.base,
        Method::GET,
        "/api/session/multi/connect?stream=cam2",
        admin,
        None,
    )
    .await;
    assert_eq!((status, code(&body)), (409, "peers_missing"));
}

#[tokio::test]
async fn a_third_party_stun_client_gets_its_mapped_address() {
    require("stun", "stun-client");
    let t = start_default().await;
    let ports: [u16; 2] = serde_json::from_value(healthz(&t.base).await["stun"].clone()).unwrap();
    // stun-client 0.97 speaks classic RFC 3489 (no magic cookie, CHANGE-REQUEST) from two
    // consecutive local ports starting at -p.
    let local = loop {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if port < 65000 && std::net::UdpSocket::bind(("127.0.0.1", port + 1)).is_ok() {
            break port;
        }
    };
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("timeout")
            .args([
                "10",
                "stun",
                &format!("127.0.0.1:{}", ports[0]),
                "-v",
                "-p",
                &local.to_string(),
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains(&format!("MappedAddress = 127.0.0.1:{local}")),
        "stun-client did not get its address:\n{text}"
    );
    assert!(!text.contains("problem parsing"), "{text}");
}
