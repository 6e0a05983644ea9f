//! Persistence in an embedded SQLite database.
//!
//! One thread owns the connection. Session actors send it [`StoreOp`]s through a [`Store`]
//! handle; it applies whatever is queued in one transaction, so a burst of health reports costs
//! one commit, and answers operations sent with [`Store::commit`] after the commit.

use std::path::Path;
use std::thread::JoinHandle;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::mpsc;

use super::session::model::{
    LastPeer, SessionRecord, StreamRecord, TOMBSTONE_RETENTION_MS, Tombstone,
};
use super::session::persist::{Job, Store, StoreOp};
use crate::protocol::{Endpoint, Role, TallyState};

/// Registration events kept per session (older ones are pruned).
const EVENTS_PER_SESSION: i64 = 500;
const QUEUE_DEPTH: usize = 16 * 1024;

/// What the database held at start-up.
pub struct Loaded {
    pub secret: Vec<u8>,
    pub sessions: Vec<SessionRecord>,
    pub tombstones: Vec<(String, Tombstone)>,
}

pub struct StoreThread {
    join: JoinHandle<()>,
}

impl StoreThread {
    /// Waits for the writer to drain its queue; call after every [`Store`] clone is dropped.
    pub fn join(self) {
        let _ = self.join.join();
    }
}

/// Opens (or creates) the SQLite database at `path` (`:memory:` for none), loads live sessions
/// and tombstones, and starts the writer thread.
/// Opens (or creates) the SQLite database at `path` (`:memory:` for none), loads live sessions
/// and tombstones, and starts the writer thread.
pub fn open(
    path: &str,
    secret_override: Option<Vec<u8>>,
    now_ms: i64,
) -> Result<(Store, StoreThread, Loaded), String> {
    let conn = if path == ":memory:" {
        Connection::open_in_memory()
    } else {
        if let Some(dir) = Path::new(path).parent()
            && !dir.as_os_str().is_empty()
            && !dir.exists()
        {
            return Err(format!(
                "database directory {} does not exist",
                dir.display()
            ));
        }
        Connection::open(path)
    }
    .map_err(|e| format!("cannot open database {path}: {e}"))?;
    let loaded =
        init(&conn, secret_override, now_ms).map_err(|e| format!("database {path}: {e}"))?;
    let (store, rx) = Store::channel(QUEUE_DEPTH);
    let join = std::thread::Builder::new()
        .name("punch-store".into())
        .spawn(move || writer(conn, rx))
        .map_err(|e| format!("cannot start the database thread: {e}"))?;
    Ok((store, StoreThread { join }, loaded))
}

