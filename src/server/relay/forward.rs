//! The forwarding loop of one relay: datagrams in from one side's port, through that side's
//! gate, out of the other side's port. Datagrams are taken and sent in batches
//! (`recvmmsg`/`sendmmsg`: one system call for up to [`BATCH`] datagrams each way), with one
//! set of buffers per relay; `docs/performance.md` has what that buys.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::gate::{Admission, Gate, Verdict};
use super::{RelayEvent, RelayStats, Release};
use crate::server::limit::TokenBucket;

/// Datagrams per system call.
pub const BATCH: usize = 32;
/// Batches taken per wake-up before the task yields (at most 16 × 32 datagrams).
const DRAIN_BATCHES: usize = 16;
/// Largest datagram forwarded (SRT's are at most 1500 bytes).
const DATAGRAM: usize = 2048;

pub(super) struct Forwarder {
    /// `[sender side, receiver side]`.
    pub(super) sockets: [UdpSocket; 2],
    /// Who may use each side.
    pub(super) gates: [Gate; 2],
    /// Who may use each Punch peer side, as the session changes it.
    pub(super) peers: watch::Receiver<[Admission; 2]>,
    /// When anything was last forwarded (or the relay started).
    pub(super) last_heard: Instant,
    /// Whether anything was ever forwarded.
    pub(super) carried: bool,
    pub(super) bucket: TokenBucket,
    pub(super) total: Arc<Mutex<TokenBucket>>,
    pub(super) stats: Arc<RelayStats>,
    /// Frees itself after this long without forwarding anything (`None`: never).
    pub(super) idle: Option<Duration>,
    /// When to say which side never sent, if only one did (`None`: not asked, or said).
    pub(super) heard_by: Option<Instant>,
    /// Datagrams per system call (at most [`BATCH`]).
    pub(super) batch: usize,
    /// Which sockets are dual-stack (IPv6): looked up once, not per datagram.
    pub(super) v6: [bool; 2],
}

/// Buffers for one batch of datagrams and the system calls' descriptors of them, allocated
/// and pointed at each other once per relay: per call only what the kernel changes is reset.
struct Batch {
    bufs: Vec<[u8; DATAGRAM]>,
    lens: [usize; BATCH],
    from: [Option<SocketAddr>; BATCH],
    /// Where each admitted datagram goes, by its index in `bufs`.
    out: Vec<(usize, SocketAddr)>,
    /// Receiving: source addresses, one buffer each.
    recv: Descriptors,
    /// Sending: destinations, the admitted datagrams in order.
    send: Descriptors,
}

/// `mmsghdr`s, their `iovec`s and addresses (boxed: their addresses never change).
struct Descriptors {
    names: Box<[libc::sockaddr_storage; BATCH]>,
    iovs: Box<[libc::iovec; BATCH]>,
    msgs: Box<[libc::mmsghdr; BATCH]>,
}

