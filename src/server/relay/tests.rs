//! The relay with real UDP sockets on loopback.

use super::*;
use crate::protocol::srt_packet::tests::{data_packet, handshake_packet};

const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

async fn recv(s: &UdpSocket) -> Option<Vec<u8>> {
    let mut buf = [0u8; 128];
    let (n, _) = tokio::time::timeout(Duration::from_millis(500), s.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(buf[..n].to_vec())
}

fn local_service(config: RelayConfig) -> RelayService {
    RelayService::new(RelayConfig {
        bind: LOCAL,
        ..config
    })
}

/// Sends `datagram` from `from` until `to` receives one that `pred` accepts.
async fn deliver(
    from: &UdpSocket,
    port: u16,
    datagram: &[u8],
    to: &UdpSocket,
    pred: impl Fn(&[u8]) -> bool,
) -> bool {
    for _ in 0..10 {
        from.send_to(datagram, (LOCAL, port)).await.unwrap();
        while let Some(got) = recv(to).await {
            if pred(&got) {
                return true;
            }
        }
    }
    false
}

#[tokio::test]
async fn forwards_between_the_two_peers_only() {
    let service = local_service(RelayConfig::default());
    let relay = service
        .allocate(RelaySpec::peers("s", [LOCAL, LOCAL]), |_| {})
        .await
        .unwrap();
    let a = UdpSocket::bind((LOCAL, 0)).await.unwrap();
    let b = UdpSocket::bind((LOCAL, 0)).await.unwrap();
    // Until b has made itself known, a's datagrams have nowhere to go; like SRT's
    // handshake, a repeats until one arrives.
    b.send_to(b"hello from b", (LOCAL, relay.ports[1]))
        .await
        .unwrap();
    assert!(
        deliver(&a, relay.ports[0], b"hello from a", &b, |d| d
            == b"hello from a")
        .await
    );
    assert!(deliver(&b, relay.ports[1], b"reply", &a, |d| d == b"reply").await);
    // A stranger on a's port is not forwarded while a is active.
    let stranger = UdpSocket::bind((LOCAL, 0)).await.unwrap();
    stranger
        .send_to(b"spoof", (LOCAL, relay.ports[0]))
        .await
        .unwrap();
    assert_eq!(recv(&b).await, None);
    assert!(service.stats.strangers.load(Ordering::Relaxed) >= 1);
    assert_eq!(service.stats.active.load(Ordering::SeqCst), 1);
    drop(relay);
    tokio::time::timeout(Duration::from_secs(2), async {
        while service.stats.active.load(Ordering::SeqCst) != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the relay stops when dropped");
}

/// The review's takeover: the real sender pauses, a stranger on the same IP sends. Only a
/// packet of the relayed SRT connection may move a side to a new port.
#[tokio::test]
async fn a_stranger_on_the_same_ip_cannot_take_a_side_over() {
    let service = local_service(RelayConfig::default());
    let relay = service
        .allocate(RelaySpec::peers("s", [LOCAL, LOCAL]), |_| {})
        .await
        .unwrap();
    let (a, b) = (
        UdpSocket::bind((LOCAL, 0)).await.unwrap(),
        UdpSocket::bind((LOCAL, 0)).await.unwrap(),
    );
    let (a_id, b_id) = (0x0a0a_0a0a_u32, 0x0b0b_0b0b_u32);
    // Both sides handshake through the relay: it learns their socket IDs.
    b.send_to(&handshake_packet(0, b_id, 0), (LOCAL, relay.ports[1]))
        .await
        .unwrap();
    let hs_a = handshake_packet(0, a_id, 0);
    assert!(deliver(&a, relay.ports[0], &hs_a, &b, |d| d == hs_a.as_slice()).await);
    let hs_b = handshake_packet(a_id, b_id, -1);
    assert!(deliver(&b, relay.ports[1], &hs_b, &a, |d| d == hs_b.as_slice()).await);

    // The real sender goes quiet longer than any re-learning grace; a stranger on its IP
    // sends handshakes and data addressed to nobody in particular.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let stranger = UdpSocket::bind((LOCAL, 0)).await.unwrap();
    let before = service.stats.strangers.load(Ordering::Relaxed);
    for datagram in [
        handshake_packet(0, 0x5555_5555, 1),
        data_packet(0x1234_5678, b"hijack"),
    ] {
        stranger
            .send_to(&datagram, (LOCAL, relay.ports[0]))
            .await
            .unwrap();
    }
    assert_eq!(
        recv(&b).await,
        None,
        "the stranger's datagrams reach nobody"
    );
    assert_eq!(service.stats.strangers.load(Ordering::Relaxed), before + 2);
    // The receiver's answers still go to the real sender, not the stranger.
    let to_a = data_packet(a_id, b"ack");
    assert!(deliver(&b, relay.ports[1], &to_a, &a, |d| d == to_a.as_slice()).await);
    assert_eq!(recv(&stranger).await, None);

    // The real sender's NAT moves it to a new port mid-stream: its data is addressed to the
    // receiver's socket, so the relay follows it.
    let moved = UdpSocket::bind((LOCAL, 0)).await.unwrap();
    let media = data_packet(b_id, b"media");
    assert!(
        deliver(&moved, relay.ports[0], &media, &b, |d| d
            == media.as_slice())
        .await
    );
    let back = data_packet(a_id, b"back");
    assert!(deliver(&b, relay.ports[1], &back, &moved, |d| d == back.as_slice()).await);
}

#[tokio::test]
async fn peers_from_unregistered_addresses_are_ignored_and_limits_hold() {
    let service = local_service(RelayConfig {
        max_relays: 1,
        ..Default::default()
    });
    let registered: IpAddr = "192.0.2.7".parse().unwrap();
    let relay = service
        .allocate(RelaySpec::peers("s", [registered, registered]), |_| {})
        .await
        .unwrap();
    let a = UdpSocket::bind((LOCAL, 0)).await.unwrap();
    let b = UdpSocket::bind((LOCAL, 0)).await.unwrap();
    b.send_to(b"x", (LOCAL, relay.ports[1])).await.unwrap();
    a.send_to(b"y", (LOCAL, relay.ports[0])).await.unwrap();
    assert_eq!(recv(&b).await, None, "127.0.0.1 is not the registered peer");
    let err = service
        .allocate(RelaySpec::peers("t", [LOCAL, LOCAL]), |_| {})
        .await
        .unwrap_err();
    assert!(
        err.capacity && err.message.contains("--relay-max"),
        "{err:?}"
    );
}

#[tokio::test]
async fn relays_are_bounded_per_session_and_per_client_address_and_capacity_is_announced() {
    let service = local_service(RelayConfig {
        per_session: 2,
        per_ip: 3,
        ..Default::default()
    });
    let mut freed = service.freed();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let one = service
        .allocate(
            RelaySpec::peers("a", [ip("192.0.2.1"), ip("198.51.100.1")]),
            |_| {},
        )
        .await
        .unwrap();
    let _two = service
        .allocate(
            RelaySpec::peers("a", [ip("192.0.2.1"), ip("198.51.100.2")]),
            |_| {},
        )
        .await
        .unwrap();
    let e = service
        .allocate(
            RelaySpec::peers("a", [ip("192.0.2.9"), ip("198.51.100.9")]),
            |_| {},
        )
        .await
        .unwrap_err();
    assert!(
        e.capacity && e.message.contains("--relay-per-session"),
        "{e:?}"
    );
    let _three = service
        .allocate(
            RelaySpec::peers("b", [ip("192.0.2.1"), ip("198.51.100.3")]),
            |_| {},
        )
        .await
        .unwrap();
    // 192.0.2.1 has a side in three relays; IPv6 addresses of one /64 count as one client.
    let e = service
        .allocate(
            RelaySpec::peers("c", [ip("192.0.2.1"), ip("198.51.100.4")]),
            |_| {},
        )
        .await
        .unwrap_err();
    assert!(
        e.message.contains("192.0.2.1") && e.message.contains("--relay-per-ip"),
        "{e:?}"
    );
    for n in 1..=3 {
        service
            .allocate(
                RelaySpec::peers(
                    &format!("v6-{n}"),
                    [ip(&format!("2001:db8::{n}")), ip("192.0.2.50")],
                ),
                |_| {},
            )
            .await
            .map(std::mem::forget)
            .unwrap_or_else(|e| panic!("{n}: {e:?}"));
    }
    let e = service
        .allocate(
            RelaySpec::peers("v6-4", [ip("2001:db8::ffff"), ip("192.0.2.51")]),
            |_| {},
        )
        .await
        .unwrap_err();
    assert!(e.message.contains("2001:db8::"), "{e:?}");
    // A relay that ends frees its place and says so.
    drop(one);
    tokio::time::timeout(Duration::from_secs(2), freed.changed())
        .await
        .expect("capacity freed is announced")
        .unwrap();
    service
        .allocate(
            RelaySpec::peers("a", [ip("192.0.2.9"), ip("198.51.100.9")]),
            |_| {},
        )
        .await
        .expect("the session has room again");
}

#[tokio::test]
async fn a_relay_that_carries_nothing_is_freed_after_the_idle_time() {
    let service = local_service(RelayConfig {
        idle: Duration::from_millis(400),
        ..Default::default()
    });
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    let started = Instant::now();
    let relay = service
        .allocate(RelaySpec::peers("s", [LOCAL, LOCAL]), move |event| {
            if let RelayEvent::Idle { carried } = event
                && let Some(tx) = tx.lock().unwrap().take()
            {
                let _ = tx.send(carried);
            }
        })
        .await
        .unwrap();
    // One side alone sending handshakes carries nothing: the idle time counts all the same.
    let a = UdpSocket::bind((LOCAL, 0)).await.unwrap();
    for _ in 0..3 {
        a.send_to(&handshake_packet(0, 1, 0), (LOCAL, relay.ports[0]))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let carried = tokio::time::timeout(Duration::from_secs(3), rx)
        .await
        .expect("idle callback")
        .unwrap();
    assert!(!carried, "nothing reached the other side");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(1500),
        "freed after {took:?}"
    );
    assert_eq!(service.stats.active.load(Ordering::SeqCst), 0);
    // Its port is free again.
    UdpSocket::bind((LOCAL, relay.ports[0])).await.unwrap();
}

#[test]
fn bandwidth_cap_allows_a_quarter_second_burst() {
    let mut b = byte_bucket(8_000_000); // 1 MB/s, 250 kB burst
    let start = Instant::now();
    let mut sent = 0;
    while b.take(1000.0, start) {
        sent += 1000;
    }
    assert_eq!(sent, 250_000);
    assert!(b.take(1000.0, start + Duration::from_millis(2)));
}

/// A relay between two peers on the loopback that reports the sides it never heard from; its
/// events.
async fn checking_relay(
    service: &RelayService,
) -> (Relay, tokio::sync::mpsc::UnboundedReceiver<RelayEvent>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let spec = RelaySpec {
        check_heard: true,
        ..RelaySpec::peers("s", [LOCAL, LOCAL])
    };
    let relay = service
        .allocate(spec, move |event| {
            let _ = tx.send(event);
        })
        .await
        .unwrap();
    (relay, rx)
}

#[tokio::test]
async fn a_relay_names_the_side_it_never_heard_from() {
    let service = local_service(RelayConfig {
        heard_wait: Duration::from_millis(300),
        ..Default::default()
    });
    let (relay, mut rx) = checking_relay(&service).await;
    // only the receiver's datagrams arrive: the sender's UDP to the relay is blocked
    let receiver = UdpSocket::bind((LOCAL, 0)).await.unwrap();
    receiver
        .send_to(&handshake_packet(0, 1, 0), (LOCAL, relay.ports[1]))
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(3), rx.recv())
        .await
        .expect("an event within the wait and a check")
        .unwrap();
    assert_eq!(
        event,
        RelayEvent::Unheard {
            sides: [true, false]
        }
    );
    // said once
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), rx.recv())
            .await
            .is_err()
    );

    // both sides sent: nothing to say
    let (relay, mut rx) = checking_relay(&service).await;
    let sender = UdpSocket::bind((LOCAL, 0)).await.unwrap();
    for (s, port) in [(&sender, relay.ports[0]), (&receiver, relay.ports[1])] {
        s.send_to(&handshake_packet(0, 1, 0), (LOCAL, port))
            .await
            .unwrap();
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(1800), rx.recv())
            .await
            .is_err(),
        "both sides were heard"
    );
}
