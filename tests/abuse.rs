//! The outside review's attacks against a real server on loopback: each reproduces what the
//! reviewer did and asserts the server's answer (docs/security.md lists every limit).

mod common;

use std::time::Duration;

use common::*;
use punch::client::Signalling;
use punch::protocol::{
    ClientMessage, NatMapping, NatReport, PeerMeta, Port, Register, Role, ServerMessage,
};
use punch::server::relay::RelayConfig;
use punch::server::{Limits, ServerConfig};
use reqwest::Method;
use serde_json::{Value, json};

/// A registration that claims a symmetric NAT: the server relays such a stream at once.
fn symmetric(stream: &str, role: Role) -> ClientMessage {
    ClientMessage::Register(Register {
        stream: Some(stream.into()),
        port: Port(9000),
        role,
        meta: PeerMeta::default(),
        nat: Some(NatReport {
            mapped: None,
            mapping: NatMapping::EndpointDependent,
        }),
        reports: true,
        receiver: None,
        tunnel: false,
    })
}

/// A session `name` of `streams` streams whose every side is registered, claiming a symmetric
/// NAT and never sending a datagram: its admin token and the open connections.
struct Hog {
    admin: String,
    conns: Vec<Signalling>,
}

async fn relay_hog(base: &str, name: &str, streams: usize) -> Hog {
    let names: Vec<String> = (0..streams).map(|i| format!("s{i}")).collect();
    let created = create(base, json!({"name": name, "streams": names})).await;
    let admin = created["token"].as_str().unwrap().to_string();
    let mut conns = Vec::new();
    for stream in &names {
        for role in [Role::Sender, Role::Receiver] {
            let mut sig = connect(base, name, &admin).await;
            sig.send(&symmetric(stream, role)).await.unwrap();
            expect_msg(&mut sig, "registered", |m| {
                matches!(m, ServerMessage::Registered(_)).then_some(())
            })
            .await;
            conns.push(sig);
        }
    }
    Hog { admin, conns }
}

/// `(path, path_reason)` of each stream of a session view.
fn paths(view: &Value) -> Vec<(String, String)> {
    view["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["path"].as_str().unwrap_or("none").to_string(),
                s["path_reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Polls `check` every 50 ms until it answers, for at most [`WAIT`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(t) = check().await {
            return t;
        }
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn relay_exhaustion_is_bounded_and_waiting_streams_get_a_relay_when_one_frees() {
    let srv = start(ServerConfig {
        relay: RelayConfig {
            per_session: 3,
            per_ip: 5,
            ..RelayConfig::default()
        },
        ..ServerConfig::default()
    })
    .await;
    // The review: sessions of many streams, every side claiming a symmetric NAT, no datagram.
    let one = relay_hog(&srv.base, "hog1", 6).await;
    let two = relay_hog(&srv.base, "hog2", 6).await;
    let base = srv.base.clone();
    let relays = || {
        let base = base.clone();
        async move { healthz(&base).await["relays"].as_u64().unwrap() }
    };
    // hog1 gets its per-session limit (3), hog2 what is left of the address's (2).
    eventually("5 relays", || async { (relays().await == 5).then_some(()) }).await;
    let (_, v) = get_session(&srv.base, "hog1", &one.admin).await;
    let relayed = paths(&v).iter().filter(|(p, _)| p == "relay").count();
    assert_eq!(relayed, 3, "{v}");
    let (_, v) = get_session(&srv.base, "hog2", &two.admin).await;
    let waiting: Vec<_> = paths(&v)
        .into_iter()
        .filter(|(p, _)| p != "relay")
        .collect();
    assert_eq!(waiting.len(), 4, "{v}");
    for (_, why) in &waiting {
        assert!(
            why.contains("waiting for relay capacity") && why.contains("--relay-per-ip"),
            "{why}"
        );
    }
    // hog1 ends: its relays are released at once and hog2's waiting streams take them.
    let (status, _) = delete_session(&srv.base, "hog1", &one.admin).await;
    assert_eq!(status, 200);
    eventually("hog2 relayed up to the address's limit", || async {
        let (_, v) = get_session(&srv.base, "hog2", &two.admin).await;
        let relayed = paths(&v).iter().filter(|(p, _)| p == "relay").count();
        (relayed == 3).then_some(())
    })
    .await;
    assert!(relays().await <= 5);
    drop(two.conns);
    // Both sides of every stream left: no relay is kept for them.
    eventually("no relay left", || async {
        (relays().await == 0).then_some(())
    })
    .await;
    srv.server.shutdown().await;
}

#[tokio::test]
async fn a_relay_that_carries_nothing_is_freed_after_the_idle_time_and_not_given_again() {
    let srv = start(ServerConfig {
        relay: RelayConfig {
            idle: Duration::from_millis(800),
            ..RelayConfig::default()
        },
        ..ServerConfig::default()
    })
    .await;
    let hog = relay_hog(&srv.base, "idle", 2).await;
    let relays = || async { healthz(&srv.base).await["relays"].as_u64().unwrap() };
    eventually("2 relays", || async { (relays().await == 2).then_some(()) }).await;
    let started = std::time::Instant::now();
    eventually("relays freed", || async {
        (relays().await == 0).then_some(())
    })
    .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "freed after {took:?}");
    // The sides are still registered, but hold no relay: they never used one.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(relays().await, 0);
    let (_, v) = get_session(&srv.base, "idle", &hog.admin).await;
    for (_, why) in paths(&v) {
        assert!(why.contains("carried nothing"), "{why}");
    }
    srv.server.shutdown().await;
}

#[tokio::test]
async fn creating_sessions_needs_the_create_key_when_the_server_has_one() {
    let srv = start(ServerConfig {
        create_key: Some("s3cret-create-key".into()),
        ..ServerConfig::default()
    })
    .await;
    let (status, v) = create_raw(&srv.base, "{}").await;
    assert_eq!((status, code(&v)), (401, "unauthorized"));
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("create key"),
        "{v}"
    );
    let (status, _) = api_request(
        &srv.base,
        Method::POST,
        "/api/session",
        "wrong",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 401);
    let created = rest(&srv.base)
        .create(&json!({"name": "keyed"}), Some("s3cret-create-key"))
        .await
        .expect("the key creates");
    assert_eq!(created.session, "keyed");
    srv.server.shutdown().await;
}

