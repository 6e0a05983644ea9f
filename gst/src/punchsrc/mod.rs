//! `punchsrc`: receives a stream from the other side of a Punch session over SRT.
//!
//! A bin around `srtsrc`. It joins the session named by its URI as the stream's **receiver**,
//! waits for the sender's public address and the stream's passphrase from the Punch server, then
//! runs `srtsrc` in rendezvous mode towards it. `playbin uri=punch://…` and `uridecodebin` pick it
//! through its URI handler.
//!
//! ```sh
//! gst-launch-1.0 punchsrc uri='punch://punch.example.org:8787/show/cam1?token=TOKEN' \
//!     ! tsdemux ! h264parse ! avdec_h264 ! videoconvert ! autovideosink
//! ```
//! (the sending side: `punchsink`).
//!
//! Behaviour: a live source (READY→PAUSED answers NO_PREROLL). Going to PAUSED never blocks;
//! media starts once the sender is known and SRT connects. A new sender address restarts
//! `srtsrc` towards it; a failing `srtsrc` is restarted (5 failures within 60 s fail the
//! pipeline); losing the signalling connection does not touch the media. NAT traversal (STUN
//! discovery from the SRT port, TTL priming, the server's relay with `session-state` RELAYING)
//! works as in `punchsink`.
//!
//! Properties, bus messages (`punch-health` with `role` "receiver": `retransmit-percent` is
//! absent, GStreamer 1.22's srtsrc has no receive-side retransmit counter; `loss-percent` is
//! lost / expected packets), errors: as `punchsink`, with RESOURCE/OPEN_READ for an unreachable
//! server or a missing peer, and CORE/MISSING_PLUGIN when `srtsrc` is not installed.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct PunchSrc(ObjectSubclass<imp::PunchSrc>) @extends crate::punchbase::PunchBase, gst::Bin, gst::Element, gst::Object,
        @implements gst::URIHandler, gst::ChildProxy;
}

pub fn register(plugin: Option<&gst::Plugin>) -> Result<(), glib::BoolError> {
    gst::Element::register(plugin, "punchsrc", gst::Rank::NONE, PunchSrc::static_type())
}
