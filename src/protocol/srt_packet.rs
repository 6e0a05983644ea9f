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

/// Handshake kind of an induction (the caller's first packet, answered with a cookie).
pub const HS_INDUCTION: i32 = 1;
/// Handshake kind of a conclusion (the caller's second packet: it carries the stream ID).
pub const HS_CONCLUSION: i32 = -1;
/// Handshake kinds from this one up are rejections (`1000 + reason`).
pub const HS_REJECTION: i32 = 1000;
/// Handshake extension type of the stream ID (`SRT_CMD_SID`).
const EXT_STREAM_ID: u16 = 5;

/// The stream ID a conclusion handshake carries (its `SRT_CMD_SID` extension), if any.
///
/// Extensions follow the fixed part: a 16-bit type, a 16-bit length in 32-bit words, the
/// content. libsrt writes the stream ID's bytes in 32-bit words in little-endian order (so
/// each group of four characters arrives reversed), padded with zeros.
pub fn stream_id(pkt: &[u8]) -> Option<String> {
    handshake(pkt)?;
    let mut ext = pkt.get(HEADER_LEN + HANDSHAKE_CIF_LEN..)?;
    while ext.len() >= 4 {
        let kind = u16::from_be_bytes([ext[0], ext[1]]);
        let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        let body = ext.get(4..4 + 4 * words)?;
        if kind == EXT_STREAM_ID {
            let mut bytes: Vec<u8> = body
                .chunks(4)
                .flat_map(|w| w.iter().rev().copied())
                .collect();
            while bytes.last() == Some(&0) {
                bytes.pop();
            }
            return String::from_utf8(bytes).ok();
        }
        ext = &ext[4 + 4 * words..];
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A conclusion handshake carrying `sid` as its stream ID extension (after another one).
    pub fn conclusion_with_stream_id(dest: u32, socket_id: u32, sid: &str) -> Vec<u8> {
        let mut p = handshake_packet(dest, socket_id, HS_CONCLUSION);
        // an SRT_CMD_HSREQ extension first (3 words), as libsrt sends it
        p.extend_from_slice(&1u16.to_be_bytes());
        p.extend_from_slice(&3u16.to_be_bytes());
        p.extend_from_slice(&[0u8; 12]);
        let mut body = sid.as_bytes().to_vec();
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
        p.extend_from_slice(&EXT_STREAM_ID.to_be_bytes());
        p.extend_from_slice(&((body.len() / 4) as u16).to_be_bytes());
        for w in body.chunks(4) {
            p.extend(w.iter().rev());
        }
        p
    }

    #[test]
    fn the_stream_id_of_a_conclusion_is_read_back() {
        let sid = "#!::r=cam1,s=0123456789abcdef0123";
        let p = conclusion_with_stream_id(0, 7, sid);
        assert_eq!(stream_id(&p).as_deref(), Some(sid));
        assert_eq!(stream_id(&handshake_packet(0, 7, HS_CONCLUSION)), None);
        assert_eq!(stream_id(&p[..p.len() - 3]), None, "a truncated extension");
        assert_eq!(stream_id(b"not srt"), None);
    }

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
