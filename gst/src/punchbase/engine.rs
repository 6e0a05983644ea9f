//! The engine of a Punch element: one locked inner SRT element, the signalling task that
//! configures it, and the restart policy that keeps it up. Shared between the element (its
//! GStreamer thread) and the signalling task (the plugin runtime). What differs between
//! `punchsink` and `punchsrc` is behind [`Media`].
//!
//! * READY→PAUSED starts the signalling task on the plugin runtime (never blocks).
//! * A `peer` message (re)configures the inner element and starts it from `call_async`.
//! * The inner element's errors restart it; its warnings are filtered (a bad passphrase
//!   becomes one clear error instead of a flood).
//! * PAUSED→READY cancels the task and stops the inner element at once.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use punch::protocol::{LinkMode, PeerInfo, SessionState, TallyState};
use tokio_util::sync::CancellationToken;

use super::Media;
use super::health;
use super::signalling;

/// Inner failures tolerated within [`FAILURE_WINDOW`] before the element gives up.
pub const MAX_FAILURES: usize = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// First delay before restarting a failed inner element (doubling with each failure).
const RESTART_BACKOFF: Duration = Duration::from_millis(200);
/// How long the inner SRT element waits in one poll before it checks whether it must stop.
const POLL_TIMEOUT_MS: u32 = 100;
/// A listener behind the relay (for a caller device) that nobody called for this long is
/// primed again (stopped, primed, started), so that its NAT keeps letting the relay in:
/// NATs forget an idle UDP mapping after 30 s or more.
const LISTEN_REPRIME: Duration = Duration::from_secs(20);
/// Priming datagrams sent towards the relay before a listener starts.
const LISTEN_PRIMES: usize = 3;

/// Runtime state, behind one mutex (never held across `set_state` or signal emission).
#[derive(Default)]
struct State {
    /// Cancels the signalling task.
    cancel: Option<CancellationToken>,
    /// The SRT URI the inner element runs with.
    inner_uri: Option<String>,
    /// The coordinates it runs with.
    peer: Option<PeerInfo>,
    inner_running: bool,
    /// The `session-state` property: this element's stream's state on the server.
    stream_state: Option<SessionState>,
    /// The `peer-address` property.
    peer_address: Option<String>,
    /// The `tally` property.
    tally: TallyState,
    /// The stream the server registered this element on (for bus messages).
    stream: Option<String>,
    /// The receiver slot this element links (a stream with several receivers; bus messages
    /// carry it).
    receiver: Option<u8>,
    /// The SRT link was connected at the last look at the inner element's statistics.
    link_up: bool,
    /// When the inner element failed lately (the restart policy's window).
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
    /// A listener behind the relay: `(local address, relay address)` to prime before each
    /// start, and when it last started.
    listen: Option<(std::net::SocketAddr, std::net::SocketAddr)>,
    started_at: Option<Instant>,
}

impl State {
    /// Started and not stopped.
    fn active(&self) -> bool {
        self.cancel.as_ref().is_some_and(|c| !c.is_cancelled())
    }
}

pub struct Engine {
    /// What this element is.
    pub media: Box<dyn Media>,
    /// The element (weak: the engine lives as long as the element, tasks may outlive it).
    bin: OnceLock<glib::WeakRef<gst::Bin>>,
    /// The inner SRT element; `None` when its plugin is not installed.
    inner: OnceLock<Option<gst::Element>>,
    ghost: OnceLock<gst::GhostPad>,
    state: Mutex<State>,
    /// Serialises starting and stopping the inner element.
    lifecycle: Mutex<()>,
}

impl Engine {
    pub fn new(media: Box<dyn Media>) -> Self {
        Engine {
            media,
            bin: OnceLock::new(),
            inner: OnceLock::new(),
            ghost: OnceLock::new(),
            state: Mutex::new(State::default()),
            lifecycle: Mutex::new(()),
        }
    }

    pub fn cat(&self) -> gst::DebugCategory {
        self.media.cat()
    }

