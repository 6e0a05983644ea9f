//! `punchsrc`: receives a stream from the other side of a Punch session over SRT.
//!
//! A subclass of `GstPunchBase` around `srtsrc`, a live source. It joins the session named by
//! its URI as the stream's **receiver**, waits for the sender's public address and the stream's
//! passphrase from the Punch server, then runs `srtsrc` in rendezvous mode towards it. A failing
//! `srtsrc` is restarted; downstream never sees its end-of-stream. `playbin uri=punch://…` and
//! `uridecodebin` pick it through its URI handler.
//!
//! ```sh
//! gst-launch-1.0 punchsrc uri='punch://punch.example.org:8787/show/cam1?token=TOKEN' \
//!     ! tsdemux ! h264parse ! openh264dec ! videoconvert ! autovideosink
//! ```
//!
//! Properties, bus messages and errors: `docs/elements.md`.

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
