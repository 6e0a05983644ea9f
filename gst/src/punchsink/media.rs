//! The sending side: `srtsink` behind the ghost sink pad. Upstream never notices the inner sink
//! restarting; what it sends while the SRT link is down is dropped (live) or held (non-live)
//! by the [`Gate`]; each time the link comes up the encoder is asked for a key frame, so the
//! receiver decodes from the first moment; a link that stops carrying data is restarted.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use gst::prelude::*;
use punch::protocol::Role;

use super::fanout::FanOut;
use super::flow::{self, Admission, Gate, StallWatch};
use super::imp::CAT;
use crate::punchbase::{Engine, Media, health};

pub const DEFAULT_HOLD_TIMEOUT_S: u32 = 30;
pub const MAX_HOLD_TIMEOUT_S: u32 = 86_400;
/// Added to the drain's wait at EOS, for the receiver's own scheduling.
const DRAIN_MARGIN: Duration = Duration::from_millis(50);
/// The `max-bitrate` ceiling, bit/s.
pub const MAX_BITRATE: u64 = 10_000_000_000;

/// The sink's own properties.
#[derive(Debug, Clone)]
pub struct SinkSettings {
    /// How long a non-live upstream's buffer waits for the link, seconds.
    pub hold_timeout_s: u32,
    /// libsrt's sending rate cap (bit/s); 0 = [`flow::auto_max_bitrate`].
    pub max_bitrate: u64,
    /// This element is one receiver's leg of another `punchsink` (`fanout.rs`): it drops while
    /// its link is down, whatever upstream is, so that it never holds the other legs up.
    pub leg: bool,
}

impl Default for SinkSettings {
    fn default() -> Self {
        SinkSettings {
            hold_timeout_s: DEFAULT_HOLD_TIMEOUT_S,
            max_bitrate: 0,
            leg: false,
        }
    }
}

pub struct SinkMedia {
    /// The element's `hold-timeout` and `max-bitrate`.
    settings: Arc<Mutex<SinkSettings>>,
    /// What may pass into srtsink now; shared with the pad functions.
    gate: Arc<Gate>,
    /// Recognises a link that stopped carrying data.
    watch: Mutex<StallWatch>,
    /// The legs, when the stream has several receivers.
    fan: Arc<FanOut>,
}

impl SinkMedia {
    pub fn new(settings: Arc<Mutex<SinkSettings>>) -> SinkMedia {
        let gate = Arc::new(Gate::default());
        SinkMedia {
            settings,
            fan: Arc::new(FanOut::new(gate.clone())),
            gate,
            watch: Mutex::new(StallWatch::default()),
        }
    }
}

/// What the pad functions need.
#[derive(Clone)]
struct Pads {
    engine: Weak<Engine>,
    gate: Arc<Gate>,
    settings: Arc<Mutex<SinkSettings>>,
    fan: Arc<FanOut>,
}

impl Pads {
    fn hold(&self) -> Duration {
        Duration::from_secs(self.settings.lock().unwrap().hold_timeout_s.into())
    }

    /// Asks upstream once per stream whether it is live; the answer decides whether buffers
    /// wait for the link.
    fn learn_liveness(&self, pad: &gst::GhostPad) {
        if self.gate.live().is_some() {
            return;
        }
        if self.settings.lock().unwrap().leg {
            self.gate.set_live(true);
            return;
        }
        let mut query = gst::query::Latency::new();
        // a source that does not answer is taken for live: dropped, never held
        let live = !pad.peer_query(&mut query) || query.result().0;
        gst::info!(
            CAT,
            obj = pad,
            "upstream is {}",
            if live {
                "live: its data is dropped while the SRT link is down"
            } else {
                "not live: its data waits for the SRT link"
            }
        );
        self.gate.set_live(live);
    }

