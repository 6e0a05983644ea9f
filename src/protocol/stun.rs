//! The part of STUN (RFC 8489) Punch uses: Binding requests and success responses carrying
//! XOR-MAPPED-ADDRESS, plus RFC 5780's OTHER-ADDRESS, which tells a client where to send its
//! second probe for NAT mapping classification. Classic RFC 3489 clients (no magic cookie,
//! CHANGE-REQUEST) get the RFC 3489 answer: MAPPED-ADDRESS, SOURCE-ADDRESS, CHANGED-ADDRESS.
//! Byte-level encoding only; the server and the elements do the socket work.
//!
//! A Punch peer names its registration in its requests (USERNAME, the tag the server's `hello`
//! gave it), so the server can check that the public address a peer registers is one its STUN
//! service saw. Answers carry no SOFTWARE attribute: they stay small (44 bytes for a 20-byte
//! IPv4 request; the service also limits how often it answers one source).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub const MAGIC_COOKIE: u32 = 0x2112_A442;
const HEADER_LEN: usize = 20;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const ATTR_MAPPED_ADDRESS: u16 = 0x0001;
const ATTR_CHANGE_REQUEST: u16 = 0x0003;
const ATTR_CHANGED_ADDRESS: u16 = 0x0005;
const ATTR_USERNAME: u16 = 0x0006;
/// Longest USERNAME accepted (RFC 8489: less than 513 bytes).
const MAX_USERNAME: usize = 512;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
const ATTR_OTHER_ADDRESS: u16 = 0x802C;

pub type TransactionId = [u8; 12];

/// CHANGE-REQUEST flags (RFC 3489 / 5780): answer from the other IP, from the other port.
pub const CHANGE_IP: u32 = 0x4;
pub const CHANGE_PORT: u32 = 0x2;

/// A Binding request as the server needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingRequest {
    /// The bytes after the length: magic cookie and 96-bit id (RFC 8489), or a 128-bit id
    /// (RFC 3489). The answer repeats them.
    pub id: [u8; 16],
    /// Whether the request carries the RFC 8489 magic cookie.
    pub modern: bool,
    /// CHANGE-REQUEST flags (0 without the attribute).
    pub change: u32,
    /// USERNAME, when the request names who sends it (Punch peers: their registration tag).
    pub username: Option<String>,
}

/// A Binding request, with a USERNAME attribute when `username` is given.
pub fn binding_request(tid: &TransactionId, username: Option<&str>) -> Vec<u8> {
    let mut m = vec![0u8; HEADER_LEN];
    m[0..2].copy_from_slice(&BINDING_REQUEST.to_be_bytes());
    m[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    m[8..20].copy_from_slice(tid);
    if let Some(name) = username.filter(|n| n.len() <= MAX_USERNAME) {
        m.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        m.extend_from_slice(&(name.len() as u16).to_be_bytes());
        m.extend_from_slice(name.as_bytes());
        m.resize(m.len().next_multiple_of(4), 0);
        let body = (m.len() - HEADER_LEN) as u16;
        m[2..4].copy_from_slice(&body.to_be_bytes());
    }
    m
}

/// A well-formed Binding request, RFC 8489 or RFC 3489 (attributes other than CHANGE-REQUEST
/// are ignored).
pub fn parse_binding_request(msg: &[u8]) -> Option<BindingRequest> {
    if msg.len() < HEADER_LEN || msg[0] & 0xC0 != 0 {
        return None;
    }
    let kind = u16::from_be_bytes([msg[0], msg[1]]);
    let len = usize::from(u16::from_be_bytes([msg[2], msg[3]]));
    if kind != BINDING_REQUEST || len % 4 != 0 || msg.len() != HEADER_LEN + len {
        return None;
    }
    let mut change = 0;
    let mut username = None;
    for (attr, value) in attributes(&msg[HEADER_LEN..]) {
        if attr == ATTR_CHANGE_REQUEST && value.len() == 4 {
            change = u32::from_be_bytes([value[0], value[1], value[2], value[3]]);
        }
        if attr == ATTR_USERNAME && value.len() <= MAX_USERNAME {
            username = std::str::from_utf8(value).ok().map(String::from);
        }
    }
    Some(BindingRequest {
        id: msg[4..20].try_into().ok()?,
        modern: msg[4..8] == MAGIC_COOKIE.to_be_bytes(),
        change,
        username,
    })
}

/// `(type, value)` of each attribute, until the first malformed one.
fn attributes(mut rest: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let attr = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let value = rest.get(4..4 + len)?;
        rest = rest.get((4 + len).next_multiple_of(4)..).unwrap_or(&[]);
        Some((attr, value))
    })
}

