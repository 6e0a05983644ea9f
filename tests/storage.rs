//! One suite, both storage engines: every scenario runs against an SQLite file and against a
//! throwaway PostgreSQL cluster (`common::postgres`), through the real server and its HTTP and
//! WebSocket API: what survives a restart, what stays closed, what is refused.

mod common;

use common::postgres::Postgres;
use common::*;
use punch::client::Signalling;
use punch::protocol::{ClientMessage, Health, PeerInfo, Role};
use punch::server::{Server, ServerConfig};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

/// Both sides of stream cam1 of `persist` registered with `tokens` (`[sender, receiver]`); the
/// connections and the sender's coordinates.
async fn registered_pair(base: &str, tokens: [&str; 2]) -> (Signalling, Signalling, PeerInfo) {
    let mut a = connect(base, "persist", tokens[0]).await;
    let mut b = connect(base, "persist", tokens[1]).await;
    a.send(&register(None, Role::Sender, 9000)).await.unwrap();
    b.send(&register(None, Role::Receiver, 9001)).await.unwrap();
    let peer = peer_of(&mut a).await;
    (a, b, peer)
}

fn on(db: &str) -> ServerConfig {
    ServerConfig {
        db: db.to_string(),
        ..ServerConfig::default()
    }
}

/// Sessions, tokens, passphrases, labels, latency, tally, last health and the registration
/// history survive a restart.
async fn a_restart_keeps_everything(db: &str) {
    let srv = start(on(db)).await;
    let created = create(
        &srv.base,
        json!({"name": "persist", "streams": {"cam1": {"label": "Wide", "audio": "stereo"}}, "latency": 350}),
    )
    .await;
    let token = created["token"].as_str().unwrap().to_string();
    // the admin token registers too; after the restart the stream tokens do
    let (mut a, mut b, before) = registered_pair(&srv.base, [&token, &token]).await;
    assert_eq!(before.latency, 350);
    a.send(&ClientMessage::Health(Health {
        rtt: Some(33.0),
        ..Default::default()
    }))
    .await
    .unwrap();
    let (status, v) = api_request(
        &srv.base,
        Method::POST,
        "/api/session/persist/tally",
        &token,
        Some(json!({"stream": "cam1", "state": "on-air"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    eventually_view(&srv.base, "persist", &token, "health stored", |v| {
        v["streams"][0]["sender"]["last_health"]["rtt"] == 33.0
    })
    .await;
    srv.server.shutdown().await;
    expect_closed(&mut a).await;
    expect_closed(&mut b).await;

    let srv = start(on(db)).await;
    let (status, v) = get_session(&srv.base, "persist", &token).await;
    assert_eq!(status, 200, "the admin token still verifies: {v}");
    assert_eq!(v["state"], "WAITING");
    let s = &v["streams"][0];
    assert_eq!(s["label"], "Wide");
    assert_eq!(s["tally"], "on-air", "{s}");
    assert_eq!(s["sender"]["last_health"]["rtt"], 33.0);
    assert_eq!(s["sender"]["address"]["port"], 9000);
    let tokens = [
        stream_token(&created, "cam1", "sender"),
        stream_token(&created, "cam1", "receiver"),
    ];
    let (_a, _b, after) = registered_pair(&srv.base, [&tokens[0], &tokens[1]]).await;
    assert_eq!(
        after, before,
        "same coordinates, passphrase and latency after the restart"
    );
    srv.server.shutdown().await;
    let history = punch::server::store::registration_events(db, "persist").unwrap();
    let registrations = history.iter().filter(|(_, _, k)| k == "register").count();
    assert_eq!(registrations, 4, "{history:?}");
}

/// A latency change and a device holding a side survive a restart.
async fn latency_and_devices_are_kept(db: &str) {
    let srv = start(on(db)).await;
    let created = create(&srv.base, json!({"name": "kept"})).await;
    let token = created["token"].as_str().unwrap().to_string();
    let (status, v) = api_request(
        &srv.base,
        Method::POST,
        "/api/session/kept/latency",
        &token,
        Some(json!({"stream": "default", "latency": 400})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = api_request(
        &srv.base,
        Method::PUT,
        "/api/session/kept/stream/default/sender",
        &token,
        Some(json!({"device": "caller"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let device = v["streams"][0]["sender"]["device"].clone();
    assert!(device.is_object(), "{v}");
    srv.server.shutdown().await;

    let srv = start(on(db)).await;
    let (_, v) = get_session(&srv.base, "kept", &token).await;
    assert_eq!(v["streams"][0]["latency"], 400, "{v}");
    assert_eq!(v["streams"][0]["sender"]["device"], device, "{v}");
    srv.server.shutdown().await;
}

/// A closed session answers `410 gone` after a restart too; its name can be taken again.
async fn a_closed_session_stays_closed(db: &str) {
    let srv = start(on(db)).await;
    let created = create(&srv.base, json!({"name": "done"})).await;
    let token = created["token"].as_str().unwrap().to_string();
    let (status, _) = delete_session(&srv.base, "done", &token).await;
    assert_eq!(status, 200);
    srv.server.shutdown().await;

    let srv = start(on(db)).await;
    let (status, v) = get_session(&srv.base, "done", &token).await;
    assert_eq!((status, code(&v)), (410, "gone"));
    let again = create(&srv.base, json!({"name": "done"})).await;
    let (status, _) = get_session(&srv.base, "done", &token).await;
    assert_eq!(
        status, 410,
        "the old incarnation's token does not open the new one"
    );
    let fresh = again["token"].as_str().unwrap();
    assert_eq!(get_session(&srv.base, "done", fresh).await.0, 200);
    srv.server.shutdown().await;
}

/// A second server on the same SQLite file is refused with a reason (one server per file).
#[tokio::test]
async fn sqlite_second_server_is_refused() {
    let (_dir, db) = sqlite_db();
    let srv = start(on(&db)).await;
    let second = Server::start(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..on(&db)
    })
    .await;
    let err = second
        .err()
        .expect("a second server on the same database is refused");
    assert!(err.contains("in use by another punch serve"), "{err}");
    srv.server.shutdown().await;
    // once the first is gone, the database is free
    let srv = start(on(&db)).await;
    srv.server.shutdown().await;
}

/// A second server on the same PostgreSQL database is another node: it answers for the first
/// one's sessions, and takes them over at once when the first shuts down.
#[tokio::test]
async fn postgres_second_server_is_another_node() {
    let pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let db = pg.database("punch");
    let first = start(on(&db)).await;
    let created = create(&first.base, json!({"name": "shared"})).await;
    let token = created["token"].as_str().unwrap().to_string();
    let second = start(on(&db)).await;
    let (a, b) = (
        first.server.node().unwrap().to_string(),
        second.server.node().unwrap().to_string(),
    );
    assert_ne!(a, b, "each node has a name of its own");
    let (status, v) = get_session(&second.base, "shared", &token).await;
    assert_eq!((status, v["node"].as_str()), (200, Some(a.as_str())), "{v}");
    // a graceful stop ends the first node's leases: the second serves the session at once,
    // not a lease later
    first.server.shutdown().await;
    let stopped = std::time::Instant::now();
    let (status, v) = get_session(&second.base, "shared", &token).await;
    assert_eq!((status, v["node"].as_str()), (200, Some(b.as_str())), "{v}");
    assert!(
        stopped.elapsed() < Duration::from_secs(2),
        "{:?}",
        stopped.elapsed()
    );
    second.server.shutdown().await;
    drop(pg);
}

fn sqlite_db() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("punch.db").display().to_string();
    (dir, db)
}

macro_rules! both {
    ($scenario:ident, $sqlite:ident, $postgres:ident) => {
        #[tokio::test]
        async fn $sqlite() {
            let (_dir, db) = sqlite_db();
            $scenario(&db).await;
        }

        #[tokio::test]
        async fn $postgres() {
            let pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
            let db = pg.database("punch");
            $scenario(&db).await;
            drop(pg);
        }
    };
}

both!(
    a_restart_keeps_everything,
    sqlite_restart_keeps_everything,
    postgres_restart_keeps_everything
);
both!(
    latency_and_devices_are_kept,
    sqlite_latency_and_devices_are_kept,
    postgres_latency_and_devices_are_kept
);
both!(
    a_closed_session_stays_closed,
    sqlite_closed_session_stays_closed,
    postgres_closed_session_stays_closed
);

#[tokio::test]
async fn postgres_that_does_not_answer_is_a_clear_start_error_without_the_password() {
    // a loopback port nobody listens on
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://punch:s3cret@127.0.0.1:{port}/punch");
    let err = Server::start(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..on(&url)
    })
    .await
    .err()
    .expect("no database, no server");
    assert!(
        err.contains(&format!("postgres://punch@127.0.0.1:{port}/punch")),
        "{err}"
    );
    assert!(
        !err.contains("s3cret"),
        "the password stays out of messages: {err}"
    );
}

#[tokio::test]
async fn postgres_writes_held_while_the_database_restarts_are_stored_after() {
    let pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let db = pg.database("punch");
    let srv = start(on(&db)).await;
    let created = create(&srv.base, json!({"name": "held"})).await;
    let token = created["token"].as_str().unwrap().to_string();
    // the database goes away: a tally change is refused with 503 (it is not stored yet) and
    // kept; the session goes on
    let pg = tokio::task::spawn_blocking(move || {
        pg.stop();
        pg
    })
    .await
    .unwrap();
    let (status, v) = api_request(
        &srv.base,
        Method::POST,
        "/api/session/held/tally",
        &token,
        Some(json!({"stream": "default", "state": "preview"})),
    )
    .await;
    assert_eq!((status, code(&v)), (503, "storage"), "{v}");
    let pg = tokio::task::spawn_blocking(move || {
        pg.resume();
        pg
    })
    .await
    .unwrap();
    // stored once it is back (the writer retries; shutdown waits for it): a restart shows it
    srv.server.shutdown().await;
    let srv = start(on(&db)).await;
    let (_, v) = get_session(&srv.base, "held", &token).await;
    assert_eq!(v["streams"][0]["tally"], "preview", "{v}");
    srv.server.shutdown().await;
    drop(pg);
}

#[tokio::test]
async fn postgres_node_with_an_internal_url_others_cannot_use_is_refused_at_start() {
    let pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let db = pg.database("punch");
    let err = Server::start(ServerConfig {
        node: punch::server::NodeConfig {
            id: Some("n1".into()),
            internal_url: Some("https://10.0.0.11:8787".into()),
        },
        ..on(&db)
    })
    .await
    .err()
    .expect("an https internal URL is refused");
    assert!(
        err.contains("--internal-url https://10.0.0.11:8787") && err.contains("plain http://"),
        "{err}"
    );
    drop(pg);
}
