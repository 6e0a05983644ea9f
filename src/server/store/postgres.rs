//! The PostgreSQL engine (`--db postgres://user@host:port/dbname`), with `tokio-postgres`. The
//! writer thread runs its own single-threaded tokio runtime and one connection, reconnected when
//! it is lost (the writes held meanwhile are retried, as every passing failure is). Migrations
//! are numbered in `punch_migrations` and applied under an advisory lock, so several servers
//! starting on one database apply each once. Plain TCP (no TLS to the database): run it on a
//! private network or the loopback.
//!
//! Several servers (nodes) may share one database: each session is owned by one node at a time
//! through its lease row (`cluster/`). Every batch checks, in its transaction, that the leases
//! of the sessions it writes still name this node at the epoch it holds ([`Fence`]), under a
//! share lock a takeover waits for; a change of a session another node took over is refused.
//! Sessions are not loaded at start: the cluster takes them (`load_sessions`) as it adopts them.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Statement, Transaction};

use super::writes::{Arg, postgres_sql, writes};
use super::{Loaded, Refused, StoreThread};
use crate::protocol::{Endpoint, Role, TallyState};
use crate::server::cluster::{Fence, LEASE_MS, db_now};
use crate::server::session::model::{
    LastPeer, SessionRecord, StreamRecord, TOMBSTONE_RETENTION_MS,
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
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/postgres/001_initial.sql"),
    include_str!("migrations/postgres/002_cluster.sql"),
];
/// The advisory lock that serialises migrations between servers (any constant of our own).
const MIGRATION_LOCK: i64 = 0x7075_6e63_6801;

type PgResult<T> = Result<T, tokio_postgres::Error>;

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the database runtime: {e}"))
}

/// A connection to `url`; its I/O runs on the runtime it is called on.
pub(crate) async fn connect(url: &str) -> Result<Client, String> {
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
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
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
    fence: Arc<Fence>,
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
                        let mut client = connect(&url).await?;
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
                    fence,
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
    Ok(Loaded {
        secret,
        sessions: Vec::new(),
        tombstones: Vec::new(),
    })
}

/// The live sessions among `names`, with their streams and last peers.
pub(crate) async fn load_sessions(
    client: &Client,
    names: &[String],
) -> PgResult<Vec<SessionRecord>> {
    let rows = client
        .query(
            "SELECT name, nonce, created_ms, ttl_s, latency, pbkeylen, last_activity_ms, creator, public_host, join_enabled FROM sessions WHERE name = ANY($1) AND closed_ms IS NULL",
            &[&names],
        )
        .await?;
    let mut sessions: Vec<SessionRecord> = rows
        .iter()
        .map(|r| SessionRecord {
            name: r.get(0),
            nonce: r.get(1),
            created_ms: r.get(2),
            ttl_s: r.get::<_, i64>(3).max(0) as u64,
            latency: r.get::<_, i64>(4) as u32,
            pbkeylen: r.get::<_, i64>(5) as u8,
            last_activity_ms: r.get(6),
            creator: r.get::<_, Option<String>>(7).and_then(|c| c.parse().ok()),
            public_host: r.get(8),
            join: r.get(9),
            streams: Vec::new(),
        })
        .collect();
    // every stream and last peer of them in two more queries, whatever their number (those of
    // a name not loaded, closed, find no session below)
    let rows = client
        .query(
            "SELECT session, name, label, role, audio, passphrase, latency, tally, devices FROM streams WHERE session = ANY($1) ORDER BY session, idx",
            &[&names],
        )
        .await?;
    let by_name: HashMap<String, usize> = sessions
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.clone(), i))
        .collect();
    for r in &rows {
        let session: String = r.get(0);
        if let Some(&i) = by_name.get(&session) {
            sessions[i].streams.push(StreamRecord {
                name: r.get(1),
                label: r.get(2),
                role: r.get(3),
                audio: r.get(4),
                passphrase: r.get(5),
                latency: r.get::<_, i64>(6) as u32,
                tally: TallyState::parse(r.get(7)).unwrap_or_default(),
                sender: None,
                receiver: None,
                devices: serde_json::from_str(r.get(8)).unwrap_or_default(),
            });
        }
    }
    let rows = client
        .query(
            "SELECT session, stream, role, ip, port, meta, registered_ms, health, health_ms FROM peers WHERE session = ANY($1)",
            &[&names],
        )
        .await?;
    for r in rows {
        let peer = LastPeer {
            address: Endpoint {
                ip: r.get(3),
                port: r.get::<_, i64>(4) as u16,
            },
            meta: serde_json::from_str(r.get(5)).unwrap_or_default(),
            registered_ms: r.get(6),
            health: r
                .get::<_, Option<String>>(7)
                .and_then(|h| serde_json::from_str(&h).ok()),
            health_ms: r.get(8),
        };
        let (session, stream, role): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        if let (Some(&i), Some(role)) = (by_name.get(&session), Role::parse(&role))
            && let Some(s) = sessions[i].streams.iter_mut().find(|s| s.name == stream)
        {
            *s.peer_mut(role) = Some(peer);
        }
    }
    Ok(sessions)
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
    /// The leases this node holds: what each batch is checked against.
    fence: Arc<Fence>,
}