#[tokio::test]
async fn create_keys_cannot_be_guessed_faster_than_the_creation_rate() {
    let srv = start(ServerConfig {
        create_key: Some("s3cret-create-key".into()),
        limits: Limits {
            creates_per_minute: 3,
            ..Limits::default()
        },
        ..ServerConfig::default()
    })
    .await;
    for guess in ["a", "b", "c"] {
        let (status, _) = api_request(
            &srv.base,
            Method::POST,
            "/api/session",
            guess,
            Some(json!({})),
        )
        .await;
        assert_eq!(status, 401, "guess {guess}");
    }
    // the bucket is empty: even the right key waits now
    let (status, v) = api_request(
        &srv.base,
        Method::POST,
        "/api/session",
        "s3cret-create-key",
        Some(json!({})),
    )
    .await;
    assert_eq!((status, code(&v)), (429, "rate_limited"), "{v}");
    srv.server.shutdown().await;
}

#[tokio::test]
async fn one_client_cannot_fill_the_session_table() {
    let srv = start(ServerConfig {
        trust_proxy: true,
        limits: Limits {
            sessions_per_ip: 3,
            creates_per_minute: 0,
            ..Limits::default()
        },
        ..ServerConfig::default()
    })
    .await;
    // Three IPv6 addresses of one /64 (through the trusted proxy's header) are one client.
    let create_from = |ip: &'static str, name: &'static str| {
        let base = srv.base.clone();
        async move {
            let resp = reqwest::Client::new()
                .post(format!("{base}/api/session"))
                .header("x-forwarded-for", ip)
                .json(&json!({ "name": name }))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let mut admins = Vec::new();
    for (i, ip) in ["2001:db8:7:7::1", "2001:db8:7:7::2", "2001:db8:7:7:ffff::3"]
        .into_iter()
        .enumerate()
    {
        let name: &'static str = ["a", "b", "c"][i];
        let (status, v) = create_from(ip, name).await;
        assert_eq!(status, 201, "{v}");
        admins.push(v["token"].as_str().unwrap().to_string());
    }
    let (status, v) = create_from("2001:db8:7:7::99", "d").await;
    assert_eq!((status, code(&v)), (429, "too_many_sessions"));
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--sessions-per-ip"),
        "{v}"
    );
    // Another /64 is another client.
    assert_eq!(create_from("2001:db8:7:8::1", "e").await.0, 201);
    // Closing one frees a place.
    assert_eq!(delete_session(&srv.base, "a", &admins[0]).await.0, 200);
    assert_eq!(create_from("2001:db8:7:7::99", "d").await.0, 201);
    // A TTL beyond the server's maximum (24 h by default) is refused.
    let (status, v) = create_raw(&srv.base, r#"{"ttl": 86401}"#).await;
    assert_eq!(status, 400);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("86400"),
        "{v}"
    );
    srv.server.shutdown().await;
}

#[tokio::test]
async fn one_stream_token_cannot_lock_the_session_and_idle_sockets_are_closed() {
    let srv = start(ServerConfig {
        limits: Limits {
            identify_timeout: Duration::from_millis(600),
            ..Limits::default()
        },
        ..ServerConfig::default()
    })
    .await;
    let created = create(
        &srv.base,
        json!({"name": "lock", "streams": ["cam1", "cam2"], "ttl": 1}),
    )
    .await;
    let admin = created["token"].as_str().unwrap().to_string();
    let cam1 = stream_token(&created, "cam1", "sender");
    // The review: 64 idle sockets with one stream token. The fifth is refused...
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(raw_ws(&srv.base, "lock", &cam1).await);
    }
    let mut fifth = raw_ws(&srv.base, "lock", &cam1).await;
    let (code, message) = raw_error(&mut fifth).await;
    assert_eq!(code, "too_many_connections");
    assert!(message.contains("sender of stream \"cam1\""), "{message}");
    // ...while the admin's dashboard and the other stream get in.
    let mut dash = connect(&srv.base, "lock", &admin).await;
    dash.send(&ClientMessage::Watch).await.unwrap();
    expect_msg(&mut dash, "a view", |m| {
        matches!(m, ServerMessage::View(_)).then_some(())
    })
    .await;
    let mut cam2 = connect(
        &srv.base,
        "lock",
        &stream_token(&created, "cam2", "receiver"),
    )
    .await;
    cam2.send(&register(Some("cam2"), Role::Receiver, 9000))
        .await
        .unwrap();
    expect_msg(&mut cam2, "registered", |m| {
        matches!(m, ServerMessage::Registered(_)).then_some(())
    })
    .await;
    // The idle sockets, which neither registered nor watched, are closed...
    for ws in &mut idle {
        let (code, reason) = raw_close_frame(ws).await.expect("a close frame");
        assert_eq!(code, 1008);
        assert!(reason.contains("no `register` or `watch`"), "{reason}");
    }
    drop((dash, cam2));
    // ...and while only such sockets are open, the session expires (ttl 1 s).
    let mut lurker = raw_ws(&srv.base, "lock", &cam1).await;
    let _ = raw_next(&mut lurker).await;
    // (Reading the session would be activity: watch the server's count instead.)
    eventually("the session to expire", || async {
        (healthz(&srv.base).await["sessions"] == 0).then_some(())
    })
    .await;
    let (status, _) = get_session(&srv.base, "lock", &admin).await;
    assert_eq!(status, 410);
    srv.server.shutdown().await;
}

