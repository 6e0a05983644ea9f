//! What each [`StoreOp`] writes, once for both engines: statements in SQL both SQLite and
//! PostgreSQL take (numbered parameters `?N`; the PostgreSQL engine turns them into its `$N`),
//! with their arguments as plain values each engine binds with its own driver.

use super::EVENTS_PER_SESSION;
use crate::protocol::{Endpoint, Role};
use crate::server::session::model::{DeviceSide, StreamRecord, TOMBSTONE_RETENTION_MS};
use crate::server::session::persist::StoreOp;

/// One argument of a statement.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Arg {
    Int(i64),
    Text(String),
    OptText(Option<String>),
    OptInt(Option<i64>),
    Bool(bool),
}

/// One statement and its arguments, `?1` first.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Write {
    pub(super) sql: &'static str,
    pub(super) args: Vec<Arg>,
}

fn text(s: &str) -> Arg {
    Arg::Text(s.to_string())
}

fn write(sql: &'static str, args: Vec<Arg>) -> Write {
    Write { sql, args }
}

/// A stream's devices as stored (`[sender, receiver]`, JSON).
fn devices_json(devices: &[Option<DeviceSide>; 2]) -> String {
    serde_json::to_string(devices).unwrap_or_else(|_| "[null,null]".into())
}

fn insert_stream(session: &str, idx: usize, s: &StreamRecord) -> Write {
    write(
        "INSERT INTO streams(session, idx, name, label, role, audio, passphrase, latency, tally, devices)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        vec![
            text(session),
            Arg::Int(idx as i64),
            text(&s.name),
            Arg::OptText(s.label.clone()),
            Arg::OptText(s.role.clone()),
            Arg::OptText(s.audio.clone()),
            text(&s.passphrase),
            Arg::Int(i64::from(s.latency)),
            text(s.tally.as_str()),
            Arg::Text(devices_json(&s.devices)),
        ],
    )
}

/// A registration event, and the pruning of the session's oldest beyond
/// [`EVENTS_PER_SESSION`].
fn event(
    (session, stream, role): (&str, &str, Role),
    kind: &str,
    address: Option<&Endpoint>,
    at_ms: i64,
) -> [Write; 2] {
    [
        write(
            "INSERT INTO events(session, stream, role, kind, ip, port, at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            vec![
                text(session),
                text(stream),
                text(role.as_str()),
                text(kind),
                Arg::OptText(address.map(|a| a.ip.clone())),
                Arg::OptInt(address.map(|a| i64::from(a.port))),
                Arg::Int(at_ms),
            ],
        ),
        write(
            "DELETE FROM events WHERE session=?1 AND id <= (SELECT id FROM events WHERE session=?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
            vec![text(session), Arg::Int(EVENTS_PER_SESSION)],
        ),
    ]
}

/// The statements `op` takes, in order.
pub(super) fn writes(op: &StoreOp) -> Vec<Write> {
    match op {
        StoreOp::Create(rec) => {
            // A reused name replaces its tombstone and all the old incarnation's rows.
            let mut out = vec![
                write("DELETE FROM sessions WHERE name=?1", vec![text(&rec.name)]),
                write(
                    "INSERT INTO sessions(name, nonce, created_ms, ttl_s, latency, pbkeylen, last_activity_ms, creator, public_host, join_enabled)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    vec![
                        text(&rec.name),
                        text(&rec.nonce),
                        Arg::Int(rec.created_ms),
                        Arg::Int(rec.ttl_s as i64),
                        Arg::Int(i64::from(rec.latency)),
                        Arg::Int(i64::from(rec.pbkeylen)),
                        Arg::Int(rec.last_activity_ms),
                        Arg::OptText(rec.creator.map(|c| c.to_string())),
                        Arg::OptText(rec.public_host.clone()),
                        Arg::Bool(rec.join),
                    ],
                ),
            ];
            for (idx, s) in rec.streams.iter().enumerate() {
                out.push(insert_stream(&rec.name, idx, s));
            }
            out
        }
        StoreOp::Activity { session, at_ms } => vec![write(
            "UPDATE sessions SET last_activity_ms=?2 WHERE name=?1",
            vec![text(session), Arg::Int(*at_ms)],
        )],
        StoreOp::Registered {
            session,
            stream,
            role,
            peer,
        } => {
            let meta = serde_json::to_string(&peer.meta).unwrap_or_else(|_| "{}".into());
            let mut out = vec![write(
                "INSERT INTO peers(session, stream, role, ip, port, meta, registered_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(session, stream, role) DO UPDATE SET ip=excluded.ip, port=excluded.port,
                   meta=excluded.meta, registered_ms=excluded.registered_ms",
                vec![
                    text(session),
                    text(stream),
                    text(role.as_str()),
                    text(&peer.address.ip),
                    Arg::Int(i64::from(peer.address.port)),
                    Arg::Text(meta),
                    Arg::Int(peer.registered_ms),
                ],
            )];
            out.extend(event(
                (session, stream, *role),
                "register",
                Some(&peer.address),
                peer.registered_ms,
            ));
            out
        }
        StoreOp::Left {
            session,
            stream,
            role,
            at_ms,
        } => event((session, stream, *role), "leave", None, *at_ms).to_vec(),
        StoreOp::Health {
            session,
            stream,
            role,
            health,
            at_ms,
        } => vec![write(
            "UPDATE peers SET health=?4, health_ms=?5 WHERE session=?1 AND stream=?2 AND role=?3",
            vec![
                text(session),
                text(stream),
                text(role.as_str()),
                Arg::Text(serde_json::to_string(&health).unwrap_or_else(|_| "{}".into())),
                Arg::Int(*at_ms),
            ],
        )],
        StoreOp::Tally {
            session,
            stream,
            state,
        } => vec![write(
            "UPDATE streams SET tally=?3 WHERE session=?1 AND name=?2",
            vec![text(session), text(stream), text(state.as_str())],
        )],
        StoreOp::AddStream {
            session,
            idx,
            stream,
        } => vec![insert_stream(session, *idx, stream)],
        StoreOp::Devices {
            session,
            stream,
            devices,
        } => vec![write(
            "UPDATE streams SET devices=?3 WHERE session=?1 AND name=?2",
            vec![
                text(session),
                text(stream),
                Arg::Text(devices_json(devices)),
            ],
        )],
        StoreOp::Latency {
            session,
            stream,
            latency,
        } => vec![write(
            "UPDATE streams SET latency=?3 WHERE session=?1 AND name=?2",
            vec![text(session), text(stream), Arg::Int(i64::from(*latency))],
        )],
        StoreOp::Close {
            session,
            reason,
            at_ms,
        } => vec![
            write(
                "UPDATE sessions SET closed_ms=?2, closed_reason=?3 WHERE name=?1",
                vec![text(session), Arg::Int(*at_ms), text(reason)],
            ),
            write(
                "DELETE FROM sessions WHERE closed_ms IS NOT NULL AND closed_ms < ?1",
                vec![Arg::Int(at_ms - TOMBSTONE_RETENTION_MS)],
            ),
        ],
        StoreOp::Flush => Vec::new(),
    }
}

/// `sql` with PostgreSQL's parameter markers (`$N` for `?N`; the statements hold no other `?`).
pub(super) fn postgres_sql(sql: &str) -> String {
    sql.replace('?', "$")
}
