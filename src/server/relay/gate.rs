//! Who may use one side of a relay, and where the other side's datagrams go: the relay's
//! admission decisions, without sockets (unit-tested here).
//!
//! * A **Punch peer**'s port locks onto the first datagram from the peer's registered IP. From
//!   then on another address is taken only for a datagram of the relayed SRT connection (its
//!   destination socket ID is the other side's): a stranger on the same IP is dropped.
//! * A **tunnelled peer** (a side without UDP) sends from the server's own tunnel socket for it:
//!   its port takes exactly that socket's address, which the session names when the tunnel
//!   attaches; nothing else from the loopback gets in.
//! * A **caller device** is not registered anywhere: its port takes handshakes from anyone, and
//!   locks onto the caller whose conclusion handshake carries the side's stream ID. Inductions
//!   (which create no state in the listener: it answers with a cookie) are passed on, and the
//!   listener's answers go back to whoever asked, by the socket ID they are addressed to. A
//!   conclusion with another stream ID is dropped: the listener never sees it, the stream goes
//!   on. Without a stream ID (`None`), the first conclusion locks the port; the listener's
//!   rejection of it (a wrong passphrase) or its silence releases the lock.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::protocol::srt_packet::{self, HS_CONCLUSION, HS_INDUCTION, HS_REJECTION};

/// Callers whose handshake is under way, remembered per caller-device side.
const PENDING_CALLERS: usize = 8;
/// Of those, from one IP at most (a flood from one place cannot push the camera out).
const PENDING_PER_IP: usize = 2;
/// A caller locked without a stream ID that has sent nothing this long may be replaced (SRT
/// sends a keep-alive every second).
const SILENT_CALLER: Duration = Duration::from_secs(5);

/// Who may use one side of a relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// A Punch peer registered from this IP (`None`: nobody holds the side now).
    Peer(Option<IpAddr>),
    /// A caller device that must send this stream ID (`None`: the first caller locks).
    Caller { stream_id: Option<String> },
    /// A Punch peer without UDP, whose datagrams come from the server's tunnel socket at this
    /// address (`None`: its tunnel is not open).
    Tunnel(Option<SocketAddr>),
}

impl Admission {
    /// Held by a Punch peer (over UDP or its tunnel), whose place the session moves.
    pub fn is_peer(&self) -> bool {
        !matches!(self, Admission::Caller { .. })
    }
}

/// What happens to a datagram that arrived on one side's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It is the side's: forward it.
    Forward,
    /// A stranger's (or a caller with the wrong stream ID): drop and count it.
    Stranger,
}

/// One side's admission state.
#[derive(Debug)]
pub struct Gate {
    admission: Admission,
    /// The address the side's datagrams come from (and the other side's go to).
    learned: Option<SocketAddr>,
    /// When the learned address last sent.
    heard: Option<Instant>,
    /// The side's own SRT socket ID, from its handshakes.
    socket_id: Option<u32>,
    /// Caller devices mid-handshake: their SRT socket ID and address, newest last.
    pending: VecDeque<(u32, SocketAddr)>,
}

impl Gate {
    pub fn new(admission: Admission) -> Self {
        Gate {
            admission,
            learned: None,
            heard: None,
            socket_id: None,
            pending: VecDeque::new(),
        }
    }

    /// The side's current address, if it has sent.
    pub fn learned(&self) -> Option<SocketAddr> {
        self.learned
    }

    /// The side's SRT socket ID, what the other side's packets are addressed to.
    pub fn socket_id(&self) -> Option<u32> {
        self.socket_id
    }

    /// A Punch peer registered again, left, or moved to its tunnel: only its new place is let
    /// in. A caller device's side is not a peer's and stays as it is.
    pub fn set_peer(&mut self, admission: Admission) {
        if self.admission.is_peer() && admission.is_peer() && self.admission != admission {
            self.admission = admission;
            self.learned = None;
            self.socket_id = None;
        }
    }

    fn learn(&mut self, from: SocketAddr, now: Instant) {
        if self.learned != Some(from) {
            tracing::info!(%from, "relay learnt a side's address");
        }
        self.learned = Some(from);
        self.heard = Some(now);
    }

