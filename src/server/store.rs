//! Persistence in an embedded SQLite database.
//!
//! One thread owns the connection. Session actors send it [`StoreOp`]s through a [`Store`]
//! handle; it applies whatever is queued in one transaction, so a burst of health reports costs
//! one commit, and answers operations sent with [`Store::commit`] after the commit.
//!
//! * A batch holding an operation someone is told about ([`StoreOp::acknowledged`]) is
//!   committed durably (`synchronous=FULL`: the WAL is synced before the answer); the others
//!   with `synchronous=NORMAL` (a power loss may lose the last health reports, never an
//!   acknowledged change).
//! * A batch that fails for a passing reason (the database is locked or busy, the disk full or
//!   failing) is retried with backoff until it is stored; whoever waits for it is told the
//!   failure at once. A failed creation is not retried: its session was refused. An operation
//!   that can never be stored (a constraint) is dropped with an error in the log.
//! * One server per database file: `punch serve` holds an exclusive lock on `FILE.lock`, which
//!   names its pid.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::mpsc;

use super::session::model::{
    DeviceSide, LastPeer, SessionRecord, StreamRecord, TOMBSTONE_RETENTION_MS, Tombstone,
};
use super::session::persist::{Job, Store, StoreOp};
use crate::protocol::{Endpoint, Role, TallyState};

/// Registration events kept per session (older ones are pruned).
const EVENTS_PER_SESSION: i64 = 500;
const QUEUE_DEPTH: usize = 16 * 1024;
/// Operations applied in one transaction at most.
const BATCH: usize = 1024;
/// How long a write waits for a lock another process holds before it fails (and is retried).
const BUSY_TIMEOUT: Duration = Duration::from_secs(1);
/// Retry delays of a batch that failed for a passing reason.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// At shutdown, how long unstored changes are retried before they are given up (and logged).
const SHUTDOWN_RETRY: Duration = Duration::from_secs(10);

/// The schema, one migration per release that changed it; `PRAGMA user_version` counts those
/// applied. Each must be safe on a database created before versions were counted.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/sqlite/001_initial.sql"),
    include_str!("migrations/sqlite/002_session_creator.sql"),
    include_str!("migrations/sqlite/003_devices.sql"),
    include_str!("migrations/sqlite/004_join.sql"),
];

/// What the database held at start-up.
pub struct Loaded {
    pub secret: Vec<u8>,
    pub sessions: Vec<SessionRecord>,
    pub tombstones: Vec<(String, Tombstone)>,
}

/// The writer thread, and the lock that keeps other servers off the file.
pub struct StoreThread {
    join: JoinHandle<()>,
    /// Held (locked) for as long as the server runs; `None` for `:memory:`.
    _lock: Option<File>,
}

impl StoreThread {
    /// Waits for the writer to drain its queue; call after every [`Store`] clone is dropped.
    pub fn join(self) {
        let _ = self.join.join();
    }
}

/// Takes the exclusive lock on `path`'s lock file, or says who holds it.
fn lock(path: &str) -> Result<File, String> {
    let lock_path = format!("{path}.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| format!("cannot open the lock file {lock_path}: {e}"))?;
    // SAFETY: flock only takes the descriptor of a file this function owns.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if !locked {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = holder.trim();
        return Err(format!(
            "the database {path} is in use by another punch serve{}: stop it first, or give this one another --db",
            if holder.is_empty() {
                String::new()
            } else {
                format!(" (pid {holder})")
            }
        ));
    }
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{}", std::process::id());
    let _ = file.flush();
    Ok(file)
}

