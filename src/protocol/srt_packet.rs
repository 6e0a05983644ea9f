//! The parts of SRT's packet format the relay looks at (it never decrypts): the 16-byte header
//! every packet starts with, and the handshake's socket ID. Byte layout from the SRT
//! specification (draft-sharabayko-srt, "Packet Structure" and "Handshake"), checked against
//! libsrt 1.5: all header words are big-endian.
//!
//! ```text
//! 0..4   bit 31: 0 = data, 1 = control; control: type in bits 30..16
//! 4..8   data: message number and flags; control: type-specific
//! 8..12  timestamp (µs)
//! 12..16 destination SRT socket ID (0 in the first handshake packets)
//! handshake CIF (from 16): version, encryption/extension, ISN, MTU, flow window,
//!        handshake type (at 36), SRT socket ID of the sender (at 40), SYN cookie, peer IP…
//! ```

/// Bytes of the header every SRT packet starts with.
pub const HEADER_LEN: usize = 16;
/// Control type of a handshake.
pub const CONTROL_HANDSHAKE: u16 = 0;
/// Control type of a shutdown.
pub const CONTROL_SHUTDOWN: u16 = 5;
/// Bytes of a handshake's fixed part (after the header).
const HANDSHAKE_CIF_LEN: usize = 48;

fn word(pkt: &[u8], at: usize) -> Option<u32> {
    pkt.get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The destination socket ID of an SRT packet (0: "anyone", a first handshake).
pub fn destination(pkt: &[u8]) -> Option<u32> {
    if pkt.len() < HEADER_LEN {
        return None;
    }
    word(pkt, 12)
}

/// The control type of a control packet; `None` for data packets and non-SRT datagrams.
pub fn control_type(pkt: &[u8]) -> Option<u16> {
    let first = word(pkt, 0)?;
    if pkt.len() < HEADER_LEN || first & 0x8000_0000 == 0 {
        return None;
    }
    Some(((first >> 16) & 0x7fff) as u16)
}

/// The fixed part of a handshake, as far as the relay cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    /// 4 (UDT) or 5 (SRT).
    pub version: u32,
    /// 1 induction, 0 wave-a-hand, -1 conclusion, -2 agreement, 1000+ a rejection.
    pub kind: i32,
    /// The sending side's own SRT socket ID: the destination of what the other side sends it.
    pub socket_id: u32,
}

/// The handshake in `pkt`, if it is one.
pub fn handshake(pkt: &[u8]) -> Option<Handshake> {
    if control_type(pkt)? != CONTROL_HANDSHAKE || pkt.len() < HEADER_LEN + HANDSHAKE_CIF_LEN {
        return None;
    }
    Some(Handshake {
        version: word(pkt, 16)?,
        kind: word(pkt, 36)? as i32,
        socket_id: word(pkt, 40)?,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A handshake packet from `socket_id` to `dest` of `kind`.
    pub fn handshake_packet(dest: u32, socket_id: u32, kind: i32) -> Vec<u8> {
        let mut p = vec![0u8; HEADER_LEN + HANDSHAKE_CIF_LEN];
        p[0..4].copy_from_slice(&0x8000_0000u32.to_be_bytes());
        p[12..16].copy_from_slice(&dest.to_be_bytes());
        p[16..20].copy_from_slice(&5u32.to_be_bytes());
        p[36..40].copy_from_slice(&kind.to_be_bytes());
        p[40..44].copy_from_slice(&socket_id.to_be_bytes());
        p
    }

    /// A data packet to `dest` with `payload`.
    pub fn data_packet(dest: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; HEADER_LEN];
        p[0..4].copy_from_slice(&7u32.to_be_bytes());
        p[12..16].copy_from_slice(&dest.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn reads_headers_and_handshakes() {
        let hs = handshake_packet(0, 0x1234_5678, -1);
        assert_eq!(destination(&hs), Some(0));
        assert_eq!(control_type(&hs), Some(CONTROL_HANDSHAKE));
        assert_eq!(
            handshake(&hs),
            Some(Handshake {
                version: 5,
                kind: -1,
                socket_id: 0x1234_5678
            })
        );
        let data = data_packet(0xdead_beef, b"ts");
        assert_eq!(destination(&data), Some(0xdead_beef));
        assert_eq!(control_type(&data), None);
        assert_eq!(handshake(&data), None);
        assert_eq!(destination(b"short"), None);
        assert_eq!(handshake(&hs[..40]), None);
    }
}
