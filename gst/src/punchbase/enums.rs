//! The enum types of the read-only properties (`gst-inspect-1.0` lists their values).

use gst::glib;
use punch::protocol::{SessionState, TallyState};

/// `session-state`: this element's stream's state on the server.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstPunchSessionState")]
pub enum PunchSessionState {
    #[default]
    #[enum_value(
        name = "Not known yet (not started, or no answer from the server)",
        nick = "none"
    )]
    None = 0,
    #[enum_value(
        name = "Waiting: a side of the stream is not registered",
        nick = "waiting"
    )]
    Waiting = 1,
    #[enum_value(
        name = "Ready: both sides have each other's coordinates",
        nick = "ready"
    )]
    Ready = 2,
    #[enum_value(
        name = "Relaying: media goes through the server's relay",
        nick = "relaying"
    )]
    Relaying = 3,
    #[enum_value(name = "Connected: the SRT link is up", nick = "connected")]
    Connected = 4,
    #[enum_value(name = "Closed: the session ended", nick = "closed")]
    Closed = 5,
}

impl From<Option<SessionState>> for PunchSessionState {
    fn from(s: Option<SessionState>) -> Self {
        match s {
            None => PunchSessionState::None,
            Some(SessionState::Waiting) => PunchSessionState::Waiting,
            Some(SessionState::Ready) => PunchSessionState::Ready,
            Some(SessionState::Relaying) => PunchSessionState::Relaying,
            Some(SessionState::Connected) => PunchSessionState::Connected,
            Some(SessionState::Closed) => PunchSessionState::Closed,
        }
    }
}

/// `tally`: this element's stream's tally.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstPunchTally")]
pub enum PunchTally {
    #[default]
    #[enum_value(name = "Off", nick = "off")]
    Off = 0,
    #[enum_value(name = "Preview", nick = "preview")]
    Preview = 1,
    #[enum_value(name = "On air", nick = "on-air")]
    OnAir = 2,
}

impl From<TallyState> for PunchTally {
    fn from(t: TallyState) -> Self {
        match t {
            TallyState::Off => PunchTally::Off,
            TallyState::Preview => PunchTally::Preview,
            TallyState::OnAir => PunchTally::OnAir,
        }
    }
}
