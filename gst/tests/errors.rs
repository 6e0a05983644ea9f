//! Every error a person can act on: produced for real, its message checked.

mod common;

use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;
use serde_json::json;

#[test]
fn bad_uris_are_refused_with_the_reason() {
    init();
    let src = gst::ElementFactory::make("punchsrc").build().unwrap();
    let handler = src.dynamic_cast_ref::<gst::URIHandler>().unwrap();
    for (uri, needle) in [
        ("punch://example.org:8787", "names no session"),
        ("punch://example.org:8787/show", "has no token"),
        ("punch://example.org:99999/show?token=t", "invalid port"),
        (
            "punch://example.org/show?token=t&colour=red",
            "unknown URI parameter \"colour\"",
        ),
    ] {
        let err = handler.set_uri(uri).unwrap_err();
        assert!(err.matches(gst::URIError::BadUri), "{uri}: {err}");
        assert!(err.to_string().contains(needle), "{uri}: {err}");
    }
    let err = handler.set_uri("srt://example.org:9000").unwrap_err();
    assert!(err.matches(gst::URIError::UnsupportedProtocol), "{err}");

    // playbin / uridecodebin find the elements through their URI handler
    let made =
        gst::Element::make_from_uri(gst::URIType::Src, "punch://h:1/show?token=t", None).unwrap();
    assert_eq!(made.factory().unwrap().name(), "punchsrc");
    let made = gst::Element::make_from_uri(gst::URIType::Sink, "punchs://h/show/cam?token=t", None)
        .unwrap();
    assert_eq!(made.factory().unwrap().name(), "punchsink");
    assert_eq!(made.property::<String>("server"), "https://h:443");

    // an element with nothing to join fails at NULL→READY, saying what to set
    let p = gst::parse::launch("punchsrc ! fakesink")
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    assert!(p.set_state(gst::State::Ready).is_err());
    let (err, text) = wait_error(&p, WAIT);
    assert!(err.matches(gst::ResourceError::Settings), "{err}");
    assert!(
        text.contains("no Punch server") && text.contains("uri=punch://"),
        "{text}"
    );
    stop(&p);
}

#[test]
fn unreachable_server_is_named_after_a_bounded_retry() {
    init();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (p, _, _) = receiver(&format!("punch://127.0.0.1:{port}/show?token=t"));
    let start = Instant::now();
    play(&p);
    let (err, text) = wait_error(&p, Duration::from_secs(30));
    assert!(err.matches(gst::ResourceError::OpenRead), "{err}");
    assert!(
        text.contains(&format!(
            "cannot reach the Punch server at ws://127.0.0.1:{port}"
        )),
        "{text}"
    );
    assert!(text.contains("gave up after 5 attempts"), "{text}");
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "bounded: {:?}",
        start.elapsed()
    );
    stop(&p);
}

#[test]
fn refused_token_is_not_authorized() {
    let env = Env::new();
    let created = env.create(json!({ "name": "tokens" }));
    let other = env.create(json!({ "name": "other" }));
    let forged = format!("{}AAAA", &created["token"].as_str().unwrap()[..20]);
    for (token, needle) in [
        (forged.as_str(), "401"),
        (other["token"].as_str().unwrap(), "403"),
    ] {
        let (p, _, _) = sender(&format!("punch://{}/tokens?token={token}", env.addr));
        play(&p);
        let (err, text) = wait_error(&p, WAIT);
        assert!(err.matches(gst::ResourceError::NotAuthorized), "{err}");
        assert!(text.contains(needle) && text.contains("tokens"), "{text}");
        stop(&p);
    }
    // a stream token used for the other side is refused at registration
    let (p, _, _) = receiver(&format!(
        "punch://{}/tokens?token={}",
        env.addr,
        created["stream_tokens"]["default"]["sender"]
            .as_str()
            .unwrap()
    ));
    play(&p);
    let (err, text) = wait_error(&p, WAIT);
    assert!(err.matches(gst::ResourceError::NotAuthorized), "{err}");
    assert!(text.contains("cannot register as receiver"), "{text}");
    stop(&p);
}

#[test]
fn closed_and_unknown_sessions_are_not_found() {
    let env = Env::new();
    let created = env.create(json!({ "name": "closing", "streams": ["cam1"] }));
    let admin = created["token"].as_str().unwrap().to_string();
    let (p, _, _) = sender(&env.uri(&created, "cam1", "sender"));
    play(&p);
    wait_msg(&p, "registered", |m| element_msg(m, "punch-session"));
    let (status, _) = env.request(
        punch::client::rest::Method::DELETE,
        "/api/session/closing",
        &admin,
        None,
    );
    assert_eq!(status, 200);
    let (err, text) = wait_error(&p, WAIT);
    assert!(err.matches(gst::ResourceError::NotFound), "{err}");
    assert!(text.contains("was closed (closed by operator)"), "{text}");
    stop(&p);
    // joining it afterwards: gone
    let (p, _, _) = sender(&env.uri(&created, "cam1", "sender"));
    play(&p);
    let (err, text) = wait_error(&p, WAIT);
    assert!(err.matches(gst::ResourceError::NotFound), "{err}");
    assert!(text.contains("410"), "{text}");
    stop(&p);
    // a stream the session does not have
    let live = env.create(json!({ "name": "live" }));
    let (p, _, _) = sender(&format!(
        "punch://{}/live/nope?token={}",
        env.addr,
        live["token"].as_str().unwrap()
    ));
    play(&p);
    let (err, text) = wait_error(&p, WAIT);
    assert!(err.matches(gst::ResourceError::NotFound), "{err}");
    assert!(text.contains("no stream \"nope\""), "{text}");
    stop(&p);
}