/// Opens (or creates) the SQLite database at `path` (`:memory:` for none), takes its lock,
/// loads live sessions and tombstones, and starts the writer thread.
/// `commit_seconds`: observes each transaction's time (the server's metrics).
pub fn open(
    path: &str,
    secret_override: Option<Vec<u8>>,
    now_ms: i64,
    commit_seconds: Option<prometheus::Histogram>,
) -> Result<(Store, StoreThread, Loaded), String> {
    let (conn, lock) = if path == ":memory:" {
        (Connection::open_in_memory(), None)
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
        let lock = lock(path)?;
        (Connection::open(path), Some(lock))
    };
    let conn = conn.map_err(|e| format!("cannot open database {path}: {e}"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| format!("database {path}: {e}"))?;
    let loaded =
        init(&conn, secret_override, now_ms).map_err(|e| format!("database {path}: {e}"))?;
    let (store, rx) = Store::channel(QUEUE_DEPTH);
    let join = std::thread::Builder::new()
        .name("punch-store".into())
        .spawn(move || Writer::new(conn, commit_seconds).run(rx))
        .map_err(|e| format!("cannot start the database thread: {e}"))?;
    Ok((store, StoreThread { join, _lock: lock }, loaded))
}

/// Applies the migrations not applied yet.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON;")?;
    let applied: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        // A database from before versions were counted may have this column already.
        match conn.execute_batch(sql) {
            Err(rusqlite::Error::SqliteFailure(_, Some(m))) if m.contains("duplicate column") => {}
            other => other?,
        }
        conn.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
    }
    Ok(())
}

fn init(
    conn: &Connection,
    secret_override: Option<Vec<u8>>,
    now_ms: i64,
) -> rusqlite::Result<Loaded> {
    migrate(conn)?;
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
        "SELECT name, nonce, created_ms, ttl_s, latency, pbkeylen, last_activity_ms, closed_ms, closed_reason, creator, public_host, join_enabled FROM sessions",
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
                creator: r.get::<_, Option<String>>(9)?.and_then(|c| c.parse().ok()),
                public_host: r.get(10)?,
                join: r.get::<_, i64>(11)? != 0,
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
        "SELECT name, label, role, audio, passphrase, latency, tally, devices FROM streams WHERE session=?1 ORDER BY idx",
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
                devices: serde_json::from_str(&r.get::<_, String>(7)?).unwrap_or_default(),
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

/// Whether a failed write may succeed later (another process holds the lock, the disk is
/// full or failing) rather than never.
fn passing(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode as C;
    matches!(
        e.sqlite_error_code(),
        Some(
            C::DatabaseBusy | C::DatabaseLocked | C::DiskFull | C::SystemIoFailure | C::CannotOpen
        )
    )
}

/// The writer thread's state.
struct Writer {
    conn: Connection,
    /// The `synchronous` setting in force (changed per batch).
    durable: bool,
    /// Where each transaction's time goes.
    commit_seconds: Option<prometheus::Histogram>,
}

impl Writer {
    fn new(conn: Connection, commit_seconds: Option<prometheus::Histogram>) -> Self {
        Writer {
            conn,
            durable: false,
            commit_seconds,
        }
    }

    fn commit(&mut self, ops: &[&StoreOp]) -> rusqlite::Result<()> {
        let durable = ops.iter().any(|op| op.acknowledged());
        if durable != self.durable {
            self.conn.execute_batch(if durable {
                "PRAGMA synchronous=FULL"
            } else {
                "PRAGMA synchronous=NORMAL"
            })?;
            self.durable = durable;
        }
        let started = std::time::Instant::now();
        let tx = self.conn.transaction()?;
        for op in ops {
            apply(&tx, op)?;
        }
        tx.commit()?;
        if let Some(h) = &self.commit_seconds {
            h.observe(started.elapsed().as_secs_f64());
        }
        Ok(())
    }

    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        // Jobs that failed for a passing reason, retried before anything newer.
        let mut pending: VecDeque<Job> = VecDeque::new();
        let mut retry = RETRY_FIRST;
        let mut failing_since: Option<std::time::Instant> = None;
        let mut open = true;
        loop {
            if pending.is_empty() {
                if !open {
                    return;
                }
                match rx.blocking_recv() {
                    Some(job) => pending.push_back(job),
                    None => return,
                }
            }
            while open && pending.len() < BATCH {
                match rx.try_recv() {
                    Ok(job) => pending.push_back(job),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => open = false,
                }
            }
            let batch: Vec<Job> = pending.drain(..).collect();
            let ops: Vec<&StoreOp> = batch.iter().map(|j| &j.op).collect();
            match self.commit(&ops) {
                Ok(()) => {
                    if let Some(since) = failing_since.take() {
                        tracing::warn!(
                            "database writes succeed again; the changes held back since {:.1} s ago are stored",
                            since.elapsed().as_secs_f64()
                        );
                    }
                    retry = RETRY_FIRST;
                    for job in batch {
                        if let Some(ack) = job.ack {
                            let _ = ack.send(Ok(()));
                        }
                    }
                }
                Err(e) if passing(&e) => {
                    let since = *failing_since.get_or_insert_with(std::time::Instant::now);
                    tracing::error!(
                        "database write failed: {e}; {} change(s) held and retried",
                        batch.len()
                    );
                    for mut job in batch {
                        if let Some(ack) = job.ack.take() {
                            let _ = ack.send(Err(e.to_string()));
                        }
                        // A refused creation is not stored later: its session was rolled back.
                        if !matches!(job.op, StoreOp::Create(_)) {
                            pending.push_back(job);
                        }
                    }
                    if !open && since.elapsed() > SHUTDOWN_RETRY {
                        tracing::error!(
                            "shutting down with {} change(s) the database did not take: {e}",
                            pending.len()
                        );
                        for job in &pending {
                            tracing::error!("lost: {}", job.op);
                        }
                        return;
                    }
                    std::thread::sleep(retry);
                    retry = (retry * 2).min(RETRY_MAX);
                }
                Err(e) => {
                    // Something in the batch can never be stored: apply one by one, so that
                    // only that change is lost.
                    tracing::error!(
                        "database write failed: {e}; applying the batch change by change"
                    );
                    for job in batch {
                        let result = self.commit(&[&job.op]);
                        if let Err(e) = &result {
                            tracing::error!(
                                "a change cannot be stored and is dropped ({e}): {}",
                                job.op
                            );
                        }
                        if let Some(ack) = job.ack {
                            let _ = ack.send(result.map_err(|e| e.to_string()));
                        }
                    }
                }
            }
        }
    }
}

