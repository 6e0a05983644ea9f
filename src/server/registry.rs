//! Session names → running session tasks, and the tombstones of closed sessions.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use super::session::model::{TOMBSTONE_RETENTION_MS, Tombstone};
use super::session::{SessionError, SessionHandle};
use super::time::now_ms;
use super::token::Claims;
use crate::protocol::ErrorCode;

#[derive(Default)]
pub struct Registry {
    /// Running sessions by name.
    live: RwLock<HashMap<String, SessionHandle>>,
    /// Recently closed sessions by name, so their tokens get 410 rather than 404.
    closed: Mutex<HashMap<String, Tombstone>>,
}

impl Registry {
    pub fn len(&self) -> usize {
        self.live.read().unwrap().len()
    }

    pub fn restore_tombstone(&self, name: String, t: Tombstone) {
        self.closed.lock().unwrap().insert(name, t);
    }

    /// Inserts a new session unless the name is taken or the server is full.
    pub fn insert(&self, handle: SessionHandle, max_sessions: usize) -> Result<(), SessionError> {
        let mut live = self.live.write().unwrap();
        if live.contains_key(&*handle.name) {
            return Err(SessionError::new(
                ErrorCode::SessionExists,
                format!(
                    "a session named {} already exists; choose another name",
                    handle.name
                ),
            ));
        }
        if live.len() >= max_sessions {
            return Err(SessionError::new(
                ErrorCode::TooManySessions,
                format!(
                    "this server already holds its limit of {max_sessions} sessions; close one or try later"
                ),
            ));
        }
        live.insert(handle.name.to_string(), handle);
        Ok(())
    }

    /// Undoes an [`insert`](Self::insert) whose persistence failed.
    pub fn remove(&self, name: &str) {
        self.live.write().unwrap().remove(name);
    }

    /// Called by a session task when it has closed.
    pub fn remove_closed(&self, name: &str, reason: &str) {
        let Some(handle) = self.live.write().unwrap().remove(name) else {
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
        if let Some(h) = self.live.read().unwrap().get(name)
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
            _ if self.live.read().unwrap().contains_key(name) => Err(SessionError::new(
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
