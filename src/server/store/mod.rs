//! Persistence: one interface, two engines. `--db FILE` (the default, `punch.db`) is an embedded
//! SQLite database (`sqlite.rs`); `--db postgres://…` is a PostgreSQL database (`postgres.rs`).
//! Both load the live sessions and tombstones at start and keep them current the same way:
//!
//! One thread owns the connection. Session actors send it [`StoreOp`]s through a [`Store`]
//! handle; it applies whatever is queued in one transaction, so a burst of health reports costs
//! one commit, and answers operations sent with [`Store::commit`] after the commit.
//!
//! * A batch that fails for a passing reason (the database is locked or busy, the disk full or
//!   failing, the connection to PostgreSQL lost) is retried with backoff until it is stored;
//!   whoever waits for it is told the failure at once. A failed creation is not retried: its
//!   session was refused. An operation that can never be stored (a constraint) is dropped with
//!   an error in the log.
//! * The engines share this writer loop ([`Backend`]) and what each change writes (`writes.rs`:
//!   the statements and their arguments); each gives its transaction, binds the arguments with
//!   its driver and says which of its errors pass. `tests/storage.rs` runs one suite against both.

use std::collections::VecDeque;
use std::fs::File;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc;

use super::session::model::{SessionRecord, Tombstone};
use super::session::persist::{Job, Store, StoreOp};

pub(crate) mod postgres;
mod sqlite;
mod writes;

/// Registration events kept per session (older ones are pruned), with either engine.
const EVENTS_PER_SESSION: i64 = 500;
const QUEUE_DEPTH: usize = 16 * 1024;
/// Operations applied in one transaction at most.
const BATCH: usize = 1024;
/// Retry delays of a batch that failed for a passing reason.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// At shutdown, how long unstored changes are retried before they are given up (and logged).
const SHUTDOWN_RETRY: Duration = Duration::from_secs(10);

/// What the database held at start-up.
pub struct Loaded {
    pub secret: Vec<u8>,
    pub sessions: Vec<SessionRecord>,
    pub tombstones: Vec<(String, Tombstone)>,
}

/// The writer thread, and (SQLite) the lock that keeps other servers off the file.
pub struct StoreThread {
    join: JoinHandle<()>,
    /// Held (locked) for as long as the server runs; `None` for `:memory:` and PostgreSQL.
    _lock: Option<File>,
}

impl StoreThread {
    /// Waits for the writer to drain its queue; call after every [`Store`] clone is dropped.
    pub fn join(self) {
        let _ = self.join.join();
    }
}

/// Whether `db` names a PostgreSQL database rather than an SQLite file.
pub fn is_postgres(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// `db` as it may be shown: a PostgreSQL URL without its password.
pub fn redacted(db: &str) -> String {
    if is_postgres(db) {
        postgres::redacted(db)
    } else {
        db.to_string()
    }
}

/// Opens the database `db` (a file, `:memory:`, or a `postgres://` URL), applies its
/// migrations, loads live sessions and tombstones, and starts the writer thread.
/// `commit_seconds`: observes each transaction's time (the server's metrics). `fence`: the
/// leases this node holds, which a PostgreSQL database (shared by several nodes) needs.
pub fn open(
    db: &str,
    secret_override: Option<Vec<u8>>,
    now_ms: i64,
    commit_seconds: Option<prometheus::Histogram>,
    fence: Option<std::sync::Arc<crate::server::cluster::Fence>>,
) -> Result<(Store, StoreThread, Loaded), String> {
    if is_postgres(db) {
        let fence = fence.ok_or("a PostgreSQL database needs the node's leases")?;
        postgres::open(db, secret_override, now_ms, commit_seconds, fence)
    } else {
        sqlite::open(db, secret_override, now_ms, commit_seconds)
    }
}

/// Registration history of a session, newest last (for operators and tests).
pub fn registration_events(
    db: &str,
    session: &str,
) -> Result<Vec<(String, String, String)>, String> {
    if is_postgres(db) {
        postgres::registration_events(db, session)
    } else {
        sqlite::registration_events(db, session).map_err(|e| e.to_string())
    }
}

/// The operations of a committed batch that were not stored (their index in the batch), and
/// why: another node holds their session now (fencing, PostgreSQL only).
pub(super) type Refused = Vec<(usize, String)>;

/// One engine's side of the writer loop.
trait Backend: Send + 'static {
    type Error: std::fmt::Display;
    /// Applies `ops` in one transaction, but for those it [refuses](Refused).
    fn commit(&mut self, ops: &[&StoreOp]) -> Result<Refused, Self::Error>;
    /// Whether a failed write may succeed later rather than never.
    fn passing(e: &Self::Error) -> bool;
}

/// Starts the writer thread of `backend`; the handle the sessions send to.
fn spawn_writer(backend: impl Backend) -> Result<(Store, JoinHandle<()>), String> {
    let (store, rx) = Store::channel(QUEUE_DEPTH);
    let join = std::thread::Builder::new()
        .name("punch-store".into())
        .spawn(move || run(backend, rx))
        .map_err(|e| format!("cannot start the database thread: {e}"))?;
    Ok((store, join))
}

fn run<B: Backend>(mut backend: B, mut rx: mpsc::Receiver<Job>) {
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
        match backend.commit(&ops) {
            Ok(refused) => {
                if let Some(since) = failing_since.take() {
                    tracing::warn!(
                        "database writes succeed again; the changes held back since {:.1} s ago are stored",
                        since.elapsed().as_secs_f64()
                    );
                }
                retry = RETRY_FIRST;
                for (i, job) in batch.into_iter().enumerate() {
                    if let Some(ack) = job.ack {
                        let outcome = match refused.iter().find(|(r, _)| *r == i) {
                            Some((_, why)) => Err(why.clone()),
                            None => Ok(()),
                        };
                        let _ = ack.send(outcome);
                    }
                }
            }
            Err(e) if B::passing(&e) => {
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
                // Something in the batch can never be stored: apply one by one, so that only
                // that change is lost.
                tracing::error!("database write failed: {e}; applying the batch change by change");
                for job in batch {
                    let result = match backend.commit(&[&job.op]) {
                        Ok(refused) => refused.into_iter().next().map_or(Ok(()), |(_, w)| Err(w)),
                        Err(e) => Err(e.to_string()),
                    };
                    if let Err(e) = &result {
                        tracing::error!(
                            "a change cannot be stored and is dropped ({e}): {}",
                            job.op
                        );
                    }
                    if let Some(ack) = job.ack {
                        let _ = ack.send(result);
                    }
                }
            }
        }
    }
}