    /// Lets `bytes` through the gate into srtsink with `push`, or drops, holds or refuses.
    fn pass(
        &self,
        pad: &gst::GhostPad,
        parent: Option<&gst::Object>,
        bytes: usize,
        push: impl FnOnce() -> Result<gst::FlowSuccess, gst::FlowError>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.learn_liveness(pad);
        let hold = self.hold();
        match self.gate.admit(hold) {
            Admission::Forward => {
                self.gate.entering(bytes);
                let res = push();
                self.gate.left();
                self.absorb_failure(res)
            }
            Admission::Drop => Ok(gst::FlowSuccess::Ok),
            // a leg never stops its queue's stream: the tee and the other legs depend on it
            Admission::Flushing if self.settings.lock().unwrap().leg => Ok(gst::FlowSuccess::Ok),
            Admission::Flushing => Err(gst::FlowError::Flushing),
            Admission::TimedOut => {
                if let Some(bin) = parent.and_then(|p| p.downcast_ref::<gst::Element>()) {
                    gst::element_error!(
                        bin,
                        gst::ResourceError::OpenWrite,
                        (
                            "No SRT link to the receiver within hold-timeout={} s: a non-live source's data waits for the receiver to connect. Start the receiver (or raise hold-timeout).",
                            hold.as_secs()
                        )
                    );
                }
                Err(gst::FlowError::Error)
            }
        }
    }

    /// Chain result: failures of a restarting inner sink are not upstream's problem.
    fn absorb_failure(
        &self,
        res: Result<gst::FlowSuccess, gst::FlowError>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        if res.is_err() && self.settings.lock().unwrap().leg {
            return Ok(gst::FlowSuccess::Ok);
        }
        match res {
            Err(gst::FlowError::Error | gst::FlowError::NotLinked | gst::FlowError::Flushing)
                if self.engine.upgrade().is_some_and(|e| e.active()) =>
            {
                Ok(gst::FlowSuccess::Ok)
            }
            other => other,
        }
    }

    /// At EOS on a connected link: waits until libsrt has sent everything it was given, and
    /// one latency period more for what the receiver reports lost, at most `hold-timeout`.
    /// (The application usually stops the pipeline at EOS, and libsrt discards what it has
    /// not sent when its socket closes.)
    fn drain(&self) {
        let Some(engine) = self.engine.upgrade() else {
            return;
        };
        let deadline = Instant::now() + self.hold();
        while let Some(stats) = engine.stats() {
            if !health::is_connected(&stats) {
                return;
            }
            let n = |f| health::number(&stats, f).unwrap_or(0.0);
            let sent = n("packets-sent") as i64;
            let resent = n("packets-retransmitted") as i64;
            let left = deadline.saturating_duration_since(Instant::now());
            if flow::drained(self.gate.forwarded_packets(), sent, resent) {
                // the receiver delivers each packet a latency after it was sent
                let grace = Duration::from_secs_f64(
                    (n("negotiated-latency-ms") + 2.0 * n("rtt-ms")) / 1000.0,
                ) + DRAIN_MARGIN;
                self.gate.pause(grace.min(left));
                return;
            }
            if left.is_zero() || !self.gate.pause(Duration::from_millis(10).min(left)) {
                return;
            }
        }
    }