const SCHEMA: &str = "
PRAGMA journal_mode=WAL;
PRAGMA synchronous=NORMAL;
PRAGMA foreign_keys=ON;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    name TEXT PRIMARY KEY,
    nonce TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    ttl_s INTEGER NOT NULL,
    latency INTEGER NOT NULL,
    pbkeylen INTEGER NOT NULL,
    last_activity_ms INTEGER NOT NULL,
    closed_ms INTEGER,
    closed_reason TEXT
);
CREATE TABLE IF NOT EXISTS streams (
    session TEXT NOT NULL REFERENCES sessions(name) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    label TEXT, role TEXT, audio TEXT,
    passphrase TEXT NOT NULL,
    latency INTEGER NOT NULL,
    tally TEXT NOT NULL,
    PRIMARY KEY (session, name)
);
CREATE TABLE IF NOT EXISTS peers (
    session TEXT NOT NULL REFERENCES sessions(name) ON DELETE CASCADE,
    stream TEXT NOT NULL,
    role TEXT NOT NULL,
    ip TEXT NOT NULL,
    port INTEGER NOT NULL,
    meta TEXT NOT NULL,
    registered_ms INTEGER NOT NULL,
    health TEXT,
    health_ms INTEGER,
    PRIMARY KEY (session, stream, role)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session TEXT NOT NULL REFERENCES sessions(name) ON DELETE CASCADE,
    stream TEXT NOT NULL,
    role TEXT NOT NULL,
    kind TEXT NOT NULL,
    ip TEXT,
    port INTEGER,
    at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_session ON events(session, id);
";

fn init(
    conn: &Connection,
    secret_override: Option<Vec<u8>>,
    now_ms: i64,
) -> rusqlite::Result<Loaded> {
    conn.execute_batch(SCHEMA)?;
    let secret = match secret_override {
        Some(s) => s,
        None => {
            let stored: Option<Vec<u8>> = conn
                .query_row("SELECT value FROM meta WHERE key='token_secret'", [], |r| {
                    r.get(0)
                })
                .optional()?;
            match stored {
                Some(s) => s,
                None => {
                    let s: [u8; 32] = rand::random();
                    conn.execute(
                        "INSERT INTO meta(key, value) VALUES ('token_secret', ?1)",
                        params![s.to_vec()],
                    )?;
                    s.to_vec()
                }
            }
        }
    };
    conn.execute(
        "DELETE FROM sessions WHERE closed_ms IS NOT NULL AND closed_ms < ?1",
        params![now_ms - TOMBSTONE_RETENTION_MS],
    )?;

    let mut tombstones = Vec::new();
    let mut sessions = Vec::new();
    let mut stmt = conn.prepare(
        "SELECT name, nonce, created_ms, ttl_s, latency, pbkeylen, last_activity_ms, closed_ms, closed_reason FROM sessions",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            SessionRecord {
                name: r.get(0)?,
                nonce: r.get(1)?,
                created_ms: r.get(2)?,
                ttl_s: r.get(3)?,
                latency: r.get(4)?,
                pbkeylen: r.get(5)?,
                last_activity_ms: r.get(6)?,
                streams: Vec::new(),
            },
            r.get::<_, Option<i64>>(7)?,
            r.get::<_, Option<String>>(8)?,
        ))
    })?;
    for row in rows {
        let (rec, closed_ms, reason) = row?;
        match closed_ms {
            Some(closed_ms) => tombstones.push((
                rec.name.clone(),
                Tombstone {
                    nonce: rec.nonce,
                    reason: reason.unwrap_or_default(),
                    closed_ms,
                },
            )),
            None => sessions.push(rec),
        }
    }
    for s in &mut sessions {
        s.streams = load_streams(conn, &s.name)?;
    }
    Ok(Loaded {
        secret,
        sessions,
        tombstones,
    })
}

fn load_streams(conn: &Connection, session: &str) -> rusqlite::Result<Vec<StreamRecord>> {
    let mut stmt = conn.prepare(
        "SELECT name, label, role, audio, passphrase, latency, tally FROM streams WHERE session=?1 ORDER BY idx",
    )?;
    let mut streams = stmt
        .query_map(params![session], |r| {
            Ok(StreamRecord {
                name: r.get(0)?,
                label: r.get(1)?,
                role: r.get(2)?,
                audio: r.get(3)?,
                passphrase: r.get(4)?,
                latency: r.get(5)?,
                tally: TallyState::parse(&r.get::<_, String>(6)?).unwrap_or_default(),
                sender: None,
                receiver: None,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut stmt = conn.prepare(
        "SELECT stream, role, ip, port, meta, registered_ms, health, health_ms FROM peers WHERE session=?1",
    )?;
    let peers = stmt.query_map(params![session], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            LastPeer {
                address: Endpoint {
                    ip: r.get(2)?,
                    port: r.get(3)?,
                },
                meta: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or_default(),
                registered_ms: r.get(5)?,
                health: r
                    .get::<_, Option<String>>(6)?
                    .and_then(|h| serde_json::from_str(&h).ok()),
                health_ms: r.get(7)?,
            },
        ))
    })?;
    for p in peers {
        let (stream, role, peer) = p?;
        if let (Some(s), Some(role)) = (
            streams.iter_mut().find(|s| s.name == stream),
            Role::parse(&role),
        ) {
            *s.peer_mut(role) = Some(peer);
        }
    }
    Ok(streams)
}

fn writer(mut conn: Connection, mut rx: mpsc::Receiver<Job>) {
    const BATCH: usize = 1024;
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let mut acks = Vec::new();
        let result = (|| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            for job in batch {
                apply(&tx, job.op)?;
                acks.extend(job.ack);
            }
            tx.commit()
        })();
        if let Err(e) = &result {
            tracing::error!("database write failed: {e}");
        }
        for ack in acks {
            let _ = ack.send(result.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        }
    }
}