fn parse_header(msg: &[u8]) -> Option<(u16, TransactionId)> {
    if msg.len() < HEADER_LEN || msg[0] & 0xC0 != 0 {
        return None;
    }
    let kind = u16::from_be_bytes([msg[0], msg[1]]);
    let len = usize::from(u16::from_be_bytes([msg[2], msg[3]]));
    let cookie = u32::from_be_bytes([msg[4], msg[5], msg[6], msg[7]]);
    if cookie != MAGIC_COOKIE || len % 4 != 0 || msg.len() != HEADER_LEN + len {
        return None;
    }
    Some((kind, msg[8..20].try_into().ok()?))
}

/// Writes the success response to `req` into `out` (cleared first; no allocation once it has
/// grown to the size of one response): `mapped` is the request's source, `other` the alternate
/// address. 44 bytes for IPv4 either way.
pub fn write_binding_success(
    out: &mut Vec<u8>,
    req: &BindingRequest,
    mapped: SocketAddr,
    other: SocketAddr,
) {
    out.clear();
    out.extend_from_slice(&BINDING_SUCCESS.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&req.id);
    if req.modern {
        let tid: TransactionId = req.id[4..].try_into().expect("16 - 4 bytes");
        push_address(out, ATTR_XOR_MAPPED_ADDRESS, mapped, Some(&tid));
        push_address(out, ATTR_OTHER_ADDRESS, other, None);
    } else {
        // RFC 3489 clients know only these (0x0020 would be an unknown required attribute).
        // No SOURCE-ADDRESS: clients do not need it, and without it the answer is no larger
        // than a modern one (44 bytes for IPv4, 1.5 times the request on the wire).
        push_address(out, ATTR_MAPPED_ADDRESS, mapped, None);
        push_address(out, ATTR_CHANGED_ADDRESS, other, None);
    }
    let body = (out.len() - HEADER_LEN) as u16;
    out[2..4].copy_from_slice(&body.to_be_bytes());
}

/// Address attribute value; XOR-encoded when `xor_tid` is given.
fn push_address(out: &mut Vec<u8>, attr: u16, addr: SocketAddr, xor_tid: Option<&TransactionId>) {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let mut mask = [0u8; 16];
    mask[..4].copy_from_slice(&cookie);
    if let Some(tid) = xor_tid {
        mask[4..].copy_from_slice(tid);
    }
    let xor = xor_tid.is_some();
    let port = if xor {
        addr.port() ^ (MAGIC_COOKIE >> 16) as u16
    } else {
        addr.port()
    };
    let (family, ip): (u8, Vec<u8>) = match addr.ip() {
        IpAddr::V4(v4) => (1, v4.octets().to_vec()),
        IpAddr::V6(v6) => (2, v6.octets().to_vec()),
    };
    out.extend_from_slice(&attr.to_be_bytes());
    out.extend_from_slice(&((4 + ip.len()) as u16).to_be_bytes());
    out.extend_from_slice(&[0, family]);
    out.extend_from_slice(&port.to_be_bytes());
    for (i, b) in ip.iter().enumerate() {
        out.push(if xor { b ^ mask[i] } else { *b });
    }
}

/// What a Binding success response says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindingResponse {
    /// The request's source address as the server saw it.
    pub mapped: SocketAddr,
    /// The server's alternate address (RFC 5780), if it has one.
    pub other: Option<SocketAddr>,
}

/// Parses a Binding success response to the request `tid`; anything else is `None`.
pub fn parse_binding_success(msg: &[u8], tid: &TransactionId) -> Option<BindingResponse> {
    let (kind, got) = parse_header(msg)?;
    if kind != BINDING_SUCCESS || &got != tid {
        return None;
    }
    let (mut xor_mapped, mut mapped, mut other) = (None, None, None);
    for (attr, value) in attributes(&msg[HEADER_LEN..]) {
        match attr {
            ATTR_XOR_MAPPED_ADDRESS => xor_mapped = read_address(value, Some(tid)),
            ATTR_MAPPED_ADDRESS => mapped = read_address(value, None),
            ATTR_OTHER_ADDRESS => other = read_address(value, None),
            _ => {}
        }
    }
    Some(BindingResponse {
        mapped: xor_mapped.or(mapped)?,
        other,
    })
}

