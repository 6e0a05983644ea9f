//! A stream with several receivers: one link per receiver slot, each paired on its own.

use super::*;

fn register_slot(role: Role, port: u16, slot: Option<u8>) -> ClientMessage {
    match register(Some("pgm"), role, port) {
        ClientMessage::Register(r) => ClientMessage::Register(Register {
            receiver: slot,
            ..r
        }),
        _ => unreachable!(),
    }
}

fn registered(fx: &Effects, conn: ConnId) -> Registered {
    sent_to(fx, conn)
        .into_iter()
        .find_map(|m| match m {
            ServerMessage::Registered(r) => Some(r.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no registered sent to {conn}"))
}

fn scope(role: Role) -> Scope {
    Scope::Stream {
        stream: "pgm".into(),
        role,
    }
}

#[test]
fn each_receiver_slot_is_its_own_link_from_the_sender() {
    let mut core = SessionCore::new(
        record(&["pgm", "pgm~2", "pgm~3", "cam"]),
        ConnLimits {
            per_side: 2,
            ..limits(32)
        },
        PathPolicy::default(),
    );
    // the sender's three registrations and three receivers: one receiver token for all
    for (conn, slot) in [(1, 1), (2, 2), (3, 3)] {
        core.attach(conn, ip("203.0.113.2"), scope(Role::Sender), 0)
            .unwrap();
        let fx = core.handle(
            conn,
            register_slot(Role::Sender, 9000 + conn as u16, Some(slot)),
            1,
        );
        let r = registered(&fx, conn);
        assert_eq!(
            (r.stream.as_str(), r.receiver, r.receivers),
            ("pgm", Some(slot), 3)
        );
    }
    for (conn, ip_s) in [
        (11, "198.51.100.1"),
        (12, "198.51.100.2"),
        (13, "198.51.100.3"),
    ] {
        core.attach(conn, ip(ip_s), scope(Role::Receiver), 2)
            .unwrap();
        let fx = core.handle(conn, register_slot(Role::Receiver, 7000, None), 3);
        let slot = (conn - 10) as u8;
        assert_eq!(
            registered(&fx, conn).receiver,
            Some(slot),
            "the next free slot"
        );
        // the sender's registration for that slot gets this receiver, and only that one
        let to_sender = peers_sent(&fx, slot as ConnId);
        assert_eq!(to_sender.len(), 1);
        assert_eq!((to_sender[0].ip.as_str(), to_sender[0].port), (ip_s, 7000));
        assert_eq!(to_sender[0].stream, "pgm");
        let to_receiver = peers_sent(&fx, conn);
        assert_eq!(to_receiver[0].port, 9000 + slot as u16);
    }
    // the cap is per side times the receivers: 2 × 3 for the receiver token
    for conn in 14..17 {
        core.attach(conn, ip("192.0.2.9"), scope(Role::Receiver), 4)
            .unwrap();
    }
    assert_eq!(
        core.attach(17, ip("192.0.2.9"), scope(Role::Receiver), 4)
            .unwrap_err()
            .code,
        ErrorCode::TooManyConnections
    );
    // a fourth receiver finds every slot taken
    let fx = core.handle(14, register_slot(Role::Receiver, 7000, None), 5);
    assert!(error_sent(&fx, 14, ErrorCode::SlotTaken).contains("all 3 receivers"));
    // a slot that does not exist
    let fx = core.handle(15, register_slot(Role::Receiver, 7000, Some(4)), 5);
    assert!(error_sent(&fx, 15, ErrorCode::UnknownStream).contains("3 receiver"));

    // the summary is per stream: pgm counts its links, the session is as its least stream
    let line = |core: &SessionCore| {
        core.summary()
            .streams
            .into_iter()
            .find(|s| s.name == "pgm")
            .unwrap()
    };
    assert_eq!(core.summary().streams.len(), 2, "links are not streams");
    assert_eq!((line(&core).receivers, line(&core).linked), (3, Some(0)));
    core.handle(
        12,
        ClientMessage::Status(StatusReport {
            srt: SrtStatus::Connected,
        }),
        6,
    );
    assert_eq!(line(&core).linked, Some(1));
    assert_eq!(line(&core).state, SessionState::Connected);

    // the view lists each receiver with its own state and both ends
    let view = core.view();
    let pgm = view.streams.iter().find(|s| s.name == "pgm").unwrap();
    assert_eq!(pgm.receivers.len(), 3);
    assert_eq!(
        pgm.receivers
            .iter()
            .map(|l| (l.receiver, l.state))
            .collect::<Vec<_>>(),
        vec![
            (1, SessionState::Ready),
            (2, SessionState::Connected),
            (3, SessionState::Ready)
        ]
    );
    assert_eq!(
        pgm.receivers[2].receiver_peer.address.as_ref().unwrap().ip,
        "198.51.100.3"
    );
    // the sender's health on each live link adds up to what it sends in all (link 1 is up too
    // now)
    core.handle(
        1,
        ClientMessage::Status(StatusReport {
            srt: SrtStatus::Connected,
        }),
        7,
    );
    for conn in [1, 2] {
        core.handle(
            conn,
            ClientMessage::Health(Health {
                bitrate: Some(2_000_000.0),
                ..Health::default()
            }),
            7,
        );
    }
    let view = core.view();
    let pgm = view.streams.iter().find(|s| s.name == "pgm").unwrap();
    assert_eq!(pgm.sent_bitrate, Some(4_000_000.0));

    // tally and cues reach every link's peers
    let fx = core.set_tally("pgm", TallyState::OnAir, 8).unwrap();
    for conn in [1, 2, 3, 11, 12, 13] {
        assert!(
            sent_to(&fx, conn)
                .iter()
                .any(|m| matches!(m, ServerMessage::Tally(t) if t.stream == "pgm" && t.state == TallyState::OnAir)),
            "tally to {conn}"
        );
    }
    // a link's record name is not a stream name users can reach
    assert!(core.set_tally("pgm~2", TallyState::Off, 8).is_err());

    // the summary carries each link's state: a receiver reads its own
    assert_eq!(
        line(&core).links,
        vec![
            SessionState::Connected,
            SessionState::Connected,
            SessionState::Ready
        ]
    );

    // receiver 2 leaves and comes back from where it was: its slot again, its sender re-paired
    core.detach(12, 9);
    assert_eq!(line(&core).linked, Some(1), "link 1 is still up");
    core.attach(20, ip("198.51.100.2"), scope(Role::Receiver), 10)
        .unwrap();
    let fx = core.handle(20, register_slot(Role::Receiver, 7000, None), 10);
    assert_eq!(registered(&fx, 20).receiver, Some(2));
    assert_eq!(peers_sent(&fx, 2)[0].port, 7000);
    assert!(peers_sent(&fx, 1).is_empty() && peers_sent(&fx, 3).is_empty());
}

#[test]
fn a_newcomer_does_not_take_the_slot_of_a_receiver_that_is_reconnecting() {
    let mut core = SessionCore::new(
        record(&["pgm", "pgm~2", "pgm~3"]),
        limits(32),
        PathPolicy::default(),
    );
    core.attach(1, ip("203.0.113.9"), scope(Role::Receiver), 0)
        .unwrap();
    core.handle(1, register_slot(Role::Receiver, 7001, None), 1);
    // its signalling drops (its SRT may go on); another monitor behind the same NAT arrives
    core.detach(1, 2);
    core.attach(2, ip("203.0.113.9"), scope(Role::Receiver), 3)
        .unwrap();
    let fx = core.handle(2, register_slot(Role::Receiver, 7002, None), 3);
    assert_eq!(
        registered(&fx, 2).receiver,
        Some(2),
        "a slot nobody held, not the one that is coming back"
    );
    // the first comes back with the slot it remembers
    core.attach(3, ip("203.0.113.9"), scope(Role::Receiver), 4)
        .unwrap();
    let fx = core.handle(3, register_slot(Role::Receiver, 7001, Some(1)), 4);
    assert_eq!(registered(&fx, 3).receiver, Some(1));
}

#[test]
fn the_stream_is_as_healthy_as_its_worst_link() {
    let mut core = SessionCore::new(record(&["pgm", "pgm~2"]), limits(32), PathPolicy::default());
    for (conn, role, port, slot) in [
        (1, Role::Sender, 9001, Some(1)),
        (2, Role::Sender, 9002, Some(2)),
        (11, Role::Receiver, 7001, None),
        (12, Role::Receiver, 7002, None),
    ] {
        core.attach(conn, ip("198.51.100.4"), scope(role), 0)
            .unwrap();
        core.handle(conn, register_slot(role, port, slot), 1);
    }
    for conn in [1, 2, 11, 12] {
        core.handle(
            conn,
            ClientMessage::Status(StatusReport {
                srt: SrtStatus::Connected,
            }),
            2,
        );
    }
    let health = |loss| {
        ClientMessage::Health(Health {
            rtt: Some(10.0),
            loss: Some(loss),
            bitrate: Some(1_000_000.0),
            ..Health::default()
        })
    };
    core.handle(11, health(0.0), 3);
    core.handle(12, health(8.0), 3);
    let view = core.view();
    let pgm = &view.streams[0];
    assert_eq!(pgm.level, Some(crate::protocol::HealthLevel::Red));
    assert!(
        pgm.level_reason
            .as_deref()
            .unwrap()
            .starts_with("receiver 2: "),
        "{:?}",
        pgm.level_reason
    );
    // a leg whose link is down counts nothing in the sender's total
    core.handle(1, health(0.0), 4);
    core.handle(2, health(0.0), 4);
    assert_eq!(core.view().streams[0].sent_bitrate, Some(2_000_000.0));
    for conn in [2, 12] {
        core.handle(
            conn,
            ClientMessage::Status(StatusReport {
                srt: SrtStatus::Disconnected,
            }),
            5,
        );
    }
    assert_eq!(core.view().streams[0].sent_bitrate, Some(1_000_000.0));
}

#[test]
fn a_sender_without_a_slot_links_with_receiver_one_and_devices_stay_on_single_streams() {
    let mut core = SessionCore::new(record(&["pgm", "pgm~2"]), limits(8), PathPolicy::default());
    core.attach(1, ip("203.0.113.2"), Scope::Admin, 0).unwrap();
    let fx = core.handle(1, register_slot(Role::Sender, 9000, None), 1);
    assert_eq!(registered(&fx, 1).receiver, Some(1));
    let err = core
        .set_side(
            "pgm",
            Role::Receiver,
            &crate::protocol::SideSpec {
                device: Some(crate::protocol::DeviceMode::Caller),
                ..Default::default()
            },
            "key".into(),
            None,
            2,
        )
        .unwrap_err();
    assert!(err.message.contains("several receivers"), "{}", err.message);
}
