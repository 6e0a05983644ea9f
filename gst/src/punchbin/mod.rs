//! What `punchsink` and `punchsrc` share: a bin around one locked inner SRT element, driven by a
//! signalling task. The elements differ only in their role, their inner element and their pad.
//!
//! * NULL→READY checks the settings and that the inner element exists.
//! * READY→PAUSED starts the signalling task on the plugin runtime (never blocks).
//! * A `peer` message (re)configures the inner element and starts it from `call_async`.
//! * The inner element's errors restart it; its warnings are filtered (a bad passphrase
//!   becomes one clear error instead of a flood).
//! * PAUSED→READY cancels the task and stops the inner element at once.

pub(crate) mod element;
mod health;
pub mod settings;
mod signalling;

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use punch::protocol::{PeerInfo, Role, SessionState, TallyState};
use tokio_util::sync::CancellationToken;

pub use settings::Settings;

/// Inner failures tolerated within [`FAILURE_WINDOW`] before the element gives up.
const MAX_FAILURES: usize = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// First delay before restarting a failed inner element (doubling with each failure).
const RESTART_BACKOFF: Duration = Duration::from_millis(200);

/// Runtime state, behind one mutex (never held across `set_state` or signal emission).
#[derive(Default)]
struct State {
    /// Cancels the signalling task.
    cancel: Option<CancellationToken>,
    /// The SRT URI the inner element runs with.
    inner_uri: Option<String>,
    peer: Option<PeerInfo>,
    inner_running: bool,
    /// Sink only: drops buffers while the inner element is down.
    drop_probe: Option<gst::PadProbeId>,
    stream_state: Option<SessionState>,
    peer_address: Option<String>,
    tally: TallyState,
    failures: VecDeque<Instant>,
    /// The inner element reported an error and is being restarted (its EOS is not ours).
    inner_failed: bool,
    /// This start attempt's failure is counted (one failure can post several errors).
    failure_counted: bool,
    /// The "keeps failing" error was posted.
    gave_up: bool,
    /// One clear error for the passphrase warning flood.
    passphrase_error_posted: bool,
    /// Counts starts: work from an earlier run's task is ignored.
    run: u64,
}

impl State {
    /// Started and not stopped.
    fn active(&self) -> bool {
        self.cancel.as_ref().is_some_and(|c| !c.is_cancelled())
    }
}

/// How long the inner SRT element waits in one poll before it checks whether it must stop.
const POLL_TIMEOUT_MS: u32 = 100;

/// Shared between the element and its signalling task.
pub struct Shared {
    role: Role,
    cat: gst::DebugCategory,
    bin: OnceLock<glib::WeakRef<gst::Bin>>,
    inner: OnceLock<Option<gst::Element>>,
    ghost: OnceLock<gst::GhostPad>,
    inner_factory: &'static str,
    state: Mutex<State>,
    /// Serialises starting and stopping the inner element.
    lifecycle: Mutex<()>,
}

/// The engine an element embeds.
pub struct PunchBin {
    pub settings: Mutex<Settings>,
    shared: Arc<Shared>,
}

impl PunchBin {
    pub fn new(role: Role, cat: gst::DebugCategory) -> Self {
        let inner_factory = match role {
            Role::Sender => "srtsink",
            Role::Receiver => "srtsrc",
        };
        PunchBin {
            settings: Mutex::new(Settings::default()),
            shared: Arc::new(Shared {
                role,
                cat,
                bin: OnceLock::new(),
                inner: OnceLock::new(),
                ghost: OnceLock::new(),
                inner_factory,
                state: Mutex::new(State::default()),
                lifecycle: Mutex::new(()),
            }),
        }
    }

