//! A side without UDP: relayed, its relay side admitted at the server's tunnel address.

use super::*;

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
    // the tunnel's datagrams come from the server's own tunnel socket
    assert_eq!(
        spec.sides,
        [
            Admission::Peer(Some(ip("127.0.0.1"))),
            Admission::Peer(Some(ip("198.51.100.2")))
        ]
    );
    let reason = core.view().streams[0].path_reason.clone().unwrap();
    assert!(reason.contains("sender has no UDP"), "{reason}");
    let (_, fx) = core.relay_ready(0, *generation, [40000, 40001]);
    let to_sender = peers_sent(&fx, 1);
    let to_receiver = peers_sent(&fx, 2);
    assert!(to_sender[0].relay && to_sender[0].tunnel && to_sender[0].port == 40000);
    assert!(to_receiver[0].relay && !to_receiver[0].tunnel);
    assert_eq!(core.view().streams[0].path, Some(MediaPath::Tunnel));
    assert_eq!(
        core.tunnel_port("cam", Role::Sender, 1).unwrap(),
        Some(40000)
    );
    assert!(core.tunnel_port("nope", Role::Sender, 1).is_err());
}
