//! NAT traversal through real NATs: network namespaces with nftables NAT routers
//! (tests/natlab/lab.sh), the real `punch serve` on the "internet" side, a punchsink camera and
//! a punchsrc decoder each behind its own router. Each case asserts that H.264 MPEG-TS arrives
//! and which path the server chose (tests/natlab/run.sh). Needs root (CI runs as root); the lab
//! removes every namespace it made, also on failure, and touches nothing outside them.

mod common;

use std::process::Command;

use common::plugin_dir;

/// NAT lab cases running at once: each runs a server, two routers and two encoding pipelines;
/// all seven at once on a 2-core machine starve the timed direct attempts (a 6 s
/// `--direct-timeout` then gives way to the relay).
const AT_ONCE: usize = 3;

/// A place among the [`AT_ONCE`] cases that may run; held until dropped.
struct Turn;

static RUNNING: (std::sync::Mutex<usize>, std::sync::Condvar) =
    (std::sync::Mutex::new(0), std::sync::Condvar::new());

impl Turn {
    fn take() -> Turn {
        let (count, freed) = &RUNNING;
        let mut n = count.lock().unwrap_or_else(|e| e.into_inner());
        while *n >= AT_ONCE {
            n = freed.wait(n).unwrap_or_else(|e| e.into_inner());
        }
        *n += 1;
        Turn
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let (count, freed) = &RUNNING;
        *count.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        freed.notify_one();
    }
}

fn natlab(case: &str) {
    let _turn = Turn::take();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/natlab");
    let out = tempfile::Builder::new()
        .prefix(&format!("natlab-{case}-"))
        .tempdir()
        .unwrap()
        .keep();
    // Unique per process and case, short enough for interface names.
    let index = [
        "preserve-fw",
        "preserve-nofw-prime",
        "eim",
        "symmetric",
        "mixed",
        "device-eim",
        "device-symmetric",
        "tunnel-sender",
        "tunnel-both",
        "tunnel-unblock",
        "tunnel-tls443",
        "tunnel-after-relay",
    ]
    .iter()
    .position(|c| *c == case)
    .unwrap();
    let prefix = format!("pt{}{index}", std::process::id() % 100_000);
    let result = Command::new("bash")
        .arg(dir.join("run.sh"))
        .arg(case)
        .env("PUNCH_BIN", env!("CARGO_BIN_EXE_punch"))
        .env("GST_PLUGIN_PATH", plugin_dir())
        .env("NATLAB_OUT", &out)
        .env("NATLAB_PREFIX", &prefix)
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&result.stdout);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        result.status.success(),
        "NAT lab case {case} failed ({}); logs kept in {}\n{stdout}\n{stderr}",
        result.status,
        out.display()
    );
    println!("{stdout}");
    let _ = std::fs::remove_dir_all(&out);
    let leftover = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&leftover.stdout).contains(&prefix),
        "namespaces of {prefix} left behind"
    );
}

#[test]
fn port_preserving_nats_with_firewall_connect_directly() {
    natlab("preserve-fw");
}

#[test]
fn routers_without_input_firewall_connect_directly_thanks_to_priming() {
    natlab("preserve-nofw-prime");
}

#[test]
fn port_rewriting_endpoint_independent_nats_connect_directly_via_stun() {
    natlab("eim");
}

#[test]
fn symmetric_nats_are_relayed() {
    natlab("symmetric");
}

#[test]
fn one_symmetric_side_is_relayed() {
    natlab("mixed");
}

#[test]
fn a_caller_camera_behind_a_port_rewriting_nat_reaches_punchsrc_through_the_relay() {
    natlab("device-eim");
}

#[test]
fn a_caller_camera_behind_a_symmetric_nat_reaches_punchsrc_and_strangers_are_refused() {
    natlab("device-symmetric");
}

#[test]
fn a_camera_whose_network_drops_all_udp_is_tunnelled_to_a_decoder_on_udp() {
    natlab("tunnel-sender");
}

#[test]
fn two_networks_without_udp_meet_through_their_tunnels() {
    natlab("tunnel-both");
}

#[test]
fn a_tunnelled_camera_goes_on_when_its_network_lets_udp_through_again() {
    natlab("tunnel-unblock");
}

#[test]
fn a_camera_whose_network_lets_only_tcp_443_out_is_tunnelled_over_tls() {
    natlab("tunnel-tls443");
}

#[test]
fn a_camera_whose_stun_answers_but_no_other_udp_goes_direct_relay_then_tunnel() {
    natlab("tunnel-after-relay");
}