    /// Creates the inner element (if installed) and the ghost pad; call from `constructed`.
    pub fn construct(self: &Arc<Self>, bin: &gst::Bin, templ: &gst::PadTemplate) {
        let _ = self.bin.set(bin.downgrade());
        let ghost = self.media.ghost_pad(templ, Arc::downgrade(self));
        let inner = gst::ElementFactory::make(self.media.inner_factory())
            .name("srt")
            .build()
            .ok();
        if let Some(inner) = &inner {
            inner.set_locked_state(true);
            self.media.configure_inner(inner);
            bin.add(inner)
                .expect("adding the inner element to an empty bin");
            let target = inner
                .static_pad(self.media.pad_name())
                .expect("srt elements have static pads");
            ghost.set_target(Some(&target)).expect("ghost pad target");
        }
        bin.add_pad(&ghost).expect("adding the ghost pad");
        self.media.constructed(self, &ghost);
        let _ = self.ghost.set(ghost);
        let _ = self.inner.set(inner);
        bin.set_element_flags(self.media.element_flags());
    }

    pub fn inner(&self) -> Option<&gst::Element> {
        self.inner.get().and_then(Option::as_ref)
    }

    pub fn bin(&self) -> Option<gst::Bin> {
        self.bin.get().and_then(|w| w.upgrade())
    }

    /// Whether `run` is the element's current, not yet stopped run.
    pub fn is_current(&self, run: u64) -> bool {
        let state = self.state.lock().unwrap();
        state.run == run && state.active()
    }

    pub fn active(&self) -> bool {
        self.state.lock().unwrap().active()
    }

    /// The inner element's statistics of its SRT link (a listener's first caller's).
    pub fn stats(&self) -> Option<gst::Structure> {
        let stats = self.inner()?.property::<gst::Structure>("stats");
        gst::trace!(self.cat(), "inner stats: {stats}");
        Some(health::link_stats(stats))
    }

    pub fn stream_state(&self) -> Option<SessionState> {
        self.state.lock().unwrap().stream_state
    }

    pub fn peer_address(&self) -> Option<String> {
        self.state.lock().unwrap().peer_address.clone()
    }

    pub fn tally(&self) -> TallyState {
        self.state.lock().unwrap().tally
    }

