//! What passes from upstream into `srtsink`, and when; and how a link that stopped carrying
//! data is recognised.
//!
//! * A **live** upstream (its latency query says live) never waits: while the SRT link is not
//!   connected its buffers are dropped, as a camera's frames would be anyway (by srtsink itself
//!   while it connects, so nothing is lost between libsrt connecting and the element noticing).
//! * A **non-live** upstream (a file) loses nothing: its buffers wait until the link is
//!   connected, at most `hold-timeout`.
//! * A link is **stalled** when libsrt sent nothing for [`STALL_AFTER`] although upstream had
//!   data for it: libsrt 1.5.1's flow window can close for good when the receiver's buffer
//!   filled once (`docs/srt-notes.md`), and the connection then stays up with frozen statistics.
//!
//! The decisions are pure functions of the state, unit-tested below; [`Gate`] only adds the
//! locking and the waiting.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long libsrt may send nothing while upstream has data before the link counts as stalled.
/// Shorter than libsrt's 5 s peer idle timeout, longer than a Wi-Fi hiccup at usual bitrates
/// (libsrt keeps sending into a silent network until its flow window of unacknowledged
/// packets is full).
pub const STALL_AFTER: Duration = Duration::from_secs(3);

/// The SRT payload size srtsink cuts buffers into (libsrt's live-mode default, 7 TS packets).
pub const PAYLOAD_SIZE: u64 = 1316;

/// libsrt's default receiver buffer, in payload bytes: 8192 packets of [`PAYLOAD_SIZE`].
const DEFAULT_RECEIVER_BUFFER: u64 = 8192 * PAYLOAD_SIZE;
/// libsrt's own cap in live mode ("unlimited" is 1 Gbit/s).
const LIBSRT_MAX_BITRATE: u64 = 1_000_000_000;

/// The sending rate (bit/s) at which a receiver with libsrt's default buffer still holds a
/// link's latency worth of data with a fifth to spare: above it, a burst fills the receiver's
/// buffer and libsrt 1.5.1 stops sending for good (`docs/srt-notes.md`).
pub fn auto_max_bitrate(latency_ms: u32) -> u64 {
    let latency_ms = u64::from(latency_ms.max(1));
    (DEFAULT_RECEIVER_BUFFER * 8 * 1000 * 4 / 5 / latency_ms).min(LIBSRT_MAX_BITRATE)
}

/// What to do with a buffer arriving from upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Hand it to srtsink.
    Forward,
    /// Drop it (live upstream, srtsink not running).
    Drop,
    /// Wait for the link (non-live upstream).
    Wait,
    /// Upstream flushes or the element stops: return FLUSHING.
    Flushing,
}

/// `inner_up`: srtsink runs (it drops by itself until connected); `live`: what upstream's
/// latency query said (`true` when it did not answer).
pub fn decide(link_up: bool, inner_up: bool, live: bool, flushing: bool) -> Decision {
    if flushing {
        Decision::Flushing
    } else if link_up || (live && inner_up) {
        Decision::Forward
    } else if live {
        Decision::Drop
    } else {
        Decision::Wait
    }
}

/// The SRT packets a buffer of `bytes` becomes.
pub fn packets(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(PAYLOAD_SIZE)
}

/// Whether libsrt has sent (at least once) every packet handed to it on this link:
/// `sent` and `retransmitted` are libsrt's counters of the current connection.
pub fn drained(forwarded_packets: u64, sent: i64, retransmitted: i64) -> bool {
    let unique = sent.saturating_sub(retransmitted).max(0) as u64;
    unique >= forwarded_packets
}

/// Recognises a stalled link from successive observations of one connection.
#[derive(Debug, Default)]
pub struct StallWatch {
    /// libsrt's packets-sent at the last observation that saw it change.
    sent: Option<i64>,
    /// When it last changed.
    progress_at: Option<Instant>,
    /// The gate's count of buffers offered at that moment.
    offered_at_progress: u64,
}

impl StallWatch {
    /// A new connection: forget the previous one's counters.
    pub fn reset(&mut self) {
        *self = StallWatch::default();
    }

    /// One observation of a connected link: `sent` is libsrt's packets-sent, `offered` the
    /// buffers upstream offered so far, `inside` how long the buffer srtsink is busy with has
    /// been there. Returns how long the link has been stalled, if it is.
    pub fn observe(
        &mut self,
        now: Instant,
        sent: i64,
        offered: u64,
        inside: Option<Duration>,
    ) -> Option<Duration> {
        if self.sent != Some(sent) {
            self.sent = Some(sent);
            self.progress_at = Some(now);
            self.offered_at_progress = offered;
            return None;
        }
        let idle = now.duration_since(self.progress_at?);
        let demand = offered > self.offered_at_progress || inside.is_some_and(|d| d >= STALL_AFTER);
        (idle >= STALL_AFTER && demand).then_some(idle)
    }
}

