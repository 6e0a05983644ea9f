//! The session core against abuse and faults: relay capacity, connections that never identify,
//! per-scope caps, what a stream token reads, addresses the STUN service did not see.

use super::*;
use crate::server::session::persist::StoreOp;

/// A stream of `core` relayed because of a symmetric NAT on the receiver's side; returns the
/// relay request's generation.
fn symmetric_pair(core: &mut SessionCore, now: i64) -> u64 {
    core.attach(1, ip("203.0.113.2"), Scope::Admin, now)
        .unwrap();
    core.attach(2, ip("198.51.100.2"), Scope::Admin, now)
        .unwrap();
    core.handle(
        1,
        register_nat(
            Role::Sender,
            9000,
            ("203.0.113.2", 24419),
            NatMapping::EndpointIndependent,
        ),
        now,
    );
    let fx = core.handle(
        2,
        register_nat(
            Role::Receiver,
            9000,
            ("198.51.100.2", 61000),
            NatMapping::EndpointDependent,
        ),
        now,
    );
    match fx.relay.as_slice() {
        [RelayOp::Start { generation, .. }] => *generation,
        other => panic!("expected a relay start, got {other:?}"),
    }
}

#[test]
fn a_stream_refused_for_relay_capacity_waits_and_asks_again_when_capacity_frees() {
    let mut core = SessionCore::new(record(&["cam"]), limits(8), PathPolicy::default());
    let generation = symmetric_pair(&mut core, 0);
    let fx = core.relay_failed(
        0,
        generation,
        &Refusal {
            capacity: true,
            message: "the server already relays 100 streams (--relay-max 100)".into(),
        },
    );
    // Meanwhile it tries direct, and says what it waits for.
    assert_eq!(peers_sent(&fx, 1).len(), 1);
    let reason = core.view().streams[0].path_reason.clone().unwrap();
    assert!(reason.contains("waiting for relay capacity"), "{reason}");
    assert!(core.waiting_for_relay());
    let fx = core.relay_capacity_freed();
    let [RelayOp::Start { generation, .. }] = fx.relay.as_slice() else {
        panic!("expected a new relay request, got {:?}", fx.relay)
    };
    assert!(!core.waiting_for_relay());
    let (current, fx) = core.relay_ready(0, *generation, [40000, 40001]);
    assert!(current);
    assert!(
        peers_sent(&fx, 1)
            .iter()
            .any(|p| p.relay && p.port == 40000)
    );
    assert_eq!(core.state(), SessionState::Relaying);
}

#[test]
fn a_stream_waiting_for_relay_capacity_keeps_a_direct_link_that_came_up() {
    let mut core = SessionCore::new(record(&["cam"]), limits(8), PathPolicy::default());
    let generation = symmetric_pair(&mut core, 0);
    core.relay_failed(
        0,
        generation,
        &Refusal {
            capacity: true,
            message: "the server already relays 100 streams (--relay-max 100)".into(),
        },
    );
    assert!(core.waiting_for_relay());
    // against the odds the direct attempt connects
    for conn in [1, 2] {
        core.handle(
            conn,
            ClientMessage::Status(StatusReport {
                srt: SrtStatus::Connected,
            }),
            1_000,
        );
    }
    assert!(!core.waiting_for_relay());
    let fx = core.relay_capacity_freed();
    assert!(
        fx.relay.is_empty(),
        "a working link was moved: {:?}",
        fx.relay
    );
    let view = core.view();
    assert_eq!(view.streams[0].path, Some(MediaPath::Direct));
    assert_eq!(view.streams[0].path_reason, None);
    assert_eq!(core.state(), SessionState::Connected);
}

#[test]
fn a_relay_is_released_as_soon_as_both_sides_have_left() {
    let mut core = SessionCore::new(record(&["cam"]), limits(8), PathPolicy::default());
    let generation = symmetric_pair(&mut core, 0);
    core.relay_ready(0, generation, [40000, 40001]);
    // One side leaving keeps it (its signalling may be reconnecting)...
    assert!(core.detach(1, 1).relay.is_empty());
    // ...the last one leaving frees it at once.
    let fx = core.detach(2, 2);
    assert_eq!(fx.relay, vec![RelayOp::Stop { stream: 0 }]);
    assert_eq!(core.view().streams[0].path, None);
}

