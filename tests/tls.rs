//! Built-in TLS, as an operator runs it: `punch serve --tls-cert --tls-key` with certificates
//! made inside the test. A wrong file is a clear error; curl with the CA reaches the dashboard
//! over HTTPS; SIGHUP swaps the certificate for new connections while an open WebSocket goes
//! on.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::certs::TestCa;
use common::*;
use punch::client::Signalling;
use punch::client::tls::Trust;
use punch::protocol::{ClientMessage, ServerMessage};

/// `punch serve` with TLS, its output read line by line.
struct Serve {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: String,
}

impl Serve {
    fn start(dir: &std::path::Path, cert: &std::path::Path, key: &std::path::Path) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_punch"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--no-stun",
                "--db",
                ":memory:",
            ])
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .env("XDG_CONFIG_HOME", dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Serve {
            child,
            lines,
            seen: String::new(),
        }
    }

    /// Reads output until a line contains `what`; returns that line.
    fn wait_for(&mut self, what: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(20)) {
                Ok(line) => {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                    if line.contains(what) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no {what:?} from punch serve; output so far:\n{}",
                    self.seen
                ),
            }
        }
    }

    /// The port from "listening on https://127.0.0.1:PORT".
    fn port(&mut self) -> u16 {
        let line = self.wait_for("Punch server listening on https://127.0.0.1:");
        line.rsplit(':').next().unwrap().trim().parse().unwrap()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `curl --cacert CA URL`: (exit success, body).
fn curl(ca: &std::path::Path, url: &str) -> (bool, String) {
    require("curl", "curl");
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10", "--cacert"])
        .arg(ca)
        .arg(url)
        .output()
        .expect("curl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn a_certificate_that_cannot_work_is_a_clear_error_at_start() {
    let ca = TestCa::new("Punch test CA", &["localhost"]);
    let other = TestCa::new("Another CA", &["localhost"]);
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.pem");
    for (cert, key, says) in [
        (&missing, &ca.key, "--tls-cert: cannot read"),
        (&ca.key, &ca.key, "--tls-cert"),
        (&ca.cert, &ca.cert, "--tls-key"),
        (
            &ca.cert,
            &other.key,
            "do not go together: the key is not the certificate's",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_punch"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--no-stun",
                "--db",
                ":memory:",
            ])
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .env("XDG_CONFIG_HOME", dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "started with {cert:?} / {key:?}");
        assert!(err.contains(says), "{cert:?} / {key:?}: {err}");
    }
    // one without the other
    let out = Command::new(env!("CARGO_BIN_EXE_punch"))
        .args(["serve", "--db", ":memory:", "--tls-cert"])
        .arg(&ca.cert)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_links_and_a_certificate_reloaded_on_sighup_without_dropping_connections() {
    let first = TestCa::new("First CA", &["localhost"]);
    let second = TestCa::new("Second CA", &["localhost"]);
    let dir = tempfile::tempdir().unwrap();
    // the files the server reads, replaced in place later
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::copy(&first.cert, &cert).unwrap();
    std::fs::copy(&first.key, &key).unwrap();
    let mut serve = tokio::task::block_in_place(|| Serve::start(dir.path(), &cert, &key));
    let port = tokio::task::block_in_place(|| serve.port());
    tokio::task::block_in_place(|| serve.wait_for("kill -HUP"));
    let base = format!("https://localhost:{port}");

    // a session over HTTPS: its links say https:// and punchs://
    let rest =
        punch::client::rest::Rest::with(&base, WAIT, &Trust::with_ca_file(&first.ca)).unwrap();
    let created = rest
        .create(&serde_json::json!({"name": "tls"}), None)
        .await
        .unwrap();
    assert!(
        created.url.starts_with(&format!("{base}/s/tls?t=")),
        "{}",
        created.url
    );
    let (ok, page) = tokio::task::block_in_place(|| curl(&first.ca, &created.url));
    assert!(
        ok && page.contains("punch-initial"),
        "the dashboard over HTTPS: {page}"
    );
    let (ok, body) = tokio::task::block_in_place(|| {
        curl(
            &first.ca,
            &format!("{base}/api/session/tls/connect?t={}", created.token),
        )
    });
    assert!(ok, "{body}");
    // plain HTTP on the TLS port gets nothing
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());

    // a dashboard's WebSocket, open across the reload
    let mut ws = Signalling::connect_with(
        &base,
        "tls",
        &created.token,
        WAIT,
        &Trust::with_ca_file(&first.ca),
    )
    .await
    .unwrap();
    ws.send(&ClientMessage::Watch).await.unwrap();
    expect_msg(&mut ws, "the first view", |m| {
        matches!(m, ServerMessage::View(_)).then_some(())
    })
    .await;

    // a new certificate, and SIGHUP
    std::fs::copy(&second.cert, &cert).unwrap();
    std::fs::copy(&second.key, &key).unwrap();
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(serve.child.id() as i32, libc::SIGHUP) };
    tokio::task::block_in_place(|| serve.wait_for("TLS certificate reloaded"));
    let (ok, out) = tokio::task::block_in_place(|| curl(&second.ca, &format!("{base}/healthz")));
    assert!(ok, "the new certificate serves new connections: {out}");
    let (ok, _) = tokio::task::block_in_place(|| curl(&first.ca, &format!("{base}/healthz")));
    assert!(!ok, "the old certificate is gone");
    // the open connection goes on: a tally change reaches it
    let rest2 =
        punch::client::rest::Rest::with(&base, WAIT, &Trust::with_ca_file(&second.ca)).unwrap();
    rest2
        .tally(
            "tls",
            &created.token,
            "default",
            punch::protocol::TallyState::OnAir,
        )
        .await
        .unwrap();
    expect_msg(&mut ws, "a view after the reload", |m| match m {
        ServerMessage::View(v) if v.streams[0].tally == punch::protocol::TallyState::OnAir => {
            Some(())
        }
        _ => None,
    })
    .await;

    // a broken file on the next reload: the certificate in use stays
    std::fs::write(&key, "not a key").unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(serve.child.id() as i32, libc::SIGHUP) };
    tokio::task::block_in_place(|| {
        serve.wait_for("TLS certificate not reloaded, the old one stays")
    });
    let (ok, out) = tokio::task::block_in_place(|| curl(&second.ca, &format!("{base}/healthz")));
    assert!(ok, "{out}");
}
