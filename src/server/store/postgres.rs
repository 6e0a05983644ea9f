//! The PostgreSQL engine (`--db postgres://user@host:port/dbname`), with `tokio-postgres`. The
//! writer thread runs its own single-threaded tokio runtime and one connection, reconnected when
//! it is lost (the writes held meanwhile are retried, as every passing failure is). Migrations
//! are numbered in `punch_migrations` and applied under an advisory lock, so several servers
//! starting on one database apply each once. Plain TCP (no TLS to the database): run it on a
//! private network or the loopback.
//!
//! One server per database, for now: the writer's connection holds a session advisory lock
//! ([`SERVER_LOCK`]) for the server's life, as the SQLite engine holds its file lock; a second
//! `punch serve` on the same database is refused at start. (Several nodes sharing one database
//! need each session owned by one node at a time; until that exists, two servers would both
//! write the same sessions.)

use std::collections::HashMap;
use std::time::Duration;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Statement, Transaction};

use super::writes::{Arg, postgres_sql, writes};
use super::{Loaded, StoreThread};
use crate::protocol::{Endpoint, Role, TallyState};
use crate::server::session::model::{
    LastPeer, SessionRecord, StreamRecord, TOMBSTONE_RETENTION_MS, Tombstone,
};
use crate::server::session::persist::{Store, StoreOp};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one batch's transaction may take before the connection is given up (and the
/// batch retried on a new one): a database host gone silent must not hold every writer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long loading (migrations included, which may wait for another server's) may take.
const LOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// The schema, one migration per release that changed it.
const MIGRATIONS: &[&str] = &[include_str!("migrations/postgres/001_initial.sql")];
/// The advisory lock that serialises migrations between servers (any constant of our own).
const MIGRATION_LOCK: i64 = 0x7075_6e63_6801;
/// The advisory lock the running server holds on its database.
const SERVER_LOCK: i64 = 0x7075_6e63_6802;

type PgResult<T> = Result<T, tokio_postgres::Error>;

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the database runtime: {e}"))
}

/// What a second server is told.
const TAKEN: &str = "another punch serve uses this database (one server per database: it holds an advisory lock on it)";

/// A connection to `url` holding the server's lock; `Ok(None)` when another server holds it.
async fn connect_as_server(url: &str) -> Result<Option<Client>, String> {
    let client = connect(url).await?;
    let locked: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&SERVER_LOCK])
        .await
        .map_err(|e| describe(&e))?
        .get(0);
    Ok(locked.then_some(client))
}

/// A connection to `url`; its I/O runs on the runtime it is called on.
async fn connect(url: &str) -> Result<Client, String> {
    let connecting = tokio_postgres::connect(url, NoTls);
    let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| {
            format!(
                "no answer from the database within {} s",
                CONNECT_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| describe(&e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!("the database connection ended: {e}");
        }
    });
    Ok(client)
}

