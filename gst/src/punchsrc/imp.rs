use std::sync::LazyLock;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use punch::protocol::Role;

use crate::punchbin::PunchBin;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "punchsrc",
        gst::DebugColorFlags::empty(),
        Some("Punch SRT source"),
    )
});

pub struct PunchSrc {
    bin: PunchBin,
}

impl Default for PunchSrc {
    fn default() -> Self {
        PunchSrc {
            bin: PunchBin::new(Role::Receiver, *CAT),
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for PunchSrc {
    const NAME: &'static str = "GstPunchSrc";
    type Type = super::PunchSrc;
    type ParentType = gst::Bin;
    type Interfaces = (gst::URIHandler,);
}

crate::punchbin::element::punch_element_impls!(
    PunchSrc,
    long_name: "Punch SRT source",
    klass: "Source/Network",
    description: "Receives over SRT in rendezvous mode from the peer of a Punch session (punch://HOST/SESSION?token=…)",
    pad: "src",
    direction: gst::PadDirection::Src,
    uri_type: gst::URIType::Src,
);
