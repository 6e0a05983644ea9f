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