#[derive(Debug, Default)]
struct State {
    /// The SRT link is connected (as the element last observed its statistics).
    link_up: bool,
    /// srtsink runs.
    inner_up: bool,
    /// What upstream's latency query said for this stream; `None` until asked.
    live: Option<bool>,
    /// The element stops or upstream flushes: nothing waits.
    flushing: bool,
    /// Packets handed to srtsink while the link was up (for the drain at EOS).
    forwarded_packets: u64,
    /// Buffers that arrived while the link was up (the stall watch's sign of demand).
    offered: u64,
    /// When the buffer srtsink is busy with was handed to it.
    inside_since: Option<Instant>,
}

/// How a wait for the link ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Forward,
    Drop,
    Flushing,
    /// `hold-timeout` passed without a link.
    TimedOut,
}

/// The shared state between upstream's streaming thread and the element's link observer.
#[derive(Debug, Default)]
pub struct Gate {
    state: Mutex<State>,
    changed: Condvar,
}

impl Gate {
    /// The element starts: a new stream, not flushing.
    pub fn reset(&self) {
        *self.state.lock().unwrap() = State::default();
        self.changed.notify_all();
    }

    /// The element stops: waiting buffers return at once.
    pub fn stop(&self) {
        let mut state = self.state.lock().unwrap();
        state.flushing = true;
        state.link_up = false;
        state.inner_up = false;
        drop(state);
        self.changed.notify_all();
    }

    pub fn set_flushing(&self, flushing: bool) {
        let mut state = self.state.lock().unwrap();
        state.flushing = flushing;
        if !flushing {
            // after a flush (a seek) upstream may be a different stream
            state.live = None;
        }
        drop(state);
        self.changed.notify_all();
    }

    /// A new stream from upstream: ask again whether it is live.
    pub fn new_stream(&self) {
        self.state.lock().unwrap().live = None;
    }

    pub fn live(&self) -> Option<bool> {
        self.state.lock().unwrap().live
    }

    pub fn set_live(&self, live: bool) {
        self.state.lock().unwrap().live = Some(live);
    }

    pub fn set_inner(&self, up: bool) {
        self.state.lock().unwrap().inner_up = up;
        self.changed.notify_all();
    }

    pub fn set_link(&self, up: bool) {
        let mut state = self.state.lock().unwrap();
        if up && !state.link_up {
            // libsrt's counters start again with each connection
            state.forwarded_packets = 0;
        }
        state.link_up = up;
        drop(state);
        self.changed.notify_all();
    }