/// A write transaction with the connection's prepared statements.
struct Tx<'a> {
    tx: &'a Transaction<'a>,
    statements: &'a mut HashMap<&'static str, Statement>,
}

impl Tx<'_> {
    /// `sql` (in the `?N` form), prepared once per connection.
    async fn statement(&mut self, sql: &'static str) -> PgResult<Statement> {
        Ok(match self.statements.get(sql) {
            Some(s) => s.clone(),
            None => {
                let s = self.tx.prepare(&postgres_sql(sql)).await?;
                self.statements.insert(sql, s.clone());
                s
            }
        })
    }

    async fn execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> PgResult<u64> {
        let statement = self.statement(sql).await?;
        self.tx.execute(&statement, params).await
    }

    async fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> PgResult<Vec<tokio_postgres::Row>> {
        let statement = self.statement(sql).await?;
        self.tx.query(&statement, params).await
    }
}

/// Why a write failed.
#[derive(Debug)]
enum WriteError {
    /// Connecting again failed.
    Connect(String),
    /// The transaction did not finish within [`WRITE_TIMEOUT`].
    Timeout,
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

    fn commit(&mut self, ops: &[&StoreOp]) -> Result<Refused, WriteError> {
        let started = std::time::Instant::now();
        let Writer {
            url,
            rt,
            client,
            statements,
            fence,
            ..
        } = self;
        let result = rt.block_on(async {
            let write = async {
                if client.as_ref().is_none_or(|c| c.is_closed()) {
                    *client = Some(connect(url).await.map_err(WriteError::Connect)?);
                    // prepared on the old connection: gone with it
                    statements.clear();
                }
                let c = client.as_mut().expect("connected above");
                let tx = c.transaction().await.map_err(WriteError::Db)?;
                let mut w = Tx {
                    tx: &tx,
                    statements,
                };
                let refused = fenced(&mut w, fence, ops).await.map_err(WriteError::Db)?;
                let stored: Vec<&StoreOp> = (ops.iter().enumerate())
                    .filter(|(i, _)| refused.iter().all(|(r, _)| r != i))
                    .map(|(_, op)| *op)
                    .collect();
                for op in &stored {
                    apply(&mut w, op, fence).await.map_err(WriteError::Db)?;
                }
                tx.commit().await.map_err(WriteError::Db)?;
                // the node that creates a session owns it
                for op in stored {
                    if let StoreOp::Create(rec) = op {
                        fence.hold_new(&rec.name);
                    }
                }
                Ok(refused)
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

/// Reads the leases of the sessions `ops` change, under a share lock (a takeover's update waits
/// until this transaction ends), and says which ops this node may not write: those of sessions
/// another node took over, and a creation whose name a live session has.
async fn fenced(tx: &mut Tx<'_>, fence: &Fence, ops: &[&StoreOp]) -> PgResult<Refused> {
    let mut refused = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if let StoreOp::Create(rec) = op {
            let live = tx
                .query(
                    "SELECT 1 FROM sessions WHERE name=?1 AND closed_ms IS NULL FOR UPDATE",
                    &[&rec.name],
                )
                .await?;
            if !live.is_empty() {
                refused.push((
                    i,
                    format!(
                        "a session named {} already exists (on another node); choose another name",
                        rec.name
                    ),
                ));
            }
        }
    }
    let check = Fence::to_check(ops);
    let found: Vec<(String, i64)> = if check.is_empty() {
        Vec::new()
    } else {
        tx.query(
            "SELECT session, epoch FROM leases WHERE owner=?1 AND session = ANY(?2) FOR SHARE",
            &[&fence.node, &check],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    };
    for (i, ok) in fence.allowed(ops, &found).into_iter().enumerate() {
        if !ok {
            refused.push((i, crate::server::cluster::MOVED.to_string()));
        }
    }
    Ok(refused)
}

async fn apply(tx: &mut Tx<'_>, op: &StoreOp, fence: &Fence) -> PgResult<()> {
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
    match op {
        StoreOp::Create(rec) => {
            // (its old incarnation's lease went with the old row)
            tx.execute(CREATE_LEASE, &[&rec.name, &fence.node, &LEASE_MS])
                .await?;
        }
        // a closed session is nobody's to renew or take
        StoreOp::Close { session, .. } => {
            tx.execute("DELETE FROM leases WHERE session=?1", &[session])
                .await?;
        }
        _ => {}
    }
    Ok(())
}

/// The lease of a session this node creates: epoch 1, from now.
const CREATE_LEASE: &str = concat!(
    "INSERT INTO leases(session, owner, epoch, expires_ms) VALUES (?1, ?2, 1, ",
    db_now!(),
    " + ?3)"
);

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
