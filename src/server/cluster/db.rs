//! The cluster's statements on the shared database (nodes and leases), on a connection of the
//! cluster's own, reconnected when lost. Every expiry is reckoned on the database's clock, so
//! nodes with skewed clocks agree on when a lease ran out.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::Client;

use super::lease::{Found, Lease};
use super::{LEASE_MS, db_now};
use crate::server::session::model::SessionRecord;
use crate::server::store::postgres;

/// How long one cluster statement may take before it fails (and the connection is replaced).
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Db {
    url: String,
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
}

/// Runs `what` with the [`QUERY_TIMEOUT`], the error as a message.
async fn bounded<T>(
    what: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(QUERY_TIMEOUT, what).await {
        Ok(r) => r.map_err(|e| postgres::describe(&e)),
        Err(_) => Err(format!(
            "no answer from the database within {} s",
            QUERY_TIMEOUT.as_secs()
        )),
    }
}

impl Db {
    pub fn new(url: &str) -> Db {
        Db {
            url: url.to_string(),
            client: tokio::sync::Mutex::new(None),
        }
    }

    /// The connection, opened again if it was lost.
    async fn client(&self) -> Result<Arc<Client>, String> {
        let mut held = self.client.lock().await;
        if let Some(c) = held.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let c = Arc::new(postgres::connect(&self.url).await?);
        *held = Some(c.clone());
        Ok(c)
    }

    /// Forgets the connection after a statement failed on it (lost, or in an unknown state
    /// after a time-out): the next statement opens a new one.
    async fn forget_on_error<T>(&self, r: Result<T, String>) -> Result<T, String> {
        if r.is_err() {
            *self.client.lock().await = None;
        }
        r
    }

    /// Publishes this node and the URL the others reach it at (and that it is alive).
    pub async fn announce(&self, node: &str, url: &str) -> Result<(), String> {
        let c = self.client().await?;
        let r = bounded(c.execute(
            concat!(
                "INSERT INTO nodes(id, internal_url, seen_ms) VALUES ($1, $2, ",
                db_now!(),
                ") ON CONFLICT (id) DO UPDATE SET internal_url = EXCLUDED.internal_url, seen_ms = EXCLUDED.seen_ms"
            ),
            &[&node, &url],
        ))
        .await
        .map(|_| ());
        self.forget_on_error(r).await
    }

    /// Extends every lease `node` holds; the sessions and epochs it still holds.
    pub async fn renew(&self, node: &str) -> Result<Vec<(String, i64)>, String> {
        let c = self.client().await?;
        let r = bounded(c.query(
            concat!(
                "UPDATE leases SET expires_ms = ",
                db_now!(),
                " + $2 WHERE owner = $1 RETURNING session, epoch"
            ),
            &[&node, &LEASE_MS],
        ))
        .await
        .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect());
        self.forget_on_error(r).await
    }

    /// The session `name` and its lease; `None`: no such session.
    pub async fn find(&self, name: &str) -> Result<Option<Found>, String> {
        let c = self.client().await?;
        let r = bounded(c.query_opt(
            concat!(
                "SELECT s.nonce, s.closed_ms, s.closed_reason, l.owner, l.expires_ms - ",
                db_now!(),
                ", n.internal_url FROM sessions s LEFT JOIN leases l ON l.session = s.name LEFT JOIN nodes n ON n.id = l.owner WHERE s.name = $1"
            ),
            &[&name],
        ))
        .await
        .map(|row| {
            row.map(|r| Found {
                closed: r.get::<_, Option<i64>>(1).map(|at| {
                    let reason: Option<String> = r.get(2);
                    (r.get(0), reason.unwrap_or_default(), at)
                }),
                lease: r.get::<_, Option<String>>(3).map(|owner| Lease {
                    owner,
                    remaining_ms: r.get(4),
                    url: r.get(5),
                }),
            })
        });
        self.forget_on_error(r).await
    }

    /// Takes the live session `name` for `node` if nobody holds it or its lease expired: its
    /// new epoch; `None` when a node holds it (or it is not live).
    pub async fn take(&self, name: &str, node: &str) -> Result<Option<i64>, String> {
        let c = self.client().await?;
        let r = bounded(c.query_opt(
            concat!(
                "INSERT INTO leases(session, owner, epoch, expires_ms) SELECT $1, $2, 1, ",
                db_now!(),
                " + $3 WHERE EXISTS (SELECT 1 FROM sessions WHERE name = $1 AND closed_ms IS NULL) ",
                "ON CONFLICT (session) DO UPDATE SET owner = EXCLUDED.owner, epoch = leases.epoch + 1, expires_ms = EXCLUDED.expires_ms ",
                "WHERE leases.expires_ms < ",
                db_now!(),
                " RETURNING epoch"
            ),
            &[&name, &node, &LEASE_MS],
        ))
        .await
        .map(|row| row.map(|r| r.get(0)));
        self.forget_on_error(r).await
    }

    /// Takes up to `limit` live sessions whose leases expired (their node is gone) for `node`:
    /// their names and new epochs. Rows another node is taking at the same moment are skipped.
    pub async fn adopt(&self, node: &str, limit: i64) -> Result<Vec<(String, i64)>, String> {
        let c = self.client().await?;
        let r = bounded(c.query(
            concat!(
                "UPDATE leases SET owner = $1, epoch = epoch + 1, expires_ms = ",
                db_now!(),
                " + $2 WHERE expires_ms < ",
                db_now!(),
                " AND session IN (SELECT l.session FROM leases l JOIN sessions s ON s.name = l.session WHERE l.expires_ms < ",
                db_now!(),
                " AND s.closed_ms IS NULL ORDER BY l.expires_ms LIMIT $3 FOR UPDATE OF l SKIP LOCKED) RETURNING session, epoch"
            ),
            &[&node, &LEASE_MS, &limit],
        ))
        .await
        .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect());
        self.forget_on_error(r).await
    }

    /// The live sessions among `names`, as stored.
    pub async fn load(&self, names: &[String]) -> Result<Vec<SessionRecord>, String> {
        let c = self.client().await?;
        let r = bounded(postgres::load_sessions(&c, names)).await;
        self.forget_on_error(r).await
    }

    /// At shutdown: `node`'s leases end now (the other nodes take its sessions at once) and it
    /// leaves the nodes table.
    pub async fn leave(&self, node: &str) -> Result<(), String> {
        let c = self.client().await?;
        bounded(c.execute(
            "UPDATE leases SET expires_ms = 0 WHERE owner = $1",
            &[&node],
        ))
        .await?;
        bounded(c.execute("DELETE FROM nodes WHERE id = $1", &[&node]))
            .await
            .map(|_| ())
    }
}