    /// Whether a datagram from `from` is this side's; learns its address if so.
    /// `other_socket_id`: the other side's SRT socket ID, once known.
    pub fn admit(
        &mut self,
        datagram: &[u8],
        from: SocketAddr,
        other_socket_id: Option<u32>,
        now: Instant,
    ) -> Verdict {
        let verdict = if self.learned == Some(from) {
            self.heard = Some(now);
            Verdict::Forward
        } else {
            match self.admission.clone() {
                Admission::Peer(ip) => self.admit_peer(ip, datagram, from, other_socket_id, now),
                Admission::Tunnel(Some(at)) if at == from => {
                    self.learn(from, now);
                    Verdict::Forward
                }
                Admission::Tunnel(_) => Verdict::Stranger,
                Admission::Caller { stream_id } => {
                    self.admit_caller(stream_id.as_deref(), datagram, from, other_socket_id, now)
                }
            }
        };
        if verdict == Verdict::Forward
            && self.learned == Some(from)
            && let Some(hs) = srt_packet::handshake(datagram)
        {
            self.socket_id = Some(hs.socket_id);
        }
        verdict
    }

    fn admit_peer(
        &mut self,
        ip: Option<IpAddr>,
        datagram: &[u8],
        from: SocketAddr,
        other_socket_id: Option<u32>,
        now: Instant,
    ) -> Verdict {
        if Some(from.ip()) != ip {
            return Verdict::Stranger;
        }
        // The first datagram from the registered IP locks the port; after that, another port
        // of that IP only with a packet of the relayed connection (a NAT that moved the side).
        let belongs = self.learned.is_none()
            || (other_socket_id.is_some() && srt_packet::destination(datagram) == other_socket_id);
        if !belongs {
            return Verdict::Stranger;
        }
        self.learn(from, now);
        Verdict::Forward
    }

    fn admit_caller(
        &mut self,
        stream_id: Option<&str>,
        datagram: &[u8],
        from: SocketAddr,
        other_socket_id: Option<u32>,
        now: Instant,
    ) -> Verdict {
        // The locked caller's NAT moved it: a packet of the connection, from the same IP.
        if let Some(locked) = self.learned
            && locked.ip() == from.ip()
            && other_socket_id.is_some()
            && srt_packet::destination(datagram) == other_socket_id
        {
            self.learn(from, now);
            return Verdict::Forward;
        }
        let Some(hs) = srt_packet::handshake(datagram) else {
            return Verdict::Stranger;
        };
        match hs.kind {
            HS_INDUCTION => {
                self.pending
                    .retain(|(id, a)| *id != hs.socket_id && *a != from);
                self.make_room_for(from.ip());
                self.pending.push_back((hs.socket_id, from));
                Verdict::Forward
            }
            HS_CONCLUSION => {
                let admitted = match stream_id {
                    Some(expected) => srt_packet::stream_id(datagram).as_deref() == Some(expected),
                    // first come, while nobody (or only a silent caller) holds the port
                    None => self.learned.is_none() || self.silent(now),
                };
                if !admitted {
                    return Verdict::Stranger;
                }
                self.pending.retain(|(_, a)| *a != from);
                self.learn(from, now);
                Verdict::Forward
            }
            _ => Verdict::Stranger,
        }
    }

    /// Room for one more caller mid-handshake from `ip`: its own oldest attempt goes when it has
    /// [`PENDING_PER_IP`], else, when all are taken, one of the IP with the most attempts, so
    /// that a flood from one place cannot push the camera's attempt out.
    fn make_room_for(&mut self, ip: IpAddr) {
        let count = |ip: IpAddr| self.pending.iter().filter(|(_, a)| a.ip() == ip).count();
        let victim = if count(ip) >= PENDING_PER_IP {
            Some(ip)
        } else if self.pending.len() >= PENDING_CALLERS {
            self.pending
                .iter()
                .map(|(_, a)| a.ip())
                .max_by_key(|ip| count(*ip))
        } else {
            None
        };
        if let Some(victim) = victim
            && let Some(i) = self.pending.iter().position(|(_, a)| a.ip() == victim)
        {
            self.pending.remove(i);
        }
    }

    fn silent(&self, now: Instant) -> bool {
        self.heard
            .is_none_or(|h| now.duration_since(h) >= SILENT_CALLER)
    }

