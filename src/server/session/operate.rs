//! What the operator does to a session (tally, latency, close) and how a change reaches every
//! connection (the `session` summary, as each token may read it). Part of the core: no
//! sockets, no tasks.

use super::core::SessionCore;
use super::effects::{ConnId, Effects, Target};
use super::error::SessionError;
use super::persist::StoreOp;
use crate::protocol::{
    Closed, ErrorCode, MAX_LATENCY_MS, MIN_LATENCY_MS, ServerMessage, Tally, TallyState,
};
use crate::server::token::Scope;

impl SessionCore {
    /// Sets a stream's tally and tells its peers (every link's, with several receivers).
    pub fn set_tally(
        &mut self,
        stream: &str,
        state: TallyState,
        now: i64,
    ) -> Result<Effects, SessionError> {
        let idx = self.stream_index(stream)?;
        let mut fx = Effects::default();
        fx.store.extend(self.touch(now));
        self.with_summary_change(&mut fx, |core, fx| {
            for link in core.links_of(idx) {
                core.rec.streams[link].tally = state;
                fx.store.push(StoreOp::Tally {
                    session: core.rec.name.clone(),
                    stream: core.rec.streams[link].name.clone(),
                    state,
                });
                for holder in core.holders[link].iter().flatten() {
                    fx.send(
                        holder.conn,
                        ServerMessage::Tally(Tally {
                            stream: stream.to_string(),
                            state,
                        }),
                    );
                }
            }
        });
        Ok(fx)
    }

    /// Ends the session: everyone is told why.
    pub fn close(&mut self, reason: &str, now: i64) -> Effects {
        self.closed = true;
        let mut fx = Effects::default();
        fx.out.push((
            Target::All,
            ServerMessage::Closed(Closed {
                reason: reason.to_string(),
            }),
        ));
        fx.store.push(StoreOp::Close {
            session: self.rec.name.clone(),
            reason: reason.to_string(),
            at_ms: now,
        });
        fx
    }

    pub(super) fn stream_index(&self, stream: &str) -> Result<usize, SessionError> {
        self.rec
            .streams
            .iter()
            .position(|s| s.name == stream && s.slot() == 1)
            .ok_or_else(|| SessionError::unknown_stream(&self.rec.name, stream))
    }

    /// Runs `change` and broadcasts a `session` message if the summary changed.
    pub(super) fn with_summary_change(
        &mut self,
        fx: &mut Effects,
        change: impl FnOnce(&mut Self, &mut Effects),
    ) {
        let before = self.summary();
        change(self, fx);
        if self.summary() != before {
            self.broadcast_summary(fx);
            fx.view_changed = true;
        }
    }

    /// The `session` message to every connection, as its token may read it: admin tokens the
    /// whole session, stream tokens their stream (one message per stream, shared by its
    /// connections).
    fn broadcast_summary(&self, fx: &mut Effects) {
        let mut groups: Vec<(&Scope, Vec<ConnId>)> = Vec::new();
        // (a peer in the waiting room is told nothing of the session's changes)
        for (id, c) in self.conns.iter().filter(|(_, c)| c.scope != Scope::Join) {
            let same = |s: &Scope| match (s, &c.scope) {
                (Scope::Admin, Scope::Admin) | (Scope::Join, Scope::Join) => true,
                (Scope::Stream { stream: a, .. }, Scope::Stream { stream: b, .. }) => a == b,
                _ => false,
            };
            match groups.iter_mut().find(|(s, _)| same(s)) {
                Some((_, conns)) => conns.push(*id),
                None => groups.push((&c.scope, vec![*id])),
            }
        }
        for (scope, conns) in groups {
            fx.out.push((
                Target::Conns(conns),
                ServerMessage::Session(self.summary_for(scope)),
            ));
        }
    }

    /// Changes a stream's SRT latency; both peers get it and reconnect with it.
    pub fn set_latency(
        &mut self,
        stream: &str,
        latency: u32,
        now: i64,
    ) -> Result<Effects, SessionError> {
        let idx = self.stream_index(stream)?;
        if !(MIN_LATENCY_MS..=MAX_LATENCY_MS).contains(&latency) {
            return Err(SessionError::new(
                ErrorCode::BadRequest,
                format!(
                    "latency must be between {MIN_LATENCY_MS} and {MAX_LATENCY_MS} ms, got {latency}"
                ),
            ));
        }
        let mut fx = Effects::default();
        fx.store.extend(self.touch(now));
        for link in self.links_of(idx) {
            self.rec.streams[link].latency = latency;
            fx.store.push(StoreOp::Latency {
                session: self.rec.name.clone(),
                stream: self.rec.streams[link].name.clone(),
                latency,
            });
            let rt = &self.runtime[link];
            if rt.path.is_some() && rt.relay_pending.is_none() {
                self.send_coordinates(link, &mut fx);
            }
        }
        fx.view_changed = true;
        Ok(fx)
    }
}