fn devices_json(devices: &[Option<DeviceSide>; 2]) -> String {
    serde_json::to_string(devices).unwrap_or_else(|_| "[null,null]".into())
}

fn apply(tx: &rusqlite::Transaction<'_>, op: &StoreOp) -> rusqlite::Result<()> {
    match op {
        StoreOp::Create(rec) => {
            // A reused name replaces its tombstone and all the old incarnation's rows.
            tx.execute("DELETE FROM sessions WHERE name=?1", params![rec.name])?;
            tx.execute(
                "INSERT INTO sessions(name, nonce, created_ms, ttl_s, latency, pbkeylen, last_activity_ms, creator, public_host, join_enabled)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![rec.name, rec.nonce, rec.created_ms, rec.ttl_s, rec.latency, rec.pbkeylen, rec.last_activity_ms, rec.creator.map(|c| c.to_string()), rec.public_host, rec.join],
            )?;
            for (idx, s) in rec.streams.iter().enumerate() {
                tx.execute(
                    "INSERT INTO streams(session, idx, name, label, role, audio, passphrase, latency, tally, devices)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    params![rec.name, idx, s.name, s.label, s.role, s.audio, s.passphrase, s.latency, s.tally.as_str(), devices_json(&s.devices)],
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
                session,
                stream,
                *role,
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
            event(tx, session, stream, *role, "leave", None, *at_ms)?;
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
        StoreOp::AddStream {
            session,
            idx,
            stream: st,
        } => {
            tx.execute(
                "INSERT INTO streams(session, idx, name, label, role, audio, passphrase, latency, tally, devices)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![session, idx, st.name, st.label, st.role, st.audio, st.passphrase, st.latency, st.tally.as_str(), devices_json(&st.devices)],
            )?;
            Ok(())
        }
        StoreOp::Devices {
            session,
            stream,
            devices,
        } => {
            tx.execute(
                "UPDATE streams SET devices=?3 WHERE session=?1 AND name=?2",
                params![session, stream, devices_json(devices)],
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
