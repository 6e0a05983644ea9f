//! The server behind a real TLS reverse proxy (Debian's nginx, a throwaway instance on loopback):
//! with `--trust-proxy` the links it hands out are `https://` and `punchs://`, the dashboard
//! loads, and a peer registers over the proxied `wss://`; the CLI and the elements trust a
//! private CA given with `--ca-file` / `ca-file`, and nothing else; two sides without UDP stream
//! H.264 through their tunnels, WebSockets the proxy passes like any other.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::certs::TestCa;
use common::*;
use punch::client::Signalling;
use punch::client::rest::Rest;
use punch::client::tls::Trust;
use punch::protocol::{Role, ServerMessage};
use punch::server::ServerConfig;
use serde_json::json;

/// nginx terminating TLS on a loopback port and passing everything (WebSockets too) to
/// `upstream`; stopped when dropped.
struct Nginx {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Nginx {
    fn start(ca: &TestCa, upstream: u16) -> Nginx {
        require("nginx", "nginx");
        let dir = ca.dir();
        for attempt in 0.. {
            // nginx cannot be given port 0: take a free one and retry if it was taken meanwhile.
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let conf = dir.join("nginx.conf");
            let d = dir.display();
            std::fs::write(
                &conf,
                format!(
                    r#"
daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host:$server_port;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_read_timeout 120s;
        }}
    }}
}}
"#,
                    cert = ca.cert.display(),
                    key = ca.key.display(),
                ),
            )
            .unwrap();
            let log = dir.join("error.log");
            let mut child = Command::new("nginx")
                .arg("-p")
                .arg(dir)
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg(&log)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nginx runs");
            let start = Instant::now();
            while start.elapsed() < WAIT {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Nginx { child, port, log };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            assert!(
                attempt < 3,
                "nginx did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        unreachable!()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_tls_proxy_links_are_https_and_peers_register_over_wss() {
    let ca = TestCa::new("Punch test CA", &["localhost", "127.0.0.1"]);
    let srv = start(ServerConfig {
        trust_proxy: true,
        ..ServerConfig::default()
    })
    .await;
    let upstream = srv.server.local_addr().port();
    let nginx = tokio::task::block_in_place(|| Nginx::start(&ca, upstream));
    let public = format!("https://localhost:{}", nginx.port);
    let trust = Trust::with_ca_file(&ca.ca);
    let rest = Rest::with(&public, WAIT, &trust).unwrap();

    // The review: behind a TLS proxy the server handed out http:// and punch:// links.
    let created = rest
        .create(&json!({"name": "proxied"}), None)
        .await
        .expect("create through the proxy");
    assert!(
        created.url.starts_with(&format!("{public}/s/proxied?t=")),
        "{}",
        created.url
    );
    assert!(created.qr.starts_with("https://"), "{}", created.qr);
    let answer = rest
        .raw(
            reqwest::Method::GET,
            &format!("/s/proxied?t={}", created.token),
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "the dashboard loads through the proxy");
    // The stream QR codes open the https camera-operator page, whose settings QR carries the
    // punchs:// URI.
    let sender_token = created.stream_tokens["default"]
        .get(Role::Sender)
        .to_string();
    let client = reqwest::Client::builder()
        .use_preconfigured_tls((*trust.client_config().unwrap()).clone())
        .build()
        .unwrap();
    let fetch = |url: String| {
        let client = client.clone();
        async move { client.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let qr = fetch(format!(
        "{public}/s/proxied/qr/default/sender?t={}",
        created.token
    ))
    .await;
    let page = format!("{public}/j/proxied?t={sender_token}");
    assert!(page.starts_with("https://"), "{page}");
    assert_eq!(qr, punch::server::qr_svg(&page).unwrap());
    let expected = format!(
        "punchs://localhost:{}/proxied/default?token={sender_token}",
        nginx.port
    );
    let settings = fetch(format!("{public}/j/proxied/qr?t={sender_token}")).await;
    assert_eq!(settings, punch::server::qr_svg(&expected).unwrap());
    assert!(
        fetch(page).await.contains(&expected),
        "the page shows the punchs:// URI"
    );

    // A peer registers over wss:// through the proxy; its address is the proxy's record of it.
    let mut sig = Signalling::connect_with(&public, "proxied", &sender_token, WAIT, &trust)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "wss through nginx: {e}\n{}",
                std::fs::read_to_string(&nginx.log).unwrap_or_default()
            )
        });
    sig.send(&register(None, Role::Sender, 9000)).await.unwrap();
    let you = expect_msg(&mut sig, "registered", |m| match m {
        ServerMessage::Registered(r) => Some(r.you.clone()),
        _ => None,
    })
    .await;
    assert_eq!(you.ip, "127.0.0.1");
    let view = rest.session("proxied", &created.token).await.unwrap();
    assert_eq!(
        view.streams[0].sender.status,
        punch::protocol::PeerStatus::Registered
    );
    sig.close().await;
    drop(nginx);
    srv.server.shutdown().await;
}

