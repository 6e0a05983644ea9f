//! Sides held by SRT devices, and cues: what the Punch side is sent, what the relay is asked
//! for, what a person reads to type into the device.

use super::*;
use crate::protocol::{DeviceMode, LinkMode, SideSpec};
use crate::server::session::device::{check_pair, device_side};
use crate::server::session::persist::StoreOp;

fn with_devices(sender: Option<SideSpec>, receiver: Option<SideSpec>) -> SessionCore {
    let mut rec = record(&["cam"]);
    let side = |s: Option<SideSpec>| device_side(&s.unwrap_or_default(), None, "key1".into());
    rec.streams[0].devices = [side(sender).unwrap(), side(receiver).unwrap()];
    SessionCore::new(rec, limits(8), PathPolicy::default())
}

fn caller() -> SideSpec {
    SideSpec {
        device: Some(DeviceMode::Caller),
        ..Default::default()
    }
}

fn listener(address: &str) -> SideSpec {
    SideSpec {
        device: Some(DeviceMode::Listener),
        address: Some(address.into()),
        ..Default::default()
    }
}

fn receiver_token() -> Scope {
    Scope::Stream {
        stream: "cam".into(),
        role: Role::Receiver,
    }
}

#[test]
fn a_caller_camera_gets_a_relay_port_for_good_and_the_decoder_listens_behind_it() {
    let mut core = with_devices(Some(caller()), None);
    // The relay runs from the start: the camera may call before the decoder is there.
    let fx = core.start();
    let [
        RelayOp::Start {
            stream: 0,
            device: true,
            spec,
            ..
        },
    ] = fx.relay.as_slice()
    else {
        panic!("expected the device relay, got {:?}", fx.relay)
    };
    assert_eq!(
        spec.sides,
        [
            Admission::Caller {
                stream_id: Some("#!::r=cam,s=key1".into())
            },
            Admission::Peer(None)
        ]
    );
    assert!(!spec.idles, "a device's relay waits for its device");
    let (current, fx) = core.device_relay_ready(0, [24000, 24001]);
    assert!(current);
    // The port is kept (typed into the camera), also across restarts.
    assert!(fx.store.iter().any(|op| matches!(op,
        StoreOp::Devices { devices, .. } if devices[0].as_ref().is_some_and(|d| d.port == 24000))));
    let view = core.view();
    let device = view.streams[0]
        .sender
        .device
        .clone()
        .expect("device fields");
    assert_eq!(device.mode, DeviceMode::Caller);
    assert_eq!(
        (device.host.as_str(), device.port),
        ("punch.example", 24000)
    );
    assert_eq!(device.streamid.as_deref(), Some("#!::r=cam,s=key1"));
    assert_eq!(
        device.url,
        "srt://punch.example:24000?mode=caller&passphrase=pass-cam-0123456789&pbkeylen=16&streamid=#!::r=cam,s=key1"
    );
    assert_eq!(view.streams[0].via.as_deref(), Some("caller device"));
    assert_eq!(view.streams[0].state, SessionState::Waiting);

    // The decoder registers: it listens behind the relay's other port, and the relay lets
    // its address in.
    core.attach(2, ip("198.51.100.2"), receiver_token(), 0)
        .unwrap();
    let fx = core.handle(2, register(None, Role::Receiver, 9000), 1);
    let peer = peers_sent(&fx, 2).remove(0);
    assert_eq!(
        (peer.port, peer.relay, peer.mode),
        (24001, true, LinkMode::Listener)
    );
    assert!(fx.relay.contains(&RelayOp::SetPeer {
        stream: 0,
        side: 1,
        admission: Admission::Peer(Some(ip("198.51.100.2")))
    }));
    assert_eq!(core.state(), SessionState::Relaying);
    assert_eq!(core.next_deadline(), None, "no direct attempt to time out");
    // The camera calls; the decoder reports its link: the device side shows connected.
    core.handle(
        2,
        ClientMessage::Status(StatusReport {
            srt: SrtStatus::Connected,
        }),
        2,
    );
    assert_eq!(core.view().streams[0].sender.status, PeerStatus::Connected);
    // The decoder leaves: the relay stays for the camera, the decoder's address is let go.
    let fx = core.detach(2, 3);
    assert!(!fx.relay.contains(&RelayOp::Stop { stream: 0 }));
    assert!(fx.relay.contains(&RelayOp::SetPeer {
        stream: 0,
        side: 1,
        admission: Admission::Peer(None)
    }));
    assert_eq!(core.view().streams[0].sender.status, PeerStatus::Waiting);
    // Nobody can register as the camera.
    core.attach(
        3,
        ip("203.0.113.9"),
        Scope::Stream {
            stream: "cam".into(),
            role: Role::Sender,
        },
        4,
    )
    .unwrap();
    let fx = core.handle(3, register(None, Role::Sender, 9000), 4);
    let err = error_sent(&fx, 3, ErrorCode::SlotTaken);
    assert!(err.contains("caller device"), "{err}");
}

