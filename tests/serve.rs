//! `punch serve` as an operator runs it: its flags, its log, its database lock.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::serve::Serve;
use common::*;

/// A plain `GET path` on `base`; the whole answer.
fn http_get(base: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = tcp.read_to_string(&mut answer);
    answer
}

/// Runs `punch ARGS` to completion: success, stdout, stderr.
/// `punch serve` on `db` while another server holds it: whether it succeeded, and its stderr.
fn second_server(db: &str) -> (bool, String) {
    let (ok, _, err) = punch(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--stun-port",
        "0",
        "--db",
        db,
    ]);
    (ok, err)
}

fn punch(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_punch"))
        .args(args)
        .env_remove("PUNCH_CREATE_KEY")
        .env_remove("PUNCH_SERVER")
        .env("XDG_CONFIG_HOME", std::env::temp_dir())
        .output()
        .expect("punch runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn a_client_cannot_forge_a_log_line() {
    let serve = Serve::start(&[]);
    // The review: a %0A in a path id wrote a line of the attacker's choosing.
    let answer = http_get(
        &serve.base,
        "/api/session/a%0AINFO%20forged%1B%5B31m?token=x",
    );
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    serve.wait_log("request refused");
    let log = serve.log();
    assert!(
        !log.lines().any(|l| l.starts_with("INFO forged")),
        "a forged line:\n{log}"
    );
    assert!(log.contains(r"a\nINFO forged\u{1b}[31m"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "a terminal escape reached the log:\n{log}"
    );
}

#[test]
fn a_second_server_on_the_same_database_exits_at_once_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("punch.db").display().to_string();
    let first = Serve::start(&["--db", &db]);
    let started = Instant::now();
    let (ok, err) = second_server(&db);
    assert!(!ok);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        err.contains(&db) && err.contains(&format!("pid {}", first.child.id())),
        "{err}"
    );
    // Once the first is gone, the file is free.
    drop(first);
    let second = Serve::start(&["--db", &db]);
    drop(second);
}

#[test]
fn every_numeric_flag_says_its_range() {
    for (flag, value, range) in [
        ("--direct-timeout", "1e300", "0.5-600"),
        ("--direct-timeout", "0", "0.5-600"),
        ("--ttl", "0", "1-31536000"),
        ("--max-ttl", "10", "60-31536000"),
        ("--max-sessions", "0", "1-1000000"),
        ("--sessions-per-ip", "0", "1-1000000"),
        ("--creates-per-minute", "100001", "0-100000"),
        ("--connections-per-ip", "0", "1-100000"),
        ("--header-timeout", "0", "1-300"),
        ("--body-timeout", "301", "1-300"),
        ("--keepalive-timeout", "-1", "1-3600"),
        ("--stun-port", "65535", "0-65534"),
        ("--stun-rate", "0", "1-10000"),
        ("--relay-max", "10001", "0-10000"),
        ("--relay-per-session", "0", "1-10000"),
        ("--relay-per-ip", "0", "1-10000"),
        ("--relay-idle", "1", "5-3600"),
        ("--relay-max-mbps", "0", "1-100000"),
        ("--relay-total-mbps", "x", "not a whole number"),
    ] {
        let (ok, _, err) = punch(&["serve", "--db", ":memory:", flag, value]);
        assert!(!ok, "{flag} {value} was accepted");
        assert!(
            err.contains(flag) && err.contains(range),
            "{flag} {value}: {err}"
        );
    }
    let (ok, _, err) = punch(&["serve", "--db", ":memory:", "--ttl", "90000"]);
    assert!(!ok);
    assert!(err.contains("--max-ttl"), "{err}");
}

#[test]
fn without_a_create_key_the_server_warns_and_with_one_the_cli_passes_it() {
    // On every interface without a key: a warning (the port is 0: nothing outside connects).
    let open = Serve::start(&["--listen", "0.0.0.0:0"]);
    open.wait_log("without --create-key");
    drop(open);
    let keyed = Serve::start(&["--create-key", "k3y-for-the-test"]);
    assert!(!keyed.log().contains("without --create-key"));
    let (ok, _, err) = punch(&["session", "create", "--server", &keyed.base]);
    assert!(!ok);
    assert!(err.contains("create key") && err.contains("401"), "{err}");
    let (ok, out, err) = punch(&[
        "session",
        "create",
        "keyed",
        "--server",
        &keyed.base,
        "--create-key",
        "k3y-for-the-test",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("Session    keyed"), "{out}");
}

#[test]
fn punch_serve_keeps_its_sessions_in_postgresql() {
    let pg = common::postgres::Postgres::start();
    let db = pg.database("punch").replace("punch@", "punch:hunter2@");
    let mut first = Serve::start(&["--db", &db, "--node-id", "first"]);
    assert!(!first.log().contains("hunter2"), "{}", first.log());
    let created = runtime().block_on(create(&first.base, serde_json::json!({"name": "pg-kept"})));
    let token = created["token"].as_str().unwrap().to_string();
    // a second server on the same database joins it as another node
    let second = Serve::start(&["--db", &db, "--node-id", "second"]);
    let page = http_get(&second.base, "/healthz");
    assert!(page.contains("\"sessions\":0"), "{page}");
    let (status, v) = runtime().block_on(get_session(&second.base, "pg-kept", &token));
    assert_eq!((status, v["node"].as_str()), (200, Some("first")), "{v}");
    // the first stops (SIGTERM): the second serves its session
    first.signal(libc::SIGTERM);
    assert!(first.wait_exit().success(), "{}", first.log());
    assert!(first.log().contains("left the cluster"), "{}", first.log());
    let (status, v) = runtime().block_on(get_session(&second.base, "pg-kept", &token));
    assert_eq!((status, v["node"].as_str()), (200, Some("second")), "{v}");
    let page = http_get(&second.base, "/healthz");
    assert!(page.contains("\"sessions\":1"), "{page}");
    assert!(!second.log().contains("hunter2"), "{}", second.log());
    drop(second);
}
