//! Connection strings: for each side of a stream, ready-to-paste settings for every client that
//! can take part in an SRT rendezvous, written for each tool's real behaviour (`docs/srt-notes.md`
//! and `docs/dashboard.md`): GStreamer and srt-live-transmit take milliseconds and a local port;
//! ffmpeg cannot be a rendezvous peer, so its entry pipes through srt-live-transmit; OBS and vMix
//! bind the remote port number locally, so they only work when both ends use the same port,
//! which the notes say next to the string.

use std::collections::BTreeMap;

mod device;

use super::session::StreamCoordinates;
use crate::protocol::srt_url::Rendezvous;
use crate::protocol::{ConnectionStrings, Endpoint, Role, StreamConnect, VmixFields};

/// Wraps `s` in single quotes for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Where one side sends to and binds.
struct Side<'a> {
    role: Role,
    /// The address this side targets (the peer's public one, or its relay port).
    remote_host: &'a str,
    remote_port: u16,
    local_port: u16,
    relayed: bool,
}

/// The strings of one stream, or which sides are missing.
pub fn stream_strings(
    c: &StreamCoordinates,
    relay_host: &str,
    punch_uris: [String; 2],
) -> Result<StreamConnect, String> {
    if let Some(strings) = device_stream_strings(c, relay_host, &punch_uris) {
        return Ok(strings);
    }
    let (sender, receiver) = match (&c.sender, &c.receiver) {
        (Some(s), Some(r)) => (s, r),
        (s, r) => {
            let missing: Vec<&str> = [
                ("sender (peer a)", s.is_none()),
                ("receiver (peer b)", r.is_none()),
            ]
            .into_iter()
            .filter_map(|(name, gone)| gone.then_some(name))
            .collect();
            return Err(format!(
                "stream {:?} has no registered {} yet; connection strings exist once both sides are registered",
                c.name,
                missing.join(" and no ")
            ));
        }
    };
    let [uri_a, uri_b] = punch_uris;
    let side = |role: Role,
                me: &(Endpoint, u16),
                other: &'_ (Endpoint, u16)|
     -> (String, u16, u16, bool) {
        match c.relay_ports {
            Some(ports) => (
                relay_host.to_string(),
                ports[if role == Role::Sender { 0 } else { 1 }],
                me.1,
                true,
            ),
            None => (other.0.ip.clone(), other.0.port, me.1, false),
        }
    };
    let (host_a, port_a, local_a, relayed) = side(Role::Sender, sender, receiver);
    let (host_b, port_b, local_b, _) = side(Role::Receiver, receiver, sender);
    Ok(StreamConnect {
        for_peer_a: strings(
            c,
            uri_a,
            Side {
                role: Role::Sender,
                remote_host: &host_a,
                remote_port: port_a,
                local_port: local_a,
                relayed,
            },
        ),
        for_peer_b: strings(
            c,
            uri_b,
            Side {
                role: Role::Receiver,
                remote_host: &host_b,
                remote_port: port_b,
                local_port: local_b,
                relayed,
            },
        ),
    })
}

/// The strings of a stream with a device side (`None` for two Punch peers): available as soon
/// as the device's fields are (a caller's once its relay runs), whether or not the Punch side
/// has registered yet.
fn device_stream_strings(
    c: &StreamCoordinates,
    relay_host: &str,
    punch_uris: &[String; 2],
) -> Option<StreamConnect> {
    let (device_role, view) = [Role::Sender, Role::Receiver]
        .into_iter()
        .find_map(|r| Some((r, c.devices[side_index(r)].as_ref()?)))?;
    let punch_role = device_role.other();
    let local_port = match punch_role {
        Role::Sender => c.sender.as_ref(),
        Role::Receiver => c.receiver.as_ref(),
    }
    .map_or(9000, |(_, port)| *port);
    let relay_port = c.relay_ports.map(|p| p[side_index(punch_role)]);
    let for_device = device::for_device(
        device_role,
        view,
        punch_uris[side_index(device_role)].clone(),
    );
    let for_punch = device::for_punch_side(
        punch_role,
        view,
        local_port,
        relay_port,
        relay_host,
        punch_uris[side_index(punch_role)].clone(),
    );
    Some(match device_role {
        Role::Sender => StreamConnect {
            for_peer_a: for_device,
            for_peer_b: for_punch,
        },
        Role::Receiver => StreamConnect {
            for_peer_a: for_punch,
            for_peer_b: for_device,
        },
    })
}

