//! The SQLite engine (the default): one file, one server. `punch serve` holds an exclusive lock
//! on `FILE.lock`, which names its pid. A batch holding an operation someone is told about is
//! committed durably (`synchronous=FULL`: the WAL is synced before the answer); the others with
//! `synchronous=NORMAL` (a power loss may lose the last health reports, never an acknowledged
//! change).

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::writes::{Arg, writes};
use super::{Loaded, StoreThread};
use crate::protocol::{Endpoint, Role, TallyState};
use crate::server::session::model::{
    LastPeer, SessionRecord, StreamRecord, TOMBSTONE_RETENTION_MS, Tombstone,
};
use crate::server::session::persist::{Store, StoreOp};

/// How long a write waits for a lock another process holds before it fails (and is retried).
const BUSY_TIMEOUT: Duration = Duration::from_secs(1);

/// The schema, one migration per release that changed it; `PRAGMA user_version` counts those
/// applied. Each must be safe on a database created before versions were counted.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/sqlite/001_initial.sql"),
    include_str!("migrations/sqlite/002_session_creator.sql"),
    include_str!("migrations/sqlite/003_devices.sql"),
    include_str!("migrations/sqlite/004_join.sql"),
];

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
pub(super) fn open(
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
    let writer = Writer {
        conn,
        durable: false,
        commit_seconds,
    };
    let (store, join) = super::spawn_writer(writer)?;
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

impl super::Backend for Writer {
    type Error = rusqlite::Error;

    fn passing(e: &rusqlite::Error) -> bool {
        passing(e)
    }

    /// One server per file: nothing is fenced.
    fn commit(&mut self, ops: &[&StoreOp]) -> rusqlite::Result<super::Refused> {
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
        Ok(Vec::new())
    }
}

fn apply(tx: &rusqlite::Transaction<'_>, op: &StoreOp) -> rusqlite::Result<()> {
    for w in writes(op) {
        tx.prepare_cached(w.sql)?
            .execute(rusqlite::params_from_iter(w.args.iter()))?;
    }
    Ok(())
}

impl rusqlite::ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Arg::Int(v) => v.to_sql(),
            Arg::Text(v) => v.to_sql(),
            Arg::OptText(v) => v.to_sql(),
            Arg::OptInt(v) => v.to_sql(),
            Arg::Bool(v) => v.to_sql(),
        }
    }
}

/// Registration history of a session, newest last (for operators and tests).
pub(super) fn registration_events(
    path: &str,
    session: &str,
) -> rusqlite::Result<Vec<(String, String, String)>> {
    let conn = Connection::open(path)?;
    let mut stmt =
        conn.prepare("SELECT stream, role, kind FROM events WHERE session=?1 ORDER BY id")?;
    stmt.query_map(params![session], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect()
}
