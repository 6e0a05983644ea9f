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
    /// One clear error for the passphrase warning flood.
    passphrase_error_posted: bool,
}

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
        let ghost = gst::GhostPad::builder_from_template(templ)
            .name(pad_name)
            .build();
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
        if shared.role == Role::Sender {
            shared.block_input(&ghost);
        }
        let _ = shared.ghost.set(ghost);
        let _ = shared.inner.set(inner);
        bin.set_element_flags(match shared.role {
            Role::Sender => gst::ElementFlags::SINK,
            Role::Receiver => gst::ElementFlags::SOURCE,
        });
    }

    pub fn set_property(&self, bin: &gst::Bin, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings.lock().unwrap();
        if let Err(e) = settings::set_property(&mut settings, value, pspec) {
            drop(settings);
            gst::element_error!(
                bin,
                gst::ResourceError::Settings,
                ("Invalid {}: {e}", pspec.name())
            );
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
                if let Err(e) = self.settings.lock().unwrap().target() {
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

    fn stats(&self) -> Option<gst::Structure> {
        self.inner().map(|i| i.property::<gst::Structure>("stats"))
    }

    fn start(self: Arc<Self>, config: signalling::Config) {
        let cancel = CancellationToken::new();
        {
            let mut state = self.state.lock().unwrap();
            *state = State {
                cancel: Some(cancel.clone()),
                drop_probe: state.drop_probe.take(),
                ..State::default()
            };
        }
        crate::RUNTIME.spawn(signalling::run(self, config, cancel));
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
            && let Some(inner) = self.inner()
        {
            let _ = inner.set_state(state);
        }
    }

    /// Sink: drop buffers until the inner sink runs, so a live source upstream never sees
    /// FLUSHING from an inactive pad (style.md).
    fn block_input(&self, ghost: &gst::GhostPad) {
        let mut state = self.state.lock().unwrap();
        if state.drop_probe.is_none() {
            // `Handled` consumes the buffer; `Drop` makes gstreamer-rs 0.25 unref a NULL pointer
            // (a GStreamer-CRITICAL per buffer).
            state.drop_probe = ghost.add_probe(
                gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
                |_, _| gst::PadProbeReturn::Handled,
            );
        }
    }

    fn unblock_input(&self, ghost: &gst::GhostPad) {
        if let Some(id) = self.state.lock().unwrap().drop_probe.take() {
            ghost.remove_probe(id);
        }
    }

    /// The SRT URI for a peer (srt-facts §1.1: rendezvous, local address always given).
    fn srt_uri(peer: &PeerInfo, local_address: &str, local_port: u16, latency: u32) -> String {
        let host = if peer.ip.contains(':') {
            format!("[{}]", peer.ip)
        } else {
            peer.ip.clone()
        };
        format!(
            "srt://{host}:{}?mode=rendezvous&localaddress={local_address}&localport={local_port}&latency={latency}&passphrase={}&pbkeylen={}",
            peer.port, peer.passphrase, peer.pbkeylen
        )
    }

    /// A new peer: (re)start the inner element towards it, from a GStreamer thread.
    fn apply_peer(self: &Arc<Self>, peer: PeerInfo, uri: String) {
        {
            let mut state = self.state.lock().unwrap();
            if state.inner_uri.as_deref() == Some(uri.as_str()) {
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
            let active = state.cancel.as_ref().is_some_and(|c| !c.is_cancelled());
            match &state.inner_uri {
                Some(uri) if active => uri.clone(),
                _ => return,
            }
        };
        let (Some(inner), Some(ghost), Some(bin)) = (self.inner(), self.ghost.get(), self.bin())
        else {
            return;
        };
        self.state.lock().unwrap().inner_running = false;
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
        // A locked element misses the base time the bin hands its children at PLAYING: without
        // it srtsrc would timestamp against clock zero and synced sinks downstream would stall.
        if let Some(base_time) = bin.base_time() {
            inner.set_base_time(base_time);
        }
        inner.set_start_time(bin.start_time());
        match inner.sync_state_with_parent() {
            Ok(()) => {
                self.state.lock().unwrap().inner_running = true;
                if self.role == Role::Sender {
                    self.unblock_input(ghost);
                } else {
                    let _ = bin.post_message(gst::message::Latency::builder().src(&bin).build());
                }
            }
            Err(_) => {
                drop(_guard);
                self.inner_failed(&format!("{} could not start", self.inner_factory), "");
            }
        }
    }

    /// The inner element failed: restart it, unless it keeps failing.
    fn inner_failed(self: &Arc<Self>, error: &str, debug: &str) {
        let Some(bin) = self.bin() else { return };
        let give_up = {
            let mut state = self.state.lock().unwrap();
            let now = Instant::now();
            state
                .failures
                .retain(|t| now.duration_since(*t) < FAILURE_WINDOW);
            state.failures.push_back(now);
            state.failures.len() >= MAX_FAILURES
        };
        if give_up {
            gst::element_error!(
                bin,
                gst::ResourceError::Failed,
                (
                    "The SRT element keeps failing ({MAX_FAILURES} times within {} s): {error}",
                    FAILURE_WINDOW.as_secs()
                ),
                ["{debug}"]
            );
            return;
        }
        gst::warning!(
            self.cat,
            obj = &bin,
            "restarting the inner SRT element after: {error} ({debug})"
        );
        self.schedule_restart(&bin);
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
        let s = gst::Structure::builder("punch-tally")
            .field("stream", stream)
            .field("state", tally.as_str())
            .build();
        let _ = bin.post_message(gst::message::Element::builder(s).src(&bin).build());
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
