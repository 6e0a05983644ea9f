use std::sync::LazyLock;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use punch::protocol::Role;

use crate::punchbin::PunchBin;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "punchsink",
        gst::DebugColorFlags::empty(),
        Some("Punch SRT sink"),
    )
});

pub struct PunchSink {
    bin: PunchBin,
}

impl Default for PunchSink {
    fn default() -> Self {
        PunchSink {
            bin: PunchBin::new(Role::Sender, *CAT),
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for PunchSink {
    const NAME: &'static str = "GstPunchSink";
    type Type = super::PunchSink;
    type ParentType = gst::Bin;
    type Interfaces = (gst::URIHandler,);
}

crate::punchbin::element::punch_element_impls!(
    PunchSink,
    long_name: "Punch SRT sink",
    klass: "Sink/Network",
    description: "Sends over SRT in rendezvous mode to the peer of a Punch session (punch://HOST/SESSION?token=…)",
    pad: "sink",
    direction: gst::PadDirection::Sink,
    uri_type: gst::URIType::Sink,
);
