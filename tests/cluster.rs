//! Several `punch serve` nodes on one PostgreSQL database behind HAProxy: any node answers for
//! any session, and a node frozen past its lease cannot write to a session another took over.

mod common;

use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::*;
use punch::protocol::{Role, ServerMessage};
use serde_json::json;

/// Sends `req`: status, JSON body, and the node that answered (`x-punch-node`).
async fn answered(req: reqwest::RequestBuilder) -> (u16, serde_json::Value, String) {
    let resp = req.send().await.expect("the server answers");
    let node = resp
        .headers()
        .get("x-punch-node")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default(), node)
}

/// `GET /api/session/{name}` on `base`: status, body, and the node that answered.
async fn view_at(base: &str, name: &str, token: &str) -> (u16, serde_json::Value, String) {
    answered(
        http()
            .get(format!("{base}/api/session/{name}"))
            .bearer_auth(token),
    )
    .await
}

/// `POST /api/session/{name}/tally` on `base`: status, body, and the node that answered.
async fn tally_at(
    base: &str,
    name: &str,
    token: &str,
    state: &str,
) -> (u16, serde_json::Value, String) {
    answered(
        http()
            .post(format!("{base}/api/session/{name}/tally"))
            .bearer_auth(token)
            .json(&json!({"stream": "default", "state": state})),
    )
    .await
}

#[test]
fn sessions_spread_over_the_nodes_and_every_call_works_through_any_node() {
    let cluster = Cluster::start(3, &[]);
    let lb = cluster.lb.base.clone();
    runtime().block_on(async {
        // created through the balancer: on different nodes
        let mut owners = std::collections::BTreeMap::new();
        let mut made = Vec::new();
        for i in 0..6 {
            let created = create(&lb, json!({"name": format!("spread-{i}")})).await;
            let token = created["token"].as_str().unwrap().to_string();
            let (status, v, _) = view_at(&lb, &format!("spread-{i}"), &token).await;
            assert_eq!(status, 200, "{v}");
            let node = v["node"]
                .as_str()
                .expect("the view names its node")
                .to_string();
            *owners.entry(node).or_insert(0) += 1;
            made.push((format!("spread-{i}"), created));
        }
        assert!(owners.len() >= 2, "all on one node: {owners:?}");

        // every node answers for every session, with its owner's view
        let (name, created) = &made[0];
        let admin = created["token"].as_str().unwrap();
        let (_, v, _) = view_at(&lb, name, admin).await;
        let owner = v["node"].as_str().unwrap().to_string();
        for node in &cluster.nodes {
            let (status, v, answered) = view_at(&node.base, name, admin).await;
            assert_eq!(status, 200, "{v}");
            assert_eq!(v["node"], owner.as_str());
            assert_eq!(answered, owner, "the owner answered (forwarded to it)");
        }
        // a session name another node holds cannot be created again anywhere
        for node in &cluster.nodes {
            let (status, v) = create_raw(&node.base, &json!({"name": name}).to_string()).await;
            assert_eq!(status, 409, "{v}");
        }

        // the two sides register on the two nodes that do not own it: they are paired, with the
        // owner's STUN service named in their hello
        let others: Vec<&str> = ["n1", "n2", "n3"]
            .into_iter()
            .filter(|n| *n != owner)
            .collect();
        let mut tx = connect(
            &cluster.node(others[0]).base,
            name,
            &stream_token(created, "default", "sender"),
        )
        .await;
        let mut rx = connect(
            &cluster.node(others[1]).base,
            name,
            &stream_token(created, "default", "receiver"),
        )
        .await;
        for sig in [&mut tx, &mut rx] {
            let hello = expect_msg(sig, "hello", |m| match m {
                ServerMessage::Hello(h) => Some(h.clone()),
                _ => None,
            })
            .await;
            assert_eq!(hello.stun_host.as_deref(), Some("127.0.0.1"));
            assert!(hello.stun.is_some() && hello.stun_tag.is_some());
        }
        tx.send(&register(None, Role::Sender, 40001)).await.unwrap();
        rx.send(&register(None, Role::Receiver, 40002))
            .await
            .unwrap();
        let (to_rx, to_tx) = (peer_of(&mut tx).await, peer_of(&mut rx).await);
        assert_eq!(to_rx.port, 40002);
        assert_eq!(to_tx.port, 40001);
        assert_eq!(to_rx.passphrase, to_tx.passphrase);

        // tally through the balancer reaches both
        let (status, v, _) = tally_at(&lb, name, admin, "on-air").await;
        assert_eq!(status, 200, "{v}");
        for sig in [&mut tx, &mut rx] {
            expect_msg(sig, "tally", |m| match m {
                ServerMessage::Tally(t) if t.state == punch::protocol::TallyState::OnAir => {
                    Some(())
                }
                _ => None,
            })
            .await;
        }
        let (status, v) = api_request(
            &lb,
            reqwest::Method::GET,
            &format!("/api/session/{name}/connect"),
            admin,
            None,
        )
        .await;
        assert_eq!(status, 200, "{v}");

        // closed through one node: gone on every node, and its peers told
        let (status, v) = delete_session(&cluster.node(others[0]).base, name, admin).await;
        assert_eq!(status, 200, "{v}");
        expect_closed(&mut tx).await;
        for node in &cluster.nodes {
            let (status, v, _) = view_at(&node.base, name, admin).await;
            assert_eq!(status, 410, "{v}");
        }
    });
}