#[test]
fn no_peer_within_peer_timeout() {
    let env = Env::new();
    let created = env.create(json!({ "name": "lonely" }));
    let (p, _, _) = receiver(&format!(
        "{}&peer-timeout=1",
        env.uri(&created, "default", "receiver")
    ));
    let start = Instant::now();
    play(&p);
    let (err, text) = wait_error(&p, WAIT);
    assert!(err.matches(gst::ResourceError::OpenRead), "{err}");
    assert!(
        text.contains("No peer joined stream default of session lonely within 1 s"),
        "{text}"
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    stop(&p);
}

#[test]
fn second_sender_on_a_stream_is_busy() {
    let env = Env::new();
    let created = env.create(json!({ "name": "busy" }));
    let (a, _, _) = sender(&env.uri(&created, "default", "sender"));
    play(&a);
    wait_msg(&a, "registered", |m| element_msg(m, "punch-session"));
    let (b, _, _) = sender(&env.uri(&created, "default", "sender"));
    play(&b);
    let (err, text) = wait_error(&b, WAIT);
    assert!(err.matches(gst::ResourceError::Busy), "{err}");
    assert!(text.contains("already has a sender"), "{text}");
    stop(&b);
    stop(&a);
}

/// A hand-configured srtsink with another passphrase: the 1.22 warning flood on the receiver
/// becomes exactly one clear error.
#[test]
fn wrong_passphrase_is_one_clear_error() {
    let env = Env::new();
    let created = env.create(json!({ "name": "pass" }));
    let src_port = free_udp_port();
    let token = created["stream_tokens"]["default"]["sender"]
        .as_str()
        .unwrap()
        .to_string();
    let base = env.base();
    let mut fake = env
        .rt
        .block_on(punch::client::Signalling::connect(
            &base, "pass", &token, WAIT,
        ))
        .expect("fake sender connects");
    let (rx, _, _) = receiver(&format!(
        "{}&local-port={src_port}",
        env.uri(&created, "default", "receiver")
    ));
    play(&rx);
    // libsrt 1.5.1 reports a mismatch only on the side that checks the key, which the rendezvous
    // cookies (a hash of the addresses and the current minute) choose: if the bare sink is the
    // one, try again from another port.
    let mut found = None;
    for _ in 0..10 {
        let sink_port = free_udp_port();
        env.rt
            .block_on(fake.send(&punch::protocol::ClientMessage::Register(
                punch::protocol::Register {
                    stream: None,
                    port: punch::protocol::Port(sink_port),
                    role: punch::protocol::Role::Sender,
                    meta: Default::default(),
                    nat: None,
                    reports: true,
                    receiver: None,
                    tunnel: false,
                },
            )))
            .unwrap();
        let bare = gst::parse::launch(&format!(
            "fakesrc is-live=true sizetype=fixed sizemax=1316 filltype=zero format=time datarate=131600 \
             ! srtsink uri=\"srt://127.0.0.1:{src_port}?mode=rendezvous&localaddress=0.0.0.0&localport={sink_port}&passphrase=notthesessionspassphrase&pbkeylen=16\""
        ))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        play(&bare);
        found = rx
            .bus()
            .unwrap()
            .timed_pop_filtered(gst::ClockTime::from_seconds(3), &[gst::MessageType::Error])
            .and_then(|m| match m.view() {
                gst::MessageView::Error(e) => Some(e.error()),
                _ => None,
            });
        stop(&bare);
        if found.is_some() {
            break;
        }
    }
    let err = found.expect("the wrong passphrase was reported");
    let text = err.to_string();
    assert!(err.matches(gst::ResourceError::NotAuthorized), "{err}");
    assert!(text.contains("Wrong SRT passphrase"), "{text}");
    // no flood: nothing but that one error and no warnings from the SRT element reach the bus
    std::thread::sleep(Duration::from_millis(500));
    let bus = rx.bus().unwrap();
    let mut extra = Vec::new();
    while let Some(m) = bus.pop_filtered(&[gst::MessageType::Error, gst::MessageType::Warning]) {
        extra.push(format!("{m:?}"));
    }
    assert!(extra.is_empty(), "more errors or warnings: {extra:?}");
    stop(&rx);
    drop(fake);
}

#[test]
fn null_returns_promptly_while_connecting() {
    let env = Env::new();
    let created = env.create(json!({ "name": "prompt" }));
    for uri in [
        env.uri(&created, "default", "receiver"),
        "punch://10.255.255.1:9/x?token=t".to_string(),
    ] {
        let (p, _, _) = receiver(&uri);
        play(&p);
        std::thread::sleep(Duration::from_millis(300));
        stop(&p);
    }
}

/// Without srtsrc installed the element says which Debian package to install.
#[test]
fn missing_srt_element_names_the_debian_package() {
    init();
    let plugin_dir = tempfile::tempdir().unwrap();
    let ours =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/libgstpunch.so");
    let system = gst::Registry::get()
        .find_plugin("coreelements")
        .and_then(|p| p.filename())
        .expect("GStreamer's coreelements plugin");
    assert!(ours.exists(), "{} not built", ours.display());
    std::os::unix::fs::symlink(&ours, plugin_dir.path().join("libgstpunch.so")).unwrap();
    std::os::unix::fs::symlink(system, plugin_dir.path().join("libgstcoreelements.so")).unwrap();
    let out = std::process::Command::new("gst-launch-1.0")
        .args([
            "punchsrc",
            "uri=punch://127.0.0.1:1/x?token=t",
            "!",
            "fakesink",
        ])
        .env("GST_PLUGIN_SYSTEM_PATH_1_0", plugin_dir.path())
        .env("GST_PLUGIN_PATH_1_0", plugin_dir.path())
        .env("GST_REGISTRY_1_0", plugin_dir.path().join("registry.bin"))
        .env_remove("GST_PLUGIN_PATH")
        .output()
        .expect("gst-launch-1.0 runs (gstreamer1.0-tools)");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("'srtsrc' is not installed") && text.contains("gstreamer1.0-plugins-bad"),
        "{text}"
    );
}