#[test]
fn a_listener_decoder_is_called_directly() {
    let mut core = with_devices(None, Some(listener("198.51.100.7:9000")));
    assert!(core.start().relay.is_empty());
    core.attach(1, ip("203.0.113.2"), Scope::Admin, 0).unwrap();
    let fx = core.handle(1, register(None, Role::Sender, 9000), 1);
    let peer = peers_sent(&fx, 1).remove(0);
    assert_eq!(
        (peer.ip.as_str(), peer.port, peer.relay, peer.mode),
        ("198.51.100.7", 9000, false, LinkMode::Caller)
    );
    assert!(fx.relay.is_empty());
    assert_eq!(core.next_deadline(), None, "no relay to give way to");
    let view = core.view();
    assert_eq!(view.streams[0].path, Some(MediaPath::Direct));
    assert_eq!(view.streams[0].via.as_deref(), Some("listener device"));
    let device = view.streams[0].receiver.device.clone().unwrap();
    assert_eq!(
        device.url,
        "srt://:9000?mode=listener&passphrase=pass-cam-0123456789&pbkeylen=16"
    );
    assert_eq!(device.streamid, None);
}

#[test]
fn side_settings_are_checked_with_messages_that_say_what_to_fix() {
    let err = |spec: SideSpec| device_side(&spec, None, "k".into()).unwrap_err();
    assert!(err(listener("nowhere")).contains("is not ip:port"));
    assert!(err(listener("0.0.0.0:9000")).contains("cannot be called"));
    assert!(err(listener("198.51.100.7:0")).contains("cannot be called"));
    assert!(
        err(SideSpec {
            device: Some(DeviceMode::Listener),
            ..Default::default()
        })
        .contains("needs `address`")
    );
    assert!(
        err(SideSpec {
            address: Some("198.51.100.7:9000".into()),
            ..caller()
        })
        .contains("no `address`")
    );
    assert!(
        err(SideSpec {
            streamid: Some(false),
            ..listener("198.51.100.7:9000")
        })
        .contains("`streamid` is for a caller")
    );
    let both = [
        device_side(&caller(), None, "k".into()).unwrap(),
        device_side(&listener("198.51.100.7:9000"), None, "k".into()).unwrap(),
    ];
    assert!(check_pair(&both).unwrap_err().contains("at least one side"));
    // A caller set again keeps its key and port (what was typed into it stays right).
    let mut first = device_side(&caller(), None, "k1".into()).unwrap().unwrap();
    first.port = 24000;
    let again = device_side(
        &SideSpec {
            streamid: Some(false),
            ..caller()
        },
        Some(&first),
        "k2".into(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        (again.key.as_str(), again.port, again.check_streamid),
        ("k1", 24000, false)
    );
}

#[test]
fn making_a_side_a_device_lets_its_peer_go_and_relays_the_stream() {
    let mut core = with_devices(None, None);
    core.attach(1, ip("203.0.113.2"), Scope::Admin, 0).unwrap();
    core.attach(2, ip("198.51.100.2"), Scope::Admin, 0).unwrap();
    core.handle(1, register(None, Role::Sender, 9000), 0);
    core.handle(2, register(None, Role::Receiver, 9000), 0);
    let fx = core
        .set_side("cam", Role::Sender, &caller(), "fresh".into(), None, 1)
        .unwrap();
    assert!(error_sent(&fx, 1, ErrorCode::SlotTaken).contains("held by a device"));
    assert!(fx.close.iter().any(|(c, _)| *c == 1));
    assert!(
        fx.store
            .iter()
            .any(|op| matches!(op, StoreOp::Devices { .. }))
    );
    assert!(
        fx.relay
            .iter()
            .any(|op| matches!(op, RelayOp::Start { device: true, .. }))
    );
    let err = core
        .set_side(
            "cam",
            Role::Receiver,
            &listener("198.51.100.7:9000"),
            "k".into(),
            None,
            2,
        )
        .unwrap_err();
    assert!(err.message.contains("at least one side"), "{}", err.message);
    let err = core
        .set_side("nope", Role::Receiver, &caller(), "k".into(), None, 2)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::UnknownStream);
}

