//! Streams with several receivers. A stream with N receivers is N links, one record each
//! (`model::link_name`): every link pairs one sender registration with one receiver slot,
//! and has its own path, relay and health, so everything the core does per stream it does per
//! link. This file is what looks at a stream as a whole: which link a registration takes, and
//! the state, summary and view of a stream of several links. Part of the core: no sockets.

use super::core::{SessionCore, slot_index};
use crate::protocol::{
    PeerStatus, PeerView, ReceiverLink, Role, SessionState, StreamSummary, StreamView,
};
use crate::server::token::Scope;

impl SessionCore {
    /// The links of the stream whose slot-1 record is `idx`, slot order.
    pub(super) fn links_of(&self, idx: usize) -> Vec<usize> {
        let stream = self.rec.streams[idx].stream();
        let mut links: Vec<usize> = (0..self.rec.streams.len())
            .filter(|&i| self.rec.streams[i].stream() == stream)
            .collect();
        links.sort_by_key(|&i| self.rec.streams[i].slot());
        links
    }

    /// How many receivers the stream whose slot-1 record is `idx` has.
    pub(super) fn receiver_count(&self, idx: usize) -> u8 {
        self.links_of(idx).len().clamp(1, u8::MAX.into()) as u8
    }

    /// The slot-1 records: one per stream as users see it.
    pub(super) fn stream_heads(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.rec.streams.len()).filter(|&i| self.rec.streams[i].slot() == 1)
    }

    /// The link a registration of `role` on the stream `head` takes: `asked` if given; else a
    /// sender links with receiver 1, and a receiver takes the slot this connection holds, else
    /// the free slot whose last receiver had this address (`ip` and one of `ports`: the same
    /// receiver back), else a free slot nobody held yet, else the first free one (none free:
    /// slot 1, which then answers `slot_taken`). Free slots held before come last, so that a
    /// newcomer does not take the slot of a receiver whose signalling is reconnecting.
    pub(super) fn pick_link(
        &self,
        head: usize,
        role: Role,
        asked: Option<u8>,
        held: Option<usize>,
        (ip, ports): (std::net::IpAddr, [u16; 2]),
    ) -> Result<usize, String> {
        let links = self.links_of(head);
        if let Some(k) = asked {
            return links
                .iter()
                .copied()
                .find(|&i| self.rec.streams[i].slot() == k)
                .ok_or_else(|| {
                    format!(
                        "stream {:?} has {} receiver(s); receiver {k} does not exist",
                        self.rec.streams[head].stream(),
                        links.len()
                    )
                });
        }
        if role == Role::Sender || links.len() == 1 {
            return Ok(head);
        }
        if let Some(i) = held.filter(|i| links.contains(i)) {
            return Ok(i);
        }
        let free: Vec<usize> = links
            .iter()
            .copied()
            .filter(|&i| self.holders[i][slot_index(Role::Receiver)].is_none())
            .collect();
        let ip = ip.to_string();
        let last = |i: usize| self.rec.streams[i].receiver.as_ref();
        let was_here = free.iter().copied().find(|&i| {
            last(i).is_some_and(|p| p.address.ip == ip && ports.contains(&p.address.port))
        });
        let never_held = free.iter().copied().find(|&i| last(i).is_none());
        Ok(was_here
            .or(never_held)
            .or(free.first().copied())
            .unwrap_or(head))
    }

    /// The state of stream `head` as a whole: its most advanced link's.
    pub(super) fn group_state(&self, head: usize) -> SessionState {
        self.links_of(head)
            .into_iter()
            .map(|i| self.stream_state(i))
            .max()
            .unwrap_or(SessionState::Waiting)
    }

    /// Whether any link of stream `head` is up.
    pub(super) fn group_linked(&self, head: usize) -> bool {
        self.links_of(head).into_iter().any(|i| self.link_up(i))
    }

    /// Stream `head`'s line in the `session` summary.
    pub(super) fn stream_summary(&self, head: usize) -> StreamSummary {
        let s = &self.rec.streams[head];
        let links = self.links_of(head);
        let several = links.len() > 1;
        // with several links the sender is as far as its furthest one
        let sender = links
            .iter()
            .map(|&i| self.peer_status(i, Role::Sender))
            .max_by_key(|st| match st {
                PeerStatus::Waiting => 0,
                PeerStatus::Registered => 1,
                PeerStatus::Connected => 2,
            })
            .unwrap_or(PeerStatus::Waiting);
        StreamSummary {
            name: s.stream().to_string(),
            label: s.label.clone(),
            state: self.group_state(head),
            sender,
            receiver: self.peer_status(head, Role::Receiver),
            tally: s.tally,
            receivers: self.receiver_count(head),
            linked: several.then(|| links.iter().filter(|&&i| self.link_up(i)).count() as u8),
            links: if several {
                links.iter().map(|&i| self.stream_state(i)).collect()
            } else {
                Vec::new()
            },
        }
    }

    /// Folds the per-link views of a stream with several receivers into its head's view:
    /// `views` holds one view per record, in record order; the result one per stream.
    pub(super) fn group_views(&self, views: Vec<StreamView>) -> Vec<StreamView> {
        let mut views: Vec<Option<StreamView>> = views.into_iter().map(Some).collect();
        let heads: Vec<usize> = self.stream_heads().collect();
        heads
            .into_iter()
            .filter_map(|head| {
                let links = self.links_of(head);
                let mut view = views[head].take()?;
                if links.len() > 1 {
                    view.state = self.group_state(head);
                    let mut total = 0.0;
                    let mut any = false;
                    // the stream is as healthy as its worst link, and needs the latency its
                    // most demanding link needs
                    let mut worst = None;
                    let mut recommendation = view.recommendation.clone();
                    for &i in &links {
                        let Some(link) = (if i == head {
                            Some(view.clone())
                        } else {
                            views[i].take()
                        }) else {
                            continue;
                        };
                        if self.link_up(i)
                            && self.holders[i][slot_index(Role::Sender)].is_some()
                            && let Some(b) =
                                link.sender.last_health.as_ref().and_then(|h| h.bitrate)
                        {
                            total += b;
                            any = true;
                        }
                        let slot = self.rec.streams[i].slot();
                        if let Some(level) = link.level
                            && worst.as_ref().is_none_or(|(w, _)| level > *w)
                        {
                            let why = link.level_reason.clone().unwrap_or_default();
                            worst = Some((level, format!("receiver {slot}: {why}")));
                        }
                        if let Some(r) = &link.recommendation
                            && recommendation
                                .as_ref()
                                .is_none_or(|have| r.latency > have.latency)
                        {
                            recommendation = Some(r.clone());
                        }
                        view.receivers.push(ReceiverLink {
                            receiver: self.rec.streams[i].slot(),
                            state: self.stream_state(i),
                            path: link.path,
                            path_reason: link.path_reason,
                            level: link.level,
                            level_reason: link.level_reason,
                            sender: link.sender,
                            receiver_peer: link.receiver,
                        });
                    }
                    view.sent_bitrate = any.then_some(total);
                    view.level = worst.as_ref().map(|(l, _)| *l);
                    view.level_reason = worst.map(|(_, why)| why);
                    view.recommendation = recommendation;
                }
                Some(view)
            })
            .collect()
    }

    /// Whether connections with `scope` have reached their cap: the per-side cap, times the
    /// stream's receivers (a sender holds one connection per receiver).
    pub(super) fn side_full(&self, scope: &Scope, count: usize) -> Option<usize> {
        let Scope::Stream { stream, .. } = scope else {
            return None;
        };
        let links = self
            .rec
            .streams
            .iter()
            .filter(|s| s.stream() == stream)
            .count()
            .max(1);
        let cap = self.limits.per_side * links;
        (count >= cap).then_some(cap)
    }
}

/// The other side's fields a stream token may not read, blanked (see `view_for`).
pub(super) fn redact(peer: &mut PeerView, keep_address: bool) {
    *peer = PeerView {
        status: peer.status,
        srt: peer.srt,
        address: if keep_address {
            peer.address.take()
        } else {
            None
        },
        meta: None,
        registered_at: None,
        last_health: None,
        health_at: None,
        nat: None,
        device: None,
    };
}
