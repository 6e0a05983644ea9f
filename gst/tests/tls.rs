//! The elements over `punchs://` to a server with built-in TLS (`--tls-cert`, `--tls-key`): a
//! CA and a certificate for `localhost` made inside the test; media flows with `ca-file`, and a
//! wrong CA or a wrong host name is an element error that names the host and the reason.

#[allow(dead_code)]
#[path = "../../tests/common/certs.rs"]
mod certs;
mod common;

use std::time::Duration;

use certs::TestCa;
use common::*;
use gst::prelude::*;
use punch::server::ServerConfig;
use punch::server::tls::TlsFiles;
use serde_json::{Value, json};

fn tls_env(ca: &TestCa) -> Env {
    Env::with_config(ServerConfig {
        tls: Some(TlsFiles {
            cert: ca.cert.clone(),
            key: ca.key.clone(),
        }),
        ..ServerConfig::default()
    })
}

/// The `punchs://` URI of one side, at `host`.
fn uri(env: &Env, created: &Value, host: &str, role: &str) -> String {
    let token = created["stream_tokens"]["default"][role].as_str().unwrap();
    format!(
        "punchs://{host}:{}/{}/default?token={token}",
        env.addr.port(),
        created["session"].as_str().unwrap()
    )
}

/// Creates a session over HTTPS, trusting `ca`.
fn create(env: &Env, ca: &TestCa, name: &str) -> Value {
    let rest = punch::client::rest::Rest::with(
        &format!("https://localhost:{}", env.addr.port()),
        WAIT,
        &punch::client::tls::Trust::with_ca_file(&ca.ca),
    )
    .unwrap();
    let created = env
        .rt
        .block_on(rest.create(&json!({ "name": name }), None))
        .expect("created over HTTPS");
    serde_json::to_value(created).unwrap()
}

#[test]
fn media_flows_over_punchs_with_the_private_ca() {
    let ca = TestCa::new("Punch test CA", &["localhost"]);
    let env = tls_env(&ca);
    let created = create(&env, &ca, "tls-media");
    assert!(
        created["url"]
            .as_str()
            .unwrap()
            .starts_with("https://localhost:"),
        "links are https: {created}"
    );
    let (tx, src, punch_tx) = sender(&uri(&env, &created, "localhost", "sender"));
    let (rx, sink, punch_rx) = receiver(&uri(&env, &created, "localhost", "receiver"));
    for e in [&punch_tx, &punch_rx] {
        e.set_property("ca-file", ca.ca.display().to_string());
    }
    play(&rx);
    play(&tx);
    wait_connected(&tx);
    let pusher = std::thread::spawn(move || push_chunks(&src, 0, 300));
    let got = pull_chunks(&sink, 100, WAIT);
    assert!(
        got.len() >= 100,
        "{} chunks arrived over the TLS-signalled link",
        got.len()
    );
    pusher.join().unwrap();
    stop(&tx);
    stop(&rx);
}

#[test]
fn a_wrong_ca_or_host_name_is_an_element_error_naming_host_and_reason() {
    let ca = TestCa::new("Punch test CA", &["localhost"]);
    let other = TestCa::new("Someone else's CA", &["localhost"]);
    let env = tls_env(&ca);
    let created = create(&env, &ca, "tls-wrong");
    for (host, trust, says) in [
        ("localhost", &other, "unknown issuer"),
        ("127.0.0.1", &ca, "name mismatch"),
    ] {
        // (`expired` below, on a server of its own)
        let (rx, _sink, punch) = receiver(&uri(&env, &created, host, "receiver"));
        punch.set_property("ca-file", trust.ca.display().to_string());
        play(&rx);
        let (err, text) = wait_error(&rx, Duration::from_secs(40));
        stop(&rx);
        assert!(
            err.matches(gst::ResourceError::OpenRead) || err.matches(gst::ResourceError::Settings),
            "{err:?}"
        );
        assert!(
            text.contains(&format!("wss://{host}:{}", env.addr.port())) && text.contains(says),
            "the error names {host} and {says:?}: {text}"
        );
    }
    drop(env);
    // a certificate past its end date
    let old = TestCa::expired("Punch test CA", &["localhost"]);
    let env = tls_env(&old);
    let token = "pa.x.y.z";
    let (rx, _sink, punch) = receiver(&format!(
        "punchs://localhost:{}/tls-wrong/default?token={token}",
        env.addr.port()
    ));
    punch.set_property("ca-file", old.ca.display().to_string());
    play(&rx);
    let (_, text) = wait_error(&rx, Duration::from_secs(40));
    stop(&rx);
    assert!(
        text.contains("localhost") && text.contains("expired"),
        "the error names the host and that the certificate expired: {text}"
    );
}