#[test]
fn cues_reach_the_side_they_are_for_and_its_operator_pages() {
    let mut core = with_devices(None, None);
    core.attach(1, ip("203.0.113.2"), Scope::Admin, 0).unwrap();
    core.attach(2, ip("198.51.100.2"), Scope::Admin, 0).unwrap();
    core.handle(1, register(None, Role::Sender, 9000), 0);
    core.handle(2, register(None, Role::Receiver, 9000), 0);
    let camera_page = Scope::Stream {
        stream: "cam".into(),
        role: Role::Sender,
    };
    core.attach(3, ip("192.0.2.3"), camera_page.clone(), 0)
        .unwrap();
    core.handle(3, ClientMessage::Watch, 0);
    let fx = core
        .cue(
            "cam",
            Some(Role::Sender),
            "  Wide shot, then push in  ",
            "t".into(),
            1,
        )
        .unwrap();
    let cued = |conn| {
        sent_to(&fx, conn)
            .iter()
            .any(|m| matches!(m, ServerMessage::Cue(c) if c.text == "Wide shot, then push in"))
    };
    assert!(cued(1) && cued(3) && !cued(2));
    let page = core.view_for(&camera_page);
    assert_eq!(
        page.streams[0].cue.as_ref().unwrap().text,
        "Wide shot, then push in"
    );
    assert!(core.view_for(&receiver_token()).streams[0].cue.is_none());
    for (text, why) in [
        ("", "needs some text"),
        ("line\nbreak", "control characters"),
        (&"x".repeat(281), "at most 280"),
    ] {
        let err = core.cue("cam", None, text, "t".into(), 2).unwrap_err();
        assert!(err.message.contains(why), "{text:?}: {}", err.message);
    }
}

#[test]
fn setting_a_side_again_changes_nothing_and_a_pending_direct_attempt_does_not_replace_the_device_relay()
 {
    let mut core = with_devices(None, None);
    core.attach(1, ip("203.0.113.2"), Scope::Admin, 0).unwrap();
    core.attach(2, ip("198.51.100.2"), Scope::Admin, 0).unwrap();
    core.handle(1, register(None, Role::Sender, 9000), 0);
    core.handle(2, register(None, Role::Receiver, 9000), 0);
    assert!(core.next_deadline().is_some(), "a direct attempt is timed");
    // "Punch peer" again on a live pair: nothing happens to it
    let fx = core
        .set_side(
            "cam",
            Role::Sender,
            &SideSpec::default(),
            "k".into(),
            None,
            1,
        )
        .unwrap();
    assert!(fx.relay.is_empty() && fx.out.is_empty() && fx.close.is_empty());
    // the sender becomes a caller device while the direct attempt is under way
    core.set_side("cam", Role::Sender, &caller(), "k".into(), None, 2)
        .unwrap();
    core.device_relay_ready(0, [24000, 24001]);
    let fx = core.tick(1_000_000);
    assert!(
        !fx.relay
            .iter()
            .any(|op| matches!(op, RelayOp::Start { device: false, .. })),
        "no peer relay replaces the device's: {:?}",
        fx.relay
    );
    assert_eq!(
        core.view().streams[0].sender.device.as_ref().unwrap().port,
        24000
    );
    // set again without `streamid`: kept, and the relay is not restarted
    let mut no_sid = caller();
    no_sid.streamid = Some(false);
    core.set_side("cam", Role::Sender, &no_sid, "k".into(), None, 3)
        .unwrap();
    let fx = core
        .set_side("cam", Role::Sender, &caller(), "k".into(), None, 4)
        .unwrap();
    assert!(fx.relay.is_empty(), "{:?}", fx.relay);
    assert_eq!(
        core.view().streams[0]
            .sender
            .device
            .as_ref()
            .unwrap()
            .streamid,
        None
    );
    // the former peer's address and meta are not the device's
    assert!(core.view().streams[0].sender.address.is_none());
}

#[test]
fn a_server_that_does_not_relay_refuses_caller_devices() {
    let mut core = SessionCore::new(
        record(&["cam"]),
        limits(8),
        PathPolicy {
            relay: false,
            ..PathPolicy::default()
        },
    );
    let err = core
        .set_side("cam", Role::Sender, &caller(), "k".into(), None, 0)
        .unwrap_err();
    assert!(err.message.contains("--no-relay"), "{}", err.message);
    core.set_side(
        "cam",
        Role::Receiver,
        &listener("198.51.100.7:9000"),
        "k".into(),
        None,
        0,
    )
    .expect("a listener device needs no relay");
}

#[test]
fn operator_pages_leave_a_connection_free_for_the_side() {
    let mut core = SessionCore::new(
        record(&["cam"]),
        ConnLimits {
            per_side: 3,
            ..limits(16)
        },
        PathPolicy::default(),
    );
    let side = Scope::Stream {
        stream: "cam".into(),
        role: Role::Sender,
    };
    for conn in 1..=3 {
        core.attach(conn, ip("192.0.2.1"), side.clone(), 0).unwrap();
        let fx = core.handle(conn, ClientMessage::Watch, 0);
        if conn == 3 {
            assert!(error_sent(&fx, 3, ErrorCode::TooManyConnections).contains("stays free"));
            assert!(fx.close.iter().any(|(c, _)| *c == 3));
        }
    }
    core.detach(3, 1);
    // the element still gets in
    core.attach(4, ip("192.0.2.1"), side, 1).unwrap();
    let fx = core.handle(4, register(None, Role::Sender, 9000), 1);
    assert!(matches!(sent_to(&fx, 4)[0], ServerMessage::Registered(_)));
}
