//! The tunnel: SRT datagrams carried over a WebSocket (TCP, TLS with `punchs://`) when a side
//! has no UDP (`GET /api/tunnel/{session}`). Each binary frame is one datagram behind a fixed
//! 4-byte header, the same both ways:
//!
//! | byte | field |
//! |---|---|
//! | 0 | kind: 1 = an SRT datagram (other kinds are reserved; a receiver drops them) |
//! | 1 | the side it belongs to: 0 sender, 1 receiver |
//! | 2 | the receiver slot (1…N; 1 for a stream with one receiver) |
//! | 3 | 0 (reserved) |
//!
//! and then the datagram, at most [`MAX_DATAGRAM`] bytes. A tunnel connection carries one side
//! of one link; a frame naming another is refused.

use super::values::Role;

/// The header's length.
pub const HEADER_LEN: usize = 4;
/// The kind of a frame carrying an SRT datagram.
pub const KIND_DATAGRAM: u8 = 1;
/// The largest datagram a frame carries (SRT's default MTU is 1500 bytes).
pub const MAX_DATAGRAM: usize = 1500;

/// What a frame's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelHeader {
    pub kind: u8,
    pub role: Role,
    pub slot: u8,
}

impl TunnelHeader {
    pub fn datagram(role: Role, slot: u8) -> TunnelHeader {
        TunnelHeader {
            kind: KIND_DATAGRAM,
            role,
            slot,
        }
    }

    /// The frame of `payload` behind this header, into `out` (cleared first).
    pub fn encode(&self, payload: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.reserve(HEADER_LEN + payload.len());
        let side = match self.role {
            Role::Sender => 0,
            Role::Receiver => 1,
        };
        out.extend_from_slice(&[self.kind, side, self.slot, 0]);
        out.extend_from_slice(payload);
    }

    /// A frame's header and payload.
    pub fn decode(frame: &[u8]) -> Result<(TunnelHeader, &[u8]), String> {
        if frame.len() < HEADER_LEN {
            return Err(format!(
                "a tunnel frame has a {HEADER_LEN}-byte header; got {} bytes",
                frame.len()
            ));
        }
        let role = match frame[1] {
            0 => Role::Sender,
            1 => Role::Receiver,
            other => return Err(format!("tunnel frame side {other} is neither 0 nor 1")),
        };
        let payload = &frame[HEADER_LEN..];
        if payload.len() > MAX_DATAGRAM {
            return Err(format!(
                "a tunnel frame carries at most {MAX_DATAGRAM} bytes; got {}",
                payload.len()
            ));
        }
        Ok((
            TunnelHeader {
                kind: frame[0],
                role,
                slot: frame[2],
            },
            payload,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bad_ones_are_refused() {
        let mut out = Vec::new();
        let h = TunnelHeader::datagram(Role::Receiver, 3);
        h.encode(b"srt", &mut out);
        assert_eq!(out, [1, 1, 3, 0, b's', b'r', b't']);
        assert_eq!(TunnelHeader::decode(&out).unwrap(), (h, &b"srt"[..]));
        assert!(TunnelHeader::decode(&[1, 0]).is_err());
        assert!(
            TunnelHeader::decode(&[1, 2, 1, 0])
                .unwrap_err()
                .contains("side 2")
        );
        let big = vec![0u8; HEADER_LEN + MAX_DATAGRAM + 1];
        assert!(TunnelHeader::decode(&big).is_err());
    }
}