#[test]
fn a_node_frozen_past_its_lease_cannot_write_to_a_session_another_node_took_over() {
    let cluster = Cluster::start(3, &[]);
    let n1 = cluster.node("n1");
    runtime().block_on(async {
        // made on n1, which owns it; a dashboard watches it there
        let created = create(&n1.base, json!({"name": "fenced"})).await;
        let admin = created["token"].as_str().unwrap().to_string();
        let mut watcher = connect(&n1.base, "fenced", &admin).await;
        watcher
            .send(&punch::protocol::ClientMessage::Watch)
            .await
            .unwrap();
        let (_, v, _) = view_at(&n1.base, "fenced", &admin).await;
        assert_eq!(v["node"], "n1");

        n1.signal(libc::SIGSTOP);
        let frozen = Instant::now();
        // through n2: once n1's lease has run out, another node serves the session
        let taken = within("the takeover", async {
            loop {
                let (status, v, answered) =
                    view_at(&cluster.node("n2").base, "fenced", &admin).await;
                if status == 200 && v["node"] != "n1" {
                    return answered;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        let took = frozen.elapsed();
        // (renewed at most a renewal interval before the freeze)
        assert!(
            took >= LEASE - RENEW,
            "taken over after {took:?}, before the lease ran out"
        );
        assert!(
            took < Duration::from_secs(12),
            "taken over only after {took:?}"
        );
        assert_ne!(taken, "n1");
        // the new owner changes the tally
        let (status, v, by) = tally_at(&cluster.lb.base, "fenced", &admin, "preview").await;
        assert_eq!((status, by.as_str()), (200, taken.as_str()), "{v}");

        // n1 wakes up with a stale write already waiting for it
        let stale = tokio::spawn({
            let (base, admin) = (n1.base.clone(), admin.clone());
            async move { tally_at(&base, "fenced", &admin, "on-air").await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        n1.signal(libc::SIGCONT);
        let (status, v, by) = stale.await.unwrap();
        if status == 200 {
            // n1 found out first and forwarded the request to the owner, which stored it
            assert_eq!(by, taken, "{v}");
        } else {
            // n1's own session task tried: the database refused its write
            assert_eq!(status, 503, "{v}");
            assert!(
                v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("another server took it over"),
                "{v}"
            );
            let (_, v, _) = view_at(&cluster.lb.base, "fenced", &admin).await;
            let tally = &v["streams"][0]["tally"];
            assert_eq!(tally, "preview", "n1's refused write did not land: {v}");
        }
        // n1 stops serving it: its dashboard is closed (to reconnect through the balancer)
        expect_closed(&mut watcher).await;
        within("n1 says it lost the session", async {
            while !n1.log().contains("lease was taken by another node")
                && !n1.log().contains("another node took this session over")
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        // and n1 itself now forwards to the owner
        let (status, v, answered) = view_at(&n1.base, "fenced", &admin).await;
        assert_eq!((status, answered.as_str()), (200, taken.as_str()), "{v}");
        assert_eq!(v["node"], taken.as_str());
    });
}

/// The lease and its renewal interval as `docs/architecture.md` documents them.
const LEASE: Duration = Duration::from_secs(3);
const RENEW: Duration = Duration::from_secs(1);

/// A side behind a NAT of `mapping` joins `name` through `base` (asking again while the
/// session has no node to serve it) and registers: its connection and the first `peer`.
async fn relayed_side(
    base: &str,
    name: &str,
    token: &str,
    role: Role,
    port: u16,
    mapping: punch::protocol::NatMapping,
) -> (punch::client::Signalling, punch::protocol::PeerInfo) {
    within("joining", async {
        loop {
            let Ok(mut sig) =
                punch::client::Signalling::connect(base, name, token, Duration::from_secs(10))
                    .await
            else {
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            };
            let mut reg = register(None, role, port);
            if let punch::protocol::ClientMessage::Register(r) = &mut reg {
                r.nat = Some(punch::protocol::NatReport {
                    mapped: Some(punch::protocol::Endpoint {
                        ip: "127.0.0.1".into(),
                        port,
                    }),
                    mapping,
                });
            }
            if sig.send(&reg).await.is_err() {
                continue;
            }
            loop {
                match sig.recv().await {
                    Ok(Some(ServerMessage::Peer(p))) => return (sig, p),
                    Ok(Some(_)) => continue,
                    _ => break,
                }
            }
        }
    })
    .await
}

/// Both sides of `relayed` join through `base`, the sender behind a NAT that maps per
/// destination (so the stream is relayed).
async fn relayed_pair(
    base: &str,
    (tx, rx): (&str, &str),
    (port_a, port_b): (u16, u16),
) -> (
    (punch::client::Signalling, punch::protocol::PeerInfo),
    (punch::client::Signalling, punch::protocol::PeerInfo),
) {
    use punch::protocol::NatMapping;
    tokio::join!(
        relayed_side(
            base,
            "relayed",
            tx,
            Role::Sender,
            port_a,
            NatMapping::EndpointDependent
        ),
        relayed_side(
            base,
            "relayed",
            rx,
            Role::Receiver,
            port_b,
            NatMapping::EndpointIndependent
        )
    )
}

#[test]
fn a_relayed_stream_is_relayed_again_by_the_node_that_takes_it_over() {
    let mut cluster = Cluster::start(3, &[]);
    let lb = cluster.lb.base.clone();
    let n1 = cluster.node("n1").base.clone();
    runtime().block_on(async {
        let created = create(&n1, json!({"name": "relayed"})).await;
        let admin = created["token"].as_str().unwrap().to_string();
        let (tx_token, rx_token) = (
            stream_token(&created, "default", "sender"),
            stream_token(&created, "default", "receiver"),
        );
        let (port_a, port_b) = (free_udp_port(), free_udp_port());
        // the sender's NAT maps per destination: the owner (n1) relays the stream
        let ((a, to_a), (b, to_b)) =
            relayed_pair(&lb, (&tx_token, &rx_token), (port_a, port_b)).await;
        assert!(to_a.relay && to_b.relay, "{to_a:?} {to_b:?}");
        assert_eq!(healthz(&n1).await["relays"], 1);

        // n1 dies with its relay; both sides come back through the balancer
        let killed = Instant::now();
        tokio::task::block_in_place(|| cluster.kill("n1"));
        drop((a, b));
        let ((a, to_a), (b, to_b)) =
            relayed_pair(&lb, (&tx_token, &rx_token), (port_a, port_b)).await;
        let took = killed.elapsed();
        assert!(to_a.relay && to_b.relay, "relayed again: {to_a:?} {to_b:?}");
        assert_eq!(to_a.passphrase, to_b.passphrase);
        assert!(
            took < Duration::from_secs(8),
            "re-paired {took:?} after the kill"
        );
        // through the relay of the node that serves the session now
        let view = eventually_view(&lb, "relayed", &admin, "RELAYING on another node", |v| {
            v["state"] == "RELAYING" && v["node"] != "n1"
        })
        .await;
        let owner = view["node"].as_str().unwrap();
        assert_eq!(healthz(&cluster.node(owner).base).await["relays"], 1);
        drop((a, b));
    });
}