/// `punch ARGS` with a clean environment; (success, stdout, stderr).
fn punch(home: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_punch"))
        .args(args)
        .env("XDG_CONFIG_HOME", home)
        .env_remove("PUNCH_SERVER")
        .env_remove("PUNCH_CA_FILE")
        .output()
        .expect("punch runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_and_the_elements_trust_a_private_ca_only_when_told() {
    require("gst-launch-1.0", "gstreamer1.0-tools");
    let ca = TestCa::new("Punch private CA", &["localhost", "127.0.0.1"]);
    let srv = start(ServerConfig {
        trust_proxy: true,
        ..ServerConfig::default()
    })
    .await;
    let nginx = tokio::task::block_in_place(|| Nginx::start(&ca, srv.server.local_addr().port()));
    let public = format!("https://localhost:{}", nginx.port);
    let home = tempfile::tempdir().unwrap();
    let ca_file = ca.ca.display().to_string();

    // Without the CA the certificate is refused: verification cannot be skipped.
    let (ok, _, err) = tokio::task::block_in_place(|| {
        punch(
            home.path(),
            &["session", "create", "--server", &public, "tls"],
        )
    });
    assert!(!ok, "created without trusting the CA");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    let (ok, out, err) = tokio::task::block_in_place(|| {
        punch(
            home.path(),
            &[
                "session",
                "create",
                "--server",
                &public,
                "--ca-file",
                &ca_file,
                "tls",
            ],
        )
    });
    assert!(ok, "{out}\n{err}");
    let uris: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_once("uri   ").map(|(_, u)| u.trim()))
        .collect();
    assert!(
        uris.len() == 2 && uris.iter().all(|u| u.starts_with("punchs://localhost:")),
        "{out}"
    );
    let admin = out
        .lines()
        .find_map(|l| l.strip_prefix("Admin token (keep private): "))
        .unwrap()
        .to_string();
    let receiver_uri = uris[1].to_string();
    let (ok, out, err) = tokio::task::block_in_place(|| {
        punch(
            home.path(),
            &[
                "session",
                "show",
                "tls",
                "--server",
                &public,
                "--ca-file",
                &ca_file,
            ],
        )
    });
    assert!(ok && out.contains("WAITING"), "{out}\n{err}");

    // The element: refused without ca-file, registers with it.
    let out_dir = tempfile::tempdir().unwrap();
    let pipeline = |extra: &str| {
        format!(
            "gst-launch-1.0 punchsrc uri={} {extra} ! fakesink",
            sh_quote(&receiver_uri)
        )
    };
    // (a failing pipeline exits on its own: wait for it)
    let fails = |name: &str, extra: &str| {
        let mut p = Proc::shell(out_dir.path(), name, &pipeline(extra));
        let status = tokio::task::block_in_place(|| {
            let start = Instant::now();
            loop {
                if let Some(status) = p.child.try_wait().unwrap() {
                    break status;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "{name}: no failure:\n{}",
                    p.output()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        assert!(!status.success(), "{}", p.output());
        p.output()
    };
    let out = fails("without", "");
    assert!(
        out.to_lowercase().contains("certificate") && out.contains("ca-file"),
        "{out}"
    );
    let out = fails("unreadable", "ca-file=/nonexistent/ca.pem");
    assert!(
        out.contains("cannot set up TLS") && out.contains("/nonexistent/ca.pem"),
        "{out}"
    );
    let _with = Proc::shell(
        out_dir.path(),
        "with",
        &pipeline(&format!("ca-file={}", sh_quote(&ca_file))),
    );
    let rest = Rest::with(&public, WAIT, &Trust::with_ca_file(&ca.ca)).unwrap();
    let start = Instant::now();
    loop {
        let view = rest.session("tls", &admin).await.unwrap();
        if view.streams[0].receiver.status == punch::protocol::PeerStatus::Registered {
            break;
        }
        assert!(
            start.elapsed() < WAIT,
            "punchsrc with ca-file did not register:\n{}",
            _with.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(nginx);
    srv.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tunnel_goes_through_the_proxy_as_a_websocket() {
    require("gst-launch-1.0", "gstreamer1.0-tools");
    let ca = TestCa::new("Punch test CA", &["localhost", "127.0.0.1"]);
    let srv = start(ServerConfig {
        trust_proxy: true,
        ..ServerConfig::default()
    })
    .await;
    let nginx = tokio::task::block_in_place(|| Nginx::start(&ca, srv.server.local_addr().port()));
    let public = format!("https://localhost:{}", nginx.port);
    let rest = Rest::with(&public, WAIT, &Trust::with_ca_file(&ca.ca)).unwrap();
    let created = rest
        .create(&json!({"name": "proxied-tunnel"}), None)
        .await
        .unwrap();
    let uri = |role| {
        format!(
            "punchs://localhost:{}/proxied-tunnel/default?token={}",
            nginx.port,
            created.stream_tokens["default"].get(role)
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let received = dir.path().join("received.ts");
    let ca_file = sh_quote(&ca.ca.display().to_string());
    // both sides without UDP: everything, media included, through the proxy
    let _rx = Proc::shell(
        dir.path(),
        "receiver",
        &format!(
            "GST_PLUGIN_PATH={} gst-launch-1.0 -e punchsrc tunnel=true ca-file={ca_file} uri={} ! filesink location={}",
            sh_quote(&plugin_dir().display().to_string()),
            sh_quote(&uri(Role::Receiver)),
            sh_quote(&received.display().to_string())
        ),
    );
    let _tx = Proc::shell(
        dir.path(),
        "sender",
        &format!(
            "GST_PLUGIN_PATH={} {}",
            sh_quote(&plugin_dir().display().to_string()),
            camera_pipeline(&format!(
                "punchsink tunnel=true ca-file={ca_file} uri={}",
                sh_quote(&uri(Role::Sender))
            ))
        ),
    );
    let start = Instant::now();
    loop {
        let size = std::fs::metadata(&received).map(|m| m.len()).unwrap_or(0);
        let view = rest
            .session("proxied-tunnel", &created.token)
            .await
            .unwrap();
        if size > 50_000 && view.streams[0].path == Some(punch::protocol::MediaPath::Tunnel) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{size} bytes through the proxied tunnel, path {:?}\n{}\n{}",
            view.streams[0].path,
            _tx.output(),
            _rx.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(nginx);
    srv.server.shutdown().await;
}
