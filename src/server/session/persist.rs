//! What a session asks to be stored, and the handle it sends it through. The storage engine
//! (`store/`: SQLite or PostgreSQL) takes [`Job`]s from the other end of the channel, applies whatever is
//! queued in one transaction, and answers those that carry an acknowledgement after the commit.

use tokio::sync::{mpsc, oneshot};

use super::model::{DeviceSide, LastPeer, SessionRecord, StreamRecord};
use crate::protocol::{Health, Role, TallyState};

/// Told the outcome of a commit.
pub type Ack = oneshot::Sender<Result<(), String>>;

/// One change to what is stored.
#[derive(Debug)]
pub enum StoreOp {
    Create(Box<SessionRecord>),
    Activity {
        session: String,
        at_ms: i64,
    },
    Registered {
        session: String,
        stream: String,
        role: Role,
        peer: LastPeer,
    },
    Left {
        session: String,
        stream: String,
        role: Role,
        at_ms: i64,
    },
    Health {
        session: String,
        stream: String,
        role: Role,
        health: Health,
        at_ms: i64,
    },
    Tally {
        session: String,
        stream: String,
        state: TallyState,
    },
    Latency {
        session: String,
        stream: String,
        latency: u32,
    },
    /// A stream added to a live session (a peer admitted into a new stream), at `idx`.
    AddStream {
        session: String,
        idx: usize,
        stream: Box<StreamRecord>,
    },
    /// Who holds a stream's sides changed (`[sender, receiver]`).
    Devices {
        session: String,
        stream: String,
        devices: [Option<DeviceSide>; 2],
    },
    Close {
        session: String,
        reason: String,
        at_ms: i64,
    },
    /// Changes nothing: committed once everything queued before it is.
    Flush,
}

/// What a log line may say about a change: what and where, never a passphrase, nonce or
/// peer data (the derived `Debug` shows them all).
impl std::fmt::Display for StoreOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreOp::Create(rec) => write!(f, "creation of session {}", rec.name),
            StoreOp::Activity { session, .. } => write!(f, "activity of session {session}"),
            StoreOp::Registered {
                session,
                stream,
                role,
                ..
            } => write!(f, "registration of the {role} of {session}/{stream}"),
            StoreOp::Left {
                session,
                stream,
                role,
                ..
            } => write!(f, "departure of the {role} of {session}/{stream}"),
            StoreOp::Health {
                session,
                stream,
                role,
                ..
            } => write!(f, "health of the {role} of {session}/{stream}"),
            StoreOp::Tally {
                session,
                stream,
                state,
            } => write!(f, "tally {} of {session}/{stream}", state.as_str()),
            StoreOp::Latency {
                session,
                stream,
                latency,
            } => write!(f, "latency {latency} ms of {session}/{stream}"),
            StoreOp::Devices {
                session, stream, ..
            } => write!(f, "devices of {session}/{stream}"),
            StoreOp::AddStream {
                session, stream, ..
            } => write!(f, "new stream {session}/{}", stream.name),
            StoreOp::Close {
                session, reason, ..
            } => write!(f, "closure of session {session} ({reason})"),
            StoreOp::Flush => write!(f, "flush"),
        }
    }
}

impl StoreOp {
    /// The session the change belongs to (`None`: [`StoreOp::Flush`]).
    pub fn session(&self) -> Option<&str> {
        match self {
            StoreOp::Create(rec) => Some(&rec.name),
            StoreOp::Activity { session, .. }
            | StoreOp::Registered { session, .. }
            | StoreOp::Left { session, .. }
            | StoreOp::Health { session, .. }
            | StoreOp::Tally { session, .. }
            | StoreOp::Latency { session, .. }
            | StoreOp::AddStream { session, .. }
            | StoreOp::Devices { session, .. }
            | StoreOp::Close { session, .. } => Some(session),
            StoreOp::Flush => None,
        }
    }

    /// Whether a client is told the outcome, so it must be [`Store::commit`]ted and waited for.
    pub fn acknowledged(&self) -> bool {
        matches!(
            self,
            StoreOp::Create(_)
                | StoreOp::Close { .. }
                | StoreOp::Tally { .. }
                | StoreOp::Latency { .. }
                | StoreOp::Devices { .. }
                | StoreOp::AddStream { .. }
                | StoreOp::Flush
        )
    }
}

/// An operation queued for the writer, with whoever waits for its commit.
pub struct Job {
    pub op: StoreOp,
    /// Answered after the commit (or its failure).
    pub ack: Option<Ack>,
}

/// Sending side of the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Job>,
}

impl Store {
    /// A handle and the receiving end its storage engine takes jobs from.
    pub fn channel(depth: usize) -> (Store, mpsc::Receiver<Job>) {
        let (tx, rx) = mpsc::channel(depth);
        (Store { tx }, rx)
    }

    /// Queues an operation. Waits when the queue is full, so nothing is dropped.
    pub async fn send(&self, op: StoreOp) {
        if self.tx.send(Job { op, ack: None }).await.is_err() {
            tracing::error!("database writer has stopped; a change was not saved");
        }
    }

    /// Queues an operation and waits for its commit.
    pub async fn commit(&self, op: StoreOp) -> Result<(), String> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Job { op, ack: Some(ack) })
            .await
            .map_err(|_| "database writer has stopped".to_string())?;
        done.await
            .map_err(|_| "database writer has stopped".to_string())?
    }
}