    /// Creates the inner element (if installed) and the ghost pad; call from `constructed`.
    pub fn construct(&self, bin: &gst::Bin, templ: &gst::PadTemplate) {
        let shared = &self.shared;
        let _ = shared.bin.set(bin.downgrade());
        let pad_name = match shared.role {
            Role::Sender => "sink",
            Role::Receiver => "src",
        };
        let ghost = match shared.role {
            Role::Sender => {
                // While the inner sink restarts, its errors and flushing must not reach (and
                // stop) upstream: the bin restarts it and the live source carries on.
                let (weak, weak_list) = (Arc::downgrade(shared), Arc::downgrade(shared));
                gst::GhostPad::builder_from_template(templ)
                    .name(pad_name)
                    .chain_function(move |pad, parent, buffer| {
                        Shared::absorb_failure(
                            &weak,
                            gst::ProxyPad::chain_default(pad, parent, buffer),
                        )
                    })
                    .chain_list_function(move |pad, parent, list| {
                        Shared::absorb_failure(
                            &weak_list,
                            gst::ProxyPad::chain_list_default(pad, parent, list),
                        )
                    })
                    .build()
            }
            Role::Receiver => gst::GhostPad::builder_from_template(templ)
                .name(pad_name)
                .build(),
        };
        let inner = gst::ElementFactory::make(shared.inner_factory)
            .name("srt")
            .build()
            .ok();
        if let Some(inner) = &inner {
            inner.set_locked_state(true);
            if shared.role == Role::Sender {
                // Never block a live source while connecting (srt-facts §1.6), never preroll:
                // the bin is driven by hand and must not go async inside a playing pipeline.
                inner.set_property("wait-for-connection", false);
                inner.set_property("async", false);
                inner.set_property("sync", false);
            }
            bin.add(inner)
                .expect("adding the inner element to an empty bin");
            let target = inner
                .static_pad(pad_name)
                .expect("srt elements have static pads");
            ghost.set_target(Some(&target)).expect("ghost pad target");
        }
        bin.add_pad(&ghost).expect("adding the ghost pad");
        let weak = Arc::downgrade(shared);
        match shared.role {
            Role::Sender => {
                shared.block_input(&ghost);
                // srtsink waits for the connection before sending caps stream headers, whatever
                // wait-for-connection says, and fails for good if it times out (srt-facts §1.5);
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
            Role::Receiver => {
                // A failing srtsrc pushes EOS after its error; the bin restarts it instead.
                ghost.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
                    let is_eos = matches!(&info.data, Some(gst::PadProbeData::Event(e)) if e.type_() == gst::EventType::Eos);
                    match weak.upgrade() {
                        Some(shared) if is_eos && shared.take_inner_failure() => gst::PadProbeReturn::Handled,
                        _ => gst::PadProbeReturn::Ok,
                    }
                });
            }
        }
        let _ = shared.ghost.set(ghost);
        let _ = shared.inner.set(inner);
        bin.set_element_flags(match shared.role {
            Role::Sender => gst::ElementFlags::SINK,
            Role::Receiver => gst::ElementFlags::SOURCE,
        });
    }

    pub fn set_property(&self, bin: &gst::Bin, value: &glib::Value, pspec: &glib::ParamSpec) {
        let result = settings::set_property(&mut self.settings.lock().unwrap(), value, pspec);
        if let Err(e) = result {
            // reported at NULL→READY (see `Settings::uri_error`)
            gst::warning!(self.shared.cat, obj = bin, "invalid {}: {e}", pspec.name());
        }
    }

    pub fn property(&self, pspec: &glib::ParamSpec) -> glib::Value {
        if let Some(v) = settings::property(&self.settings.lock().unwrap(), pspec.name()) {
            return v;
        }
        let state = self.shared.state.lock().unwrap();
        match pspec.name() {
            "session-state" => state.stream_state.map(|s| s.as_str()).to_value(),
            "peer-address" => state.peer_address.to_value(),
            "tally" => state.tally.as_str().to_value(),
            "stats" => {
                drop(state);
                self.shared.stats().to_value()
            }
            other => unreachable!("unknown property {other}"),
        }
    }

    /// For `URIHandler::uri`.
    pub fn uri(&self) -> Option<String> {
        self.settings.lock().unwrap().uri()
    }

    /// For `URIHandler::set_uri`: only in NULL, and only our schemes.
    pub fn set_uri(&self, bin: &gst::Bin, uri: &str) -> Result<(), glib::Error> {
        if bin.current_state() > gst::State::Null {
            return Err(glib::Error::new(
                gst::URIError::BadState,
                "the URI can only be changed in the NULL state",
            ));
        }
        let scheme = uri
            .split("://")
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if scheme != "punch" && scheme != "punchs" {
            return Err(glib::Error::new(
                gst::URIError::UnsupportedProtocol,
                &format!("unsupported URI {uri:?}: use punch:// or punchs://"),
            ));
        }
        self.settings.lock().unwrap().set_uri(uri).map_err(|e| {
            glib::Error::new(gst::URIError::BadUri, &format!("invalid Punch URI: {e}"))
        })
    }

    pub fn change_state(
        &self,
        bin: &gst::Bin,
        transition: gst::StateChange,
        parent: impl FnOnce(gst::StateChange) -> Result<gst::StateChangeSuccess, gst::StateChangeError>,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        let shared = &self.shared;
        match transition {
            gst::StateChange::NullToReady => {
                if shared.inner().is_none() {
                    gst::element_error!(
                        bin,
                        gst::CoreError::MissingPlugin,
                        (
                            "The GStreamer element '{}' is not installed: install the Debian package gstreamer1.0-plugins-bad",
                            shared.inner_factory
                        )
                    );
                    return Err(gst::StateChangeError);
                }
                let target = self.settings.lock().unwrap().target();
                if let Err(e) = target {
                    gst::element_error!(bin, gst::ResourceError::Settings, ("{e}"));
                    return Err(gst::StateChangeError);
                }
            }
            gst::StateChange::PausedToReady => shared.stop(),
            _ => {}
        }
        let mut result = parent(transition)?;
        match transition {
            gst::StateChange::ReadyToPaused => {
                let settings = self.settings.lock().unwrap().clone();
                match signalling::Config::new(&settings, shared.role) {
                    Ok(config) => shared.clone().start(config),
                    Err(e) => {
                        gst::element_error!(bin, gst::ResourceError::Settings, ("{e}"));
                        return Err(gst::StateChangeError);
                    }
                }
                if shared.role == Role::Receiver {
                    result = gst::StateChangeSuccess::NoPreroll;
                }
            }
            gst::StateChange::PlayingToPaused | gst::StateChange::PausedToPlaying => {
                // The locked inner element follows pause and resume by hand.
                shared.follow_state(transition.next());
                if shared.role == Role::Receiver && transition == gst::StateChange::PlayingToPaused
                {
                    result = gst::StateChangeSuccess::NoPreroll;
                }
            }
            _ => {}
        }
        Ok(result)
    }

    /// Filters the inner element's messages; returns the ones to pass on.
    pub fn handle_message(&self, msg: gst::Message) -> Option<gst::Message> {
        let shared = &self.shared;
        let from_inner = match (msg.src(), shared.inner()) {
            (Some(src), Some(inner)) => {
                src == inner.upcast_ref::<gst::Object>() || src.has_as_ancestor(inner)
            }
            _ => false,
        };
        if !from_inner {
            return Some(msg);
        }
        match msg.view() {
            gst::MessageView::Error(e) => {
                shared.inner_failed(&e.error().to_string(), e.debug().as_deref().unwrap_or(""));
                None
            }
            gst::MessageView::Warning(w) => {
                let text = w.error().to_string();
                gst::debug!(shared.cat, "inner SRT element warning: {text}");
                if text.contains("passphrase") || text.contains("Password required") {
                    shared.passphrase_mismatch(&text);
                }
                None
            }
            _ => Some(msg),
        }
    }
}

