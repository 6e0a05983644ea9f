use std::sync::LazyLock;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use punch::protocol::Role;

use crate::punchbin::{PunchBin, settings};

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

impl ObjectImpl for PunchSrc {
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
        let templ = obj.pad_template("src").expect("src template");
        self.bin.construct(obj.upcast_ref(), &templ);
    }
}

impl GstObjectImpl for PunchSrc {}

impl ElementImpl for PunchSrc {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Punch SRT source",
                "Source/Network",
                "Receives over SRT in rendezvous mode from the peer of a Punch session (punch://HOST/SESSION?token=…)",
                "The Punch developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            vec![
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &gst::Caps::new_any(),
                )
                .expect("src template"),
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

impl BinImpl for PunchSrc {
    fn handle_message(&self, msg: gst::Message) {
        if let Some(msg) = self.bin.handle_message(msg) {
            self.parent_handle_message(msg)
        }
    }
}

impl URIHandlerImpl for PunchSrc {
    const URI_TYPE: gst::URIType = gst::URIType::Src;

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
