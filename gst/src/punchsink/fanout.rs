//! One sender, many receivers. When the server says the stream has N receivers, `punchsink`
//! stops being one link and becomes N: its ghost pad feeds a `tee`, and each receiver slot gets
//! a branch of its own, a leaky `queue` and a `punchsink` leg (an element of this same type,
//! `receiver` = k) with its own signalling connection, SRT port, `srtsink`, restarts and health.
//! The element's own connection only watches the stream (tally, state, cues).
//!
//! * A leg whose receiver is slow, stalled or gone never holds the others up: its queue drops
//!   its oldest data (bounded in time and bytes) and the leg itself drops while its `srtsink`
//!   restarts, whatever upstream is.
//! * A leg's link coming up asks upstream for a key frame (the leg's own media does it), so a
//!   receiver that joins late decodes at once.
//! * A leg's error does not stop the pipeline: it becomes a warning naming the receiver, and
//!   the leg is started again after [`LEG_RESTART`].
//! * The legs' bus messages carry `receiver`; their tally, session and cue messages are the
//!   element's own once (the element posts those from its watching connection).
//!
//! The parent's gate (at its ghost pad) lets data in while any leg's link is up, so a non-live
//! source still waits for the first receiver.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::flow::Gate;
use super::imp::CAT;
use crate::punchbase::Engine;

/// What one leg's queue holds at most before it drops its oldest data: a second of media, and
/// never more than this many bytes.
const LEG_QUEUE_TIME: gst::ClockTime = gst::ClockTime::from_seconds(1);
const LEG_QUEUE_BYTES: u32 = 16 * 1024 * 1024;
/// A leg whose queue overflows asks for a key frame at most this often.
const OVERRUN_KEY_FRAME_EVERY: Duration = Duration::from_secs(1);
/// How long a failed leg rests before it starts again.
pub const LEG_RESTART: Duration = Duration::from_secs(2);

/// The fan-out state of one `punchsink`, shared with its pad functions.
pub struct FanOut {
    /// The element's gate at its ghost pad.
    gate: Arc<Gate>,
    /// The receivers it links with, once it fans out.
    receivers: Mutex<Option<u8>>,
    /// The receiver slots whose link is up now.
    up: Mutex<BTreeSet<u8>>,
}

impl FanOut {
    pub fn new(gate: Arc<Gate>) -> FanOut {
        FanOut {
            gate,
            receivers: Mutex::new(None),
            up: Mutex::new(BTreeSet::new()),
        }
    }

    /// The element links with several receivers (its own `srtsink` is out of the bin).
    pub fn active(&self) -> bool {
        self.receivers.lock().unwrap().is_some()
    }

    /// Fans the element `bin` out to `receivers` legs (on a GStreamer thread). Once per element:
    /// a later run (the element stopped and started again) finds its legs in place.
    pub fn build(&self, engine: &Arc<Engine>, receivers: u8) {
        let Some(bin) = engine.bin() else { return };
        {
            let mut current = self.receivers.lock().unwrap();
            if let Some(had) = *current {
                if had != receivers {
                    gst::warning!(
                        CAT,
                        obj = &bin,
                        "the stream now has {receivers} receivers; this element links with the {had} it had when it started"
                    );
                }
                drop(current);
                self.rearm();
                return;
            }
            *current = Some(receivers);
        }
        if let Err(e) = self.add_legs(&bin, engine, receivers) {
            gst::element_error!(
                bin,
                gst::CoreError::Negotiation,
                ("Cannot link with the stream's {receivers} receivers: {e}")
            );
            return;
        }
        self.rearm();
        gst::info!(CAT, obj = &bin, "linking with {receivers} receivers");
    }

    /// The gate at the ghost pad follows the legs: data goes in while any link is up (a live
    /// upstream always: the legs drop what they cannot send).
    fn rearm(&self) {
        self.gate.set_inner(true);
        self.gate.set_link(!self.up.lock().unwrap().is_empty());
    }

    fn add_legs(
        &self,
        bin: &gst::Bin,
        engine: &Arc<Engine>,
        receivers: u8,
    ) -> Result<(), glib::BoolError> {
        let parent = bin
            .downcast_ref::<super::PunchSink>()
            .ok_or_else(|| glib::bool_error!("not a punchsink"))?;
        let tee = gst::ElementFactory::make("tee")
            .name("fanout")
            .property("allow-not-linked", true)
            .build()?;
        bin.add(&tee)?;
        // The element's own srtsink links with nobody now: out of the bin, so that the bin's
        // EOS is its legs' EOS.
        if let Some(inner) = engine.inner() {
            let _ = inner.set_state(gst::State::Null);
            let _ = bin.remove(inner);
        }
        for k in 1..=receivers {
            let queue = gst::ElementFactory::make("queue")
                .name(format!("receiver-{k}-queue"))
                .property("max-size-buffers", 0u32)
                .property("max-size-bytes", LEG_QUEUE_BYTES)
                .property("max-size-time", LEG_QUEUE_TIME.nseconds())
                .property_from_str("leaky", "downstream")
                .build()?;
            let leg = new_leg(parent, k)?;
            // a leg that drops data (a slow receiver) gets a key frame soon after, instead of
            // a broken picture until the next one
            let last = std::sync::Mutex::new(None::<std::time::Instant>);
            queue.connect("overrun", false, move |args| {
                let queue = args[0].get::<gst::Element>().ok()?;
                let mut last = last.lock().unwrap();
                if last.is_some_and(|t| t.elapsed() < OVERRUN_KEY_FRAME_EVERY) {
                    return None;
                }
                *last = Some(std::time::Instant::now());
                queue.call_async(|queue| {
                    if let Some(pad) = queue.static_pad("sink") {
                        let event = gst_video::UpstreamForceKeyUnitEvent::builder()
                            .all_headers(true)
                            .build();
                        pad.push_event(event);
                    }
                });
                None
            });
            bin.add_many([&queue, leg.upcast_ref()])?;
            queue.link(&leg)?;
            let src = tee
                .request_pad_simple("src_%u")
                .ok_or_else(|| glib::bool_error!("tee gave no source pad"))?;
            let sink = queue.static_pad("sink").expect("queue has a sink pad");
            src.link(&sink)
                .map_err(|e| glib::bool_error!("linking the tee to leg {k}: {e:?}"))?;
            leg.sync_state_with_parent()?;
            queue.sync_state_with_parent()?;
        }
        tee.sync_state_with_parent()?;
        let ghost = bin
            .static_pad("sink")
            .and_then(|p| p.downcast::<gst::GhostPad>().ok())
            .ok_or_else(|| glib::bool_error!("no ghost sink pad"))?;
        ghost.set_target(tee.static_pad("sink").as_ref())?;
        Ok(())
    }