    /// Where a datagram from the other side goes: a caller mid-handshake it is addressed to,
    /// else this side's learned address. A listener's rejection of the caller locked without a
    /// stream ID releases the lock (a wrong caller does not keep the port).
    pub fn destination(&mut self, datagram: &[u8]) -> Option<SocketAddr> {
        let dest = srt_packet::destination(datagram);
        if let Some(&(_, addr)) = self
            .pending
            .iter()
            .rev()
            .find(|(id, _)| Some(*id) == dest && *id != 0)
        {
            return Some(addr);
        }
        let to = self.learned?;
        if matches!(self.admission, Admission::Caller { stream_id: None })
            && srt_packet::handshake(datagram).is_some_and(|hs| hs.kind >= HS_REJECTION)
        {
            tracing::info!(%to, "the listener rejected the caller; relay port unlocked");
            self.learned = None;
            self.socket_id = None;
        }
        Some(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::srt_packet::tests::{
        conclusion_with_stream_id, data_packet, handshake_packet,
    };

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const SID: &str = "#!::r=cam1,s=secretkey";

    #[test]
    fn a_caller_is_admitted_by_its_stream_id_and_strangers_are_not() {
        let now = Instant::now();
        let mut gate = Gate::new(Admission::Caller {
            stream_id: Some(SID.into()),
        });
        let (camera, stranger) = (addr("198.51.100.7:40000"), addr("203.0.113.9:5000"));
        // both may ask for a cookie; the listener's answers go back to each
        for (who, id) in [(camera, 11), (stranger, 22)] {
            let induction = handshake_packet(0, id, HS_INDUCTION);
            assert_eq!(gate.admit(&induction, who, None, now), Verdict::Forward);
        }
        assert_eq!(
            gate.destination(&handshake_packet(22, 99, HS_INDUCTION)),
            Some(stranger)
        );
        assert_eq!(
            gate.destination(&handshake_packet(11, 99, HS_INDUCTION)),
            Some(camera)
        );
        // the stranger's conclusion names another stream: dropped, nothing locked
        let wrong = conclusion_with_stream_id(0, 22, "#!::r=cam1,s=guess");
        assert_eq!(gate.admit(&wrong, stranger, None, now), Verdict::Stranger);
        assert_eq!(gate.learned(), None);
        let no_sid = handshake_packet(0, 22, HS_CONCLUSION);
        assert_eq!(gate.admit(&no_sid, stranger, None, now), Verdict::Stranger);
        // the camera's carries the side's stream ID: the port is its
        let right = conclusion_with_stream_id(0, 11, SID);
        assert_eq!(gate.admit(&right, camera, None, now), Verdict::Forward);
        assert_eq!(gate.learned(), Some(camera));
        assert_eq!(gate.socket_id(), Some(11));
        assert_eq!(gate.destination(&data_packet(11, b"media")), Some(camera));
        // a stranger's data is dropped, and so is a stranger's handshake later
        assert_eq!(
            gate.admit(&data_packet(99, b"x"), stranger, Some(99), now),
            Verdict::Stranger
        );
        assert_eq!(
            gate.admit(&wrong, stranger, Some(99), now),
            Verdict::Stranger
        );
        assert_eq!(gate.learned(), Some(camera), "the stream is not disturbed");
        // the camera restarts from another port and calls again with its stream ID
        let moved = addr("198.51.100.7:40001");
        let again = conclusion_with_stream_id(0, 12, SID);
        assert_eq!(gate.admit(&again, moved, Some(99), now), Verdict::Forward);
        assert_eq!(gate.learned(), Some(moved));
    }

    #[test]
    fn a_flood_of_inductions_from_one_place_cannot_push_the_camera_out() {
        let now = Instant::now();
        let mut gate = Gate::new(Admission::Caller {
            stream_id: Some(SID.into()),
        });
        let camera = addr("198.51.100.7:40000");
        gate.admit(&handshake_packet(0, 11, HS_INDUCTION), camera, None, now);
        for port in 0..1000u16 {
            let flood = SocketAddr::new("203.0.113.9".parse().unwrap(), 5000 + port);
            gate.admit(
                &handshake_packet(0, 1000 + u32::from(port), HS_INDUCTION),
                flood,
                None,
                now,
            );
        }
        assert_eq!(
            gate.destination(&handshake_packet(11, 99, HS_INDUCTION)),
            Some(camera),
            "the camera's cookie still reaches it"
        );
        let right = conclusion_with_stream_id(0, 11, SID);
        assert_eq!(gate.admit(&right, camera, None, now), Verdict::Forward);
    }

    #[test]
    fn without_a_stream_id_the_first_caller_locks_until_rejected_or_silent() {
        let now = Instant::now();
        let mut gate = Gate::new(Admission::Caller { stream_id: None });
        let (first, second) = (addr("192.0.2.1:1000"), addr("192.0.2.2:2000"));
        let c1 = handshake_packet(0, 1, HS_CONCLUSION);
        let c2 = handshake_packet(0, 2, HS_CONCLUSION);
        assert_eq!(gate.admit(&c1, first, None, now), Verdict::Forward);
        assert_eq!(gate.admit(&c2, second, None, now), Verdict::Stranger);
        // the listener rejects the first caller (a wrong passphrase): the port is free again
        let rejection = handshake_packet(1, 99, HS_REJECTION + 6);
        assert_eq!(gate.destination(&rejection), Some(first));
        assert_eq!(gate.learned(), None);
        assert_eq!(gate.admit(&c2, second, None, now), Verdict::Forward);
        // a caller that went silent may be replaced
        let later = now + SILENT_CALLER;
        assert_eq!(gate.admit(&c1, first, None, later), Verdict::Forward);
        assert_eq!(gate.learned(), Some(first));
    }

    #[test]
    fn a_peer_locks_on_its_registered_ip_and_moves_only_with_its_connection() {
        let now = Instant::now();
        let mut gate = Gate::new(Admission::Peer(Some("192.0.2.7".parse().unwrap())));
        let (peer, same_ip, other_ip) = (
            addr("192.0.2.7:5000"),
            addr("192.0.2.7:5001"),
            addr("192.0.2.8:5000"),
        );
        assert_eq!(gate.admit(b"x", other_ip, None, now), Verdict::Stranger);
        assert_eq!(gate.admit(b"prime", peer, None, now), Verdict::Forward);
        assert_eq!(
            gate.admit(&data_packet(5, b"x"), same_ip, Some(7), now),
            Verdict::Stranger
        );
        assert_eq!(
            gate.admit(&data_packet(7, b"x"), same_ip, Some(7), now),
            Verdict::Forward
        );
        assert_eq!(gate.learned(), Some(same_ip));
        // it registered again from elsewhere: only the new IP now
        gate.set_peer(Admission::Peer(Some("192.0.2.8".parse().unwrap())));
        assert_eq!(gate.learned(), None);
        assert_eq!(gate.admit(b"x", same_ip, None, now), Verdict::Stranger);
        assert_eq!(gate.admit(b"x", other_ip, None, now), Verdict::Forward);
    }

    #[test]
    fn a_tunnelled_side_takes_only_its_tunnel_socket() {
        let now = Instant::now();
        let (tunnel, other_loopback) = (addr("127.0.0.1:41000"), addr("127.0.0.1:41001"));
        // the side moved to its tunnel, which is not open yet: nobody gets in
        let mut gate = Gate::new(Admission::Peer(Some("192.0.2.7".parse().unwrap())));
        gate.set_peer(Admission::Tunnel(None));
        assert_eq!(gate.admit(b"x", tunnel, None, now), Verdict::Stranger);
        gate.set_peer(Admission::Tunnel(Some(tunnel)));
        assert_eq!(
            gate.admit(b"x", other_loopback, None, now),
            Verdict::Stranger
        );
        assert_eq!(gate.admit(b"x", tunnel, None, now), Verdict::Forward);
        assert_eq!(gate.learned(), Some(tunnel));
        // its tunnel was opened again from another socket: the old one is out at once
        gate.set_peer(Admission::Tunnel(Some(other_loopback)));
        assert_eq!(gate.learned(), None);
        assert_eq!(gate.admit(b"x", tunnel, None, now), Verdict::Stranger);
        assert_eq!(
            gate.admit(b"x", other_loopback, None, now),
            Verdict::Forward
        );
        // a caller device's side is not moved by a peer's place
        let mut device = Gate::new(Admission::Caller { stream_id: None });
        device.set_peer(Admission::Tunnel(Some(tunnel)));
        assert_eq!(device.admit(b"x", tunnel, None, now), Verdict::Stranger);
    }
}