/// srtsrc cannot bind its port: the bin restarts it with backoff and recovers once the port is
/// free; with the port never freed it gives up with one clear error.
#[test]
fn failing_inner_element_is_restarted_then_given_up() {
    let env = Env::new();
    let created = env.create(json!({ "name": "inner-fail" }));
    let holder = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let (tx, src, _) = sender(&env.uri(&created, "default", "sender"));
    let (rx, sink, _) = receiver(&format!(
        "{}&local-port={port}",
        env.uri(&created, "default", "receiver")
    ));
    play(&tx);
    play(&rx);
    let pusher = std::thread::spawn(move || push_chunks(&src, 0, 3000));
    assert!(
        pull_chunks(&sink, 1, Duration::from_millis(500)).is_empty(),
        "srtsrc cannot bind yet"
    );
    drop(holder);
    let got = pull_chunks(&sink, 50, WAIT);
    assert_eq!(got.len(), 50, "media flows once the port is free");
    let bus = rx.bus().unwrap();
    assert!(
        bus.pop_filtered(&[gst::MessageType::Error]).is_none(),
        "restarts are not errors"
    );
    stop(&rx);
    stop(&tx);
    pusher.join().unwrap();

    // never freed: five failures, then one error naming the cause
    let holder = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let (tx, _, _) = sender(&env.uri(&created, "default", "sender"));
    let (rx, _, _) = receiver(&format!(
        "{}&local-port={port}",
        env.uri(&created, "default", "receiver")
    ));
    play(&tx);
    play(&rx);
    let (err, text) = wait_error(&rx, WAIT);
    assert!(err.matches(gst::ResourceError::Failed), "{err}");
    assert!(text.contains("keeps failing (5 times"), "{text}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        rx.bus()
            .unwrap()
            .pop_filtered(&[gst::MessageType::Error])
            .is_none(),
        "one error only"
    );
    stop(&rx);
    stop(&tx);
    drop(holder);
}

#[test]
fn eos_before_any_peer_still_finishes_the_pipeline() {
    let env = Env::new();
    let created = env.create(json!({ "name": "eos" }));
    let (tx, src, _) = sender(&env.uri(&created, "default", "sender"));
    play(&tx);
    wait_msg(&tx, "registered", |m| element_msg(m, "punch-session"));
    src.end_of_stream().unwrap();
    wait_msg(&tx, "EOS", |m| {
        matches!(m.view(), gst::MessageView::Eos(_)).then_some(())
    });
    stop(&tx);
}

#[test]
fn an_invalid_uri_property_is_reported_at_start() {
    init();
    let p = gst::parse::launch("punchsrc uri=punch://example.org:8787 ! fakesink")
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    assert!(p.set_state(gst::State::Playing).is_err());
    let (err, text) = wait_error(&p, WAIT);
    assert!(err.matches(gst::ResourceError::Settings), "{err}");
    assert!(
        text.contains("invalid uri") && text.contains("names no session"),
        "{text}"
    );
    stop(&p);
}