#[tokio::test]
async fn a_stream_token_reads_only_its_own_stream() {
    let srv = start_default().await;
    let created = create(
        &srv.base,
        json!({"name": "peek", "streams": {"cam1": {"label": "Wide"}, "cam2": null}}),
    )
    .await;
    let mut cam1 = connect(&srv.base, "peek", &stream_token(&created, "cam1", "sender")).await;
    let mut reg = register(Some("cam1"), Role::Sender, 9000);
    if let ClientMessage::Register(r) = &mut reg {
        r.meta.extra.insert("phone".into(), json!("+1 555 0100"));
    }
    cam1.send(&reg).await.unwrap();
    expect_msg(&mut cam1, "registered", |m| {
        matches!(m, ServerMessage::Registered(_)).then_some(())
    })
    .await;
    // The review: cam2's receiver token read cam1's public IP, NAT report and meta.
    let (status, v) = get_session(
        &srv.base,
        "peek",
        &stream_token(&created, "cam2", "receiver"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v["streams"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["streams"][0]["name"], "cam2");
    assert!(!v.to_string().contains("555 0100"), "{v}");
    // cam1's receiver sees its sender's status, not its address or meta.
    let (_, v) = get_session(
        &srv.base,
        "peek",
        &stream_token(&created, "cam1", "receiver"),
    )
    .await;
    let sender = &v["streams"][0]["sender"];
    assert_eq!(sender["status"], "registered");
    assert!(
        sender["address"].is_null() && sender["meta"].is_null(),
        "{v}"
    );
    // The admin sees all.
    let (_, v) = get_session(&srv.base, "peek", created["token"].as_str().unwrap()).await;
    assert_eq!(v["streams"][0]["sender"]["meta"]["phone"], "+1 555 0100");
    srv.server.shutdown().await;
}

/// Reads from `tcp` until the server closes it; how long that took, or `None` if it stayed
/// open past `limit`.
async fn closed_within(tcp: &mut tokio::net::TcpStream, limit: Duration) -> Option<Duration> {
    use tokio::io::AsyncReadExt;
    let start = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit.saturating_sub(start.elapsed()), tcp.read(&mut buf)).await
        {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

async fn tcp(base: &str) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap()
}

#[tokio::test]
async fn slow_and_idle_connections_are_closed_in_bounded_time_while_requests_go_on() {
    use tokio::io::AsyncWriteExt;
    let srv = start(ServerConfig {
        limits: Limits {
            header_timeout: Duration::from_secs(1),
            body_timeout: Duration::from_secs(1),
            keepalive_timeout: Duration::from_millis(1500),
            ..Limits::default()
        },
        ..ServerConfig::default()
    })
    .await;
    // The review's slowloris: connections that send nothing, and ones that send half a head.
    let mut slow = Vec::new();
    for i in 0..20 {
        let mut c = tcp(&srv.base).await;
        if i % 2 == 1 {
            c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .await
                .unwrap();
        }
        slow.push(c);
    }
    // Normal requests keep working meanwhile.
    for _ in 0..5 {
        assert_eq!(healthz(&srv.base).await["status"], "ok");
    }
    for c in &mut slow {
        let took = closed_within(c, Duration::from_secs(4))
            .await
            .expect("a slow connection is closed");
        assert!(took < Duration::from_millis(1800), "closed after {took:?}");
    }
    // A body that never arrives in full: 408 once the body timeout is over.
    let mut c = tcp(&srv.base).await;
    c.write_all(b"POST /api/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut answer = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(4), async {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 4096];
        while let Ok(n) = c.read(&mut buf).await {
            if n == 0 {
                break;
            }
            answer.push_str(&String::from_utf8_lossy(&buf[..n]));
            if answer.contains("\r\n\r\n") && answer.contains('}') {
                break;
            }
        }
    })
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"timeout\""), "{answer}");
    assert!(started.elapsed() < Duration::from_millis(2500));
    // A kept-alive connection idle after its answer is closed after the keep-alive timeout.
    let mut c = tcp(&srv.base).await;
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let took = closed_within(&mut c, Duration::from_secs(5))
        .await
        .expect("an idle keep-alive connection is closed");
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_millis(2500),
        "closed after {took:?}"
    );
    srv.server.shutdown().await;
}