impl Shared {
    fn inner(&self) -> Option<&gst::Element> {
        self.inner.get().and_then(Option::as_ref)
    }

    fn bin(&self) -> Option<gst::Bin> {
        self.bin.get().and_then(|w| w.upgrade())
    }

    /// Whether `run` is the element's current, not yet stopped run.
    fn is_current(&self, run: u64) -> bool {
        let state = self.state.lock().unwrap();
        state.run == run && state.active()
    }

    fn active(&self) -> bool {
        self.state.lock().unwrap().active()
    }

    fn stats(&self) -> Option<gst::Structure> {
        self.inner().map(|i| i.property::<gst::Structure>("stats"))
    }

    fn start(self: Arc<Self>, config: signalling::Config) {
        let cancel = CancellationToken::new();
        let run = {
            let mut state = self.state.lock().unwrap();
            let run = state.run + 1;
            *state = State {
                cancel: Some(cancel.clone()),
                drop_probe: state.drop_probe.take(),
                run,
                ..State::default()
            };
            run
        };
        // the read-only properties were reset: tell whoever follows them
        if let Some(bin) = self.bin() {
            for name in ["session-state", "peer-address", "tally"] {
                bin.notify(name);
            }
        }
        crate::RUNTIME.spawn(signalling::run(self, config, cancel, run));
    }

    /// Stops signalling and the inner element; returns promptly.
    fn stop(&self) {
        let cancel = self.state.lock().unwrap().cancel.take();
        if let Some(cancel) = cancel {
            cancel.cancel();
        }
        let _guard = self.lifecycle.lock().unwrap();
        if let Some(inner) = self.inner() {
            let _ = inner.set_state(gst::State::Null);
        }
        let mut state = self.state.lock().unwrap();
        state.inner_running = false;
        state.inner_uri = None;
        state.peer = None;
        drop(state);
        if self.role == Role::Sender
            && let Some(ghost) = self.ghost.get()
        {
            self.block_input(ghost);
        }
    }

