//! A side without UDP: relayed, its relay side admitted at its tunnel socket's address only,
//! tied to its registration by a ticket; a side the relay never hears from moves to its tunnel.

use super::*;
use crate::server::session::actor::Tunnels;

#[test]
fn a_side_without_udp_is_relayed_through_its_tunnel() {
    let policy = PathPolicy {
        tunnel_ip: ip("127.0.0.1"),
        ..PathPolicy::default()
    };
    let mut core = SessionCore::new(record(&["cam"]), limits(8), policy);
    core.attach(1, ip("203.0.113.2"), Scope::Admin, 0).unwrap();
    core.attach(2, ip("198.51.100.2"), Scope::Admin, 0).unwrap();
    let tunnelled = match register(None, Role::Sender, 9000) {
        ClientMessage::Register(r) => ClientMessage::Register(Register { tunnel: true, ..r }),
        _ => unreachable!(),
    };
    core.handle(1, tunnelled, 1);
    let fx = core.handle(2, register(None, Role::Receiver, 9001), 2);
    // no direct attempt: only the relay can carry a side without UDP
    assert!(peers_sent(&fx, 1).is_empty() && peers_sent(&fx, 2).is_empty());
    let [
        RelayOp::Start {
            generation, spec, ..
        },
    ] = fx.relay.as_slice()
    else {
        panic!("expected one relay start, got {:?}", fx.relay)
    };
    // the tunnel's datagrams come from the server's tunnel socket for it, which is not open
    // yet: nobody gets in on that side; the side counts against its own address
    assert_eq!(
        spec.sides,
        [
            Admission::Tunnel(None),
            Admission::Peer(Some(ip("198.51.100.2")))
        ]
    );
    assert_eq!(spec.clients, vec![ip("203.0.113.2"), ip("198.51.100.2")]);
    assert!(
        !spec.check_heard,
        "a tunnelled side has nowhere further to go"
    );
    let reason = core.view().streams[0].path_reason.clone().unwrap();
    assert!(reason.contains("sender has no UDP"), "{reason}");
    let (_, fx) = core.relay_ready(0, *generation, [40000, 40001]);
    let to_sender = peers_sent(&fx, 1);
    let to_receiver = peers_sent(&fx, 2);
    assert!(to_sender[0].relay && to_sender[0].tunnel && to_sender[0].port == 40000);
    let ticket = to_sender[0]
        .ticket
        .clone()
        .expect("the tunnelled side gets its ticket");
    assert!(to_receiver[0].relay && !to_receiver[0].tunnel && to_receiver[0].ticket.is_none());
    assert_eq!(core.view().streams[0].path, Some(MediaPath::Tunnel));

    // the tunnel attaches with the ticket: the relay admits exactly its socket
    let at: std::net::SocketAddr = "127.0.0.1:41000".parse().unwrap();
    let (key, fx) = core
        .attach_tunnel("cam", Role::Sender, 1, &ticket, at)
        .unwrap();
    assert_eq!(key, (0, 0));
    assert_eq!(
        fx.relay,
        vec![RelayOp::SetPeer {
            stream: 0,
            side: 0,
            admission: Admission::Tunnel(Some(at))
        }]
    );
    // a wrong ticket, the other side (over UDP), another stream: refused
    let refused = |core: &mut SessionCore, stream: &str, role: Role, ticket: &str| {
        core.attach_tunnel(stream, role, 1, ticket, at)
            .unwrap_err()
            .message
    };
    assert!(refused(&mut core, "cam", Role::Sender, "guess").contains("wrong tunnel ticket"));
    assert!(
        refused(&mut core, "cam", Role::Receiver, &ticket).contains("does not go over a tunnel")
    );
    assert!(!refused(&mut core, "nope", Role::Sender, &ticket).is_empty());

    // the actor's record: the tunnel hears its relay port; a newer tunnel of the side replaces it
    let mut tunnels = Tunnels::default();
    let first = tunnels.attach(&core, key, at);
    assert_eq!(*first.borrow(), Some(40000));
    let again: std::net::SocketAddr = "127.0.0.1:41001".parse().unwrap();
    core.attach_tunnel("cam", Role::Sender, 1, &ticket, again)
        .unwrap();
    let second = tunnels.attach(&core, key, again);
    tunnels.refresh(&core);
    assert!(
        first.has_changed().is_err(),
        "the replaced tunnel's channel closed"
    );
    assert_eq!(*second.borrow(), Some(40000));

    // the signalling reconnects from the same place: same path, relay, ticket and tunnel
    core.detach(1, 3);
    core.attach(3, ip("203.0.113.2"), Scope::Admin, 3).unwrap();
    let tunnelled = match register(None, Role::Sender, 9000) {
        ClientMessage::Register(r) => ClientMessage::Register(Register { tunnel: true, ..r }),
        _ => unreachable!(),
    };
    let fx = core.handle(3, tunnelled, 4);
    assert!(
        !fx.relay.iter().any(|op| matches!(op, RelayOp::Stop { .. })),
        "{:?}",
        fx.relay
    );
    assert_eq!(
        peers_sent(&fx, 3)[0].ticket.as_deref(),
        Some(ticket.as_str())
    );
    tunnels.refresh(&core);
    assert!(second.has_changed().is_ok(), "the tunnel goes on");
}

