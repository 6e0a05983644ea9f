use std::sync::LazyLock;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use punch::protocol::Role;

use crate::punchbin::{PunchBin, settings};

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

impl ObjectImpl for PunchSink {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(settings::properties);
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        self.bin.set_property(self.obj().upcast_ref(), value, pspec);
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        self.bin.property(pspec)
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        let templ = obj.pad_template("sink").expect("sink template");
        self.bin.construct(obj.upcast_ref(), &templ);
    }
}

impl GstObjectImpl for PunchSink {}

impl ElementImpl for PunchSink {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Punch SRT sink",
                "Sink/Network",
                "Sends over SRT in rendezvous mode to the peer of a Punch session (punch://HOST/SESSION?token=…)",
                "The Punch developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &gst::Caps::new_any(),
                )
                .expect("sink template"),
            ]
        });
        TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        self.bin
            .change_state(self.obj().upcast_ref(), transition, |t| {
                self.parent_change_state(t)
            })
    }
}

impl BinImpl for PunchSink {
    fn handle_message(&self, msg: gst::Message) {
        if let Some(msg) = self.bin.handle_message(msg) {
            self.parent_handle_message(msg)
        }
    }
}

impl URIHandlerImpl for PunchSink {
    const URI_TYPE: gst::URIType = gst::URIType::Sink;

    fn protocols() -> &'static [&'static str] {
        &["punch", "punchs"]
    }

    fn uri(&self) -> Option<String> {
        self.bin.uri()
    }

    fn set_uri(&self, uri: &str) -> Result<(), glib::Error> {
        self.bin.set_uri(self.obj().upcast_ref(), uri)
    }
}