    /// A running inner element goes to `state` with its bin.
    fn follow_state(&self, state: gst::State) {
        let _guard = self.lifecycle.lock().unwrap();
        if self.inner_running()
            && let (Some(inner), Some(bin)) = (self.inner(), self.bin())
        {
            if state == gst::State::Playing {
                self.hand_down_times(&bin, inner);
            }
            let _ = inner.set_state(state);
        }
    }

    /// A locked element misses the base and start time the bin hands its children at PLAYING:
    /// without them srtsrc would timestamp against a stale base and synced sinks would stall.
    fn hand_down_times(&self, bin: &gst::Bin, inner: &gst::Element) {
        if let Some(base_time) = bin.base_time() {
            inner.set_base_time(base_time);
        }
        inner.set_start_time(bin.start_time());
    }

    /// Sink: drop buffers until the inner sink runs, so a live source upstream never sees
    /// FLUSHING from an inactive pad (style.md).
    fn block_input(&self, ghost: &gst::GhostPad) {
        let mut state = self.state.lock().unwrap();
        if state.drop_probe.is_none() {
            // `Handled` consumes the buffer; `Drop` makes gstreamer-rs 0.25 unref a NULL pointer
            // (a GStreamer-CRITICAL per buffer).
            // While blocked an EOS cannot reach srtsink either: the bin posts it itself, so
            // `gst-launch-1.0 -e` and applications waiting for EOS still finish.
            state.drop_probe = ghost.add_probe(
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

    /// Sink chain result: failures of a restarting inner element are not upstream's problem.
    fn absorb_failure(
        weak: &std::sync::Weak<Shared>,
        res: Result<gst::FlowSuccess, gst::FlowError>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        match res {
            Err(gst::FlowError::Error | gst::FlowError::NotLinked | gst::FlowError::Flushing)
                if weak.upgrade().is_some_and(|s| s.active()) =>
            {
                Ok(gst::FlowSuccess::Ok)
            }
            other => other,
        }
    }

    /// Whether the inner element has failed since it last started (and forget it).
    fn take_inner_failure(&self) -> bool {
        std::mem::take(&mut self.state.lock().unwrap().inner_failed)
    }

    fn unblock_input(&self, ghost: &gst::GhostPad) {
        if let Some(id) = self.state.lock().unwrap().drop_probe.take() {
            ghost.remove_probe(id);
        }
    }

    /// The SRT URI for a peer: rendezvous, the local address always given (see
    /// `docs/srt-notes.md`).
    fn srt_uri(peer: &PeerInfo, local_address: IpAddr, local_port: u16, latency: u32) -> String {
        let link = punch::protocol::srt_url::Rendezvous {
            host: &peer.ip,
            port: peer.port,
            local_port,
            latency_ms: latency,
            passphrase: &peer.passphrase,
            pbkeylen: peer.pbkeylen,
        };
        // poll-timeout: by default srtsrc/srtsink wait in epoll with no timeout; after a peer
        // is lost, srtsrc's own reconnect then waits there until libsrt's 30 s rendezvous
        // timeout, and stopping the element waited as long (seen in the tests). Bounded, the
        // wait returns and notices the stop. (In the URI: setting `uri` resets the property.)
        format!(
            "{}&poll-timeout={POLL_TIMEOUT_MS}",
            link.gstreamer(&local_address.to_string())
        )
    }

    /// A new peer: (re)start the inner element towards it, from a GStreamer thread.
    fn apply_peer(self: &Arc<Self>, run: u64, peer: PeerInfo, uri: String) {
        {
            let mut state = self.state.lock().unwrap();
            let current = state.run == run && state.active();
            if !current || state.inner_uri.as_deref() == Some(uri.as_str()) {
                return;
            }
            state.peer_address = Some(format!("{}:{}", peer.ip, peer.port));
            state.peer = Some(peer);
            state.inner_uri = Some(uri);
        }
        let Some(bin) = self.bin() else { return };
        bin.notify("peer-address");
        self.schedule_restart(&bin);
    }

    fn schedule_restart(self: &Arc<Self>, bin: &gst::Bin) {
        let shared = self.clone();
        bin.call_async(move |_| shared.restart_inner());
    }

    /// Brings the inner element up with the current URI (or back up after a failure).
    fn restart_inner(self: &Arc<Self>) {
        let _guard = self.lifecycle.lock().unwrap();
        let uri = {
            let state = self.state.lock().unwrap();
            let active = state.active();
            match &state.inner_uri {
                Some(uri) if active => uri.clone(),
                _ => return,
            }
        };
        let (Some(inner), Some(ghost), Some(bin)) = (self.inner(), self.ghost.get(), self.bin())
        else {
            return;
        };
        {
            let mut state = self.state.lock().unwrap();
            state.inner_running = false;
            state.failure_counted = false;
        }
        if self.role == Role::Sender {
            self.block_input(ghost);
            // Unlinking and relinking makes the sticky events (caps, segment) go to the
            // restarted sink again.
            let _ = ghost.set_target(None::<&gst::Pad>);
        }
        let _ = inner.set_state(gst::State::Null);
        // The URI first, with every option in it: setting it resets the others (srt-facts §1.2).
        inner.set_property("uri", &uri);
        if self.role == Role::Sender {
            let _ = ghost.set_target(inner.static_pad("sink").as_ref());
        }
        gst::info!(
            self.cat,
            obj = &bin,
            "starting {} towards {}",
            self.inner_factory,
            uri.split('?').next().unwrap_or("")
        );
        self.hand_down_times(&bin, inner);
        match inner.sync_state_with_parent() {
            Ok(()) => {
                {
                    let mut state = self.state.lock().unwrap();
                    state.inner_running = true;
                    state.inner_failed = false;
                }
                if self.role == Role::Sender {
                    self.unblock_input(ghost);
                } else {
                    let _ = bin.post_message(gst::message::Latency::builder().src(&bin).build());
                }
            }
            // The element posts its own ERROR, which schedules the next attempt.
            Err(_) => gst::warning!(
                self.cat,
                obj = &bin,
                "{} could not start",
                self.inner_factory
            ),
        }
    }

    /// The inner element failed: restart it, unless it keeps failing.
    fn inner_failed(self: &Arc<Self>, error: &str, debug: &str) {
        let Some(bin) = self.bin() else { return };
        let (give_up, attempt) = {
            let mut state = self.state.lock().unwrap();
            if state.gave_up || !state.active() || state.failure_counted {
                return;
            }
            state.inner_failed = true;
            state.failure_counted = true;
            let now = Instant::now();
            state
                .failures
                .retain(|t| now.duration_since(*t) < FAILURE_WINDOW);
            state.failures.push_back(now);
            state.gave_up = state.failures.len() >= MAX_FAILURES;
            (state.gave_up, state.failures.len() as u32)
        };
        if give_up {
            // Posted from a GStreamer thread: this may run inside the inner element's state
            // change, and an application may stop the pipeline from its error handler.
            let (error, debug) = (error.to_string(), debug.to_string());
            bin.call_async(move |bin| {
                gst::element_error!(
                    bin,
                    gst::ResourceError::Failed,
                    (
                        "The SRT element keeps failing ({MAX_FAILURES} times within {} s): {error}",
                        FAILURE_WINDOW.as_secs()
                    ),
                    ["{debug}"]
                );
            });
            return;
        }
        let delay = RESTART_BACKOFF * 2u32.pow(attempt.saturating_sub(1)).min(16);
        gst::warning!(
            self.cat,
            obj = &bin,
            "restarting the inner SRT element in {delay:?} after: {error} ({debug})"
        );
        let shared = self.clone();
        crate::RUNTIME.spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(bin) = shared.bin() {
                shared.schedule_restart(&bin);
            }
        });
    }

    /// libsrt reports a passphrase mismatch only as a stream of warnings on one side.
    fn passphrase_mismatch(&self, text: &str) {
        let Some(bin) = self.bin() else { return };
        let peer = {
            let mut state = self.state.lock().unwrap();
            if std::mem::replace(&mut state.passphrase_error_posted, true) {
                return;
            }
            state.peer_address.clone().unwrap_or_default()
        };
        gst::element_error!(
            bin,
            gst::ResourceError::NotAuthorized,
            ("Wrong SRT passphrase: the peer at {peer} refused ours ({text}). Both sides must take the passphrase from the same Punch session.")
        );
    }

    // -- updates from the signalling task ------------------------------------------------

    fn set_stream_state(&self, state: SessionState) {
        let changed = {
            let mut st = self.state.lock().unwrap();
            st.stream_state.replace(state) != Some(state)
        };
        if changed && let Some(bin) = self.bin() {
            bin.notify("session-state");
        }
    }

    fn set_tally(&self, stream: &str, tally: TallyState) {
        let Some(bin) = self.bin() else { return };
        self.state.lock().unwrap().tally = tally;
        bin.notify("tally");
        self.post(
            gst::Structure::builder("punch-tally")
                .field("stream", stream)
                .field("state", tally.as_str())
                .build(),
        );
    }

    fn post(&self, structure: gst::Structure) {
        if let Some(bin) = self.bin() {
            let _ = bin.post_message(gst::message::Element::builder(structure).src(&bin).build());
        }
    }

    fn inner_running(&self) -> bool {
        self.state.lock().unwrap().inner_running
    }
}