/// Two Punch peers on a relay whose receiver's UDP never reaches it (only STUN gets through).
fn relayed_pair() -> (SessionCore, u64) {
    let mut core = SessionCore::new(record(&["cam"]), limits(8), PathPolicy::default());
    core.attach(1, ip("203.0.113.2"), Scope::Admin, 0).unwrap();
    core.attach(2, ip("198.51.100.2"), Scope::Admin, 0).unwrap();
    core.handle(1, register(None, Role::Sender, 9000), 1);
    core.handle(2, register(None, Role::Receiver, 9001), 1);
    // the direct attempt times out: relayed over UDP, and the relay is to say who is unheard
    let fx = core.tick(1 + PathPolicy::default().direct_timeout_ms);
    let [
        RelayOp::Start {
            generation, spec, ..
        },
    ] = fx.relay.as_slice()
    else {
        panic!("expected a relay start, got {:?}", fx.relay)
    };
    assert!(spec.check_heard);
    let generation = *generation;
    core.relay_ready(0, generation, [40000, 40001]);
    (core, generation)
}

#[test]
fn the_side_the_relay_never_heard_from_moves_to_its_tunnel_and_only_it() {
    let (mut core, generation) = relayed_pair();
    // a stale notice (an older relay) changes nothing
    assert!(
        core.relay_unheard(0, generation + 7, [false, true], 20_000)
            .relay
            .is_empty()
    );
    let fx = core.relay_unheard(0, generation, [false, true], 20_000);
    // a new relay, with the receiver on its tunnel and the sender still on UDP
    let [
        RelayOp::Stop { .. },
        RelayOp::Start {
            generation, spec, ..
        },
    ] = fx.relay.as_slice()
    else {
        panic!("expected the relay to start over, got {:?}", fx.relay)
    };
    assert_eq!(
        spec.sides,
        [
            Admission::Peer(Some(ip("203.0.113.2"))),
            Admission::Tunnel(None)
        ]
    );
    let reason = core.view().streams[0].path_reason.clone().unwrap();
    assert!(
        reason.contains("receiver's UDP never reached the relay"),
        "{reason}"
    );
    let (_, fx) = core.relay_ready(0, *generation, [40002, 40003]);
    let (to_sender, to_receiver) = (peers_sent(&fx, 1), peers_sent(&fx, 2));
    assert!(!to_sender[0].tunnel, "the healthy side stays on UDP");
    assert!(to_receiver[0].tunnel && to_receiver[0].ticket.is_some());
    assert_eq!(core.view().streams[0].path, Some(MediaPath::Tunnel));
}

