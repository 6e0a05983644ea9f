use std::sync::{Arc, LazyLock, Weak};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use punch::protocol::Role;

use crate::punchbase::{self, Engine, Media, PunchBase, PunchBaseExt, PunchBaseImpl};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "punchsrc",
        gst::DebugColorFlags::empty(),
        Some("Punch SRT source"),
    )
});

#[derive(Default)]
pub struct PunchSrc {}

#[glib::object_subclass]
impl ObjectSubclass for PunchSrc {
    const NAME: &'static str = "GstPunchSrc";
    type Type = super::PunchSrc;
    type ParentType = PunchBase;
    type Interfaces = (gst::URIHandler,);
}

impl ObjectImpl for PunchSrc {}

impl GstObjectImpl for PunchSrc {}

impl ElementImpl for PunchSrc {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            punchbase::metadata(
                "Punch SRT source",
                "Source/Network",
                "Receives over SRT in rendezvous mode from the peer of a Punch session (punch://HOST/SESSION?token=…)",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> =
            LazyLock::new(|| punchbase::pad_templates("src", gst::PadDirection::Src));
        TEMPLATES.as_ref()
    }
}

impl BinImpl for PunchSrc {}

impl PunchBaseImpl for PunchSrc {
    fn media(&self) -> Box<dyn Media> {
        Box::new(SrcMedia)
    }
}

impl URIHandlerImpl for PunchSrc {
    const URI_TYPE: gst::URIType = gst::URIType::Src;

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

/// The receiving side: `srtsrc` behind the ghost source pad, a live source. Downstream must
/// never see the inner source's restarts as the end of the stream.
struct SrcMedia;

impl Media for SrcMedia {
    fn role(&self) -> Role {
        Role::Receiver
    }

    fn cat(&self) -> gst::DebugCategory {
        *CAT
    }

    fn inner_factory(&self) -> &'static str {
        "srtsrc"
    }

    fn pad_name(&self) -> &'static str {
        "src"
    }

    fn element_flags(&self) -> gst::ElementFlags {
        gst::ElementFlags::SOURCE
    }

    fn live_source(&self) -> bool {
        true
    }

    fn ghost_pad(&self, templ: &gst::PadTemplate, _engine: Weak<Engine>) -> gst::GhostPad {
        gst::GhostPad::builder_from_template(templ)
            .name("src")
            .build()
    }

    fn constructed(&self, engine: &Arc<Engine>, ghost: &gst::GhostPad) {
        // A failing srtsrc pushes EOS after its error; the bin restarts it instead.
        let weak = Arc::downgrade(engine);
        ghost.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
            let is_eos = matches!(&info.data, Some(gst::PadProbeData::Event(e)) if e.type_() == gst::EventType::Eos);
            match weak.upgrade() {
                Some(engine) if is_eos && engine.take_inner_failure() => {
                    gst::PadProbeReturn::Handled
                }
                _ => gst::PadProbeReturn::Ok,
            }
        });
    }

    fn inner_started(&self, bin: &gst::Bin, _ghost: &gst::GhostPad) {
        let _ = bin.post_message(gst::message::Latency::builder().src(bin).build());
    }
}
