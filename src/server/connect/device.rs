//! Connection strings of a stream with a device side, in each tool's own mode: the device
//! calls the relay or listens, the other side calls or listens accordingly. No rendezvous, so
//! no same-port condition, and ffmpeg connects natively (no srt-live-transmit pipe). Units as
//! each tool reads them: GStreamer and srt-live-transmit milliseconds, ffmpeg and OBS
//! microseconds; the stream ID goes in URLs as it is (neither tool decodes `%` escapes) and
//! to GStreamer as the `streamid` property (its URI parser takes `#` for a fragment).

use std::collections::BTreeMap;

use super::shell_quote;
use crate::protocol::srt_url::Link;
use crate::protocol::{ConnectionStrings, DeviceMode, DeviceView, Role, VmixFields};

/// Which end of the link a side is: where it calls, or the port it listens on.
pub(super) enum End<'a> {
    Caller {
        host: &'a str,
        port: u16,
        streamid: Option<&'a str>,
    },
    Listener {
        port: u16,
    },
}

/// The strings of one side, `role`, running as `end`, with the stream's secret and latency.
pub(super) fn strings(
    role: Role,
    end: End<'_>,
    device: &DeviceView,
    punch: String,
    mut notes: BTreeMap<String, String>,
) -> ConnectionStrings {
    let (host, port, streamid) = match end {
        End::Caller {
            host,
            port,
            streamid,
        } => (host, port, streamid),
        End::Listener { port } => ("", port, None),
    };
    let link = Link {
        host,
        port,
        passphrase: &device.passphrase,
        pbkeylen: device.pbkeylen,
    };
    let base = if host.is_empty() {
        link.listener()
    } else {
        link.caller()
    };
    let ms = device.latency;
    let us = u64::from(ms) * 1000;
    let sid = streamid
        .map(|s| format!("&streamid={s}"))
        .unwrap_or_default();
    let slt = format!("{base}&latency={ms}{sid}");
    let ff = format!("{base}&latency={us}&pkt_size=1316{sid}");
    let gst_uri = format!("{base}&latency={ms}");
    let gst_sid = streamid
        .map(|s| format!(" streamid={}", shell_quote(s)))
        .unwrap_or_default();
    let (gstreamer, srt_live_transmit, ffmpeg) = match role {
        Role::Sender => (
            format!(
                "gst-launch-1.0 -e videotestsrc is-live=true ! video/x-raw,width=1280,height=720,framerate=25/1 ! openh264enc ! h264parse config-interval=-1 ! mpegtsmux alignment=7 ! srtsink sync=false uri={}{gst_sid}",
                shell_quote(&gst_uri)
            ),
            format!("srt-live-transmit udp://:5000 {}", shell_quote(&slt)),
            format!("ffmpeg -re -i INPUT -c copy -f mpegts {}", shell_quote(&ff)),
        ),
        Role::Receiver => (
            format!(
                "gst-launch-1.0 -e srtsrc uri={}{gst_sid} ! queue ! filesink location=received.ts",
                shell_quote(&gst_uri)
            ),
            format!(
                "srt-live-transmit {} file://con > received.ts",
                shell_quote(&slt)
            ),
            format!(
                "ffmpeg -i {} -c copy -f mpegts received.ts",
                shell_quote(&ff)
            ),
        ),
    };
    let caller = !host.is_empty();
    notes.insert(
        "ffmpeg".into(),
        "ffmpeg connects by itself (latency in µs)".into(),
    );
    notes.insert(
        "obs".into(),
        match role {
            Role::Sender => "Settings → Stream → Custom, this URL as Server (latency in µs)".into(),
            Role::Receiver => {
                "a Media Source with this URL as Input (not a local file; latency in µs)".into()
            }
        },
    );
    if let Some(s) = streamid {
        notes.insert(
            "streamid".into(),
            format!(
                "the device must send stream ID {s}: the relay lets in only the caller that does"
            ),
        );
    }
    ConnectionStrings {
        punch,
        gstreamer,
        srt_live_transmit,
        ffmpeg,
        obs: ff.replace("&pkt_size=1316", ""),
        vmix: VmixFields {
            kind: if caller { "Caller" } else { "Listener" }.into(),
            hostname: host.to_string(),
            port,
            latency_ms: ms,
            passphrase: device.passphrase.clone(),
            key_length: device.pbkeylen,
            stream_id: streamid.map(String::from),
        },
        notes,
    }
}

/// The device side's strings: in its own mode, at the address its fields say.
pub(super) fn for_device(role: Role, device: &DeviceView, punch: String) -> ConnectionStrings {
    let mut notes = BTreeMap::new();
    notes.insert(
        "punch".into(),
        "this side is held by an SRT device, not a Punch element; the URI is for changing that"
            .into(),
    );
    let end = match device.mode {
        DeviceMode::Caller => {
            notes.insert(
                "relay".into(),
                format!(
                    "the device calls the server's relay at {}:{}; media stays encrypted end to end",
                    device.host, device.port
                ),
            );
            End::Caller {
                host: &device.host,
                port: device.port,
                streamid: device.streamid.as_deref(),
            }
        }
        _ => End::Listener { port: device.port },
    };
    strings(role, end, device, punch, notes)
}

/// The Punch side's strings when the other side is a device: `punchsink`/`punchsrc` do it all;
/// a third-party tool here must listen (for a caller device, behind the relay) or call (a
/// listener device).
pub(super) fn for_punch_side(
    role: Role,
    other: &DeviceView,
    local_port: u16,
    relay_port: Option<u16>,
    relay_host: &str,
    punch: String,
) -> ConnectionStrings {
    let mut notes = BTreeMap::new();
    notes.insert(
        "punch".into(),
        "for punchsink/punchsrc: they register and connect to the device by themselves".into(),
    );
    let end = match other.mode {
        DeviceMode::Caller => {
            notes.insert(
                "relay".into(),
                format!(
                    "the device calls the relay, which passes it on to this side's port {local_port} from {relay_host}:{}; a third-party tool listening here works only where the relay reaches that port (a public address or a forwarded port); behind NAT use punchsink/punchsrc, which open their NAT towards the relay",
                    relay_port.unwrap_or(0)
                ),
            );
            End::Listener { port: local_port }
        }
        _ => End::Caller {
            host: &other.host,
            port: other.port,
            streamid: None,
        },
    };
    strings(role, end, other, punch, notes)
}