    pub fn start(self: Arc<Self>, config: signalling::Config) {
        let cancel = CancellationToken::new();
        let run = {
            let mut state = self.state.lock().unwrap();
            let run = state.run + 1;
            *state = State {
                cancel: Some(cancel.clone()),
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
        self.media.starting();
        crate::RUNTIME.spawn(signalling::run(self, config, cancel, run));
    }

    /// Stops signalling and the inner element; returns promptly.
    pub fn stop(&self) {
        let cancel = self.state.lock().unwrap().cancel.take();
        if let Some(cancel) = cancel {
            cancel.cancel();
        }
        if let Some(ghost) = self.ghost.get() {
            // first: upstream may be waiting for the link inside the streaming thread
            self.media.inner_stopped(ghost);
        }
        let _guard = self.lifecycle.lock().unwrap();
        self.set_link(false);
        if let Some(inner) = self.inner() {
            let _ = inner.set_state(gst::State::Null);
        }
        let mut state = self.state.lock().unwrap();
        state.inner_running = false;
        state.inner_uri = None;
        state.peer = None;
    }

    /// A running inner element goes to `state` with its bin.
    pub fn follow_state(&self, state: gst::State) {
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

    /// Whether the inner element has failed since it last started (and forget it).
    pub fn take_inner_failure(&self) -> bool {
        std::mem::take(&mut self.state.lock().unwrap().inner_failed)
    }

    /// The SRT URI for a peer: rendezvous, the local address always given (see
    /// `docs/srt-notes.md`), and what this side adds.
    pub fn srt_uri(
        &self,
        peer: &PeerInfo,
        local_address: IpAddr,
        local_port: u16,
        latency: u32,
    ) -> String {
        let options = format!(
            "&latency={latency}&poll-timeout={POLL_TIMEOUT_MS}{}",
            self.media.srt_options(latency)
        );
        let link = punch::protocol::srt_url::Link {
            host: &peer.ip,
            port: peer.port,
            passphrase: &peer.passphrase,
            pbkeylen: peer.pbkeylen,
        };
        match peer.mode {
            // behind the relay a caller device calls: listen on the local port
            LinkMode::Listener => {
                let local = punch::protocol::srt_url::Link {
                    port: local_port,
                    ..link
                };
                return format!("{}{options}", local.listener_on(&local_address.to_string()));
            }
            // a listener device: call it (from any local port)
            LinkMode::Caller => return format!("{}{options}", link.caller()),
            LinkMode::Rendezvous => {}
        }
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
            "{}&poll-timeout={POLL_TIMEOUT_MS}{}",
            link.gstreamer(&local_address.to_string()),
            self.media.srt_options(latency)
        )
    }

    /// A new peer: (re)start the inner element towards it, from a GStreamer thread.
    /// `local`: the address SRT binds, primed from towards a relay before a listener starts.
    pub fn apply_peer(
        self: &Arc<Self>,
        run: u64,
        peer: PeerInfo,
        uri: String,
        local: std::net::SocketAddr,
    ) {
        {
            let mut state = self.state.lock().unwrap();
            let current = state.run == run && state.active();
            if !current || state.inner_uri.as_deref() == Some(uri.as_str()) {
                return;
            }
            state.listen = match (peer.mode, peer.ip.parse::<IpAddr>()) {
                (LinkMode::Listener, Ok(ip)) => {
                    Some((local, std::net::SocketAddr::new(ip, peer.port)))
                }
                _ => None,
            };
            state.peer_address = Some(format!("{}:{}", peer.ip, peer.port));
            state.peer = Some(peer);
            state.inner_uri = Some(uri);
        }
        let Some(bin) = self.bin() else { return };
        bin.notify("peer-address");
        self.schedule_restart(&bin);
    }

    fn schedule_restart(self: &Arc<Self>, bin: &gst::Bin) {
        let engine = self.clone();
        bin.call_async(move |_| engine.restart_inner());
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
        // the link first: nothing must be let through towards an unlinked pad
        self.set_link(false);
        self.media.inner_restarting(ghost);
        let _ = inner.set_state(gst::State::Null);
        // A listener behind the relay opens its NAT towards it first, from the port it binds.
        let listen = {
            let mut state = self.state.lock().unwrap();
            state.started_at = Some(Instant::now());
            state.listen
        };
        if let Some((local, relay)) = listen {
            match std::net::UdpSocket::bind(local) {
                Ok(socket) => {
                    for _ in 0..LISTEN_PRIMES {
                        let _ = socket.send_to(b"punch-prime", relay);
                    }
                }
                Err(e) => gst::warning!(
                    self.cat(),
                    obj = &bin,
                    "cannot prime {local} towards the relay at {relay}: {e}"
                ),
            }
        }
        // The URI first, with every option in it: setting it resets the others
        // (`docs/srt-notes.md`).
        inner.set_property("uri", &uri);
        self.media.inner_configured(ghost, inner);
        gst::info!(
            self.cat(),
            obj = &bin,
            "starting {} towards {}",
            self.media.inner_factory(),
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
                self.media.inner_started(&bin, ghost);
            }
            // The element posts its own ERROR, which schedules the next attempt.
            Err(_) => gst::warning!(
                self.cat(),
                obj = &bin,
                "{} could not start",
                self.media.inner_factory()
            ),
        }
    }

    /// Filters the inner element's messages; returns the ones to pass on.
    pub fn handle_message(self: &Arc<Self>, msg: gst::Message) -> Option<gst::Message> {
        let from_inner = match (msg.src(), self.inner()) {
            (Some(src), Some(inner)) => {
                src == inner.upcast_ref::<gst::Object>() || src.has_as_ancestor(inner)
            }
            _ => false,
        };
        if !from_inner {
            // from elements the media added (a punchsink's receiver legs)
            return self.media.child_message(self, msg);
        }
        match msg.view() {
            gst::MessageView::Error(e) => {
                self.inner_failed(&e.error().to_string(), e.debug().as_deref().unwrap_or(""));
                None
            }
            gst::MessageView::Warning(w) => {
                let text = w.error().to_string();
                gst::debug!(self.cat(), "inner SRT element warning: {text}");
                if text.contains("passphrase") || text.contains("Password required") {
                    self.passphrase_mismatch(&text);
                }
                None
            }
            _ => Some(msg),
        }
    }

    /// The inner element failed: restart it, unless it keeps failing. Returns whether this
    /// was a new failure (not one already being handled).
    fn inner_failed(self: &Arc<Self>, error: &str, debug: &str) -> bool {
        let Some(bin) = self.bin() else { return false };
        let (give_up, attempt) = {
            let mut state = self.state.lock().unwrap();
            if state.gave_up || !state.active() || state.failure_counted {
                return false;
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
            return true;
        }
        let delay = RESTART_BACKOFF * 2u32.pow(attempt.saturating_sub(1)).min(16);
        gst::warning!(
            self.cat(),
            obj = &bin,
            "restarting the inner SRT element in {delay:?} after: {error} ({debug})"
        );
        let engine = self.clone();
        crate::RUNTIME.spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(bin) = engine.bin() {
                engine.schedule_restart(&bin);
            }
        });
        true
    }

