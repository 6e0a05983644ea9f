//! The dashboard in a real headless Chromium (Debian's, driven by playwright-core): a session
//! whose punchsink and punchsrc are streaming turns green, its QR images load, the on-air button
//! makes `punch-tally` appear on the sender's bus, and a wrong token shows the error page; the
//! start page creates a session with the server's create key and opens its dashboard.
//! Screenshots are kept in the test's output directory (printed on success and failure).

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

/// The browser scripts' folder, with playwright-core installed.
fn browser_dir() -> std::path::PathBuf {
    require("chromium", "chromium");
    require("node", "nodejs");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci --prefix tests/browser` (scripts/test.sh does)"
    );
    dir
}

/// A directory for one browser test's screenshots and logs, kept after the test.
fn out_dir(prefix: &str) -> std::path::PathBuf {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .unwrap()
        .keep()
}

/// Starts `node SCRIPT` in the browser folder with `env` and `OUT_DIR=out`.
fn start_script(script: &str, env: &[(&str, &str)], out: &std::path::Path) -> Proc {
    let vars: String = env
        .iter()
        .map(|(name, value)| format!("{name}={} ", sh_quote(value)))
        .collect();
    Proc::shell(
        out,
        "browser",
        &format!(
            "cd {} && {vars}OUT_DIR={} exec node {script}",
            sh_quote(&browser_dir().display().to_string()),
            sh_quote(&out.display().to_string()),
        ),
    )
}

/// Runs `node SCRIPT` (see [`start_script`]) to its end; panics with its output unless it
/// succeeded and said OK.
fn run_script(script: &str, env: &[(&str, &str)], out: &std::path::Path) {
    let mut browser = start_script(script, env, out);
    finish_ok(&mut browser, out);
}

/// Waits for the browser script to end; panics with its output unless it said OK.
fn finish_ok(browser: &mut Proc, out: &std::path::Path) {
    let status = finish(browser);
    assert!(
        status.success() && browser.output().contains("OK"),
        "browser test failed ({status}); screenshots in {}\n{}",
        out.display(),
        browser.output()
    );
}

/// Waits (at most 120 s) for the browser script to end.
fn finish(browser: &mut Proc) -> std::process::ExitStatus {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = browser.child.try_wait().unwrap() {
            return status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the browser test did not finish:\n{}",
            browser.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn dashboard_goes_green_shows_qr_codes_and_its_tally_reaches_the_sender() {
    browser_dir();
    require("gst-launch-1.0", "gstreamer1.0-tools");
    let rt = runtime();
    let server = rt.block_on(start_default());
    let created = rt.block_on(create(
        &server.base,
        json!({ "name": "browser", "streams": ["cam1"] }),
    ));
    let admin = created["token"].as_str().unwrap().to_string();
    let uri = |role: &str| {
        format!(
            "punch://{}/browser/cam1?token={}",
            server.server.local_addr(),
            stream_token(&created, "cam1", role)
        )
    };
    let out = out_dir("punch-browser-");
    // -m prints every bus message: the tally shows up in the camera's log.
    let camera = Proc::shell(
        &out,
        "camera",
        &camera_pipeline(&format!("punchsink uri={}", sh_quote(&uri("sender")))).replacen(
            "gst-launch-1.0 -e",
            "gst-launch-1.0 -e -m",
            1,
        ),
    );
    let decoder = Proc::shell(
        &out,
        "decoder",
        &format!(
            "gst-launch-1.0 -e punchsrc uri={} ! fakesink",
            sh_quote(&uri("receiver"))
        ),
    );
    let bad = format!("{}/s/browser?t=pa.browser.wrong.token", server.base);
    let mut browser = start_script(
        "dashboard.mjs",
        &[
            ("DASHBOARD_URL", created["url"].as_str().unwrap()),
            ("BAD_URL", &bad),
            ("STREAM", "cam1"),
        ],
        &out,
    );
    let status = finish(&mut browser);
    let view = rt.block_on(get_session(&server.base, "browser", &admin)).1;
    assert!(
        status.success() && browser.output().contains("OK"),
        "browser test failed ({status}); screenshots and logs in {}\n{}\nview: {view}\ncamera:\n{}\ndecoder:\n{}",
        out.display(),
        browser.output(),
        camera.output(),
        decoder.output()
    );
    assert!(out.join("dashboard.png").exists() && out.join("error.png").exists());
    // The click reached the sender's element as a bus message.
    let start = std::time::Instant::now();
    while !camera
        .output()
        .contains("punch-tally, stream=(string)cam1, state=(string)on-air")
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no on-air punch-tally on the sender's bus:\n{}",
            camera.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(view["streams"][0]["tally"], "on-air");
    println!("screenshots in {}", out.display());
}

#[test]
fn the_start_page_passes_the_create_key_and_opens_the_new_dashboard() {
    browser_dir();
    let rt = runtime();
    let key = "browser-create-key-0123";
    let server = rt.block_on(start(punch::server::ServerConfig {
        create_key: Some(key.into()),
        ..punch::server::ServerConfig::default()
    }));
    let out = out_dir("punch-browser-create-");
    run_script(
        "create.mjs",
        &[
            ("START_URL", &format!("{}/", server.base)),
            ("KEY", key),
            ("NAME", "made-in-browser"),
        ],
        &out,
    );
    // the session exists on the server: its name is taken
    let (status, body) = rt.block_on(async {
        let resp = http()
            .post(format!("{}/api/session", server.base))
            .bearer_auth(key)
            .json(&json!({ "name": "made-in-browser" }))
            .send()
            .await
            .unwrap();
        (
            resp.status().as_u16(),
            resp.json::<serde_json::Value>().await.unwrap(),
        )
    });
    assert_eq!(status, 409, "{body}");
    println!("screenshots in {}", out.display());
}

#[test]
fn the_camera_operator_page_follows_tally_and_cues_and_shows_the_device_settings() {
    browser_dir();
    let rt = runtime();
    let server = rt.block_on(start_default());
    let created = rt.block_on(create(
        &server.base,
        json!({ "name": "op", "streams": ["cam1"] }),
    ));
    let sender = stream_token(&created, "cam1", "sender");
    let out = out_dir("punch-browser-operator-");
    run_script(
        "operator.mjs",
        &[
            ("OPERATOR_URL", &format!("{}/j/op?t={sender}", server.base)),
            ("DASHBOARD_URL", created["url"].as_str().unwrap()),
            ("BAD_URL", &format!("{}/j/op?t=not-a-token", server.base)),
            ("STREAM", "cam1"),
        ],
        &out,
    );
    assert!(out.join("operator-on-air.png").exists());
    println!("screenshots in {}", out.display());
}

#[test]
fn the_wall_of_an_eight_stream_session_fits_one_screen_and_opens_a_card() {
    browser_dir();
    let rt = runtime();
    let server = rt.block_on(start_default());
    let names: Vec<String> = (1..=8).map(|n| format!("cam{n}")).collect();
    let created = rt.block_on(create(
        &server.base,
        json!({ "name": "wall", "streams": names }),
    ));
    let admin = created["token"].as_str().unwrap().to_string();
    let (status, v) = rt.block_on(api_request(
        &server.base,
        reqwest::Method::POST,
        "/api/session/wall/tally",
        &admin,
        Some(json!({ "stream": "cam2", "state": "on-air" })),
    ));
    assert_eq!(status, 200, "{v}");
    let out = out_dir("punch-browser-wall-");
    run_script(
        "wall.mjs",
        &[
            ("DASHBOARD_URL", created["url"].as_str().unwrap()),
            ("ON_AIR", "cam2"),
        ],
        &out,
    );
    assert!(out.join("wall-1920x1080.png").exists());
    println!("screenshots in {}", out.display());
}

#[test]
fn a_peer_in_the_waiting_room_is_admitted_with_a_click() {
    use punch::protocol::{
        AdmissionState, ClientMessage, PeerMeta, Port, Register, Role, ServerMessage,
    };
    browser_dir();
    let rt = runtime();
    let server = rt.block_on(start_default());
    let created = rt.block_on(create(
        &server.base,
        json!({ "name": "room", "streams": ["cam1"], "join": true }),
    ));
    let join = created["join_token"].as_str().unwrap().to_string();
    let venue = format!("{}/j/room?t={join}", server.base);
    // two camera operators' peers wait with the venue token, one after the other
    let wait = |label: &'static str, port: u16| {
        let (base, join) = (server.base.clone(), join.clone());
        async move {
            let mut sig = connect(&base, "room", &join).await;
            sig.send(&ClientMessage::Register(Register {
                stream: None,
                port: Port(port),
                role: Role::Sender,
                meta: PeerMeta {
                    label: Some(label.into()),
                    ..Default::default()
                },
                nat: None,
                reports: true,
                receiver: None,
                tunnel: false,
            }))
            .await
            .unwrap();
            expect_msg(&mut sig, "admission waiting", |m| match m {
                ServerMessage::Admission(a) if a.state == AdmissionState::Waiting => Some(()),
                _ => None,
            })
            .await;
            sig
        }
    };
    let ana = rt.block_on(wait("Camera Ana", 9000));
    let ben = rt.block_on(wait("Camera Ben", 9001));
    let admitted = |mut sig: punch::client::Signalling| {
        rt.spawn(async move {
            let stream = expect_msg(&mut sig, "admission admitted", |m| match m {
                ServerMessage::Admission(a) if a.state == AdmissionState::Admitted => {
                    a.stream.clone()
                }
                _ => None,
            })
            .await;
            // (held open: the dashboard is to see the side registered)
            (stream, sig)
        })
    };
    let (ana, ben) = (admitted(ana), admitted(ben));
    let out = out_dir("punch-browser-admission-");
    run_script(
        "admission.mjs",
        &[
            ("DASHBOARD_URL", created["url"].as_str().unwrap()),
            ("VENUE_URL", &venue),
            ("STREAM", "cam1"),
            ("NEW_STREAM", "cam9"),
        ],
        &out,
    );
    assert_eq!(rt.block_on(ana).unwrap().0, "cam1", "Ana was told her side");
    assert_eq!(
        rt.block_on(ben).unwrap().0,
        "cam9",
        "Ben was told his new stream"
    );
    println!("screenshots in {}", out.display());
}

#[test]
fn a_stream_with_several_receivers_shows_each_link_and_what_the_sender_sends_in_all() {
    use punch::protocol::{ClientMessage, Health, Register, Role, SrtStatus, StatusReport};
    browser_dir();
    let rt = runtime();
    let server = rt.block_on(start_default());
    let created = rt.block_on(create(
        &server.base,
        json!({ "name": "fan", "streams": { "pgm": { "receivers": 3, "label": "PGM return" }, "cam1": null } }),
    ));
    let send = stream_token(&created, "pgm", "sender");
    let recv = stream_token(&created, "pgm", "receiver");
    let base = server.base.clone();
    // the sender's three legs and three receivers (each on its slot), two links up with health
    let peers = rt.block_on(async move {
        let mut all = Vec::new();
        for k in 1..=3u8 {
            for (token, role) in [(&send, Role::Sender), (&recv, Role::Receiver)] {
                let mut sig = connect(&base, "fan", token).await;
                let ClientMessage::Register(r) = register(Some("pgm"), role, 9000 + u16::from(k))
                else {
                    unreachable!()
                };
                // each side names its slot: registrations from separate connections may
                // reach the session in any order
                let receiver = Some(k);
                sig.send(&ClientMessage::Register(Register { receiver, ..r }))
                    .await
                    .unwrap();
                if k < 3 {
                    sig.send(&ClientMessage::Status(StatusReport {
                        srt: SrtStatus::Connected,
                    }))
                    .await
                    .unwrap();
                    sig.send(&ClientMessage::Health(Health {
                        rtt: Some(8.0),
                        bitrate: Some(2_500_000.0),
                        ..Health::default()
                    }))
                    .await
                    .unwrap();
                }
                all.push(sig);
            }
        }
        all
    });
    let out = out_dir("punch-browser-receivers-");
    run_script(
        "receivers.mjs",
        &[
            ("DASHBOARD_URL", created["url"].as_str().unwrap()),
            ("STREAM", "pgm"),
        ],
        &out,
    );
    drop(peers);
    println!("screenshots in {}", out.display());
}

/// The base64 SHA-256 of the SubjectPublicKeyInfo of the certificate in `cert` (what Chromium's
/// `--ignore-certificate-errors-spki-list` pins), by openssl.
fn spki_pin(cert: &std::path::Path) -> String {
    require("openssl", "openssl");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -in {} -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64",
            sh_quote(&cert.display().to_string())
        ))
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn the_dashboard_works_over_built_in_tls() {
    use punch::client::tls::Trust;
    browser_dir();
    let ca = common::certs::TestCa::new("Punch browser CA", &["localhost"]);
    let rt = runtime();
    let server = rt.block_on(start(punch::server::ServerConfig {
        tls: Some(punch::server::tls::TlsFiles {
            cert: ca.cert.clone(),
            key: ca.key.clone(),
        }),
        ..punch::server::ServerConfig::default()
    }));
    let base = format!("https://localhost:{}", server.server.local_addr().port());
    let rest = punch::client::rest::Rest::with(&base, WAIT, &Trust::with_ca_file(&ca.ca)).unwrap();
    let created = rt
        .block_on(rest.create(&json!({ "name": "secure" }), None))
        .unwrap();
    let out = out_dir("punch-browser-https-");
    run_script(
        "https.mjs",
        &[
            ("DASHBOARD_URL", &created.url),
            ("TRUST_SPKI", &spki_pin(&ca.cert)),
        ],
        &out,
    );
    println!("screenshots in {}", out.display());
}

#[test]
fn the_dashboard_follows_its_session_to_the_node_that_took_it_over() {
    browser_dir();
    let mut cluster = common::cluster::Cluster::start(3, &[]);
    let rt = runtime();
    let created = rt.block_on(create(&cluster.lb.base, json!({ "name": "moving" })));
    let admin = created["token"].as_str().unwrap().to_string();
    let owner = rt
        .block_on(get_session(&cluster.lb.base, "moving", &admin))
        .1["node"]
        .as_str()
        .expect("the view names its node")
        .to_string();
    let out = out_dir("punch-failover-");
    let mut browser = start_script(
        "failover.mjs",
        &[
            ("DASHBOARD_URL", created["url"].as_str().unwrap()),
            ("OWNER", &owner),
        ],
        &out,
    );
    browser.wait_for("READY", Duration::from_secs(60));
    cluster.kill(&owner);
    finish_ok(&mut browser, &out);
    // within the documented failover time (the lease, and the dashboard's first reconnect)
    let output = browser.output();
    let moved = output
        .lines()
        .find_map(|l| l.split("MOVED to ").nth(1))
        .expect("the script says where the session went");
    let ms: u64 = moved
        .split(" after ")
        .nth(1)
        .and_then(|t| t.trim_end_matches(" ms").parse().ok())
        .unwrap_or_else(|| panic!("no time in {moved:?}"));
    assert!(
        ms < 8_000,
        "the dashboard showed the new node after {ms} ms"
    );
    println!("moved to {moved}; screenshots in {}", out.display());
}
