//! `punchsink`: sends a stream to the other side of a Punch session over SRT.
//!
//! A bin around `srtsink`. It joins the session named by its URI as the stream's **sender**,
//! waits for the receiver's public address and the stream's passphrase from the Punch server,
//! then runs `srtsink` in rendezvous mode towards it: no IP, port or passphrase to type.
//!
//! ```sh
//! gst-launch-1.0 videotestsrc is-live=true ! video/x-raw,width=1280,height=720,framerate=25/1 \
//!     ! openh264enc ! h264parse config-interval=-1 ! mpegtsmux alignment=7 \
//!     ! punchsink uri='punch://punch.example.org:8787/show/cam1?token=TOKEN'
//! ```
//! (the receiving side: `punchsrc`).
//!
//! Behaviour:
//! * Going to PAUSED never blocks: signalling runs in the background. Until the peer is known and
//!   `srtsink` runs, buffers are dropped (a live source upstream keeps running); `srtsink` also
//!   drops while its SRT connection is being set up (`wait-for-connection=false`).
//! * A new peer address (the receiver restarted elsewhere) restarts `srtsink` towards it; a
//!   failing `srtsink` is restarted with backoff (its errors do not reach upstream), and only
//!   repeated failures (5 within 60 s) fail the pipeline. `streamheader` is removed from the caps
//!   (srtsink would block on it until connected); an EOS before any peer is answered by the bin.
//! * Losing the signalling connection does not touch the media; the element reconnects with
//!   backoff and re-registers.
//! * NAT traversal: before registering, STUN discovery from the very UDP port SRT will bind (the
//!   socket is closed again before SRT binds it); before SRT starts, TTL-limited priming towards
//!   the peer. When the server relays the stream (a symmetric NAT on either side, or no direct
//!   connection in time), `session-state` is RELAYING and SRT goes to the server's relay port.
//!   See docs/nat-traversal.md.
//!
//! Properties: `uri`, `server`, `session`, `stream`, `token`, `local-port` (0 = any free port),
//! `local-address` (0.0.0.0), `latency` (-1 = the session's), `label`, `health-interval` (1000 ms),
//! `peer-timeout` (0 = wait forever), `stun` (true: discover the SRT port's public address and
//! NAT behaviour from the server's STUN service before registering), `prime-ttl` (2: TTL of the
//! datagrams that open this side's NAT towards the peer before SRT starts; 0 = none); read-only and notifying: `session-state`, `peer-address`,
//! `tally`, `stats` (the inner `srtsink`'s; notifies every `health-interval`).
//!
//! Bus messages (element messages from this element):
//! * `punch-health` every `health-interval` while `srtsink` runs: `stream` (string), `role`
//!   ("sender"), `connected` (bool), `bitrate` (payload bit/s over the interval), `bytes-total`
//!   (payload bytes since `srtsink` started), `interval-ms`, and while connected `rtt-ms`,
//!   `retransmit-percent` (retransmitted packets / packets sent), `loss-percent` (lost / sent),
//!   `negotiated-latency-ms`, `bandwidth-mbps` (SRT's link estimate).
//! * `punch-tally`: `stream`, `state` ("off", "preview", "on-air").
//! * `punch-session`: `session`, `state` (the session's), `stream-state` (this stream's),
//!   `connected`, `total` (streams), `streams` ("name=STATE,…").
//!
//! Errors: invalid settings or `uri` (RESOURCE/SETTINGS), server unreachable after 5 attempts
//! (RESOURCE/OPEN_WRITE), token refused (RESOURCE/NOT_AUTHORIZED), unknown or closed session
//! (RESOURCE/NOT_FOUND), stream already has a sender (RESOURCE/BUSY), no peer within
//! `peer-timeout` (RESOURCE/OPEN_WRITE), wrong passphrase (RESOURCE/NOT_AUTHORIZED), `srtsink`
//! missing (CORE/MISSING_PLUGIN, names the Debian package).

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct PunchSink(ObjectSubclass<imp::PunchSink>) @extends crate::punchbase::PunchBase, gst::Bin, gst::Element, gst::Object,
        @implements gst::URIHandler, gst::ChildProxy;
}

pub fn register(plugin: Option<&gst::Plugin>) -> Result<(), glib::BoolError> {
    gst::Element::register(
        plugin,
        "punchsink",
        gst::Rank::NONE,
        PunchSink::static_type(),
    )
}
