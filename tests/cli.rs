//! The `punch` binary as a user runs it.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;

fn punch(config_home: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_punch"))
        .args(args)
        .env("XDG_CONFIG_HOME", config_home)
        .env_remove("PUNCH_SERVER")
        .env_remove("PUNCH_TOKEN")
        .output()
        .expect("punch runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test]
async fn session_create_show_tally_close() {
    let srv = start_default().await;
    let home = tempfile::tempdir().unwrap();
    let base = srv.base.clone();
    let h = home.path().to_path_buf();
    let run = move |args: Vec<&'static str>| {
        let base = base.clone();
        let h = h.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut full: Vec<&str> = args.clone();
                full.extend(["--server", base.as_str()]);
                punch(&h, &full)
            })
            .await
            .unwrap()
        }
    };

    let (ok, out, err) = run(vec![
        "session", "create", "clitest", "--stream", "cam1", "--stream", "cam2",
    ])
    .await;
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("Dashboard  {}/s/clitest?t=pa.clitest.", srv.base)),
        "{out}"
    );
    assert!(
        out.contains("cam1")
            && out.contains("cam2")
            && out.contains("sender   token ps.clitest.cam1."),
        "{out}"
    );
    assert!(
        out.contains('█') || out.contains('▀'),
        "a QR code is drawn: {out}"
    );
    let saved = std::fs::read_to_string(home.path().join("punch/sessions.json")).unwrap();
    assert!(saved.contains("clitest"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(home.path().join("punch/sessions.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "token file is private");
    }

    let (ok, out, err) = run(vec!["session", "show", "clitest"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("Session clitest  WAITING") && out.contains("stream cam2"),
        "{out}"
    );

    let (ok, out, err) = run(vec!["session", "tally", "clitest", "cam1", "on-air"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("on-air"));

    let (ok, err_out, err) = run(vec!["session", "create", "clitest"]).await;
    assert!(!ok, "{err_out}");
    assert!(
        err.contains("already exists") && err.contains("409"),
        "{err}"
    );

    // a programme return to three monitors, and a waiting room
    let (ok, out, err) = run(vec![
        "session", "create", "clishow", "--stream", "pgm:3", "--stream", "cam1", "--join",
    ])
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("Waiting room"), "{out}");
    let (ok, out, err) = run(vec!["session", "show", "clishow"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("receiver 1") && out.contains("receiver 3"),
        "the receivers are listed: {out}"
    );
    let (ok, _, err) = run(vec!["session", "create", "--stream", "pgm:x"]).await;
    assert!(!ok);
    assert!(err.contains("':N' is the number of receivers"), "{err}");

    let (ok, out, err) = run(vec!["session", "close", "clitest"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("closed"));
    let (ok, _, err) = run(vec!["session", "show", "clitest"]).await;
    assert!(!ok);
    assert!(err.contains("no token for session clitest"), "{err}");
    srv.server.shutdown().await;
}

#[test]
fn unreachable_server_is_named() {
    let home = tempfile::tempdir().unwrap();
    // a port nobody listens on: bind and drop
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = format!("http://127.0.0.1:{port}");
    let (ok, _, err) = punch(home.path(), &["session", "create", "--server", &server]);
    assert!(!ok);
    assert!(
        err.contains(&format!("cannot reach the Punch server at {server}")),
        "{err}"
    );
}

#[test]
fn serve_prints_where_it_listens_and_a_demo_session_then_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_punch"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--stun-port",
            "0",
            "--demo",
            "--db",
        ])
        .arg(&db)
        .env("XDG_CONFIG_HOME", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    while !seen.contains("Press Ctrl-C") {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
            }
            Err(_) => panic!("serve did not finish starting; output so far:\n{seen}"),
        }
    }
    assert!(
        seen.contains("Punch server listening on http://127.0.0.1:"),
        "{seen}"
    );
    assert!(seen.contains(&format!("Data: {}", db.display())), "{seen}");
    assert!(seen.contains("STUN on udp/"), "{seen}");
    assert!(
        seen.contains("Demo session:") && seen.contains("Dashboard  http://127.0.0.1:"),
        "{seen}"
    );
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait());
    });
    let status = done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("serve stops promptly")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(db.exists());
}

#[test]
fn serve_names_a_stun_port_it_cannot_have() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_punch"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db",
            ":memory:",
            "--stun-port",
            &port,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "cannot open the STUN service on UDP 127.0.0.1:{port}"
        )),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_the_mapping_and_names_what_is_missing() {
    let home = tempfile::tempdir().unwrap();
    let srv = start_default().await;
    let h = home.path().to_path_buf();
    let base = srv.base.clone();
    let (ok, out, err) = tokio::task::spawn_blocking(move || punch(&h, &["doctor", &base]))
        .await
        .unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("Public address 127.0.0.1:"), "{out}");
    assert!(out.contains("NAT            none seen"), "{out}");
    assert!(
        out.contains("Mapping        endpoint-independent mapping: direct SRT rendezvous can work"),
        "{out}"
    );

    let no_stun = start(punch::server::ServerConfig {
        stun_port: None,
        ..Default::default()
    })
    .await;
    let h = home.path().to_path_buf();
    let base = no_stun.base.clone();
    let (ok, _, err) = tokio::task::spawn_blocking(move || punch(&h, &["doctor", &base]))
        .await
        .unwrap();
    assert!(!ok);
    assert!(err.contains("runs no STUN service (--no-stun)"), "{err}");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let h = home.path().to_path_buf();
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        punch(&h, &["doctor", &format!("http://127.0.0.1:{port}")])
    })
    .await
    .unwrap();
    assert!(!ok);
    assert!(err.contains("cannot reach the Punch server"), "{err}");
}
