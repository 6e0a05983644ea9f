//! SRT devices that hold a side of a stream without speaking Punch (hardware encoders and
//! decoders, phone apps, ffmpeg, OBS, vMix): how a side is declared, and what a person types
//! into the device. `docs/devices.md` explains which device connects how.

use serde::{Deserialize, Serialize};

/// How a device holds its side of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum DeviceMode {
    /// The device calls the Punch server's relay; the Punch side listens behind it.
    Caller,
    /// The device listens at an address the Punch side can reach; the Punch side calls it.
    Listener,
    /// The device rendezvouses (vMix, OBS with equal ports): the side is held by `punch peer`
    /// next to it, as for a Punch peer.
    Rendezvous,
}

impl DeviceMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceMode::Caller => "caller",
            DeviceMode::Listener => "listener",
            DeviceMode::Rendezvous => "rendezvous",
        }
    }
}

/// Who holds one side of a stream: `"sender"`/`"receiver"` in a stream's settings at
/// creation, and the body of `PUT /api/session/:id/stream/:stream/:role`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SideSpec {
    /// Absent (or `rendezvous`): a Punch peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceMode>,
    /// A listener device's address, `ip:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Whether a caller device sends the stream ID it is given (default `true`). `false`: the
    /// first caller locks the relay port, and the passphrase alone protects the content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streamid: Option<bool>,
}

/// How the Punch side runs SRT for its peer (in `peer` messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum LinkMode {
    /// Both sides rendezvous (two Punch peers).
    #[default]
    Rendezvous,
    /// Listen on the local port, first priming towards the coordinates (the relay a caller
    /// device calls).
    Listener,
    /// Call the coordinates (a listener device).
    Caller,
}

impl LinkMode {
    pub fn is_rendezvous(&self) -> bool {
        *self == LinkMode::Rendezvous
    }
}

/// What a person types into a device, in `GET /api/session/:id` (`sender.device`,
/// `receiver.device`) and on the camera-operator page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "spec", derive(schemars::JsonSchema))]
pub struct DeviceView {
    pub mode: DeviceMode,
    /// Caller: the server's host; listener: the device's own address.
    pub host: String,
    pub port: u16,
    pub passphrase: String,
    pub pbkeylen: u8,
    /// SRT latency, milliseconds.
    pub latency: u32,
    /// The stream ID a caller device must send (absent when it need not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streamid: Option<String>,
    /// One complete `srt://` URL in the device's mode, accepted as it is by srt-live-transmit
    /// and ffmpeg. Latency is not in it (srt-live-transmit reads it in ms, ffmpeg in µs): SRT
    /// uses the larger of both sides' latencies, and the Punch side proposes the stream's.
    pub url: String,
}

/// The stream ID a caller device of `stream` sends, in SRT's access-control syntax: `r` names
/// the resource (the stream), `s` the side's key. Every character is one srt-live-transmit,
/// ffmpeg and OBS pass on as it is in a URL (checked: neither decodes `%` escapes).
pub fn caller_stream_id(stream: &str, key: &str) -> String {
    format!("#!::r={stream},s={key}")
}
