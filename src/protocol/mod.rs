//! The Punch wire protocol: every HTTP body and WebSocket message exchanged between the
//! server, the signalling client and the GStreamer elements.
//!
//! This module is serde only (no tokio, no GStreamer) so that every side uses the same types.
//! WebSocket messages are JSON objects tagged by `type`; `docs/protocol.md` shows each one.
//!
//! * [`device`]: SRT devices holding a side (caller, listener) and what is typed into them.
//! * [`values`]: roles, states, addresses, NAT and health reports.
//! * [`messages`]: WebSocket messages, peer → server and server → peer.
//! * [`api`]: HTTP request and response bodies.
//! * [`error`]: the error codes and WebSocket close codes.
//! * [`uri`]: `punch://` session URIs; [`srt_url`]: `srt://` URLs per tool; [`srt_packet`]: the
//!   SRT header fields the relay reads; [`stun`]: the STUN messages Punch speaks.

pub mod api;
pub mod device;
pub mod error;
pub mod messages;
pub mod srt_packet;
pub mod srt_url;
pub mod stun;
pub mod tunnel;
pub mod uri;
pub mod values;

pub use api::*;
pub use device::*;
pub use error::{ErrorCode, close_code};
pub use messages::*;
pub use values::*;

/// Session latency when the creator does not choose one (milliseconds).
pub const DEFAULT_LATENCY_MS: u32 = 200;
/// SRT latency bounds accepted by the server (milliseconds), as vendors clamp it.
pub const MIN_LATENCY_MS: u32 = 20;
pub const MAX_LATENCY_MS: u32 = 8000;
/// Default SRT key length in bytes (AES-128); SRT accepts 16, 24 or 32.
pub const DEFAULT_PBKEYLEN: u8 = 16;
/// Stream name used when a session is created without naming its streams.
pub const DEFAULT_STREAM: &str = "default";
/// Longest session or stream name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest free-text label (camera label, audio description, role text).
pub const MAX_LABEL_LEN: usize = 128;
/// Longest cue text, in characters.
pub const MAX_CUE_LEN: usize = 280;

/// Whether `name` is a valid session or stream name: 1–64 of `A-Z a-z 0-9 - _`.
pub fn validate_name(kind: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{kind} name must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "{kind} name is longer than {MAX_NAME_LEN} characters"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "{kind} name {name:?} contains {c:?}; use only letters, digits, '-' and '_'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_parses_and_rejects_bad_ports() {
        let m: ClientMessage = serde_json::from_str(
            r#"{"type":"register","port":9000,"role":"sender","meta":{"label":"CAM-1","x":1}}"#,
        )
        .unwrap();
        let ClientMessage::Register(r) = m else {
            panic!("not a register")
        };
        assert_eq!(r.port, Port(9000));
        assert_eq!(r.meta.label.as_deref(), Some("CAM-1"));
        assert_eq!(r.meta.extra["x"], 1);
        for bad in ["0", "65536", "-1"] {
            let err = serde_json::from_str::<ClientMessage>(&format!(
                r#"{{"type":"register","port":{bad},"role":"sender"}}"#
            ))
            .unwrap_err();
            assert!(
                err.to_string().contains("port must be between 1 and 65535"),
                "{err}"
            );
        }
    }

    #[test]
    fn unknown_type_is_an_error_naming_the_variants() {
        let err = serde_json::from_str::<ClientMessage>(r#"{"type":"hello"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown variant `hello`"), "{err}");
    }

    #[test]
    fn tally_wire_names() {
        assert_eq!(
            serde_json::to_string(&TallyState::OnAir).unwrap(),
            "\"on-air\""
        );
        let t: Tally = serde_json::from_str(r#"{"stream":"a","state":"preview"}"#).unwrap();
        assert_eq!(t.state, TallyState::Preview);
    }

    #[test]
    fn health_validation() {
        assert!(
            Health {
                rtt: Some(12.0),
                retransmit: Some(0.5),
                ..Default::default()
            }
            .validate()
            .is_ok()
        );
        assert!(
            Health {
                loss: Some(101.0),
                ..Default::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            Health {
                rtt: Some(-1.0),
                ..Default::default()
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn names() {
        assert!(validate_name("session", "nab-floor_cam1").is_ok());
        assert!(validate_name("session", "").is_err());
        assert!(validate_name("session", "a b").unwrap_err().contains("' '"));
        assert!(validate_name("stream", &"x".repeat(65)).is_err());
    }
}
