//! Unit tests of the session core: no sockets, no tasks, time passed in.

use std::net::IpAddr;

use super::core::{ConnLimits, SessionCore};
use super::effects::{ConnId, Effects, RelayOp, Target};
use super::model::{SessionRecord, StreamRecord};
use super::path::PathPolicy;
use crate::protocol::{
    ClientMessage, Endpoint, ErrorCode, Health, MediaPath, NatMapping, NatReport, PeerInfo,
    PeerMeta, PeerStatus, Port, Register, Registered, Role, ServerMessage, SessionState,
    SessionUpdate, SrtStatus, StatusReport, TallyState,
};
use crate::server::relay::{Admission, Refusal};
use crate::server::token::Scope;

/// Connection limits of `total`, the other limits out of the way.
fn limits(total: usize) -> ConnLimits {
    ConnLimits {
        total,
        admin: total,
        per_side: total,
        join: total,
        identify_ms: 5_000,
    }
}

pub(crate) fn record(streams: &[&str]) -> SessionRecord {
    SessionRecord {
        name: "show".into(),
        nonce: "n".into(),
        created_ms: 0,
        ttl_s: 60,
        latency: 200,
        pbkeylen: 16,
        last_activity_ms: 0,
        creator: None,
        public_host: Some("punch.example".into()),
        join: true,
        streams: streams
            .iter()
            .map(|s| StreamRecord {
                name: s.to_string(),
                label: None,
                role: None,
                audio: None,
                passphrase: format!("pass-{s}-0123456789"),
                latency: 200,
                tally: TallyState::Off,
                sender: None,
                receiver: None,
                devices: [None, None],
            })
            .collect(),
    }
}

fn register(stream: Option<&str>, role: Role, port: u16) -> ClientMessage {
    ClientMessage::Register(Register {
        stream: stream.map(String::from),
        port: Port(port),
        role,
        meta: PeerMeta::default(),
        nat: None,
        reports: true,
        receiver: None,
        tunnel: false,
    })
}