#[tokio::test]
async fn connections_are_capped_per_client_address() {
    let srv = start(ServerConfig {
        limits: Limits {
            connections_per_ip: 5,
            ..Limits::default()
        },
        ..ServerConfig::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(tcp(&srv.base).await);
    }
    // The sixth is closed at once, without an answer.
    let mut sixth = tcp(&srv.base).await;
    let took = closed_within(&mut sixth, Duration::from_secs(2))
        .await
        .expect("the sixth connection is refused");
    assert!(took < Duration::from_millis(500), "{took:?}");
    // Closing one makes room.
    held.pop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let resp = reqwest::Client::new()
        .get(format!("{}/healthz", srv.base))
        .send()
        .await
        .expect("a request once there is room");
    assert_eq!(resp.status(), 200);
    srv.server.shutdown().await;
}

async fn hello(sig: &mut Signalling) -> punch::protocol::Hello {
    expect_msg(sig, "hello", |m| match m {
        ServerMessage::Hello(h) => Some(h.clone()),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn a_registered_public_address_must_be_one_the_stun_service_saw() {
    let srv = start_default().await;
    let created = create(&srv.base, json!({"name": "forge"})).await;
    // The review: a sender claims a mapped address of a host it wants SRT pointed at.
    let mut liar = connect(
        &srv.base,
        "forge",
        &stream_token(&created, "default", "sender"),
    )
    .await;
    let h = hello(&mut liar).await;
    assert!(h.stun_tag.is_some(), "{h:?}");
    let mut forged = register(None, Role::Sender, 9000);
    if let ClientMessage::Register(r) = &mut forged {
        r.nat = Some(NatReport {
            mapped: Some(punch::protocol::Endpoint {
                ip: "198.51.100.7".into(),
                port: 9000,
            }),
            mapping: NatMapping::EndpointIndependent,
        });
    }
    liar.send(&forged).await.unwrap();
    let why = expect_error(&mut liar, punch::protocol::ErrorCode::AddressNotVerified).await;
    assert!(
        why.contains("198.51.100.7:9000") && why.contains("127.0.0.1:9000"),
        "{why}"
    );
    let you = expect_msg(&mut liar, "registered", |m| match m {
        ServerMessage::Registered(r) => Some(r.you.clone()),
        _ => None,
    })
    .await;
    assert_eq!((you.ip.as_str(), you.port), ("127.0.0.1", 9000));

    // A receiver that really asked the STUN service, from its port, with its tag, is believed.
    let mut honest = connect(
        &srv.base,
        "forge",
        &stream_token(&created, "default", "receiver"),
    )
    .await;
    let h = hello(&mut honest).await;
    let [stun, _] = h.stun.unwrap();
    let port = free_udp_port();
    let found = punch::client::nat::discover(
        format!("127.0.0.1:{port}").parse().unwrap(),
        format!("127.0.0.1:{stun}").parse().unwrap(),
        Duration::from_secs(2),
        h.stun_tag.as_deref(),
    )
    .await
    .unwrap();
    let mut honest_reg = register(None, Role::Receiver, port);
    if let ClientMessage::Register(r) = &mut honest_reg {
        r.nat = Some(found.report());
    }
    honest.send(&honest_reg).await.unwrap();
    let you = expect_msg(&mut honest, "registered", |m| match m {
        ServerMessage::Error(e) => panic!("refused: {e:?}"),
        ServerMessage::Registered(r) => Some(r.you.clone()),
        _ => None,
    })
    .await;
    assert_eq!(you.port, found.mapped.port());
    // Its signalling reconnects while its SRT holds the port: no new STUN probe is possible,
    // and it returns with the mapping it had. Believed: it is this side's own last address.
    drop(honest);
    let mut back = connect(
        &srv.base,
        "forge",
        &stream_token(&created, "default", "receiver"),
    )
    .await;
    let _ = hello(&mut back).await;
    back.send(&honest_reg).await.unwrap();
    let you = expect_msg(&mut back, "registered again", |m| match m {
        ServerMessage::Error(e) => panic!("refused: {e:?}"),
        ServerMessage::Registered(r) => Some(r.you.clone()),
        _ => None,
    })
    .await;
    assert_eq!(you.port, found.mapped.port());
    // Another connection's tag does not vouch for it on another side: the liar claims it.
    let mut stolen = register(None, Role::Sender, port);
    if let ClientMessage::Register(r) = &mut stolen {
        r.nat = Some(found.report());
    }
    liar.send(&stolen).await.unwrap();
    expect_error(&mut liar, punch::protocol::ErrorCode::AddressNotVerified).await;
    srv.server.shutdown().await;
}

#[tokio::test]
async fn the_stun_service_is_no_amplifier() {
    let srv = start_default().await;
    let [stun, _]: [u16; 2] =
        serde_json::from_value(healthz(&srv.base).await["stun"].clone()).unwrap();
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // The review: a 20-byte request got a 56-byte answer, as often as asked. Half of the
    // flood in RFC 3489's classic form (no magic cookie), which got the same 56 bytes.
    let mut sent = 0usize;
    for i in 0..1000u32 {
        let mut tid = [0u8; 12];
        tid[..4].copy_from_slice(&i.to_be_bytes());
        let mut req = punch::protocol::stun::binding_request(&tid, None);
        if i % 2 == 1 {
            req[4..8].copy_from_slice(b"clsc");
        }
        socket.send_to(&req, ("127.0.0.1", stun)).await.unwrap();
        sent += req.len();
    }
    let mut received = 0usize;
    let mut buf = [0u8; 1500];
    while let Ok(Ok((n, _))) =
        tokio::time::timeout(Duration::from_millis(500), socket.recv_from(&mut buf)).await
    {
        // with the 28 bytes of UDP/IPv4 headers: at most 1.5 times the 48 of a request
        assert!(n <= 44, "an answer of {n} bytes");
        received += n;
    }
    let ratio = received as f64 / sent as f64;
    assert!(
        ratio <= 1.5,
        "amplification {ratio:.2} ({received} out / {sent} in)"
    );
    assert!(received > 0, "the first requests are answered");
    assert!(healthz(&srv.base).await["stun_limited"].as_u64().unwrap() > 900);
    srv.server.shutdown().await;
}

/// Opens `GET /api/tunnel/{session}?query` with `token`; the HTTP status and, for a refusal,
/// the error body's message.
async fn open_tunnel(base: &str, session: &str, query: &str, token: &str) -> (u16, String) {
    use tokio_tungstenite::tungstenite::{Error, client::IntoClientRequest};
    let url = format!(
        "{}/api/tunnel/{session}?{query}&token={token}",
        base.replace("http://", "ws://")
    );
    let req = url.into_client_request().unwrap();
    match within("the tunnel upgrade", tokio_tungstenite::connect_async(req)).await {
        Ok((_, resp)) => (resp.status().as_u16(), String::new()),
        Err(Error::Http(resp)) => {
            let body = resp.body().clone().unwrap_or_default();
            let v: Value = serde_json::from_slice(&body).unwrap_or_default();
            (
                resp.status().as_u16(),
                v["error"]["message"].as_str().unwrap_or_default().into(),
            )
        }
        Err(e) => panic!("the tunnel upgrade failed without an answer: {e}"),
    }
}

#[tokio::test]
async fn a_tunnel_opens_only_with_its_sides_ticket() {
    let t = start_default().await;
    let created = create(
        &t.base,
        json!({"name": "tickets", "streams": {"cam": {"receivers": 2}}}),
    )
    .await;
    let (sender_token, receiver_token) = (
        stream_token(&created, "cam", "sender"),
        stream_token(&created, "cam", "receiver"),
    );
    // receiver 1 has no UDP; receiver 2, on the same token, has
    let mut sender = connect(&t.base, "tickets", &sender_token).await;
    let mut sender2 = connect(&t.base, "tickets", &sender_token).await;
    let mut rx1 = connect(&t.base, "tickets", &receiver_token).await;
    let mut rx2 = connect(&t.base, "tickets", &receiver_token).await;
    let reg = |role, port, slot: u8, tunnel| match register(Some("cam"), role, port) {
        ClientMessage::Register(r) => ClientMessage::Register(Register {
            receiver: Some(slot),
            tunnel,
            ..r
        }),
        _ => unreachable!(),
    };
    sender
        .send(&reg(Role::Sender, 9000, 1, false))
        .await
        .unwrap();
    sender2
        .send(&reg(Role::Sender, 9002, 2, false))
        .await
        .unwrap();
    rx1.send(&reg(Role::Receiver, 9001, 1, true)).await.unwrap();
    rx2.send(&reg(Role::Receiver, 9003, 2, false))
        .await
        .unwrap();
    let peer = expect_msg(&mut rx1, "receiver 1's tunnel coordinates", |m| match m {
        ServerMessage::Peer(p) if p.tunnel => Some(p.clone()),
        _ => None,
    })
    .await;
    let ticket = peer.ticket.expect("a ticket with tunnel coordinates");
    let q = |slot: u8, ticket: &str| {
        format!("stream=cam&role=receiver&receiver={slot}&ticket={ticket}")
    };
    // no ticket, a wrong one, another slot's (which has no tunnel): refused, with the reason
    let (status, _) = open_tunnel(
        &t.base,
        "tickets",
        "stream=cam&role=receiver",
        &receiver_token,
    )
    .await;
    assert_eq!(status, 400);
    let (status, why) = open_tunnel(&t.base, "tickets", &q(1, "guess"), &receiver_token).await;
    assert_eq!(
        (status, why.contains("wrong tunnel ticket")),
        (403, true),
        "{why}"
    );
    let (status, why) = open_tunnel(&t.base, "tickets", &q(2, &ticket), &receiver_token).await;
    assert_eq!(
        (status, why.contains("does not go over a tunnel")),
        (403, true),
        "{why}"
    );
    // the sender's token cannot open the receiver's tunnel, even with its ticket
    let (status, _) = open_tunnel(&t.base, "tickets", &q(1, &ticket), &sender_token).await;
    assert_eq!(status, 403);
    // the right side, slot and ticket: the upgrade
    let (status, why) = open_tunnel(&t.base, "tickets", &q(1, &ticket), &receiver_token).await;
    assert_eq!(status, 101, "{why}");
}
