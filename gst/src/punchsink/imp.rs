use std::sync::{LazyLock, Mutex, Weak};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use punch::protocol::Role;

use crate::punchbase::{self, Engine, Media, PunchBase, PunchBaseExt, PunchBaseImpl};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "punchsink",
        gst::DebugColorFlags::empty(),
        Some("Punch SRT sink"),
    )
});

#[derive(Default)]
pub struct PunchSink {}

#[glib::object_subclass]
impl ObjectSubclass for PunchSink {
    const NAME: &'static str = "GstPunchSink";
    type Type = super::PunchSink;
    type ParentType = PunchBase;
    type Interfaces = (gst::URIHandler,);
}

impl ObjectImpl for PunchSink {}

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

impl PunchBaseImpl for PunchSink {
    fn media() -> Box<dyn Media> {
        Box::new(SinkMedia::default())
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

/// The sending side: `srtsink` behind the ghost sink pad. Upstream must never notice the inner
/// sink restarting: its buffers are dropped while it is down (a live source would stop on the
/// FLUSHING of an inactive pad), and its errors are absorbed.
#[derive(Default)]
struct SinkMedia {
    /// Drops buffers while the inner sink is down.
    drop_probe: Mutex<Option<gst::PadProbeId>>,
}

impl SinkMedia {
    /// Drop buffers until the inner sink runs.
    fn block_input(&self, ghost: &gst::GhostPad) {
        let mut probe = self.drop_probe.lock().unwrap();
        if probe.is_none() {
            // `Handled` consumes the buffer; `Drop` makes gstreamer-rs 0.25 unref a NULL pointer
            // (a GStreamer-CRITICAL per buffer).
            // While blocked an EOS cannot reach srtsink either: the bin posts it itself, so
            // `gst-launch-1.0 -e` and applications waiting for EOS still finish.
            *probe = ghost.add_probe(
                gst::PadProbeType::BUFFER
                    | gst::PadProbeType::BUFFER_LIST
                    | gst::PadProbeType::EVENT_DOWNSTREAM,
                |pad, info| match &info.data {
                    Some(gst::PadProbeData::Event(e)) if e.type_() == gst::EventType::Eos => {
                        if let Some(bin) = pad.parent_element() {
                            let _ =
                                bin.post_message(gst::message::Eos::builder().src(&bin).build());
                        }
                        gst::PadProbeReturn::Handled
                    }
                    Some(gst::PadProbeData::Event(_)) => gst::PadProbeReturn::Ok,
                    _ => gst::PadProbeReturn::Handled,
                },
            );
        }
    }

    fn unblock_input(&self, ghost: &gst::GhostPad) {
        if let Some(id) = self.drop_probe.lock().unwrap().take() {
            ghost.remove_probe(id);
        }
    }
}

/// Chain result: failures of a restarting inner sink are not upstream's problem.
fn absorb_failure(
    engine: &Weak<Engine>,
    res: Result<gst::FlowSuccess, gst::FlowError>,
) -> Result<gst::FlowSuccess, gst::FlowError> {
    match res {
        Err(gst::FlowError::Error | gst::FlowError::NotLinked | gst::FlowError::Flushing)
            if engine.upgrade().is_some_and(|e| e.active()) =>
        {
            Ok(gst::FlowSuccess::Ok)
        }
        other => other,
    }
}

impl Media for SinkMedia {
    fn role(&self) -> Role {
        Role::Sender
    }

    fn cat(&self) -> gst::DebugCategory {
        *CAT
    }

    fn inner_factory(&self) -> &'static str {
        "srtsink"
    }

    fn pad_name(&self) -> &'static str {
        "sink"
    }

    fn element_flags(&self) -> gst::ElementFlags {
        gst::ElementFlags::SINK
    }

    fn live_source(&self) -> bool {
        false
    }

    fn ghost_pad(&self, templ: &gst::PadTemplate, engine: Weak<Engine>) -> gst::GhostPad {
        let engine_list = engine.clone();
        gst::GhostPad::builder_from_template(templ)
            .name("sink")
            .chain_function(move |pad, parent, buffer| {
                absorb_failure(&engine, gst::ProxyPad::chain_default(pad, parent, buffer))
            })
            .chain_list_function(move |pad, parent, list| {
                absorb_failure(
                    &engine_list,
                    gst::ProxyPad::chain_list_default(pad, parent, list),
                )
            })
            .build()
    }

    fn configure_inner(&self, inner: &gst::Element) {
        // Never block a live source while connecting, never preroll: the bin is driven by
        // hand and must not go async inside a playing pipeline (`docs/srt-notes.md`).
        inner.set_property("wait-for-connection", false);
        inner.set_property("async", false);
        inner.set_property("sync", false);
    }

    fn constructed(&self, _engine: &std::sync::Arc<Engine>, ghost: &gst::GhostPad) {
        self.block_input(ghost);
        // srtsink waits for the connection before sending caps stream headers, whatever
        // wait-for-connection says, and fails for good if it times out (`docs/srt-notes.md`);
        // mpegtsmux repeats PAT/PMT in the stream anyway.
        ghost.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, |_, info| {
            if let Some(gst::PadProbeData::Event(ev)) = &mut info.data
                && let gst::EventView::Caps(c) = ev.view()
                && c.caps().iter().any(|s| s.has_field("streamheader"))
            {
                let mut caps = c.caps_owned();
                for s in caps.make_mut().iter_mut() {
                    s.remove_field("streamheader");
                }
                *ev = gst::event::Caps::new(&caps);
            }
            gst::PadProbeReturn::Ok
        });
    }

    fn inner_restarting(&self, ghost: &gst::GhostPad) {
        self.block_input(ghost);
        // Unlinking and relinking makes the sticky events (caps, segment) go to the restarted
        // sink again.
        let _ = ghost.set_target(None::<&gst::Pad>);
    }

    fn inner_configured(&self, ghost: &gst::GhostPad, inner: &gst::Element) {
        let _ = ghost.set_target(inner.static_pad("sink").as_ref());
    }

    fn inner_started(&self, _bin: &gst::Bin, ghost: &gst::GhostPad) {
        self.unblock_input(ghost);
    }

    fn inner_stopped(&self, ghost: &gst::GhostPad) {
        self.block_input(ghost);
    }
}
