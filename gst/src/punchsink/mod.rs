//! `punchsink`: sends a stream to the other side of a Punch session over SRT.
//!
//! A subclass of `GstPunchBase` around `srtsink`. It joins the session named by its URI as the
//! stream's **sender**, waits for the receiver's public address and the stream's passphrase from
//! the Punch server, then runs `srtsink` in rendezvous mode towards it: no IP, port or
//! passphrase to type. While the SRT link is down (not connected yet, restarting) a live
//! upstream never stalls (its buffers are dropped) and a non-live one waits (nothing is lost);
//! each time the link comes up the encoder upstream is asked for a key frame.
//!
//! * `imp.rs`: the GObject (the sink's own properties, the URI handler);
//! * `media.rs`: what the sink does with GStreamer (pads, events, the inner `srtsink`);
//! * `flow.rs`: the decisions: hold or drop, stalled or not, the rate cap;
//! * `fanout.rs`: a stream with several receivers: one leg (a `punchsink` of its own) per
//!   receiver behind a `tee`.
//!
//! ```sh
//! gst-launch-1.0 videotestsrc is-live=true ! video/x-raw,width=1280,height=720,framerate=25/1 \
//!     ! openh264enc ! h264parse config-interval=-1 ! mpegtsmux alignment=7 \
//!     ! punchsink uri='punch://punch.example.org:8787/show/cam1?token=TOKEN'
//! ```
//!
//! Properties, bus messages (`punch-health`, `punch-tally`, `punch-session`, `punch-link`) and
//! errors:
//! `docs/elements.md`.

use gst::glib;
use gst::prelude::*;

mod fanout;
mod flow;
mod imp;
mod media;

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