    /// Waits, if the stream must, until the buffer can go, at most `hold` from now.
    pub fn admit(&self, hold: Duration) -> Admission {
        let deadline = Instant::now() + hold;
        let mut state = self.state.lock().unwrap();
        loop {
            let live = state.live.unwrap_or(true);
            match decide(state.link_up, state.inner_up, live, state.flushing) {
                Decision::Forward => {
                    state.offered += 1;
                    return Admission::Forward;
                }
                Decision::Drop => return Admission::Drop,
                Decision::Flushing => return Admission::Flushing,
                Decision::Wait => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Admission::TimedOut;
                    }
                    state = self.changed.wait_timeout(state, deadline - now).unwrap().0;
                }
            }
        }
    }

    /// A buffer of `bytes` goes into srtsink now.
    pub fn entering(&self, bytes: usize) {
        let mut state = self.state.lock().unwrap();
        if state.link_up {
            state.forwarded_packets += packets(bytes);
        }
        state.inside_since = Some(Instant::now());
    }

    /// srtsink returned the buffer.
    pub fn left(&self) {
        self.state.lock().unwrap().inside_since = None;
    }

    /// The stall watch's inputs: buffers offered, and how long srtsink has held the current one.
    pub fn demand(&self) -> (u64, Option<Duration>) {
        let state = self.state.lock().unwrap();
        (state.offered, state.inside_since.map(|t| t.elapsed()))
    }

    pub fn forwarded_packets(&self) -> u64 {
        self.state.lock().unwrap().forwarded_packets
    }

    /// Waits up to `d` unless the element stops or the link goes down; returns whether it may
    /// go on waiting (the link is still up and nothing flushes).
    pub fn pause(&self, d: Duration) -> bool {
        let state = self.state.lock().unwrap();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, d, |s| s.link_up && !s.flushing)
            .unwrap();
        state.link_up && !state.flushing
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn live_drops_non_live_waits_flushing_wins() {
        // (link up, srtsink runs, live, flushing)
        assert_eq!(decide(true, true, true, false), Decision::Forward);
        assert_eq!(decide(true, true, false, false), Decision::Forward);
        // live, srtsink connecting: it drops by itself, and sends the moment it connects
        assert_eq!(decide(false, true, true, false), Decision::Forward);
        assert_eq!(decide(false, false, true, false), Decision::Drop);
        // not live: waits for the link, srtsink running or not
        assert_eq!(decide(false, true, false, false), Decision::Wait);
        assert_eq!(decide(false, false, false, false), Decision::Wait);
        assert_eq!(decide(false, false, false, true), Decision::Flushing);
        assert_eq!(decide(true, true, true, true), Decision::Flushing);
    }

    #[test]
    fn the_automatic_rate_cap_follows_the_latency() {
        // 8192 × 1316 bytes held for the latency, 80 % of it
        assert_eq!(auto_max_bitrate(1000), 68_996_300);
        assert_eq!(auto_max_bitrate(125), 551_970_406);
        assert_eq!(auto_max_bitrate(2000), 34_498_150);
        assert_eq!(auto_max_bitrate(10), 1_000_000_000);
        assert_eq!(auto_max_bitrate(0), 1_000_000_000);
    }

    #[test]
    fn buffers_become_payload_sized_packets() {
        assert_eq!(packets(0), 0);
        assert_eq!(packets(1), 1);
        assert_eq!(packets(1316), 1);
        assert_eq!(packets(1317), 2);
        assert_eq!(packets(188 * 100), 15);
        assert!(drained(10, 12, 2));
        assert!(!drained(10, 12, 3));
        assert!(drained(0, 0, 0));
    }

    #[test]
    fn a_stall_needs_silence_and_demand() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_millis(n);
        let mut w = StallWatch::default();
        assert_eq!(w.observe(s(0), 100, 5, None), None);
        // libsrt sends: never stalled
        assert_eq!(w.observe(s(4000), 200, 50, None), None);
        // silent, and upstream offers nothing (a paused camera): not stalled
        assert_eq!(w.observe(s(9000), 200, 50, None), None);
        // silent while upstream offered buffers: stalled once STALL_AFTER passed
        let mut w = StallWatch::default();
        w.observe(s(0), 100, 5, None);
        assert_eq!(w.observe(s(2900), 100, 9, None), None);
        assert_eq!(
            w.observe(s(3100), 100, 9, None),
            Some(Duration::from_millis(3100))
        );
        // or while srtsink holds one buffer that long
        let mut w = StallWatch::default();
        w.observe(s(0), 100, 5, None);
        assert_eq!(
            w.observe(s(3500), 100, 5, Some(Duration::from_millis(1000))),
            None
        );
        assert!(
            w.observe(s(3600), 100, 5, Some(Duration::from_millis(3100)))
                .is_some()
        );
        // a new connection starts the watch over
        w.reset();
        assert_eq!(w.observe(s(9000), 100, 99, None), None);
    }

    #[test]
    fn a_waiting_buffer_goes_when_the_link_comes_up_or_returns_on_stop() {
        let gate = Arc::new(Gate::default());
        gate.set_live(false);
        let g = gate.clone();
        let waiter = std::thread::spawn(move || g.admit(Duration::from_secs(10)));
        gate.set_link(true);
        assert_eq!(waiter.join().unwrap(), Admission::Forward);

        gate.set_link(false);
        let g = gate.clone();
        let waiter = std::thread::spawn(move || g.admit(Duration::from_secs(10)));
        gate.stop();
        assert_eq!(waiter.join().unwrap(), Admission::Flushing);

        gate.reset();
        gate.set_live(false);
        let t = Instant::now();
        assert_eq!(gate.admit(Duration::from_millis(50)), Admission::TimedOut);
        assert!(t.elapsed() >= Duration::from_millis(50));
        // unknown liveness is treated as live: dropped, never held
        gate.new_stream();
        assert_eq!(gate.admit(Duration::from_secs(10)), Admission::Drop);
    }

    #[test]
    fn forwarded_packets_count_per_connection() {
        let gate = Gate::default();
        // what srtsink drops while connecting is not counted
        gate.entering(2000);
        gate.left();
        assert_eq!(gate.forwarded_packets(), 0);
        gate.set_link(true);
        gate.entering(2000);
        gate.left();
        assert_eq!(gate.forwarded_packets(), 2);
        gate.set_link(false);
        gate.set_link(true);
        assert_eq!(gate.forwarded_packets(), 0);
        // the drain's pause goes on while the link is up, ends when it goes down
        assert!(gate.pause(Duration::ZERO));
        gate.set_link(false);
        assert!(!gate.pause(Duration::from_secs(10)));
    }
}