/// An error with the server's own message and code when it has one.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// `url` without its password, for messages.
pub(super) fn redacted(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let mut out = match (head.find("://"), head.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user_part = &head[scheme + 3..at];
            let user = user_part.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &head[..scheme + 3], &head[at + 1..])
        }
        _ => head.to_string(),
    };
    if let Some(query) = query {
        let kept: Vec<&str> = query
            .split('&')
            .filter(|kv| !kv.to_ascii_lowercase().starts_with("password="))
            .collect();
        if !kept.is_empty() {
            out.push('?');
            out.push_str(&kept.join("&"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_stay_out_of_what_is_shown() {
        for (url, shown) in [
            (
                "postgres://punch:s3cret@db:5432/punch",
                "postgres://punch@db:5432/punch",
            ),
            (
                "postgres://punch@db/punch?password=s3cret&sslmode=disable",
                "postgres://punch@db/punch?sslmode=disable",
            ),
            (
                "postgresql://db/punch?PASSWORD=s3cret",
                "postgresql://db/punch",
            ),
            ("postgres://db/punch", "postgres://db/punch"),
        ] {
            assert_eq!(super::redacted(url), shown);
        }
    }
}

pub(super) fn open(
    url: &str,
    secret_override: Option<Vec<u8>>,
    now_ms: i64,
    commit_seconds: Option<prometheus::Histogram>,
) -> Result<(Store, StoreThread, Loaded), String> {
    let named = redacted(url);
    let url = url.to_string();
    // The writer thread connects and loads first (its runtime is its own: the caller may be
    // inside one), then takes the writes.
    let (store, rx) = Store::channel(super::QUEUE_DEPTH);
    let (ready, loading) = std::sync::mpsc::channel();
    let join = std::thread::Builder::new()
        .name("punch-store".into())
        .spawn(move || {
            let started = runtime().and_then(|rt| {
                let (client, loaded) = rt.block_on(async {
                    let loading = async {
                        let mut client = connect_as_server(&url).await?.ok_or(TAKEN)?;
                        let loaded = init(&mut client, secret_override, now_ms)
                            .await
                            .map_err(|e| describe(&e))?;
                        Ok::<_, String>((client, loaded))
                    };
                    tokio::time::timeout(LOAD_TIMEOUT, loading)
                        .await
                        .map_err(|_| format!("not loaded within {} s", LOAD_TIMEOUT.as_secs()))?
                })?;
                let writer = Writer {
                    url,
                    rt,
                    client: Some(client),
                    statements: HashMap::new(),
                    commit_seconds,
                };
                Ok((writer, loaded))
            });
            match started {
                Ok((writer, loaded)) => {
                    let _ = ready.send(Ok(loaded));
                    super::run(writer, rx);
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                }
            }
        })
        .map_err(|e| format!("cannot start the database thread: {e}"))?;
    let loaded = loading
        .recv()
        .map_err(|_| "the database thread ended while loading".to_string())
        .and_then(|r| r)
        .map_err(|e| format!("database {named}: {e}"))?;
    Ok((store, StoreThread { join, _lock: None }, loaded))
}

async fn migrate(client: &mut Client) -> PgResult<()> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS punch_migrations (version BIGINT PRIMARY KEY)")
        .await?;
    let applied: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM punch_migrations",
            &[],
        )
        .await?
        .get(0);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO punch_migrations(version) VALUES ($1)",
            &[&(i as i64 + 1)],
        )
        .await?;
    }
    tx.commit().await
}

async fn init(
    client: &mut Client,
    secret_override: Option<Vec<u8>>,
    now_ms: i64,
) -> PgResult<Loaded> {
    migrate(client).await?;
    let secret = match secret_override {
        Some(s) => s,
        None => {
            // the first server to start makes it; every other one reads that one
            let made: [u8; 32] = rand::random();
            client
                .execute(
                    "INSERT INTO meta(key, value) VALUES ('token_secret', $1) ON CONFLICT (key) DO NOTHING",
                    &[&made.to_vec()],
                )
                .await?;
            client
                .query_one("SELECT value FROM meta WHERE key='token_secret'", &[])
                .await?
                .get(0)
        }
    };
    client
        .execute(
            "DELETE FROM sessions WHERE closed_ms IS NOT NULL AND closed_ms < $1",
            &[&(now_ms - TOMBSTONE_RETENTION_MS)],
        )
        .await?;
    let rows = client
        .query(
            "SELECT name, nonce, created_ms, ttl_s, latency, pbkeylen, last_activity_ms, closed_ms, closed_reason, creator, public_host, join_enabled FROM sessions",
            &[],
        )
        .await?;
    let (mut sessions, mut tombstones) = (Vec::new(), Vec::new());
    for r in rows {
        let rec = SessionRecord {
            name: r.get(0),
            nonce: r.get(1),
            created_ms: r.get(2),
            ttl_s: r.get::<_, i64>(3).max(0) as u64,
            latency: r.get::<_, i64>(4) as u32,
            pbkeylen: r.get::<_, i64>(5) as u8,
            last_activity_ms: r.get(6),
            creator: r.get::<_, Option<String>>(9).and_then(|c| c.parse().ok()),
            public_host: r.get(10),
            join: r.get(11),
            streams: Vec::new(),
        };
        match r.get::<_, Option<i64>>(7) {
            Some(closed_ms) => tombstones.push((
                rec.name.clone(),
                Tombstone {
                    nonce: rec.nonce,
                    reason: r.get::<_, Option<String>>(8).unwrap_or_default(),
                    closed_ms,
                },
            )),
            None => sessions.push(rec),
        }
    }
    for s in &mut sessions {
        s.streams = load_streams(client, &s.name).await?;
    }
    Ok(Loaded {
        secret,
        sessions,
        tombstones,
    })
}

