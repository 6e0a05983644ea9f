use std::sync::{Arc, LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::media::{SinkMedia, SinkSettings};
use crate::punchbase::{self, Media, PunchBase, PunchBaseExt, PunchBaseImpl};

pub static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "punchsink",
        gst::DebugColorFlags::empty(),
        Some("Punch SRT sink"),
    )
});

/// The sink's own properties (the shared ones are the base's); its media reads them too.
#[derive(Default)]
pub struct PunchSink {
    settings: Arc<Mutex<SinkSettings>>,
}

#[glib::object_subclass]
impl ObjectSubclass for PunchSink {
    const NAME: &'static str = "GstPunchSink";
    type Type = super::PunchSink;
    type ParentType = PunchBase;
    type Interfaces = (gst::URIHandler,);
}

impl ObjectImpl for PunchSink {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecUInt::builder("hold-timeout")
                    .nick("Hold timeout")
                    .blurb("Seconds a non-live upstream (a file) waits for the SRT link before the element fails; a live upstream never waits")
                    .minimum(1)
                    .maximum(super::media::MAX_HOLD_TIMEOUT_S)
                    .default_value(super::media::DEFAULT_HOLD_TIMEOUT_S)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt64::builder("max-bitrate")
                    .nick("Maximum bitrate")
                    .blurb("Cap of the SRT sending rate in bit/s, retransmissions included; 0 = what a receiver's default buffer holds at the link's latency")
                    .maximum(super::media::MAX_BITRATE)
                    .default_value(0)
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings.lock().unwrap();
        match pspec.name() {
            "hold-timeout" => settings.hold_timeout_s = value.get().expect("type checked"),
            "max-bitrate" => settings.max_bitrate = value.get().expect("type checked"),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings.lock().unwrap();
        match pspec.name() {
            "hold-timeout" => settings.hold_timeout_s.to_value(),
            "max-bitrate" => settings.max_bitrate.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }
}

impl GstObjectImpl for PunchSink {}

impl ElementImpl for PunchSink {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            punchbase::metadata(
                "Punch SRT sink",
                "Sink/Network",
                "Sends over SRT in rendezvous mode to the peer of a Punch session (punch://HOST/SESSION?token=…)",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> =
            LazyLock::new(|| punchbase::pad_templates("sink", gst::PadDirection::Sink));
        TEMPLATES.as_ref()
    }
}

impl BinImpl for PunchSink {}

impl PunchSink {
    /// Makes this element one receiver's leg of a fanning-out `punchsink` (`fanout.rs`).
    pub(super) fn make_leg(&self) {
        self.settings.lock().unwrap().leg = true;
    }
}

impl PunchBaseImpl for PunchSink {
    fn media(&self) -> Box<dyn Media> {
        Box::new(SinkMedia::new(self.settings.clone()))
    }
}

impl URIHandlerImpl for PunchSink {
    const URI_TYPE: gst::URIType = gst::URIType::Sink;

    fn protocols() -> &'static [&'static str] {
        punchbase::PROTOCOLS
    }

    fn uri(&self) -> Option<String> {
        self.obj().punch_uri()
    }

    fn set_uri(&self, uri: &str) -> Result<(), glib::Error> {
        self.obj().set_punch_uri(uri)
    }
}
