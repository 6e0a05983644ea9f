//! Session names → running session tasks, and the tombstones of closed sessions.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, RwLock};

use super::session::model::{TOMBSTONE_RETENTION_MS, Tombstone};
use super::session::{SessionError, SessionHandle};
use super::time::now_ms;
use super::token::Claims;
use crate::protocol::ErrorCode;

/// The running sessions.
#[derive(Default)]
struct Live {
    by_name: HashMap<String, SessionHandle>,
    /// How many each client address created (the per-client cap).
    per_creator: HashMap<IpAddr, usize>,
}

#[derive(Default)]
pub struct Registry {
    live: RwLock<Live>,
    /// Recently closed sessions by name, so their tokens get 410 rather than 404.
    closed: Mutex<HashMap<String, Tombstone>>,
}

impl Registry {
    pub fn len(&self) -> usize {
        self.live.read().unwrap().by_name.len()
    }

    pub fn restore_tombstone(&self, name: String, t: Tombstone) {
        self.closed.lock().unwrap().insert(name, t);
    }

    /// Inserts a new session unless the name is taken, the server is full, or its creator
    /// holds `per_creator` live sessions already.
    pub fn insert(
        &self,
        handle: SessionHandle,
        max_sessions: usize,
        per_creator: usize,
    ) -> Result<(), SessionError> {
        let mut live = self.live.write().unwrap();
        if live.by_name.contains_key(&*handle.name) {
            return Err(SessionError::new(
                ErrorCode::SessionExists,
                format!(
                    "a session named {} already exists; choose another name",
                    handle.name
                ),
            ));
        }
        if live.by_name.len() >= max_sessions {
            return Err(SessionError::new(
                ErrorCode::TooManySessions,
                format!(
                    "this server already holds its limit of {max_sessions} sessions; close one or try later"
                ),
            ));
        }
        if let Some(creator) = handle.creator {
            let held = live.per_creator.entry(creator).or_default();
            if *held >= per_creator {
                return Err(SessionError::new(
                    ErrorCode::TooManySessions,
                    format!(
                        "{creator} already holds {per_creator} live sessions (--sessions-per-ip); close some first"
                    ),
                ));
            }
            *held += 1;
        }
        live.by_name.insert(handle.name.to_string(), handle);
        Ok(())
    }

    /// Takes `name` out of the running sessions.
    fn take(live: &mut Live, name: &str) -> Option<SessionHandle> {
        let handle = live.by_name.remove(name)?;
        if let Some(creator) = handle.creator
            && let Some(held) = live.per_creator.get_mut(&creator)
        {
            *held -= 1;
            if *held == 0 {
                live.per_creator.remove(&creator);
            }
        }
        Some(handle)
    }

    /// Whether `name` is served here.
    pub fn is_live(&self, name: &str) -> bool {
        self.live.read().unwrap().by_name.contains_key(name)
    }

    /// Takes `name` out of the running sessions without a tombstone: another node serves it.
    pub fn evict(&self, name: &str) -> Option<SessionHandle> {
        Self::take(&mut self.live.write().unwrap(), name)
    }

    /// Undoes an [`insert`](Self::insert) whose persistence failed.
    pub fn remove(&self, name: &str) {
        Self::take(&mut self.live.write().unwrap(), name);
    }

    /// Called by a session task when it has closed.
    pub fn remove_closed(&self, name: &str, reason: &str) {
        let Some(handle) = Self::take(&mut self.live.write().unwrap(), name) else {
            return;
        };
        let now = now_ms();
        let mut closed = self.closed.lock().unwrap();
        closed.retain(|_, t| now - t.closed_ms < TOMBSTONE_RETENTION_MS);
        closed.insert(
            name.to_string(),
            Tombstone {
                nonce: handle.nonce.to_string(),
                reason: reason.to_string(),
                closed_ms: now,
            },
        );
    }

    /// The session a verified token names, or why it is not available.
    pub fn lookup(&self, name: &str, claims: &Claims) -> Result<SessionHandle, SessionError> {
        if claims.session != name {
            return Err(SessionError::new(
                ErrorCode::Forbidden,
                format!("this token belongs to another session, not {name}"),
            ));
        }
        if let Some(h) = self.live.read().unwrap().by_name.get(name)
            && *h.nonce == *claims.nonce
        {
            return Ok(h.clone());
        }
        match self.closed.lock().unwrap().get(name) {
            Some(t) if t.nonce == claims.nonce => Err(SessionError::new(
                ErrorCode::Gone,
                format!("session {name} has ended ({})", t.reason),
            )),
            // A token from an earlier session of the same name: that session is gone too.
            _ if self.live.read().unwrap().by_name.contains_key(name) => Err(SessionError::new(
                ErrorCode::Gone,
                format!("this token belongs to an earlier session named {name}, which has ended"),
            )),
            _ => Err(SessionError::new(
                ErrorCode::NotFound,
                format!("no session named {name}"),
            )),
        }
    }
}