impl Descriptors {
    fn new() -> Self {
        // SAFETY: plain C structs, all-zero is a valid value for each.
        let mut d = Descriptors {
            names: Box::new(unsafe { zeroed() }),
            iovs: Box::new(unsafe { zeroed() }),
            msgs: Box::new(unsafe { zeroed() }),
        };
        for i in 0..BATCH {
            let hdr = &mut d.msgs[i].msg_hdr;
            hdr.msg_name = (&mut d.names[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &mut d.iovs[i];
            hdr.msg_iovlen = 1;
        }
        d
    }
}

// SAFETY: the raw pointers in the descriptors only ever point into the same `Batch` (into its
// boxes and its buffers' heap memory, which never move); the batch moves between threads only
// with its relay's task, never shared.
unsafe impl Send for Batch {}

impl Batch {
    fn new() -> Self {
        let mut b = Batch {
            bufs: vec![[0u8; DATAGRAM]; BATCH],
            lens: [0; BATCH],
            from: [None; BATCH],
            out: Vec::with_capacity(BATCH),
            recv: Descriptors::new(),
            send: Descriptors::new(),
        };
        for i in 0..BATCH {
            b.recv.iovs[i].iov_base = b.bufs[i].as_mut_ptr().cast();
            b.recv.iovs[i].iov_len = DATAGRAM;
        }
        b
    }
}

impl Forwarder {
    pub(super) async fn run(
        mut self,
        stop: CancellationToken,
        on_event: impl Fn(RelayEvent),
        release: Release,
    ) {
        let mut batch = Batch::new();
        // Idleness is checked now and then, not with a timer re-armed per datagram.
        let check = self.idle.map_or(Duration::from_secs(1), |i| {
            (i / 4).min(Duration::from_secs(1))
        });
        let mut idle_check = tokio::time::interval(check);
        idle_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let idled = loop {
            let side = tokio::select! {
                _ = stop.cancelled() => break false,
                _ = idle_check.tick() => {
                    if let Some(by) = self.heard_by
                        && Instant::now() >= by
                    {
                        self.heard_by = None;
                        let unheard = self.gates.each_ref().map(|g| g.learned().is_none());
                        if unheard.contains(&true) {
                            tracing::info!(?unheard, "relay never heard from a side");
                            on_event(RelayEvent::Unheard { sides: unheard });
                        }
                    }
                    if self.idle.is_some_and(|i| self.last_heard.elapsed() >= i) {
                        let learned = self.gates.each_ref().map(|g| g.learned());
                        tracing::info!(?learned, "relay idle; freeing its ports");
                        break true;
                    }
                    continue;
                }
                r = self.sockets[0].readable() => { if r.is_err() { continue } 0 }
                r = self.sockets[1].readable() => { if r.is_err() { continue } 1 }
            };
            if self.peers.has_changed().unwrap_or(false) {
                let peers = self.peers.borrow_and_update().clone();
                for (gate, admission) in self.gates.iter_mut().zip(peers) {
                    gate.set_peer(admission);
                }
            }
            // What is queued, without going back to the reactor per datagram; bounded, so that
            // a flood cannot keep this task from seeing `stop` or yielding its thread.
            for _ in 0..DRAIN_BATCHES {
                match recv_batch(&self.sockets[side], &mut batch, self.batch) {
                    Ok(0) => break,
                    Ok(n) => self.forward(side, n, &mut batch),
                    Err(_) => break,
                }
            }
            tokio::task::consume_budget().await;
        };
        drop(self.sockets);
        drop(release);
        if idled {
            on_event(RelayEvent::Idle {
                carried: self.carried,
            });
        }
    }

    /// Admits the `n` datagrams of `batch` that came in on `side` and sends them on.
    fn forward(&mut self, side: usize, n: usize, batch: &mut Batch) {
        let now = Instant::now();
        let other = 1 - side;
        let (mut strangers, mut dropped) = (0u64, 0u64);
        batch.out.clear();
        for i in 0..n {
            let Some(from) = batch.from[i] else { continue };
            // (On a dual-stack socket IPv4 peers arrive as ::ffff:a.b.c.d.)
            let from = SocketAddr::new(from.ip().to_canonical(), from.port());
            let datagram = &batch.bufs[i][..batch.lens[i]];
            let other_id = self.gates[other].socket_id();
            if self.gates[side].admit(datagram, from, other_id, now) == Verdict::Stranger {
                strangers += 1;
                continue;
            }
            // The other side has not sent yet: SRT's handshake repeats, nothing is lost.
            let Some(to) = self.gates[other].destination(datagram) else {
                continue;
            };
            let bytes = datagram.len() as f64;
            let within = self.bucket.take(bytes, now)
                && self
                    .total
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take(bytes, now);
            if within {
                batch.out.push((i, to));
            } else {
                dropped += 1;
            }
        }
        let sent = send_batch(&self.sockets[other], self.v6[other], batch);
        // A full send buffer drops the rest, as a router would; SRT retransmits.
        dropped += (batch.out.len() - sent) as u64;
        if sent > 0 {
            self.last_heard = now;
            self.carried = true;
            let bytes: usize = batch.out[..sent].iter().map(|(i, _)| batch.lens[*i]).sum();
            self.stats.packets.fetch_add(sent as u64, Ordering::Relaxed);
            self.stats.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        }
        if strangers > 0 {
            self.stats.strangers.fetch_add(strangers, Ordering::Relaxed);
        }
        if strangers + dropped > 0 {
            self.stats
                .dropped
                .fetch_add(strangers + dropped, Ordering::Relaxed);
        }
    }
}

/// Takes up to `max` (≤ [`BATCH`]) queued datagrams from `socket` without waiting (0: none
/// queued).
fn recv_batch(socket: &UdpSocket, batch: &mut Batch, max: usize) -> io::Result<usize> {
    let fd = socket.as_raw_fd();
    let max = max.min(BATCH);
    let result = socket.try_io(Interest::READABLE, || {
        let d = &mut batch.recv;
        for m in d.msgs[..max].iter_mut() {
            // the kernel wrote the last source's length here
            m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        }
        // SAFETY: the descriptors point at `batch`'s buffers (each `DATAGRAM` bytes) and
        // addresses, alive and not otherwise borrowed for the duration of the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                d.msgs.as_mut_ptr(),
                max as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    });
    if let Ok(n) = result {
        for i in 0..n {
            batch.lens[i] = batch.recv.msgs[i].msg_len as usize;
            batch.from[i] = from_storage(&batch.recv.names[i]);
        }
    }
    match result {
        Ok(n) => Ok(n),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        Err(e) => Err(e),
    }
}

/// Sends `batch.out` from `socket` (`v6`: a dual-stack socket, which reaches IPv4 peers at
/// their mapped address); returns how many went (the rest found the buffer full).
fn send_batch(socket: &UdpSocket, v6: bool, batch: &mut Batch) -> usize {
    let count = batch.out.len();
    if count == 0 {
        return 0;
    }
    let d = &mut batch.send;
    for (k, (i, to)) in batch.out.iter().enumerate() {
        let to = match to {
            SocketAddr::V4(v4) if v6 => {
                SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
            }
            other => *other,
        };
        d.msgs[k].msg_hdr.msg_namelen = to_storage(to, &mut d.names[k]);
        d.iovs[k].iov_base = batch.bufs[*i].as_mut_ptr().cast();
        d.iovs[k].iov_len = batch.lens[*i];
    }
    let fd = socket.as_raw_fd();
    let mut sent = 0;
    while sent < count {
        // SAFETY: as in `recv_batch`; sendmmsg only reads the buffers.
        let n = unsafe {
            libc::sendmmsg(
                fd,
                d.msgs[sent..].as_mut_ptr(),
                (count - sent) as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if n <= 0 {
            break;
        }
        sent += n as usize;
    }
    sent
}

fn from_storage(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let a: &libc::sockaddr_in = unsafe { &*(s as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::new(ip.into(), u16::from_be(a.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let a: &libc::sockaddr_in6 = unsafe { &*(s as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Writes `addr` into `s`; returns its length.
fn to_storage(addr: SocketAddr, s: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            let a: &mut libc::sockaddr_in =
                unsafe { &mut *(s as *mut _ as *mut libc::sockaddr_in) };
            a.sin_family = libc::AF_INET as libc::sa_family_t;
            a.sin_port = v4.port().to_be();
            a.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above.
            let a: &mut libc::sockaddr_in6 =
                unsafe { &mut *(s as *mut _ as *mut libc::sockaddr_in6) };
            a.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            a.sin6_port = v6.port().to_be();
            a.sin6_addr.s6_addr = v6.ip().octets();
            a.sin6_flowinfo = v6.flowinfo();
            a.sin6_scope_id = v6.scope_id();
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}