async fn load_streams(client: &Client, session: &str) -> PgResult<Vec<StreamRecord>> {
    let rows = client
        .query(
            "SELECT name, label, role, audio, passphrase, latency, tally, devices FROM streams WHERE session=$1 ORDER BY idx",
            &[&session],
        )
        .await?;
    let mut streams: Vec<StreamRecord> = rows
        .iter()
        .map(|r| StreamRecord {
            name: r.get(0),
            label: r.get(1),
            role: r.get(2),
            audio: r.get(3),
            passphrase: r.get(4),
            latency: r.get::<_, i64>(5) as u32,
            tally: TallyState::parse(r.get(6)).unwrap_or_default(),
            sender: None,
            receiver: None,
            devices: serde_json::from_str(r.get(7)).unwrap_or_default(),
        })
        .collect();
    let rows = client
        .query(
            "SELECT stream, role, ip, port, meta, registered_ms, health, health_ms FROM peers WHERE session=$1",
            &[&session],
        )
        .await?;
    for r in rows {
        let peer = LastPeer {
            address: Endpoint {
                ip: r.get(2),
                port: r.get::<_, i64>(3) as u16,
            },
            meta: serde_json::from_str(r.get(4)).unwrap_or_default(),
            registered_ms: r.get(5),
            health: r
                .get::<_, Option<String>>(6)
                .and_then(|h| serde_json::from_str(&h).ok()),
            health_ms: r.get(7),
        };
        let (stream, role): (String, String) = (r.get(0), r.get(1));
        if let (Some(s), Some(role)) = (
            streams.iter_mut().find(|s| s.name == stream),
            Role::parse(&role),
        ) {
            *s.peer_mut(role) = Some(peer);
        }
    }
    Ok(streams)
}

/// The writer thread's state.
struct Writer {
    url: String,
    /// Where the connection's I/O and the writes run.
    rt: tokio::runtime::Runtime,
    /// `None` after it was lost, until the next write connects again.
    client: Option<Client>,
    /// The writes' statements, prepared once per connection (a statement given as text costs
    /// a second round trip to prepare it, each time).
    statements: HashMap<&'static str, Statement>,
    commit_seconds: Option<prometheus::Histogram>,
}

/// A write transaction with the connection's prepared statements.
struct Tx<'a> {
    tx: &'a Transaction<'a>,
    statements: &'a mut HashMap<&'static str, Statement>,
}

impl Tx<'_> {
    async fn execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> PgResult<u64> {
        let statement = match self.statements.get(sql) {
            Some(s) => s.clone(),
            None => {
                let s = self.tx.prepare(&postgres_sql(sql)).await?;
                self.statements.insert(sql, s.clone());
                s
            }
        };
        self.tx.execute(&statement, params).await
    }
}

/// Why a write failed.
#[derive(Debug)]
enum WriteError {
    /// Connecting again failed.
    Connect(String),
    /// The transaction did not finish within [`WRITE_TIMEOUT`].
    Timeout,
    /// Connected again, another server had taken the database meanwhile: what this one
    /// writes is not stored.
    Taken,
    Db(tokio_postgres::Error),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Connect(e) => write!(f, "cannot reach the database: {e}"),
            WriteError::Timeout => write!(
                f,
                "the database did not finish a write within {} s",
                WRITE_TIMEOUT.as_secs()
            ),
            WriteError::Taken => write!(
                f,
                "{TAKEN}: it took the database while this server's connection was lost, so this server's changes are not stored; stop one of the two"
            ),
            WriteError::Db(e) => f.write_str(&describe(e)),
        }
    }
}