fn apply(tx: &rusqlite::Transaction<'_>, op: StoreOp) -> rusqlite::Result<()> {
    match op {
        StoreOp::Create(rec) => {
            // A reused name replaces its tombstone and all the old incarnation's rows.
            tx.execute("DELETE FROM sessions WHERE name=?1", params![rec.name])?;
            tx.execute(
                "INSERT INTO sessions(name, nonce, created_ms, ttl_s, latency, pbkeylen, last_activity_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![rec.name, rec.nonce, rec.created_ms, rec.ttl_s, rec.latency, rec.pbkeylen, rec.last_activity_ms],
            )?;
            for (idx, s) in rec.streams.iter().enumerate() {
                tx.execute(
                    "INSERT INTO streams(session, idx, name, label, role, audio, passphrase, latency, tally)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![rec.name, idx, s.name, s.label, s.role, s.audio, s.passphrase, s.latency, s.tally.as_str()],
                )?;
            }
            Ok(())
        }
        StoreOp::Activity { session, at_ms } => {
            tx.execute(
                "UPDATE sessions SET last_activity_ms=?2 WHERE name=?1",
                params![session, at_ms],
            )?;
            Ok(())
        }
        StoreOp::Registered {
            session,
            stream,
            role,
            peer,
        } => {
            let meta = serde_json::to_string(&peer.meta).unwrap_or_else(|_| "{}".into());
            tx.execute(
                "INSERT INTO peers(session, stream, role, ip, port, meta, registered_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(session, stream, role) DO UPDATE SET ip=excluded.ip, port=excluded.port,
                   meta=excluded.meta, registered_ms=excluded.registered_ms",
                params![session, stream, role.as_str(), peer.address.ip, peer.address.port, meta, peer.registered_ms],
            )?;
            event(
                tx,
                &session,
                &stream,
                role,
                "register",
                Some(&peer.address),
                peer.registered_ms,
            )?;
            Ok(())
        }
        StoreOp::Left {
            session,
            stream,
            role,
            at_ms,
        } => {
            event(tx, &session, &stream, role, "leave", None, at_ms)?;
            Ok(())
        }
        StoreOp::Health {
            session,
            stream,
            role,
            health,
            at_ms,
        } => {
            let json = serde_json::to_string(&health).unwrap_or_else(|_| "{}".into());
            tx.execute(
                "UPDATE peers SET health=?4, health_ms=?5 WHERE session=?1 AND stream=?2 AND role=?3",
                params![session, stream, role.as_str(), json, at_ms],
            )?;
            Ok(())
        }
        StoreOp::Tally {
            session,
            stream,
            state,
        } => {
            tx.execute(
                "UPDATE streams SET tally=?3 WHERE session=?1 AND name=?2",
                params![session, stream, state.as_str()],
            )?;
            Ok(())
        }
        StoreOp::Latency {
            session,
            stream,
            latency,
        } => {
            tx.execute(
                "UPDATE streams SET latency=?3 WHERE session=?1 AND name=?2",
                params![session, stream, latency],
            )?;
            Ok(())
        }
        StoreOp::Close {
            session,
            reason,
            at_ms,
        } => {
            tx.execute(
                "UPDATE sessions SET closed_ms=?2, closed_reason=?3 WHERE name=?1",
                params![session, at_ms, reason],
            )?;
            tx.execute(
                "DELETE FROM sessions WHERE closed_ms IS NOT NULL AND closed_ms < ?1",
                params![at_ms - TOMBSTONE_RETENTION_MS],
            )?;
            Ok(())
        }
        StoreOp::Flush => Ok(()),
    }
}

fn event(
    tx: &rusqlite::Transaction<'_>,
    session: &str,
    stream: &str,
    role: Role,
    kind: &str,
    address: Option<&Endpoint>,
    at_ms: i64,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO events(session, stream, role, kind, ip, port, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![session, stream, role.as_str(), kind, address.map(|a| &a.ip), address.map(|a| a.port), at_ms],
    )?;
    tx.execute(
        "DELETE FROM events WHERE session=?1 AND id <= (SELECT id FROM events WHERE session=?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
        params![session, EVENTS_PER_SESSION],
    )?;
    Ok(())
}

/// Registration history of a session, newest last (for operators and tests).
pub fn registration_events(
    path: &str,
    session: &str,
) -> rusqlite::Result<Vec<(String, String, String)>> {
    let conn = Connection::open(path)?;
    let mut stmt =
        conn.prepare("SELECT stream, role, kind FROM events WHERE session=?1 ORDER BY id")?;
    stmt.query_map(params![session], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect()
}
