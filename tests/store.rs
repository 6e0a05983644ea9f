//! What is stored survives: a change the API acknowledged is committed (durably), one the
//! database would not take is answered 503 with the real cause and retried, and a closed
//! session never comes back after a restart.

mod common;

use std::time::Duration;

use common::*;
use punch::server::ServerConfig;
use reqwest::Method;
use serde_json::json;

/// Another process's write lock on the database (as `sqlite3` or a backup tool would hold it).
struct Locked(rusqlite::Connection);

impl Locked {
    fn take(db: &str) -> Locked {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        Locked(conn)
    }

    fn release(self) {
        self.0.execute_batch("ROLLBACK").unwrap();
    }
}

#[tokio::test]
async fn a_close_the_database_did_not_take_is_503_stays_closed_and_is_stored_later() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("punch.db").display().to_string();
    let config = ServerConfig {
        db: db.clone(),
        ..ServerConfig::default()
    };
    let srv = start(config.clone()).await;
    let created = create(&srv.base, json!({"name": "keep"})).await;
    let admin = created["token"].as_str().unwrap().to_string();
    let created = create(&srv.base, json!({"name": "gone"})).await;
    let gone_admin = created["token"].as_str().unwrap().to_string();

    // The review: another process holds the database; DELETE answered 200 and the session came
    // back after a restart.
    let lock = Locked::take(&db);
    let (status, v) = delete_session(&srv.base, "gone", &gone_admin).await;
    assert_eq!((status, code(&v)), (503, "storage"), "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("database is locked") && message.contains("closed"),
        "{message}"
    );
    // Closed all the same: its tokens get 410 at once.
    assert_eq!(get_session(&srv.base, "gone", &gone_admin).await.0, 410);
    // Tally is acknowledged only once stored too.
    let (status, v) = api_request(
        &srv.base,
        Method::POST,
        "/api/session/keep/tally",
        &admin,
        Some(json!({"stream": "default", "state": "on-air"})),
    )
    .await;
    assert_eq!((status, code(&v)), (503, "storage"), "{v}");
    // A creation that cannot be stored is refused, and its name stays free.
    let (status, v) = create_raw(&srv.base, r#"{"name": "never"}"#).await;
    assert_eq!((status, code(&v)), (503, "storage"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("database is locked"),
        "the cause: {v}"
    );
    lock.release();

    // The store retries on its own (shutdown waits for it); a restart finds the closure and the
    // tally, not the refused session.
    srv.server.shutdown().await;
    let srv = start(config).await;
    let (status, v) = get_session(&srv.base, "gone", &gone_admin).await;
    assert_eq!((status, code(&v)), (410, "gone"), "{v}");
    let (status, v) = get_session(&srv.base, "keep", &admin).await;
    assert_eq!(status, 200);
    assert_eq!(v["streams"][0]["tally"], "on-air");
    let (status, _) = create_raw(&srv.base, r#"{"name": "never"}"#).await;
    assert_eq!(status, 201, "the refused name is free");
    srv.server.shutdown().await;
}

#[tokio::test]
async fn a_session_that_expires_while_the_database_is_locked_stays_closed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("punch.db").display().to_string();
    let config = ServerConfig {
        db: db.clone(),
        ..ServerConfig::default()
    };
    let srv = start(config.clone()).await;
    let created = create(&srv.base, json!({"name": "brief", "ttl": 1})).await;
    let admin = created["token"].as_str().unwrap().to_string();
    let lock = Locked::take(&db);
    // TTL expiry takes the same path as DELETE.
    let start_wait = std::time::Instant::now();
    while healthz(&srv.base).await["sessions"] != 0 {
        assert!(start_wait.elapsed() < WAIT, "the session did not expire");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    lock.release();
    srv.server.shutdown().await;
    let srv = start(config).await;
    assert_eq!(get_session(&srv.base, "brief", &admin).await.0, 410);
    srv.server.shutdown().await;
}