#[test]
fn connections_that_neither_register_nor_watch_are_closed_and_keep_nothing_alive() {
    let mut core = SessionCore::new(record(&["cam"]), limits(8), PathPolicy::default());
    core.attach(1, ip("192.0.2.1"), Scope::Admin, 1_000)
        .unwrap();
    // An idle socket is not activity: the session's TTL runs on.
    assert_eq!(core.expires_ms(), Some(60_000));
    assert_eq!(core.next_deadline(), Some(6_000));
    assert!(core.tick(5_999).close.is_empty());
    let fx = core.tick(6_000);
    assert_eq!(fx.close.len(), 1);
    assert_eq!(fx.close[0].0, 1);
    assert!(fx.close[0].1.contains("within 5 s"), "{}", fx.close[0].1);
    assert!(
        sent_to(&fx, 1)
            .iter()
            .any(|m| matches!(m, ServerMessage::Error(e) if e.code == ErrorCode::NotRegistered))
    );

    // Watching or registering is what keeps a session alive.
    core.attach(2, ip("192.0.2.2"), Scope::Admin, 2_000)
        .unwrap();
    core.handle(2, ClientMessage::Watch, 2_000);
    assert_eq!(core.expires_ms(), None);
    let cam = Scope::Stream {
        stream: "cam".into(),
        role: Role::Sender,
    };
    // A stream token watches its own stream only (the camera-operator page).
    core.attach(3, ip("192.0.2.3"), cam, 2_000).unwrap();
    let fx = core.handle(3, ClientMessage::Watch, 2_000);
    assert!(fx.view_changed && sent_to(&fx, 3).is_empty());
    let (view, _) = core
        .watcher_views()
        .into_iter()
        .find(|(_, conns)| conns == &[3])
        .expect("a view for the stream token's page");
    let names: Vec<&str> = view.streams.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["cam"]);
}

#[test]
fn connections_are_bounded_per_token_scope() {
    let mut core = SessionCore::new(
        record(&["a", "b"]),
        ConnLimits {
            total: 10,
            admin: 2,
            per_side: 3,
            join: 2,
            identify_ms: 5_000,
        },
        PathPolicy::default(),
    );
    let a_sender = Scope::Stream {
        stream: "a".into(),
        role: Role::Sender,
    };
    for conn in 0..3 {
        core.attach(conn, ip("192.0.2.1"), a_sender.clone(), 0)
            .unwrap();
    }
    // One stream token's fourth socket is refused...
    let e = core.attach(3, ip("192.0.2.1"), a_sender, 0).unwrap_err();
    assert_eq!(e.code, ErrorCode::TooManyConnections);
    assert!(
        e.message.contains("sender of stream \"a\""),
        "{}",
        e.message
    );
    // ...and does not starve the admin or the other streams.
    core.attach(10, ip("192.0.2.9"), Scope::Admin, 0).unwrap();
    core.attach(11, ip("192.0.2.9"), Scope::Admin, 0).unwrap();
    assert!(core.attach(12, ip("192.0.2.9"), Scope::Admin, 0).is_err());
    let b_receiver = Scope::Stream {
        stream: "b".into(),
        role: Role::Receiver,
    };
    core.attach(20, ip("192.0.2.5"), b_receiver, 0).unwrap();
}

#[test]
fn a_stream_token_reads_its_own_stream_and_only_the_others_status() {
    let mut core = SessionCore::new(record(&["cam1", "cam2"]), limits(8), PathPolicy::default());
    let side = |stream: &str, role| Scope::Stream {
        stream: stream.into(),
        role,
    };
    core.attach(1, ip("203.0.113.2"), side("cam1", Role::Sender), 0)
        .unwrap();
    core.attach(2, ip("198.51.100.2"), side("cam1", Role::Receiver), 0)
        .unwrap();
    core.attach(3, ip("192.0.2.7"), side("cam2", Role::Receiver), 0)
        .unwrap();
    core.handle(
        1,
        register_nat(
            Role::Sender,
            9000,
            ("203.0.113.2", 24419),
            NatMapping::EndpointIndependent,
        ),
        0,
    );
    core.handle(3, register(Some("cam2"), Role::Receiver, 9000), 0);
    // cam2's receiver sees nothing of cam1.
    let v = core.view_for(&side("cam2", Role::Receiver));
    assert_eq!(v.streams.len(), 1);
    assert_eq!(v.streams[0].name, "cam2");
    // cam1's receiver, before it is paired, sees the sender's status only.
    let v = core.view_for(&side("cam1", Role::Receiver));
    let sender = &v.streams[0].sender;
    assert_eq!(sender.status, PeerStatus::Registered);
    assert!(sender.address.is_none() && sender.nat.is_none() && sender.meta.is_none());
    // Once it is the direct rendezvous peer, its address (it was sent it anyway).
    core.handle(2, register(Some("cam1"), Role::Receiver, 9001), 1);
    let v = core.view_for(&side("cam1", Role::Receiver));
    assert_eq!(
        v.streams[0].sender.address.as_ref().map(|a| a.port),
        Some(24419)
    );
    assert!(v.streams[0].sender.nat.is_none());
    assert!(
        v.streams[0].receiver.nat.is_none(),
        "no discovery was reported"
    );
    // The admin reads everything.
    let v = core.view_for(&Scope::Admin);
    assert_eq!(v.streams.len(), 2);
    assert!(v.streams[0].sender.nat.is_some());
    // cam2's receiver's counts are its stream's: the whole session is not its business.
    let v = core.view_for(&side("cam2", Role::Receiver));
    assert_eq!(
        (v.state, v.connected, v.total),
        (SessionState::Waiting, 0, 1)
    );

    // The `session` messages follow the same rule: cam1's side learns of a change in cam2
    // only as much as that its own stream is unchanged; cam2's side gets cam2 alone.
    core.attach(4, ip("192.0.2.8"), Scope::Admin, 2).unwrap();
    let fx = core.handle(4, register(Some("cam2"), Role::Sender, 9002), 3);
    let summaries = |conn| -> Vec<SessionUpdate> {
        sent_to(&fx, conn)
            .into_iter()
            .filter_map(|m| match m {
                ServerMessage::Session(u) => Some(u.clone()),
                _ => None,
            })
            .collect()
    };
    let cam2 = summaries(3);
    assert_eq!(cam2.len(), 1);
    assert_eq!(
        cam2[0]
            .streams
            .iter()
            .map(|s| &s.name[..])
            .collect::<Vec<_>>(),
        ["cam2"]
    );
    assert_eq!((cam2[0].state, cam2[0].total), (SessionState::Ready, 1));
    let cam1 = summaries(1);
    assert!(
        cam1.iter()
            .all(|u| u.streams.len() == 1 && u.streams[0].name == "cam1")
    );
    let admin = summaries(4);
    assert_eq!(admin[0].streams.len(), 2);
    assert_eq!(admin[0].total, 2);
}