    /// A leg's message: returns what to pass on.
    pub fn leg_message(&self, engine: &Arc<Engine>, msg: gst::Message) -> Option<gst::Message> {
        let (Some(bin), Some(src)) = (engine.bin(), msg.src()) else {
            return Some(msg);
        };
        let Some(leg) = leg_of(&bin, src) else {
            return Some(msg);
        };
        let slot = leg.property::<u32>("receiver") as u8;
        match msg.view() {
            gst::MessageView::Element(e) => {
                let s = e.structure()?;
                match s.name().as_str() {
                    "punch-link" => {
                        let up = s.get::<bool>("connected").unwrap_or(false);
                        let mut links = self.up.lock().unwrap();
                        if up {
                            links.insert(slot);
                        } else {
                            links.remove(&slot);
                        }
                        let any = !links.is_empty();
                        drop(links);
                        self.gate.set_link(any);
                        Some(msg)
                    }
                    "punch-tally" => {
                        // one tally for the element: its own property and message
                        let stream = s.get::<String>("stream").unwrap_or_default();
                        let state = s.get::<String>("state").unwrap_or_default();
                        let tally = punch::protocol::TallyState::parse(&state)?;
                        if engine.tally() != tally {
                            engine.set_tally(&stream, tally);
                        }
                        None
                    }
                    // the element's own watching connection posts these
                    "punch-session" | "punch-cue" => None,
                    _ => Some(msg),
                }
            }
            gst::MessageView::Error(err) => {
                let text = err.error().to_string();
                self.leg_failed(engine, &leg, slot, &text);
                None
            }
            _ => Some(msg),
        }
    }

    /// A leg failed for good: the others go on; it rests and starts again.
    fn leg_failed(&self, engine: &Arc<Engine>, leg: &gst::Element, slot: u8, error: &str) {
        let Some(bin) = engine.bin() else { return };
        self.up.lock().unwrap().remove(&slot);
        gst::element_warning!(
            bin,
            gst::ResourceError::Write,
            (
                "The link to receiver {slot} failed ({error}); the other receivers are not affected, it starts again in {} s",
                LEG_RESTART.as_secs()
            )
        );
        let leg = leg.downgrade();
        crate::RUNTIME.spawn(async move {
            tokio::time::sleep(LEG_RESTART).await;
            let Some(leg) = leg.upgrade() else { return };
            // its run again, not its state: the queue in front goes on feeding it, and the tee
            // the others
            leg.call_async(|leg| {
                if let Some(base) = leg.downcast_ref::<crate::punchbase::PunchBase>()
                    && let Err(e) = crate::punchbase::restart_run(base)
                {
                    gst::warning!(CAT, obj = leg, "cannot start the leg again: {e}");
                }
            });
        });
    }
}

/// A new leg for receiver slot `k`: a `punchsink` with the element's settings.
fn new_leg(parent: &super::PunchSink, k: u8) -> Result<gst::Element, glib::BoolError> {
    let leg: super::PunchSink = glib::Object::builder()
        .property("name", format!("receiver-{k}"))
        .build();
    let ours = [
        super::PunchSink::static_type(),
        crate::punchbase::PunchBase::static_type(),
    ];
    // the element's writable properties (not the bin's, not the object's)
    for pspec in parent.list_properties() {
        let writable = pspec.flags().contains(glib::ParamFlags::WRITABLE);
        if !writable || !ours.contains(&pspec.owner_type()) || pspec.name() == "receiver" {
            continue;
        }
        leg.set_property_from_value(pspec.name(), &parent.property_value(pspec.name()));
    }
    leg.set_property("receiver", u32::from(k));
    // a fixed local port: one port per leg, from it upwards
    let port = parent.property::<u32>("local-port");
    if port != 0 {
        leg.set_property("local-port", (port + u32::from(k) - 1).min(65535));
    }
    leg.imp().make_leg();
    Ok(leg.upcast())
}

/// The leg a message comes from: the child of `bin` it comes from, if that is a `punchsink`.
fn leg_of(bin: &gst::Bin, src: &gst::Object) -> Option<gst::Element> {
    let mut obj = src.clone();
    loop {
        let parent = obj.parent()?;
        if &parent == bin.upcast_ref::<gst::Object>() {
            obj.downcast_ref::<super::PunchSink>()?;
            return obj.downcast().ok();
        }
        obj = parent;
    }
}