    /// A look at the inner element's statistics (from the signalling task's status poll):
    /// follows the link's state and restarts a link that stopped carrying data. Returns
    /// whether the link is connected.
    pub fn observe(self: &Arc<Self>, stats: &gst::StructureRef) -> bool {
        let connected = health::is_connected(stats);
        if !self.active() {
            return connected;
        }
        self.set_link(connected);
        if connected && let Some(why) = self.media.stalled(stats) {
            self.link_stalled(&why);
        }
        if !connected {
            self.reprime_if_due();
        }
        connected
    }

    /// A listener behind the relay that nobody called for [`LISTEN_REPRIME`] starts again,
    /// priming its NAT towards the relay.
    fn reprime_if_due(self: &Arc<Self>) {
        let due = {
            let mut state = self.state.lock().unwrap();
            let due = state.listen.is_some()
                && state
                    .started_at
                    .is_some_and(|t| t.elapsed() >= LISTEN_REPRIME);
            if due {
                // not again until this restart has happened
                state.started_at = None;
            }
            due
        };
        if due && let Some(bin) = self.bin() {
            gst::debug!(
                self.cat(),
                obj = &bin,
                "no caller yet: priming towards the relay again"
            );
            self.schedule_restart(&bin);
        }
    }

    /// Follows the link's state: tells the media and posts `punch-link` on a change.
    fn set_link(&self, up: bool) {
        let (stream, peer) = {
            let mut state = self.state.lock().unwrap();
            if std::mem::replace(&mut state.link_up, up) == up {
                return;
            }
            (
                state.stream.clone().unwrap_or_default(),
                state.peer_address.clone().unwrap_or_default(),
            )
        };
        if let Some(ghost) = self.ghost.get() {
            self.media.link_changed(up, ghost);
        }
        gst::info!(
            self.cat(),
            "SRT link {} {peer}",
            if up { "connected to" } else { "lost with" }
        );
        self.post(
            gst::Structure::builder("punch-link")
                .field("stream", stream)
                .field("connected", up)
                .field("peer-address", peer)
                .build(),
        );
    }

    /// The link is up but carries nothing: say so and restart it (a restart counts as a
    /// failure, so a link that keeps stalling ends in an error).
    fn link_stalled(self: &Arc<Self>, why: &str) {
        let peer = self.peer_address().unwrap_or_default();
        let text = format!("The SRT link to {peer} stalled: {why}. Restarting it.");
        if self.inner_failed(&text, "")
            && let Some(bin) = self.bin()
        {
            gst::element_warning!(bin, gst::ResourceError::Write, ("{text}"));
        }
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

    pub fn set_stream_state(&self, state: SessionState) {
        let changed = {
            let mut st = self.state.lock().unwrap();
            st.stream_state.replace(state) != Some(state)
        };
        if changed && let Some(bin) = self.bin() {
            bin.notify("session-state");
        }
    }

    pub fn set_stream(&self, stream: &str) {
        self.state.lock().unwrap().stream = Some(stream.to_string());
    }

    pub fn set_receiver(&self, receiver: Option<u8>) {
        self.state.lock().unwrap().receiver = receiver;
    }

    /// The stream has several receivers: the media links with each (`punchsink`).
    pub fn fan_out(self: &Arc<Self>, receivers: u8) {
        self.media.fan_out(self, receivers);
    }

    pub fn set_tally(&self, stream: &str, tally: TallyState) {
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

    /// Posts a `punch-*` element message; on a stream with several receivers it names the
    /// receiver slot this element links (`receiver`).
    pub fn post(&self, mut structure: gst::Structure) {
        if let Some(k) = self.state.lock().unwrap().receiver {
            structure.set("receiver", u32::from(k));
        }
        if let Some(bin) = self.bin() {
            let _ = bin.post_message(gst::message::Element::builder(structure).src(&bin).build());
        }
    }

    pub fn inner_running(&self) -> bool {
        self.state.lock().unwrap().inner_running
    }
}