#[test]
fn a_relay_that_never_carried_anything_is_not_given_again_until_a_side_registers() {
    let mut core = SessionCore::new(record(&["cam"]), limits(8), PathPolicy::default());
    let generation = symmetric_pair(&mut core, 0);
    core.relay_ready(0, generation, [40000, 40001]);
    let fx = core.relay_idle(0, generation, false, 60_000);
    assert_eq!(fx.relay, vec![RelayOp::Stop { stream: 0 }]);
    let v = core.view();
    assert_eq!(v.streams[0].path, None);
    assert!(
        v.streams[0]
            .path_reason
            .as_ref()
            .unwrap()
            .contains("carried nothing")
    );
    // The receiver registers again (its element restarted): a relay is asked for again.
    core.detach(2, 61_000);
    core.attach(3, ip("198.51.100.2"), Scope::Admin, 61_000)
        .unwrap();
    let fx = core.handle(
        3,
        register_nat(
            Role::Receiver,
            9000,
            ("198.51.100.2", 61001),
            NatMapping::EndpointDependent,
        ),
        61_000,
    );
    assert!(
        matches!(fx.relay.as_slice(), [RelayOp::Start { .. }]),
        "{:?}",
        fx.relay
    );
}

#[test]
fn an_unseen_mapping_is_taken_only_from_a_side_returning_to_its_address() {
    let mut core = SessionCore::new(record(&["cam"]), limits(8), PathPolicy::default());
    core.attach(1, ip("203.0.113.2"), Scope::Admin, 0).unwrap();
    core.attach(2, ip("198.51.100.2"), Scope::Admin, 0).unwrap();
    let sender = |port| {
        register_nat(
            Role::Sender,
            9000,
            ("203.0.113.2", port),
            NatMapping::EndpointIndependent,
        )
    };
    let not_verified = |fx: &Effects, conn| {
        sent_to(fx, conn).iter().any(
            |m| matches!(m, ServerMessage::Error(e) if e.code == ErrorCode::AddressNotVerified),
        )
    };
    // A first registration whose mapping the STUN service did not see: refused, the
    // signalling address and the declared port stand.
    let fx = core.handle_checked(1, sender(24419), false, 1);
    assert!(not_verified(&fx, 1));
    assert_eq!(
        core.view().streams[0].sender.address,
        Some(Endpoint {
            ip: "203.0.113.2".into(),
            port: 9000
        })
    );
    // Seen: taken; the stream pairs on it.
    let fx = core.handle_checked(1, sender(24419), true, 2);
    assert!(!not_verified(&fx, 1));
    core.handle(
        2,
        register_nat(
            Role::Receiver,
            9000,
            ("198.51.100.2", 9000),
            NatMapping::EndpointIndependent,
        ),
        3,
    );
    // The sender's signalling reconnects while its SRT holds the port: it cannot run STUN and
    // returns with the mapping it had. Taken, and the stream keeps its coordinates.
    core.detach(1, 4);
    core.attach(3, ip("203.0.113.2"), Scope::Admin, 5).unwrap();
    let fx = core.handle_checked(3, sender(24419), false, 6);
    assert!(!not_verified(&fx, 3));
    let to_receiver = peers_sent(&fx, 2);
    assert_eq!(
        (to_receiver[0].ip.as_str(), to_receiver[0].port),
        ("203.0.113.2", 24419)
    );
    // Another unseen address is still refused.
    let fx = core.handle_checked(3, sender(31000), false, 7);
    assert!(not_verified(&fx, 3));
}

#[test]
fn a_change_in_a_log_line_names_no_secret() {
    let mut rec = record(&["cam"]);
    rec.nonce = "NoNcE0123456".into();
    let secrets = [rec.nonce.clone(), rec.streams[0].passphrase.clone()];
    let line = StoreOp::Create(Box::new(rec)).to_string();
    assert_eq!(line, "creation of session show");
    for secret in secrets {
        assert!(!line.contains(&secret), "{line}");
    }
}