fn read_address(v: &[u8], xor_tid: Option<&TransactionId>) -> Option<SocketAddr> {
    let mut mask = [0u8; 16];
    mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    if let Some(tid) = xor_tid {
        mask[4..].copy_from_slice(tid);
    }
    let xor = |bytes: &[u8]| -> Vec<u8> {
        bytes
            .iter()
            .enumerate()
            .map(|(i, b)| if xor_tid.is_some() { b ^ mask[i] } else { *b })
            .collect()
    };
    let mut port = u16::from_be_bytes([*v.get(2)?, *v.get(3)?]);
    if xor_tid.is_some() {
        port ^= (MAGIC_COOKIE >> 16) as u16;
    }
    let ip = match v.get(1)? {
        1 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(xor(v.get(4..8)?)).ok()?)),
        2 => IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(xor(v.get(4..20)?)).ok()?,
        )),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_response_round_trip_v4_and_v6() {
        let tid = *b"0123456789ab";
        let req = parse_binding_request(&binding_request(&tid, None)).unwrap();
        assert!(req.modern);
        assert_eq!(req.change, 0);
        assert_eq!(req.username, None);
        let tagged = parse_binding_request(&binding_request(&tid, Some("tag-123"))).unwrap();
        assert_eq!(tagged.username.as_deref(), Some("tag-123"));
        let other: SocketAddr = "192.0.2.1:3479".parse().unwrap();
        for mapped in ["203.0.113.2:24419", "[2001:db8::7]:9000"] {
            let mapped: SocketAddr = mapped.parse().unwrap();
            let mut out = Vec::new();
            write_binding_success(&mut out, &req, mapped, other);
            assert_eq!(out.len() % 4, 0);
            // No SOFTWARE: 20 + XOR-MAPPED-ADDRESS + OTHER-ADDRESS.
            if mapped.is_ipv4() {
                assert_eq!(out.len(), 44);
            }
            let r = parse_binding_success(&out, &tid).unwrap();
            assert_eq!(r.mapped, mapped);
            assert_eq!(r.other, Some(other));
            assert!(parse_binding_success(&out, b"another-tid!").is_none());
        }
    }

    #[test]
    fn classic_rfc3489_requests_get_classic_answers() {
        // What Debian's stun-client 0.97 sends: no magic cookie, a CHANGE-REQUEST attribute.
        let mut msg = vec![0x00, 0x01, 0x00, 0x08];
        msg.extend_from_slice(b"sixteen-byte-id!");
        msg.extend_from_slice(&[0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x02]);
        let req = parse_binding_request(&msg).unwrap();
        assert!(!req.modern);
        assert_eq!(req.change, CHANGE_PORT);
        let mut out = Vec::new();
        let mapped: SocketAddr = "203.0.113.2:30005".parse().unwrap();
        write_binding_success(&mut out, &req, mapped, "192.0.2.1:3478".parse().unwrap());
        assert_eq!(out.len(), 44, "no larger than a modern answer");
        assert_eq!(&out[4..20], b"sixteen-byte-id!", "the id is echoed");
        let attrs: Vec<u16> = attributes(&out[HEADER_LEN..]).map(|(a, _)| a).collect();
        assert_eq!(attrs, [ATTR_MAPPED_ADDRESS, ATTR_CHANGED_ADDRESS]);
        let (_, v) = attributes(&out[HEADER_LEN..]).next().unwrap();
        assert_eq!(read_address(v, None), Some(mapped));
    }

    #[test]
    fn rfc5769_sample_ipv4_response() {
        // RFC 5769 §2.2 (without its MESSAGE-INTEGRITY/FINGERPRINT checks, which we don't use):
        // XOR-MAPPED-ADDRESS of 192.0.2.1:32853.
        let tid = [
            0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
        ];
        let mut msg = vec![0x01, 0x01, 0x00, 0x0c, 0x21, 0x12, 0xa4, 0x42];
        msg.extend_from_slice(&tid);
        msg.extend_from_slice(&[
            0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
        ]);
        let r = parse_binding_success(&msg, &tid).unwrap();
        assert_eq!(r.mapped, "192.0.2.1:32853".parse().unwrap());
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_binding_request(b"").is_none());
        assert!(
            parse_binding_request(&[0u8; 20]).is_none(),
            "type 0 is no Binding request"
        );
        let mut req = binding_request(b"0123456789ab", None);
        req.push(0);
        assert!(parse_binding_request(&req).is_none(), "length mismatch");
        let mut srt = binding_request(b"0123456789ab", None);
        srt[0] = 0x80; // SRT control packets start with the high bit set
        assert!(parse_binding_request(&srt).is_none());
        let tid = *b"0123456789ab";
        let req = parse_binding_request(&binding_request(&tid, None)).unwrap();
        let mut out = Vec::new();
        let any: SocketAddr = "1.2.3.4:5".parse().unwrap();
        write_binding_success(&mut out, &req, any, any);
        out.truncate(out.len() - 4);
        out[3] -= 4;
        // Truncated attributes are skipped or refused, never a panic.
        let _ = parse_binding_success(&out, &tid);
    }
}