fn side_index(role: Role) -> usize {
    match role {
        Role::Sender => 0,
        Role::Receiver => 1,
    }
}

fn strings(c: &StreamCoordinates, punch: String, s: Side<'_>) -> ConnectionStrings {
    let link = Rendezvous {
        host: s.remote_host,
        port: s.remote_port,
        local_port: s.local_port,
        latency_ms: c.latency,
        passphrase: &c.passphrase,
        pbkeylen: c.pbkeylen,
    };
    let gst_uri = link.gstreamer("0.0.0.0");
    let slt_uri = link.srt_live_transmit();
    let obs_uri = link.obs();
    let (gstreamer, srt_live_transmit, ffmpeg) = match s.role {
        Role::Sender => (
            format!(
                "gst-launch-1.0 -e videotestsrc is-live=true ! video/x-raw,width=1280,height=720,framerate=25/1 ! openh264enc ! h264parse config-interval=-1 ! mpegtsmux alignment=7 ! srtsink sync=false wait-for-connection=false uri={}",
                shell_quote(&gst_uri)
            ),
            format!("srt-live-transmit udp://:5000 {}", shell_quote(&slt_uri)),
            format!(
                "ffmpeg -re -i INPUT -c copy -f mpegts - | srt-live-transmit file://con {}",
                shell_quote(&slt_uri)
            ),
        ),
        Role::Receiver => (
            format!(
                "gst-launch-1.0 -e srtsrc uri={} ! queue ! filesink location=received.ts",
                shell_quote(&gst_uri)
            ),
            format!(
                "srt-live-transmit {} file://con > received.ts",
                shell_quote(&slt_uri)
            ),
            format!(
                "srt-live-transmit {} file://con | ffmpeg -i - -c copy -f mpegts received.ts",
                shell_quote(&slt_uri)
            ),
        ),
    };
    let mut notes = BTreeMap::new();
    notes.insert(
        "punch".into(),
        "for punchsink/punchsrc: they register, discover their public address and connect by themselves".into(),
    );
    notes.insert(
        "srt_live_transmit".into(),
        format!(
            "binds local UDP port {}; the other side was given this side's registered address, so keep that port{}",
            s.local_port,
            if s.role == Role::Sender { "; it sends the MPEG-TS your encoder sends to UDP port 5000" } else { "" }
        ),
    );
    notes.insert(
        "gstreamer".into(),
        format!("binds local UDP port {}", s.local_port),
    );
    notes.insert(
        "ffmpeg".into(),
        format!(
            "ffmpeg cannot be an SRT rendezvous peer (it binds the remote address), so it pipes through srt-live-transmit, which binds local port {}{}",
            s.local_port,
            if s.role == Role::Sender { "; replace INPUT" } else { "" }
        ),
    );
    let same_port = s.local_port == s.remote_port;
    let same_port_note = |tool: &str| {
        let base = format!(
            "{tool} binds the remote port number ({}) locally: it works only where this side registered that same port{} and its NAT preserves ports",
            s.remote_port,
            if same_port {
                String::new()
            } else {
                format!(
                    " (it registered {}, so re-register with port {})",
                    s.local_port, s.remote_port
                )
            }
        );
        if s.relayed {
            format!(
                "{base}; this stream is relayed, and the relay port differs per side, so {tool} cannot use it"
            )
        } else {
            base
        }
    };
    notes.insert(
        "obs".into(),
        match s.role {
            Role::Sender => format!("{}; latency is in µs; needs libsrt ≥ 1.5.2", same_port_note("OBS")),
            Role::Receiver => "OBS receives through its Media Source, which uses ffmpeg's SRT protocol and cannot be a rendezvous peer: run the srt_live_transmit string with `udp://127.0.0.1:5000` instead of `file://con` and add a Media Source for udp://127.0.0.1:5000".into(),
        },
    );
    notes.insert(
        "vmix".into(),
        format!("{}; latency in ms", same_port_note("vMix")),
    );
    if s.relayed {
        notes.insert(
            "relay".into(),
            format!(
                "this stream goes through the server's relay at {}:{}; only this side's registered address is let through",
                s.remote_host, s.remote_port
            ),
        );
    }
    ConnectionStrings {
        punch,
        gstreamer,
        srt_live_transmit,
        ffmpeg,
        obs: match s.role {
            Role::Sender => obs_uri,
            Role::Receiver => String::new(),
        },
        vmix: VmixFields {
            kind: "Rendezvous".into(),
            hostname: s.remote_host.to_string(),
            port: s.remote_port,
            latency_ms: c.latency,
            passphrase: c.passphrase.clone(),
            key_length: c.pbkeylen,
            stream_id: None,
        },
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coords(relay: Option<[u16; 2]>) -> StreamCoordinates {
        StreamCoordinates {
            name: "cam1".into(),
            passphrase: "Abc123def456ghi789jkl012mno345pq".into(),
            pbkeylen: 16,
            latency: 250,
            sender: Some((
                Endpoint {
                    ip: "203.0.113.2".into(),
                    port: 24419,
                },
                9000,
            )),
            receiver: Some((
                Endpoint {
                    ip: "198.51.100.2".into(),
                    port: 9000,
                },
                9000,
            )),
            relay_ports: relay,
            devices: [None, None],
            receivers: 1,
        }
    }

    #[test]
    fn units_ports_and_quoting() {
        let s = stream_strings(&coords(None), "punch.example", ["a".into(), "b".into()]).unwrap();
        let a = &s.for_peer_a;
        assert!(a.gstreamer.contains("uri='srt://198.51.100.2:9000?mode=rendezvous&localaddress=0.0.0.0&localport=9000&latency=250&passphrase="), "{}", a.gstreamer);
        assert!(
            a.srt_live_transmit.contains(
                "'srt://198.51.100.2:9000?mode=rendezvous&adapter=0.0.0.0&port=9000&latency=250&"
            ),
            "{}",
            a.srt_live_transmit
        );
        assert!(a.obs.contains("latency=250000"), "{}", a.obs);
        assert!(
            a.ffmpeg.starts_with("ffmpeg -re -i INPUT")
                && a.ffmpeg.contains("| srt-live-transmit file://con 'srt://")
        );
        assert_eq!(a.vmix.latency_ms, 250);
        assert_eq!(a.vmix.kind, "Rendezvous");
        // The receiver targets the sender's mapped port 24419 but binds its own 9000: OBS and vMix
        // cannot do that, and the notes say so.
        let b = &s.for_peer_b;
        assert!(
            b.srt_live_transmit.contains("srt://203.0.113.2:24419?")
                && b.srt_live_transmit.contains("port=9000&")
        );
        assert!(
            b.notes["vmix"].contains("re-register with port 24419"),
            "{}",
            b.notes["vmix"]
        );
        assert!(b.notes["obs"].contains("cannot be a rendezvous peer"));
        assert!(
            a.notes["vmix"].contains("preserves ports") && !a.notes["vmix"].contains("re-register")
        );
    }

    #[test]
    fn relayed_sides_target_their_relay_port() {
        let s = stream_strings(
            &coords(Some([40000, 40001])),
            "punch.example",
            ["a".into(), "b".into()],
        )
        .unwrap();
        assert!(
            s.for_peer_a
                .gstreamer
                .contains("srt://punch.example:40000?")
        );
        assert!(
            s.for_peer_b
                .gstreamer
                .contains("srt://punch.example:40001?")
        );
        assert!(s.for_peer_b.notes["relay"].contains("relay"));
    }

    #[test]
    fn missing_sides_are_named() {
        let mut c = coords(None);
        c.receiver = None;
        let e = stream_strings(&c, "h", ["a".into(), "b".into()]).unwrap_err();
        assert!(e.contains("no registered receiver (peer b)"), "{e}");
        c.sender = None;
        let e = stream_strings(&c, "h", ["a".into(), "b".into()]).unwrap_err();
        assert!(
            e.contains("sender (peer a) and no receiver (peer b)"),
            "{e}"
        );
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(shell_quote("a'b&c"), r"'a'\''b&c'");
    }
}
