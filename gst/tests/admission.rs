//! The elements in the waiting room: a punchsrc with the session's join token waits (posting
//! `punch-admission`), starts receiving once the producer admits it, and fails with an error
//! naming the rejection when turned down. Real server, real pipelines.

mod common;

use common::*;
use serde_json::json;

fn admission(rx: &gst::Pipeline, state: &str) -> gst::Structure {
    wait_msg(rx, &format!("punch-admission {state}"), |m| {
        element_msg(m, "punch-admission").filter(|s| s.get::<&str>("state") == Ok(state))
    })
}

#[test]
fn a_punchsrc_with_the_join_token_waits_then_receives_once_admitted_or_fails_when_rejected() {
    let env = Env::new();
    let created = env.create(json!({ "name": "venue", "join": true }));
    let admin = created["token"].as_str().unwrap().to_string();
    let join_uri = format!(
        "punch://{}/venue/default?token={}",
        env.addr,
        created["join_token"].as_str().unwrap()
    );
    let (rx, sink, _) = receiver(&join_uri);
    play(&rx);
    let waiting = admission(&rx, "waiting");
    let peer = waiting.get::<&str>("peer").unwrap().to_string();
    let (tx, src, _) = sender(&env.uri(&created, "default", "sender"));
    play(&tx);
    // waiting is not failing: no media, no error, until the producer decides
    assert!(
        sink.try_pull_sample(gst::ClockTime::from_mseconds(500))
            .is_none()
    );
    let (status, v) = env.request(
        punch::client::rest::Method::POST,
        "/api/session/venue/admission",
        &admin,
        Some(json!({ "peer": peer, "stream": "default" })),
    );
    assert_eq!(status, 200, "{v}");
    let admitted = admission(&rx, "admitted");
    assert_eq!(admitted.get::<&str>("stream").unwrap(), "default");
    let pusher = std::thread::spawn(move || push_chunks(&src, 0, 5000));
    let got = pull_chunks(&sink, 100, WAIT);
    assert_eq!(got.len(), 100, "media flows once admitted");
    stop(&tx);
    pusher.join().unwrap();
    stop(&rx);

    // The next one is turned down: an element error that says so.
    let (rx2, _sink2, _) = receiver(&join_uri);
    play(&rx2);
    let peer2 = admission(&rx2, "waiting")
        .get::<&str>("peer")
        .unwrap()
        .to_string();
    let (status, v) = env.request(
        punch::client::rest::Method::POST,
        "/api/session/venue/admission",
        &admin,
        Some(json!({ "peer": peer2, "reject": true })),
    );
    assert_eq!(status, 200, "{v}");
    admission(&rx2, "rejected");
    let (err, debug) = wait_error(&rx2, WAIT);
    assert!(
        err.to_string().contains("turned this peer down"),
        "{err} ({debug})"
    );
    stop(&rx2);
}