    /// Downstream events: flushes and new streams reach the gate; EOS waits for the drain, or
    /// is posted by the bin itself while srtsink is down (so `gst-launch-1.0 -e` and
    /// applications waiting for EOS still finish).
    fn event(&self, pad: &gst::Pad, event: &gst::Event) -> gst::PadProbeReturn {
        match event.view() {
            gst::EventView::FlushStart(_) => self.gate.set_flushing(true),
            gst::EventView::FlushStop(_) => self.gate.set_flushing(false),
            gst::EventView::StreamStart(_) => self.gate.new_stream(),
            // the legs drain and end on their own; the bin's EOS is theirs
            gst::EventView::Eos(_) if self.fan.active() => {}
            gst::EventView::Eos(_) => {
                let running = self.engine.upgrade().is_some_and(|e| e.inner_running());
                if !running {
                    if let Some(bin) = pad.parent_element() {
                        let _ = bin.post_message(gst::message::Eos::builder().src(&bin).build());
                    }
                    return gst::PadProbeReturn::Handled;
                }
                self.drain();
            }
            _ => {}
        }
        gst::PadProbeReturn::Ok
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
        let pads = Pads {
            engine,
            gate: self.gate.clone(),
            settings: self.settings.clone(),
            fan: self.fan.clone(),
        };
        let list_pads = pads.clone();
        gst::GhostPad::builder_from_template(templ)
            .name("sink")
            .chain_function(move |pad, parent, buffer| {
                pads.pass(pad, parent, buffer.size(), || {
                    gst::ProxyPad::chain_default(pad, parent, buffer)
                })
            })
            .chain_list_function(move |pad, parent, list| {
                let bytes = list.iter().map(|b| b.size()).sum();
                list_pads.pass(pad, parent, bytes, || {
                    gst::ProxyPad::chain_list_default(pad, parent, list)
                })
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

    fn constructed(&self, engine: &Arc<Engine>, ghost: &gst::GhostPad) {
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
        let pads = Pads {
            engine: Arc::downgrade(engine),
            gate: self.gate.clone(),
            settings: self.settings.clone(),
            fan: self.fan.clone(),
        };
        ghost.add_probe(
            gst::PadProbeType::EVENT_DOWNSTREAM | gst::PadProbeType::EVENT_FLUSH,
            move |pad, info| match &info.data {
                Some(gst::PadProbeData::Event(e)) => pads.event(pad.upcast_ref(), e),
                _ => gst::PadProbeReturn::Ok,
            },
        );
    }

    fn starting(&self) {
        self.gate.reset();
        self.watch.lock().unwrap().reset();
    }

    fn inner_started(&self, _bin: &gst::Bin, _ghost: &gst::GhostPad) {
        self.gate.set_inner(true);
    }

    fn inner_restarting(&self, ghost: &gst::GhostPad) {
        self.gate.set_inner(false);
        // Unlinking and relinking makes the sticky events (caps, segment) go to the restarted
        // sink again.
        let _ = ghost.set_target(None::<&gst::Pad>);
    }

    fn inner_configured(&self, ghost: &gst::GhostPad, inner: &gst::Element) {
        let _ = ghost.set_target(inner.static_pad("sink").as_ref());
    }

    fn inner_stopped(&self, _ghost: &gst::GhostPad) {
        self.gate.stop();
    }

    fn link_changed(&self, up: bool, ghost: &gst::GhostPad) {
        self.gate.set_link(up);
        self.watch.lock().unwrap().reset();
        if up {
            // The receiver can only decode from a key frame: ask the encoder for one now
            // rather than lose the picture until its next GOP.
            let event = gst_video::UpstreamForceKeyUnitEvent::builder()
                .all_headers(true)
                .build();
            let handled = ghost.push_event(event);
            gst::debug!(
                CAT,
                obj = ghost,
                "link up: key frame requested upstream (handled: {handled})"
            );
        }
    }

    fn stalled(&self, stats: &gst::StructureRef) -> Option<String> {
        let sent = health::number(stats, "packets-sent")? as i64;
        let (offered, inside) = self.gate.demand();
        let idle = self
            .watch
            .lock()
            .unwrap()
            .observe(Instant::now(), sent, offered, inside)?;
        Some(format!(
            "libsrt has sent nothing for {:.1} s although data is waiting. The receiver's buffer overflowed \
             (the input is faster than the link carries at this latency, or the receiver cannot keep up); \
             lower the input bitrate or set max-bitrate",
            idle.as_secs_f64()
        ))
    }

    fn fan_out(&self, engine: &Arc<Engine>, receivers: u8) {
        let Some(bin) = engine.bin() else { return };
        let (fan, engine) = (self.fan.clone(), engine.clone());
        bin.call_async(move |_| fan.build(&engine, receivers));
    }

    fn child_message(&self, engine: &Arc<Engine>, msg: gst::Message) -> Option<gst::Message> {
        self.fan.leg_message(engine, msg)
    }

    fn srt_options(&self, latency_ms: u32) -> String {
        let bits = match self.settings.lock().unwrap().max_bitrate {
            0 => flow::auto_max_bitrate(latency_ms),
            set => set,
        };
        // libsrt's maxbw is in bytes per second
        format!("&maxbw={}", (bits / 8).max(1))
    }
}