impl super::Backend for Writer {
    type Error = WriteError;

    /// Connection trouble, a server shutting down or out of resources, a serialisation
    /// conflict: later. Anything the database refused on its merits (a constraint): never.
    fn passing(e: &WriteError) -> bool {
        match e {
            WriteError::Connect(_) | WriteError::Timeout => true,
            WriteError::Taken => false,
            WriteError::Db(e) => match e.code() {
                // no SQLSTATE: only a lost connection passes (a type or protocol error would
                // fail the same way again, and hold every newer write behind it)
                None => {
                    e.is_closed()
                        || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
                }
                Some(code) => {
                    let class = &code.code()[..2];
                    matches!(class, "08" | "40" | "53" | "57" | "58")
                }
            },
        }
    }

    fn commit(&mut self, ops: &[&StoreOp]) -> Result<(), WriteError> {
        let started = std::time::Instant::now();
        let Writer {
            url,
            rt,
            client,
            statements,
            ..
        } = self;
        let result = rt.block_on(async {
            let write = async {
                if client.as_ref().is_none_or(|c| c.is_closed()) {
                    let again = connect_as_server(url).await.map_err(WriteError::Connect)?;
                    *client = Some(again.ok_or(WriteError::Taken)?);
                    // prepared on the old connection: gone with it
                    statements.clear();
                }
                let c = client.as_mut().expect("connected above");
                let tx = c.transaction().await.map_err(WriteError::Db)?;
                let mut w = Tx {
                    tx: &tx,
                    statements,
                };
                for op in ops {
                    apply(&mut w, op).await.map_err(WriteError::Db)?;
                }
                tx.commit().await.map_err(WriteError::Db)
            };
            match tokio::time::timeout(WRITE_TIMEOUT, write).await {
                Ok(done) => done,
                Err(_) => {
                    // the connection is in an unknown state: a new one for the retry
                    *client = None;
                    Err(WriteError::Timeout)
                }
            }
        });
        if result.is_err() && self.client.as_ref().is_some_and(|c| c.is_closed()) {
            self.client = None;
        }
        if result.is_ok()
            && let Some(h) = &self.commit_seconds
        {
            h.observe(started.elapsed().as_secs_f64());
        }
        result
    }
}

async fn apply(tx: &mut Tx<'_>, op: &StoreOp) -> PgResult<()> {
    for w in writes(op) {
        let params: Vec<&(dyn ToSql + Sync)> = w
            .args
            .iter()
            .map(|a| -> &(dyn ToSql + Sync) {
                match a {
                    Arg::Int(v) => v,
                    Arg::Text(v) => v,
                    Arg::OptText(v) => v,
                    Arg::OptInt(v) => v,
                    Arg::Bool(v) => v,
                }
            })
            .collect();
        tx.execute(w.sql, &params).await?;
    }
    Ok(())
}

/// Registration history of a session, newest last. On a thread of its own: callers may be
/// inside a runtime already.
pub(super) fn registration_events(
    url: &str,
    session: &str,
) -> Result<Vec<(String, String, String)>, String> {
    let (url, session) = (url.to_string(), session.to_string());
    std::thread::spawn(move || {
        runtime()?.block_on(async {
            let client = connect(&url).await?;
            let rows = client
                .query(
                    "SELECT stream, role, kind FROM events WHERE session=$1 ORDER BY id",
                    &[&session],
                )
                .await
                .map_err(|e| describe(&e))?;
            Ok(rows
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect())
        })
    })
    .join()
    .map_err(|_| "the database query thread panicked".to_string())?
}