#[test]
fn a_link_that_is_up_or_a_tool_that_cannot_move_is_left_alone() {
    let (mut core, generation) = relayed_pair();
    core.handle(
        1,
        ClientMessage::Status(StatusReport {
            srt: SrtStatus::Connected,
        }),
        5,
    );
    assert!(
        core.relay_unheard(0, generation, [false, true], 20_000)
            .relay
            .is_empty()
    );

    // a side held by `punch peer` for a third-party tool (it does not report)
    let mut core = SessionCore::new(record(&["cam"]), limits(8), PathPolicy::default());
    core.attach(1, ip("203.0.113.2"), Scope::Admin, 0).unwrap();
    core.attach(2, ip("198.51.100.2"), Scope::Admin, 0).unwrap();
    core.handle(1, register(None, Role::Sender, 9000), 1);
    let tool = match register(None, Role::Receiver, 9001) {
        ClientMessage::Register(r) => ClientMessage::Register(Register {
            reports: false,
            ..r
        }),
        _ => unreachable!(),
    };
    core.handle(2, tool, 1);
    let fx = core.tick(1 + PathPolicy::default().direct_timeout_ms);
    let [RelayOp::Start { spec, .. }] = fx.relay.as_slice() else {
        panic!("expected a relay start, got {:?}", fx.relay)
    };
    assert!(
        !spec.check_heard,
        "the tool's side is not moved, so not checked"
    );
}

#[test]
fn a_tunnelled_side_facing_a_listener_device_is_told_why_it_cannot_connect() {
    let mut rec = record(&["cam"]);
    let listener = crate::protocol::SideSpec {
        device: Some(crate::protocol::DeviceMode::Listener),
        address: Some("198.51.100.7:9000".into()),
        ..Default::default()
    };
    rec.streams[0].devices[1] =
        crate::server::session::device::device_side(&listener, None, "k".into()).unwrap();
    let mut core = SessionCore::new(rec, limits(8), PathPolicy::default());
    core.attach(1, ip("203.0.113.2"), Scope::Admin, 0).unwrap();
    let tunnelled = match register(None, Role::Sender, 9000) {
        ClientMessage::Register(r) => ClientMessage::Register(Register { tunnel: true, ..r }),
        _ => unreachable!(),
    };
    let fx = core.handle(1, tunnelled, 1);
    assert!(
        peers_sent(&fx, 1).is_empty(),
        "no direct coordinates it cannot use"
    );
    let reason = core.view().streams[0].path_reason.clone().unwrap();
    assert!(reason.contains("cannot call a listener device"), "{reason}");
}

#[test]
fn when_the_relay_heard_neither_side_both_move_to_their_tunnels() {
    let (mut core, generation) = relayed_pair();
    let fx = core.relay_unheard(0, generation, [true, true], 20_000);
    let [RelayOp::Stop { .. }, RelayOp::Start { spec, .. }] = fx.relay.as_slice() else {
        panic!("expected the relay to start over once, got {:?}", fx.relay)
    };
    assert_eq!(
        spec.sides,
        [Admission::Tunnel(None), Admission::Tunnel(None)]
    );
}

#[test]
fn a_side_back_on_udp_loses_its_ticket() {
    let (mut core, generation) = relayed_pair();
    core.relay_unheard(0, generation, [false, true], 20_000);
    let ticket = core.ticket(0, 1).expect("the moved side has a ticket");
    let at: std::net::SocketAddr = "127.0.0.1:41000".parse().unwrap();
    assert!(
        core.attach_tunnel("cam", Role::Receiver, 1, &ticket, at)
            .is_ok()
    );
    // the side's holder goes; while nobody holds it, no tunnel attaches
    core.detach(2, 30);
    let refused = core.attach_tunnel("cam", Role::Receiver, 1, &ticket, at);
    assert!(
        refused
            .unwrap_err()
            .message
            .contains("does not go over a tunnel now")
    );
    // it comes back on UDP (a new run): the ticket is withdrawn
    core.attach(4, ip("198.51.100.2"), Scope::Admin, 31)
        .unwrap();
    core.handle(4, register(None, Role::Receiver, 9001), 31);
    assert_eq!(core.ticket(0, 1), None);
}
