//! The waiting room in the core: who may wait, what is kept for the admission.

use super::*;

#[test]
fn a_session_without_a_waiting_room_refuses_join_tokens_and_waiting_peers_keep_their_wish() {
    let mut rec = record(&["cam"]);
    rec.join = false;
    let mut core = SessionCore::new(rec, limits(8), PathPolicy::default());
    let err = core.attach(1, ip("192.0.2.1"), Scope::Join, 0).unwrap_err();
    assert_eq!(err.code, ErrorCode::Forbidden);
    assert!(err.message.contains("no waiting room"), "{}", err.message);

    let mut core = SessionCore::new(record(&["cam"]), limits(8), PathPolicy::default());
    core.attach(1, ip("192.0.2.1"), Scope::Join, 0).unwrap();
    let fx = core.handle(1, register(None, Role::Receiver, 9000), 10);
    let peer = sent_to(&fx, 1)
        .into_iter()
        .find_map(|m| match m {
            ServerMessage::Admission(a) => Some(a.peer.clone()),
            _ => None,
        })
        .expect("told it waits");
    assert_eq!(core.waiting_role(&peer).unwrap(), Role::Receiver);
    // waiting keeps the session alive, like a registration
    assert_eq!(core.expires_ms(), None);
    // the summary a waiting peer gets tells nothing of the streams
    assert!(core.summary_for(&Scope::Join).streams.is_empty());
    assert_eq!(core.view().waiting.len(), 1);
    // it leaves: the room is empty
    core.detach(1, 20);
    assert!(core.view().waiting.is_empty());
    assert_eq!(
        core.waiting_role(&peer).unwrap_err().code,
        ErrorCode::UnknownPeer
    );
}

#[test]
fn join_token_connections_are_capped_so_the_admin_and_the_sides_keep_theirs() {
    let mut core = SessionCore::new(
        record(&["cam"]),
        ConnLimits {
            join: 2,
            ..limits(8)
        },
        PathPolicy::default(),
    );
    for conn in 1..=2 {
        core.attach(conn, ip("203.0.113.9"), Scope::Join, 0)
            .unwrap();
        core.handle(conn, register(None, Role::Sender, 9000 + conn as u16), 0);
    }
    let err = core
        .attach(3, ip("203.0.113.9"), Scope::Join, 0)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::TooManyConnections);
    assert!(
        err.message.contains("waiting room is full"),
        "{}",
        err.message
    );
    core.attach(4, ip("192.0.2.1"), Scope::Admin, 0)
        .expect("the admin still gets in");
}

#[test]
fn a_waiting_peer_registering_again_keeps_its_place_and_one_place_cannot_fill_the_room() {
    let mut core = SessionCore::new(record(&["cam"]), limits(32), PathPolicy::default());
    core.attach(1, ip("192.0.2.1"), Scope::Join, 0).unwrap();
    core.handle(1, register(None, Role::Sender, 9000), 10);
    let fx = core.handle(1, register(None, Role::Sender, 9100), 20);
    assert!(
        !sent_to(&fx, 1)
            .iter()
            .any(|m| matches!(m, ServerMessage::Error(_))),
        "no error for a new mapping"
    );
    let room = core.view().waiting;
    assert_eq!(room.len(), 1);
    assert_eq!(
        room[0].since,
        crate::server::time::format_time(10),
        "its place is kept"
    );
    // four from one address at most; another address still gets in
    for conn in 2..=4 {
        core.attach(conn, ip("192.0.2.1"), Scope::Join, 30).unwrap();
    }
    let err = core
        .attach(5, ip("192.0.2.1"), Scope::Join, 30)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::TooManyConnections);
    core.attach(6, ip("198.51.100.1"), Scope::Join, 30).unwrap();
    // the waiting peers are told nothing of the session's changes
    let fx = core
        .set_tally("cam", crate::protocol::TallyState::OnAir, 40)
        .unwrap();
    assert!(sent_to(&fx, 1).is_empty() && sent_to(&fx, 6).is_empty());
}

#[test]
fn the_venue_page_reads_only_the_peers_waiting_from_its_own_place() {
    let mut core = SessionCore::new(record(&["cam"]), limits(16), PathPolicy::default());
    // a camera waiting at the venue, another elsewhere
    core.attach(1, ip("203.0.113.5"), Scope::Join, 0).unwrap();
    core.handle(1, register(None, Role::Sender, 9000), 1);
    core.attach(2, ip("198.51.100.7"), Scope::Join, 0).unwrap();
    core.handle(2, register(None, Role::Sender, 9001), 1);
    // the venue page watches with the join token from the venue's address
    core.attach(3, ip("203.0.113.5"), Scope::Join, 2).unwrap();
    let fx = core.handle(3, ClientMessage::Watch, 2);
    assert!(fx.view_changed, "the page gets its first view");
    let views = core.watcher_views();
    assert_eq!(views.len(), 1);
    let (view, conns) = &views[0];
    assert_eq!(conns, &vec![3]);
    assert_eq!(
        view.waiting.len(),
        1,
        "only the venue's camera: {:?}",
        view.waiting
    );
    assert!(view.streams.is_empty() && !view.join);
    // IPv6: one /64 is one place
    let here = core.view_at(&Scope::Join, Some(ip("2001:db8:1:2::9")));
    assert!(here.waiting.is_empty());
    core.attach(4, ip("2001:db8:1:2::1"), Scope::Join, 3)
        .unwrap();
    core.handle(4, register(None, Role::Receiver, 9002), 3);
    let here = core.view_at(&Scope::Join, Some(ip("2001:db8:1:2::9")));
    assert_eq!(here.waiting.len(), 1);
    // venue pages do not take the cameras' places (4 per client address)
    for conn in 10..14 {
        core.attach(conn, ip("203.0.113.5"), Scope::Join, 4)
            .unwrap();
        core.handle(conn, ClientMessage::Watch, 4);
    }
    for conn in 20..23 {
        core.attach(conn, ip("203.0.113.5"), Scope::Join, 4)
            .unwrap_or_else(|e| panic!("camera {conn}: {}", e.message));
    }
    // without a place (`GET /api/session/:id`) the join token reads nobody
    assert!(core.view_for(&Scope::Join).waiting.is_empty());
    // a page that watches holds no side and cannot register from that connection
    let fx = core.handle(3, register(None, Role::Sender, 9003), 4);
    assert!(error_sent(&fx, 3, ErrorCode::AlreadyRegistered).contains("venue page"));
    assert_eq!(
        core.view().waiting.len(),
        3,
        "the page did not join the room"
    );
}