fn sent_to(fx: &Effects, conn: ConnId) -> Vec<&ServerMessage> {
    fx.out
        .iter()
        .filter(|(t, _)| match t {
            Target::Conn(c) => *c == conn,
            Target::Conns(cs) => cs.contains(&conn),
            Target::All => true,
        })
        .map(|(_, m)| m)
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn both_sides_get_each_others_coordinates_and_one_passphrase() {
    let mut core = SessionCore::new(record(&["cam"]), limits(8), PathPolicy::default());
    core.attach(1, ip("203.0.113.2"), Scope::Admin, 0).unwrap();
    core.attach(2, ip("198.51.100.2"), Scope::Admin, 0).unwrap();
    let fx = core.handle(1, register(None, Role::Sender, 9000), 1);
    assert!(matches!(
        sent_to(&fx, 1)[0],
        ServerMessage::Registered(Registered { peer: None, .. })
    ));
    assert_eq!(core.state(), SessionState::Waiting);

    let fx = core.handle(2, register(Some("cam"), Role::Receiver, 9001), 2);
    let to_sender: Vec<_> = sent_to(&fx, 1)
        .into_iter()
        .filter_map(|m| match m {
            ServerMessage::Peer(p) => Some(p.clone()),
            _ => None,
        })
        .collect();
    let to_receiver: Vec<_> = sent_to(&fx, 2)
        .into_iter()
        .filter_map(|m| match m {
            ServerMessage::Peer(p) => Some(p.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        (to_sender[0].ip.as_str(), to_sender[0].port),
        ("198.51.100.2", 9001)
    );
    assert_eq!(
        (to_receiver[0].ip.as_str(), to_receiver[0].port),
        ("203.0.113.2", 9000)
    );
    assert_eq!(to_sender[0].passphrase, to_receiver[0].passphrase);
    assert_eq!(core.state(), SessionState::Ready);

    core.handle(
        1,
        ClientMessage::Status(StatusReport {
            srt: SrtStatus::Connected,
        }),
        3,
    );
    // One side's report is enough: the link is up (the other may be a third-party tool).
    assert_eq!(core.state(), SessionState::Connected);
    core.handle(
        2,
        ClientMessage::Status(StatusReport {
            srt: SrtStatus::Connected,
        }),
        4,
    );
    assert_eq!(core.state(), SessionState::Connected);

    // the receiver leaves: back to WAITING, and a newcomer takes the slot over
    core.detach(2, 5);
    assert_eq!(core.state(), SessionState::Waiting);
    core.attach(3, ip("192.0.2.7"), Scope::Admin, 6).unwrap();
    let fx = core.handle(3, register(None, Role::Receiver, 7000), 7);
    assert!(
        sent_to(&fx, 1)
            .iter()
            .any(|m| matches!(m, ServerMessage::Peer(p) if p.ip == "192.0.2.7" && p.port == 7000))
    );
    assert_eq!(core.state(), SessionState::Ready);
}

#[test]
fn refusals() {
    let mut core = SessionCore::new(record(&["a", "b"]), limits(3), PathPolicy::default());
    let stream_b_sender = Scope::Stream {
        stream: "b".into(),
        role: Role::Sender,
    };
    core.attach(1, ip("127.0.0.1"), Scope::Admin, 0).unwrap();
    core.attach(2, ip("127.0.0.1"), stream_b_sender, 0).unwrap();
    core.attach(3, ip("127.0.0.1"), Scope::Admin, 0).unwrap();
    assert_eq!(
        core.attach(4, ip("127.0.0.1"), Scope::Admin, 0)
            .unwrap_err()
            .code,
        ErrorCode::TooManyConnections
    );

    let code = |fx: &Effects| match &fx.out[0].1 {
        ServerMessage::Error(e) => e.code,
        other => panic!("expected an error, got {other:?}"),
    };
    assert_eq!(
        code(&core.handle(1, ClientMessage::Health(Health::default()), 1)),
        ErrorCode::NotRegistered
    );
    assert_eq!(
        code(&core.handle(1, register(Some("zz"), Role::Sender, 1), 1)),
        ErrorCode::UnknownStream
    );
    assert_eq!(
        code(&core.handle(2, register(Some("a"), Role::Sender, 1), 1)),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(&core.handle(2, register(Some("b"), Role::Receiver, 1), 1)),
        ErrorCode::Forbidden
    );
    core.handle(2, register(None, Role::Sender, 5000), 1);
    assert_eq!(
        code(&core.handle(3, register(Some("b"), Role::Sender, 1), 1)),
        ErrorCode::SlotTaken
    );
    core.handle(3, register(Some("a"), Role::Sender, 1), 1);
    assert_eq!(
        code(&core.handle(3, register(Some("a"), Role::Receiver, 1), 1)),
        ErrorCode::AlreadyRegistered
    );
}

#[test]
fn tally_reaches_both_peers_and_the_state_is_the_least_advanced_stream() {
    let mut core = SessionCore::new(record(&["a", "b"]), limits(8), PathPolicy::default());
    core.attach(1, ip("127.0.0.1"), Scope::Admin, 0).unwrap();
    core.attach(2, ip("127.0.0.1"), Scope::Admin, 0).unwrap();
    core.handle(1, register(Some("a"), Role::Sender, 1000), 1);
    core.handle(2, register(Some("a"), Role::Receiver, 1001), 1);
    assert_eq!(core.summary().streams[0].state, SessionState::Ready);
    assert_eq!(core.state(), SessionState::Waiting, "stream b has nobody");
    let fx = core.set_tally("a", TallyState::OnAir, 2).unwrap();
    for conn in [1, 2] {
        assert!(
            sent_to(&fx, conn)
                .iter()
                .any(|m| matches!(m, ServerMessage::Tally(t) if t.state == TallyState::OnAir))
        );
    }
    assert!(core.set_tally("nope", TallyState::Off, 2).is_err());
}

fn register_nat(role: Role, port: u16, mapped: (&str, u16), mapping: NatMapping) -> ClientMessage {
    ClientMessage::Register(Register {
        stream: None,
        port: Port(port),
        role,
        meta: PeerMeta::default(),
        nat: Some(NatReport {
            mapped: Some(Endpoint {
                ip: mapped.0.into(),
                port: mapped.1,
            }),
            mapping,
        }),
        reports: true,
        receiver: None,
        tunnel: false,
    })
}

/// The message of the `code` error sent to `conn` (panics if there is none).
fn error_sent(fx: &Effects, conn: ConnId, code: ErrorCode) -> String {
    sent_to(fx, conn)
        .into_iter()
        .find_map(|m| match m {
            ServerMessage::Error(e) if e.code == code => Some(e.message.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no {code:?} error sent to {conn}"))
}

fn peers_sent(fx: &Effects, conn: ConnId) -> Vec<PeerInfo> {
    sent_to(fx, conn)
        .into_iter()
        .filter_map(|m| match m {
            ServerMessage::Peer(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn mapped_addresses_are_handed_out_and_symmetric_nats_are_relayed() {
    let mut core = SessionCore::new(record(&["cam"]), limits(8), PathPolicy::default());
    core.attach(1, ip("203.0.113.2"), Scope::Admin, 0).unwrap();
    core.attach(2, ip("198.51.100.2"), Scope::Admin, 0).unwrap();
    core.handle(
        1,
        register_nat(
            Role::Sender,
            9000,
            ("203.0.113.2", 24419),
            NatMapping::EndpointIndependent,
        ),
        1,
    );
    let fx = core.handle(
        2,
        register_nat(
            Role::Receiver,
            9000,
            ("198.51.100.2", 61000),
            NatMapping::EndpointDependent,
        ),
        2,
    );
    // No direct coordinates: a relay is asked for, between the two mapped addresses.
    assert!(peers_sent(&fx, 1).is_empty() && peers_sent(&fx, 2).is_empty());
    let [
        RelayOp::Start {
            stream: 0,
            generation,
            device: false,
            spec,
        },
    ] = fx.relay.as_slice()
    else {
        panic!("expected one relay start, got {:?}", fx.relay)
    };
    assert_eq!(
        spec.sides,
        [
            Admission::Peer(Some(ip("203.0.113.2"))),
            Admission::Peer(Some(ip("198.51.100.2")))
        ]
    );
    let reason = core.view().streams[0].path_reason.clone().unwrap();
    assert!(
        reason.contains("receiver's NAT") && reason.contains("endpoint-dependent"),
        "{reason}"
    );

    let (current, fx) = core.relay_ready(0, *generation, [40000, 40001]);
    assert!(current);
    let to_sender = peers_sent(&fx, 1);
    let to_receiver = peers_sent(&fx, 2);
    assert!(to_sender[0].relay && to_sender[0].port == 40000 && to_sender[0].ip.is_empty());
    assert!(to_receiver[0].relay && to_receiver[0].port == 40001);
    assert_eq!(core.state(), SessionState::Relaying);
    let view = core.view();
    assert_eq!(view.streams[0].path, Some(MediaPath::Relay));
    assert_eq!(
        view.streams[0].receiver.nat.as_ref().map(|n| n.mapping),
        Some(NatMapping::EndpointDependent)
    );

    // The receiver's signalling drops and comes back from the same place: its SRT never
    // stopped, so the relay stays and it gets the same relayed coordinates.
    let fx = core.detach(2, 3);
    assert!(fx.relay.is_empty(), "{:?}", fx.relay);
    core.attach(4, ip("198.51.100.2"), Scope::Admin, 4).unwrap();
    let back = register_nat(
        Role::Receiver,
        9000,
        ("198.51.100.2", 61000),
        NatMapping::EndpointDependent,
    );
    let fx = core.handle(4, back, 5);
    assert!(fx.relay.is_empty(), "{:?}", fx.relay);
    assert!(
        peers_sent(&fx, 4)
            .iter()
            .any(|p| p.relay && p.port == 40001)
    );
    assert_eq!(core.state(), SessionState::Relaying);

    // A receiver from elsewhere re-pairs: the old relay stops, a new one is asked for, and
    // a late answer to the old request is refused.
    core.detach(4, 6);
    core.attach(5, ip("192.0.2.50"), Scope::Admin, 6).unwrap();
    let fx = core.handle(
        5,
        register_nat(
            Role::Receiver,
            9000,
            ("192.0.2.50", 9000),
            NatMapping::EndpointDependent,
        ),
        7,
    );
    assert_eq!(fx.relay[0], RelayOp::Stop { stream: 0 });
    assert!(
        matches!(fx.relay[1], RelayOp::Start { stream: 0, .. }),
        "{:?}",
        fx.relay
    );
    assert!(!core.relay_ready(0, *generation, [1, 2]).0);

    // A relay that frees itself for lack of traffic makes the stream pair again.
    let RelayOp::Start { generation, .. } = fx.relay[1].clone() else {
        unreachable!()
    };
    let (current, _) = core.relay_ready(0, generation, [40010, 40011]);
    assert!(current);
    let fx = core.relay_idle(0, generation, true, 8);
    assert!(
        matches!(
            fx.relay.as_slice(),
            [RelayOp::Stop { .. }, RelayOp::Start { .. }]
        ),
        "{:?}",
        fx.relay
    );
}

#[test]
fn a_direct_attempt_that_does_not_connect_in_time_is_relayed() {
    let policy = PathPolicy {
        relay: true,
        direct_timeout_ms: 5_000,
        ..PathPolicy::default()
    };
    let mut core = SessionCore::new(record(&["cam"]), limits(8), policy);
    core.attach(1, ip("203.0.113.2"), Scope::Admin, 0).unwrap();
    core.attach(2, ip("198.51.100.2"), Scope::Admin, 0).unwrap();
    core.handle(1, register(None, Role::Sender, 9000), 1_000);
    let fx = core.handle(2, register(None, Role::Receiver, 9000), 2_000);
    assert_eq!(
        peers_sent(&fx, 1).len(),
        1,
        "direct coordinates go out at once"
    );
    assert_eq!(core.view().streams[0].path, Some(MediaPath::Direct));
    assert_eq!(core.next_deadline(), Some(7_000));
    assert!(core.tick(6_999).relay.is_empty());
    let fx = core.tick(7_000);
    assert!(matches!(
        fx.relay.as_slice(),
        [RelayOp::Start { stream: 0, .. }]
    ));
    let reason = core.view().streams[0].path_reason.clone().unwrap();
    assert!(reason.contains("within 5 s"), "{reason}");
    assert_eq!(core.next_deadline(), None);

    // When the relay cannot start, the stream stays direct and says why.
    let RelayOp::Start { generation, .. } = fx.relay[0].clone() else {
        unreachable!()
    };
    let fx = core.relay_failed(
        0,
        generation,
        &Refusal {
            capacity: false,
            message: "no free relay port".into(),
        },
    );
    assert!(
        peers_sent(&fx, 1).is_empty(),
        "the direct coordinates were already sent"
    );
    let view = core.view();
    assert_eq!(view.streams[0].path, Some(MediaPath::Direct));
    assert!(
        view.streams[0]
            .path_reason
            .as_ref()
            .unwrap()
            .contains("no free relay port")
    );
}

#[test]
fn connecting_in_time_cancels_the_fallback() {
    let mut core = SessionCore::new(record(&["cam"]), limits(8), PathPolicy::default());
    core.attach(1, ip("203.0.113.2"), Scope::Admin, 0).unwrap();
    core.attach(2, ip("198.51.100.2"), Scope::Admin, 0).unwrap();
    core.handle(1, register(None, Role::Sender, 9000), 0);
    core.handle(2, register(None, Role::Receiver, 9000), 0);
    for conn in [1, 2] {
        core.handle(
            conn,
            ClientMessage::Status(StatusReport {
                srt: SrtStatus::Connected,
            }),
            100,
        );
    }
    assert_eq!(core.next_deadline(), None);
    assert!(core.tick(1_000_000).relay.is_empty());
    assert_eq!(core.state(), SessionState::Connected);
}

#[test]
fn latency_changes_reach_both_peers_and_watchers_are_dashboards() {
    let mut core = SessionCore::new(record(&["cam"]), limits(8), PathPolicy::default());
    core.attach(1, ip("203.0.113.2"), Scope::Admin, 0).unwrap();
    core.attach(2, ip("198.51.100.2"), Scope::Admin, 0).unwrap();
    core.attach(3, ip("192.0.2.9"), Scope::Admin, 0).unwrap();
    core.handle(1, register(None, Role::Sender, 9000), 0);
    core.handle(2, register(None, Role::Receiver, 9000), 0);
    // Admin connections that registered hold sides; the one that asked to watch is the
    // dashboard.
    assert!(core.watcher_views().is_empty());
    core.handle(3, ClientMessage::Watch, 0);
    let watchers: Vec<_> = core.watcher_views().into_iter().map(|(_, c)| c).collect();
    assert_eq!(watchers, vec![vec![3]]);
    let fx = core.set_latency("cam", 480, 1).unwrap();
    assert!(fx.view_changed);
    assert_eq!(peers_sent(&fx, 1)[0].latency, 480);
    assert_eq!(peers_sent(&fx, 2)[0].latency, 480);
    assert_eq!(core.view().streams[0].latency, 480);
    let e = core.set_latency("cam", 10, 2).unwrap_err();
    assert!(e.message.contains("between 20 and 8000"), "{}", e.message);
    assert_eq!(
        core.set_latency("nope", 100, 2).unwrap_err().code,
        ErrorCode::UnknownStream
    );
}

#[test]
fn the_direct_timer_restarts_when_a_link_breaks_or_a_side_returns_and_never_runs_for_tools() {
    let policy = PathPolicy {
        relay: true,
        direct_timeout_ms: 5_000,
        ..PathPolicy::default()
    };
    let mut core = SessionCore::new(record(&["cam"]), limits(8), policy.clone());
    core.attach(1, ip("203.0.113.2"), Scope::Admin, 0).unwrap();
    core.attach(2, ip("198.51.100.2"), Scope::Admin, 0).unwrap();
    core.handle(1, register(None, Role::Sender, 9000), 0);
    core.handle(2, register(None, Role::Receiver, 9000), 0);
    let status = |srt| ClientMessage::Status(StatusReport { srt });
    core.handle(1, status(SrtStatus::Connected), 1_000);
    assert_eq!(core.next_deadline(), None);
    // The link breaks: the same chance as a new direct attempt.
    core.handle(1, status(SrtStatus::Disconnected), 20_000);
    assert_eq!(core.next_deadline(), Some(25_000));
    // The receiver's signalling drops and comes back from the same place: still timed.
    core.detach(2, 21_000);
    assert_eq!(core.next_deadline(), None);
    core.attach(3, ip("198.51.100.2"), Scope::Admin, 22_000)
        .unwrap();
    core.handle(3, register(None, Role::Receiver, 9000), 22_000);
    assert_eq!(core.next_deadline(), Some(27_000));

    // Two third-party tools (punch peer) cannot report: no timer, no relay they did not need.
    let mut core = SessionCore::new(record(&["cam"]), limits(8), policy);
    core.attach(1, ip("203.0.113.2"), Scope::Admin, 0).unwrap();
    core.attach(2, ip("198.51.100.2"), Scope::Admin, 0).unwrap();
    for (conn, role) in [(1, Role::Sender), (2, Role::Receiver)] {
        let ClientMessage::Register(mut r) = register(None, role, 9000) else {
            unreachable!()
        };
        r.reports = false;
        core.handle(conn, ClientMessage::Register(r), 0);
    }
    assert_eq!(core.view().streams[0].path, Some(MediaPath::Direct));
    assert_eq!(core.next_deadline(), None);
}

#[test]
fn a_mapped_address_must_be_an_address() {
    let mut core = SessionCore::new(record(&["cam"]), limits(8), PathPolicy::default());
    core.attach(1, ip("203.0.113.2"), Scope::Admin, 0).unwrap();
    for (ip_text, port) in [("1.2.3.4?mode=caller&x", 9000), ("203.0.113.2", 0)] {
        let fx = core.handle(
            1,
            register_nat(
                Role::Sender,
                9000,
                (ip_text, port),
                NatMapping::EndpointIndependent,
            ),
            1,
        );
        assert!(
            sent_to(&fx, 1).iter().any(|m| matches!(m, ServerMessage::Error(e) if e.code == ErrorCode::BadMessage && e.message.contains("nat.mapped"))),
            "{ip_text}:{port} accepted"
        );
    }
    // An IPv4-mapped IPv6 address is handed out as the IPv4 address it is.
    let fx = core.handle(
        1,
        register_nat(
            Role::Sender,
            9000,
            ("::ffff:203.0.113.2", 24419),
            NatMapping::EndpointIndependent,
        ),
        2,
    );
    assert!(
        sent_to(&fx, 1)
            .iter()
            .any(|m| matches!(m, ServerMessage::Registered(r) if r.you.ip == "203.0.113.2"))
    );
}

mod admission;
mod devices;
mod hardening;
mod receivers;
mod tunnel;
