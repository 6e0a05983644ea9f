//! Unit tests of the peer state machine: no sockets, time passed in.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::client::ClientError;
use crate::client::nat::{Discovery, DiscoveryError};
use crate::protocol::{
    ClientMessage, Closed, Endpoint, ErrorBody, ErrorCode, Hello, NatMapping, PeerInfo, PeerStatus,
    Registered, Role, ServerMessage, SessionState, SessionUpdate, SrtStatus, StreamSummary, Tally,
    TallyState,
};

fn config() -> PeerConfig {
    PeerConfig {
        session: "show".into(),
        stream: Some("cam1".into()),
        role: Role::Sender,
        local_port: 9000,
        label: Some("Wide".into()),
        reports: true,
        stun: true,
        prime: true,
        peer_timeout: None,
        receiver: None,
        fan_out: false,
        force_tunnel: false,
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn hello() -> ServerMessage {
    ServerMessage::Hello(Hello {
        stun_host: None,
        stun: Some([3478, 3479]),
        stun_tag: Some("tag-1".into()),
    })
}

/// The discovery the hello above asks for.
fn discover() -> Action {
    Action::Discover {
        stun_port: 3478,
        alternate: Some(3479),
        tag: Some("tag-1".into()),
    }
}

fn registered(stream: &str) -> ServerMessage {
    ServerMessage::Registered(Registered {
        stream: stream.into(),
        role: Role::Sender,
        you: Endpoint {
            ip: "203.0.113.2".into(),
            port: 24419,
        },
        peer: None,
        receiver: None,
        receivers: 1,
    })
}

fn peer(stream: &str, ip: &str, port: u16, relay: bool) -> ServerMessage {
    ServerMessage::Peer(peer_info(stream, ip, port, relay))
}

fn peer_info(stream: &str, ip: &str, port: u16, relay: bool) -> PeerInfo {
    PeerInfo {
        stream: stream.into(),
        ip: ip.into(),
        port,
        passphrase: "0123456789abcdef".into(),
        pbkeylen: 16,
        latency: 200,
        relay,
        mode: Default::default(),
        tunnel: false,
        ticket: None,
    }
}

/// Relayed coordinates over this side's tunnel, with its ticket.
fn tunnel_peer(stream: &str, ticket: Option<&str>) -> ServerMessage {
    ServerMessage::Peer(PeerInfo {
        tunnel: true,
        ticket: ticket.map(String::from),
        ..peer_info(stream, "", 40000, true)
    })
}

/// A discovery that got no answer from either STUN port.
fn unanswered() -> DiscoveryError {
    DiscoveryError {
        unanswered: true,
        message: "no STUN answer from 192.0.2.1 on port 3478 or 3479".into(),
    }
}

fn found(mapped: &str, alt: &str) -> Discovery {
    Discovery {
        server: addr("192.0.2.1:3478"),
        mapped: addr(mapped),
        mapped_alt: Some(addr(alt)),
    }
}

fn error(code: ErrorCode) -> ServerMessage {
    ServerMessage::Error(ErrorBody {
        code,
        message: "because".into(),
    })
}

/// The registration among `actions`, if any.
fn register_in(actions: &[Action]) -> Option<&crate::protocol::Register> {
    actions.iter().find_map(|a| match a {
        Action::Send(ClientMessage::Register(r)) => Some(r),
        _ => None,
    })
}

fn failure_in(actions: &[Action]) -> Option<&Failure> {
    actions.iter().find_map(|a| match a {
        Action::Stop(Some(f)) => Some(f),
        _ => None,
    })
}

/// A machine that is connected, discovered `mapped` and is registered on cam1.
fn registered_machine(now: Instant) -> PeerMachine {
    let mut m = PeerMachine::new(config());
    m.connected(now);
    m.message(hello(), now);
    m.discovered(Ok(found("203.0.113.2:24419", "203.0.113.2:24419")));
    m.message(registered("cam1"), now);
    m
}

#[test]
fn hello_discovery_register_peer_prime_apply() {
    let now = Instant::now();
    let mut m = PeerMachine::new(config());
    assert!(m.connected(now).is_empty());
    // The hello says where STUN is: discovery first, registration after it.
    let a = m.message(hello(), now);
    assert_eq!(a, vec![discover()]);
    let a = m.discovered(Ok(found("203.0.113.2:24419", "203.0.113.2:24419")));
    assert!(matches!(&a[0], Action::Event(PeerEvent::Discovered(_))));
    let r = register_in(&a).expect("registers after discovery");
    assert_eq!(r.stream.as_deref(), Some("cam1"));
    assert_eq!(r.port.0, 9000);
    assert_eq!(r.meta.label.as_deref(), Some("Wide"));
    let nat = r.nat.as_ref().unwrap();
    assert_eq!(nat.mapping, NatMapping::EndpointIndependent);
    assert_eq!(nat.mapped.as_ref().unwrap().port, 24419);
    assert!(r.reports);

    let a = m.message(registered("cam1"), now);
    assert!(matches!(&a[..], [Action::Event(PeerEvent::Registered(_))]));
    // Another stream's coordinates are not ours.
    assert!(
        m.message(peer("cam2", "198.51.100.2", 9000, false), now)
            .is_empty()
    );
    let a = m.message(peer("cam1", "198.51.100.2", 9000, false), now);
    let to = addr("198.51.100.2:9000");
    assert_eq!(a[0], Action::Prime { to });
    assert!(matches!(&a[1], Action::Apply { target: Target::Addr(t), .. } if *t == to));
    // Later coordinates are primed too (the driver skips it while SRT holds the port).
    let a = m.message(peer("cam1", "198.51.100.9", 9000, false), now);
    assert!(matches!(
        &a[..],
        [Action::Prime { .. }, Action::Apply { .. }]
    ));
}

#[test]
fn without_a_hello_it_registers_after_a_second() {
    let now = Instant::now();
    let mut m = PeerMachine::new(config());
    m.connected(now);
    assert_eq!(m.next_deadline(), Some(now + HELLO_WAIT));
    assert!(m.tick(now + Duration::from_millis(999)).is_empty());
    let a = m.tick(now + HELLO_WAIT);
    let r = register_in(&a).expect("registers without hello");
    assert!(r.nat.is_none());
    // A late hello still brings discovery, and the registration is sent again with its result.
    let a = m.message(hello(), now + HELLO_WAIT);
    assert_eq!(a, vec![discover()]);
    let a = m.discovered(Ok(found("203.0.113.2:24419", "203.0.113.2:24419")));
    assert!(register_in(&a).unwrap().nat.is_some());
    // Without STUN a late hello changes nothing.
    let mut m = PeerMachine::new(PeerConfig {
        stun: false,
        ..config()
    });
    m.connected(now);
    m.tick(now + HELLO_WAIT);
    assert!(m.message(hello(), now + HELLO_WAIT).is_empty());
}

#[test]
fn no_stun_registers_at_once_and_discovery_failure_is_not_fatal() {
    let now = Instant::now();
    let mut m = PeerMachine::new(PeerConfig {
        stun: false,
        ..config()
    });
    m.connected(now);
    assert!(register_in(&m.message(hello(), now)).is_some());

    let mut m = PeerMachine::new(config());
    m.connected(now);
    m.message(hello(), now);
    let a = m.discovered(Err(unanswered()));
    assert!(matches!(&a[0], Action::Event(PeerEvent::Warning(w)) if w.contains("no STUN answer")));
    assert!(register_in(&a).unwrap().nat.is_none());
}

#[test]
fn a_reconnect_registers_the_same_slot_with_what_was_learnt() {
    let now = Instant::now();
    let mut m = registered_machine(now);
    m.message(peer("cam1", "198.51.100.2", 9000, false), now);
    m.srt_link(true);
    let a = m.disconnected();
    assert_eq!(
        a.last(),
        Some(&Action::Reconnect {
            after: BACKOFF_START
        })
    );
    m.connected(now);
    // No new discovery (SRT holds the port): the hello registers at once, same NAT report.
    let a = m.message(hello(), now);
    let r = register_in(&a).expect("registers");
    assert_eq!(r.stream.as_deref(), Some("cam1"));
    assert_eq!(r.nat.as_ref().unwrap().mapped.as_ref().unwrap().port, 24419);
    // The server forgot the SRT status: it is told again.
    let a = m.message(registered("cam1"), now);
    assert!(a.contains(&Action::Send(ClientMessage::Status(
        crate::protocol::StatusReport {
            srt: SrtStatus::Connected
        }
    ))));
}

#[test]
fn connection_failures_back_off_and_give_up_only_before_the_first_registration() {
    let now = Instant::now();
    let unreachable = ClientError::Unreachable {
        url: "ws://h".into(),
        reason: "refused".into(),
    };
    let mut m = PeerMachine::new(config());
    let mut delays = Vec::new();
    for _ in 1..FIRST_CONNECT_ATTEMPTS {
        let a = m.connect_failed(&unreachable);
        match a.last() {
            Some(Action::Reconnect { after }) => delays.push(*after),
            other => panic!("expected a reconnect, got {other:?}"),
        }
    }
    assert_eq!(
        delays,
        [250, 500, 1000, 2000].map(Duration::from_millis).to_vec()
    );
    let f = failure_in(&m.connect_failed(&unreachable))
        .cloned()
        .unwrap();
    assert_eq!(f.kind, FailureKind::Unreachable);
    assert!(
        f.message.contains("gave up after 5 attempts"),
        "{}",
        f.message
    );

    // Once registered, the server is retried for ever, the delay capped.
    let mut m = registered_machine(now);
    m.disconnected();
    for _ in 0..20 {
        let a = m.connect_failed(&unreachable);
        assert!(matches!(a.last(), Some(Action::Reconnect { after }) if *after <= BACKOFF_MAX));
    }

    // A refused token is final at once.
    let mut m = PeerMachine::new(config());
    let refused = ClientError::Refused {
        status: 401,
        code: Some(ErrorCode::Unauthorized),
        message: "invalid token".into(),
    };
    let f = failure_in(&m.connect_failed(&refused)).cloned().unwrap();
    assert_eq!(f.kind, FailureKind::NotAuthorized);
    assert!(
        f.message.starts_with("Punch session show:"),
        "{}",
        f.message
    );
    let gone = ClientError::Refused {
        status: 410,
        code: Some(ErrorCode::Gone),
        message: "ended".into(),
    };
    assert_eq!(
        failure_in(&PeerMachine::new(config()).connect_failed(&gone))
            .unwrap()
            .kind,
        FailureKind::NotFound
    );
}

#[test]
fn server_errors() {
    let now = Instant::now();
    let kind = |code| {
        let mut m = PeerMachine::new(config());
        m.connected(now);
        failure_in(&m.message(error(code), now)).map(|f| f.kind)
    };
    assert_eq!(kind(ErrorCode::Forbidden), Some(FailureKind::NotAuthorized));
    assert_eq!(kind(ErrorCode::UnknownStream), Some(FailureKind::NotFound));
    assert_eq!(kind(ErrorCode::SlotTaken), Some(FailureKind::Busy));
    assert_eq!(kind(ErrorCode::RateLimited), None, "a warning only");

    // Our own previous connection still holds the slot: retry shortly.
    let mut m = registered_machine(now);
    m.disconnected();
    m.connected(now);
    let a = m.message(error(ErrorCode::SlotTaken), now);
    assert_eq!(a.last(), Some(&Action::Reconnect { after: SLOT_RETRY }));

    let a = m.message(
        ServerMessage::Closed(Closed {
            reason: "closed by operator".into(),
        }),
        now,
    );
    let f = failure_in(&a).unwrap();
    assert_eq!(f.kind, FailureKind::Closed);
    assert!(f.message.contains("was closed (closed by operator)"));
}

#[test]
fn the_peer_timeout_runs_from_the_first_registration_until_coordinates_come() {
    let now = Instant::now();
    let t = Duration::from_secs(30);
    let mut m = PeerMachine::new(PeerConfig {
        peer_timeout: Some(t),
        stun: false,
        ..config()
    });
    m.connected(now);
    m.message(hello(), now);
    assert_eq!(m.next_deadline(), None);
    m.message(registered("cam1"), now);
    assert_eq!(m.next_deadline(), Some(now + t));
    let f = failure_in(&m.tick(now + t)).cloned().unwrap();
    assert_eq!(f.kind, FailureKind::NoPeer);
    assert_eq!(
        f.message,
        "No peer joined stream cam1 of session show within 30 s (peer-timeout)"
    );

    let mut m = PeerMachine::new(PeerConfig {
        peer_timeout: Some(t),
        stun: false,
        ..config()
    });
    m.connected(now);
    m.message(hello(), now);
    m.message(registered("cam1"), now);
    m.message(peer("cam1", "198.51.100.2", 9000, false), now);
    assert_eq!(m.next_deadline(), None);
    assert!(failure_in(&m.tick(now + t * 2)).is_none());
}

#[test]
fn relayed_coordinates_go_to_the_server_and_are_not_primed() {
    let now = Instant::now();
    let mut m = registered_machine(now);
    let a = m.message(peer("cam1", "", 40000, true), now);
    assert_eq!(a.len(), 1);
    assert!(
        matches!(&a[0], Action::Apply { target: Target::Addr(t), .. } if *t == addr("192.0.2.1:40000"))
    );

    // Without discovery the driver has to resolve the server.
    let mut m = PeerMachine::new(PeerConfig {
        stun: false,
        ..config()
    });
    m.connected(now);
    m.message(hello(), now);
    m.message(registered("cam1"), now);
    let a = m.message(peer("cam1", "", 40000, true), now);
    assert!(matches!(
        &a[..],
        [Action::Apply {
            target: Target::ServerPort(40000),
            ..
        }]
    ));
    let a = m.message(peer("cam1", "not-an-ip?x", 9000, false), now);
    assert!(matches!(&a[..], [Action::Event(PeerEvent::Warning(w))] if w.contains("non-IP")));
}

#[test]
fn srt_status_is_reported_on_change_only() {
    let now = Instant::now();
    let mut m = registered_machine(now);
    let sent = |a: &[Action]| {
        a.iter()
            .filter_map(|a| match a {
                Action::Send(ClientMessage::Status(s)) => Some(s.srt),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(sent(&m.srt_link(false)), [SrtStatus::Connecting]);
    assert!(m.srt_link(false).is_empty());
    assert_eq!(sent(&m.srt_link(true)), [SrtStatus::Connected]);
    assert!(m.srt_link(true).is_empty());
    assert_eq!(sent(&m.srt_link(false)), [SrtStatus::Disconnected]);

    // A tool holder (punch peer) never reports.
    let mut m = PeerMachine::new(PeerConfig {
        reports: false,
        stun: false,
        ..config()
    });
    m.connected(now);
    let r = register_in(&m.message(hello(), now)).cloned().unwrap();
    assert!(!r.reports);
    m.message(registered("cam1"), now);
    assert!(sent(&m.srt_link(true)).is_empty());
    assert!(m.health(Default::default()).is_empty());
}

#[test]
fn discovery_repeats_until_a_peer_comes_and_a_change_re_registers() {
    let now = Instant::now();
    let mut m = registered_machine(now);
    assert_eq!(m.next_deadline(), Some(now + REPROBE));
    let a = m.tick(now + REPROBE);
    assert_eq!(a, vec![discover()]);
    // The same answer: nothing to tell.
    let a = m.discovered(Ok(found("203.0.113.2:24419", "203.0.113.2:24419")));
    assert!(register_in(&a).is_none());
    // The mapping moved: registered again with it.
    m.tick(now + REPROBE * 2);
    let a = m.discovered(Ok(found("203.0.113.2:27000", "203.0.113.2:27000")));
    assert_eq!(
        register_in(&a)
            .unwrap()
            .nat
            .as_ref()
            .unwrap()
            .mapped
            .as_ref()
            .unwrap()
            .port,
        27000
    );
    // Once SRT runs it owns the port: no more discovery...
    m.message(peer("cam1", "198.51.100.2", 9000, false), now);
    assert_eq!(m.next_deadline(), None);
    assert!(m.tick(now + REPROBE * 3).is_empty());
    // ...unless the coordinates could not be applied (the relay's address did not resolve).
    m.unapplied();
    assert_eq!(m.tick(now + REPROBE * 4), vec![discover()]);
}

#[test]
fn session_updates_carry_this_streams_state_and_tally_is_filtered() {
    let now = Instant::now();
    let mut m = registered_machine(now);
    let summary = |name: &str, state| StreamSummary {
        name: name.into(),
        label: None,
        state,
        sender: PeerStatus::Registered,
        receiver: PeerStatus::Waiting,
        tally: TallyState::Off,
        receivers: 1,
        linked: None,
        links: Vec::new(),
    };
    let update = SessionUpdate {
        state: SessionState::Waiting,
        streams: vec![
            summary("cam0", SessionState::Waiting),
            summary("cam1", SessionState::Ready),
        ],
        connected: 0,
        total: 2,
    };
    let a = m.message(ServerMessage::Session(update), now);
    assert!(matches!(
        &a[..],
        [Action::Event(PeerEvent::Session {
            stream_state: Some(SessionState::Ready),
            ..
        })]
    ));
    let tally = |stream: &str| {
        ServerMessage::Tally(Tally {
            stream: stream.into(),
            state: TallyState::OnAir,
        })
    };
    assert!(m.message(tally("cam2"), now).is_empty());
    assert!(matches!(
        &m.message(tally("cam1"), now)[..],
        [Action::Event(PeerEvent::Tally(_))]
    ));
}

fn summary_of(stream: &str, receivers: u8) -> ServerMessage {
    ServerMessage::Session(SessionUpdate {
        state: SessionState::Waiting,
        streams: vec![StreamSummary {
            name: stream.into(),
            label: None,
            state: SessionState::Waiting,
            sender: PeerStatus::Waiting,
            receiver: PeerStatus::Waiting,
            tally: TallyState::Off,
            receivers,
            linked: (receivers > 1).then_some(0),
            links: Vec::new(),
        }],
        connected: 0,
        total: 1,
    })
}

#[test]
fn a_fanning_out_sender_watches_a_stream_with_several_receivers() {
    let now = Instant::now();
    let mut m = PeerMachine::new(PeerConfig {
        fan_out: true,
        ..config()
    });
    m.connected(now);
    // the summary decides, so nothing happens at the hello (not even discovery)
    assert!(m.message(hello(), now).is_empty());
    let a = m.message(summary_of("cam1", 3), now);
    assert_eq!(a[0], Action::Event(PeerEvent::FanOut(3)));
    assert_eq!(a[1], Action::Send(ClientMessage::Watch));
    assert!(register_in(&a).is_none());
    // a reconnect watches again, and the host is not told twice
    m.disconnected();
    m.connected(now);
    m.message(hello(), now);
    let a = m.message(summary_of("cam1", 3), now);
    assert_eq!(a[0], Action::Send(ClientMessage::Watch));
    // with one receiver it registers as any sender (after discovery)
    let mut m = PeerMachine::new(PeerConfig {
        fan_out: true,
        ..config()
    });
    m.connected(now);
    m.message(hello(), now);
    assert_eq!(m.message(summary_of("cam1", 1), now)[0], discover());
}

#[test]
fn a_receiver_registers_the_slot_it_was_given_again() {
    let now = Instant::now();
    let mut m = PeerMachine::new(PeerConfig {
        role: Role::Receiver,
        stun: false,
        ..config()
    });
    m.connected(now);
    assert_eq!(
        register_in(&m.message(hello(), now)).unwrap().receiver,
        None
    );
    m.message(
        ServerMessage::Registered(Registered {
            stream: "cam1".into(),
            role: Role::Receiver,
            you: Endpoint {
                ip: "203.0.113.2".into(),
                port: 24419,
            },
            peer: None,
            receiver: Some(2),
            receivers: 3,
        }),
        now,
    );
    m.disconnected();
    m.connected(now);
    assert_eq!(
        register_in(&m.message(hello(), now)).unwrap().receiver,
        Some(2)
    );
    // another receiver has it now: the next registration takes any free slot
    let taken = ServerMessage::Error(crate::protocol::ErrorBody {
        code: crate::protocol::ErrorCode::SlotTaken,
        message: "taken".into(),
    });
    let a = m.message(taken, now);
    assert!(a.iter().any(|x| matches!(x, Action::Reconnect { .. })));
    m.connected(now);
    assert_eq!(
        register_in(&m.message(hello(), now)).unwrap().receiver,
        None
    );
}

#[test]
fn no_stun_answer_means_the_tunnel() {
    let now = Instant::now();
    let mut m = PeerMachine::new(config());
    m.connected(now);
    m.message(hello(), now);
    let a = m.discovered(Err(unanswered()));
    assert!(
        matches!(&a[0], Action::Event(PeerEvent::Warning(w)) if w.contains("TCP tunnel")),
        "{a:?}"
    );
    assert!(
        register_in(&a).unwrap().tunnel,
        "registered as a side without UDP"
    );
    // its coordinates are the tunnel, with the ticket, not an address to prime
    m.message(registered("cam1"), now);
    let a = m.message(tunnel_peer("cam1", Some("T1")), now);
    assert!(
        matches!(&a[..], [Action::Apply { target: Target::Tunnel { stream, slot: 1, ticket }, .. }] if stream == "cam1" && ticket == "T1"),
        "{a:?}"
    );
    // tunnel coordinates without a ticket cannot be used
    let a = m.message(tunnel_peer("cam1", None), now);
    assert!(
        matches!(&a[..], [Action::Event(PeerEvent::Warning(w))] if w.contains("ticket")),
        "{a:?}"
    );
    // a forced tunnel does not even try STUN
    let mut m = PeerMachine::new(PeerConfig {
        force_tunnel: true,
        ..config()
    });
    m.connected(now);
    let a = m.message(hello(), now);
    assert!(register_in(&a).expect("registers at once").tunnel);
}

#[test]
fn a_local_discovery_failure_does_not_mean_the_tunnel() {
    let now = Instant::now();
    let mut m = PeerMachine::new(config());
    m.connected(now);
    m.message(hello(), now);
    let a = m.discovered(Err(DiscoveryError::local(
        "cannot bind UDP 0.0.0.0:5000 for STUN discovery: address in use",
    )));
    assert!(
        matches!(&a[0], Action::Event(PeerEvent::Warning(w)) if !w.contains("tunnel")),
        "{a:?}"
    );
    assert!(!register_in(&a).unwrap().tunnel, "UDP may well work");
}

#[test]
fn a_side_the_server_moves_to_its_tunnel_stays_there() {
    let now = Instant::now();
    let mut m = PeerMachine::new(PeerConfig {
        stun: false,
        ..config()
    });
    m.connected(now);
    m.message(hello(), now);
    m.message(registered("cam1"), now);
    // relayed over UDP first; no timer of its own decides anything
    m.message(peer("cam1", "", 40000, true), now);
    assert_eq!(m.next_deadline(), None);
    // the relay never heard from this side: the server sends tunnel coordinates
    let a = m.message(tunnel_peer("cam1", Some("T1")), now);
    assert!(
        matches!(
            &a[..],
            [Action::Apply {
                target: Target::Tunnel { .. },
                ..
            }]
        ),
        "{a:?}"
    );
    // after a signalling reconnect it registers as a side without UDP
    m.disconnected();
    m.connected(now);
    let a = m.message(hello(), now);
    assert!(register_in(&a).expect("registers again").tunnel);
}
