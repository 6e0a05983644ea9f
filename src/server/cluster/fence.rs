//! Fencing: the epoch of every session lease this node holds, which each write is checked
//! against inside its transaction. A node that lost a lease (it was frozen, or cut off from the
//! database, past the lease's expiry, and another node took the session over with a higher
//! epoch) finds its epoch no longer in the row: its write is refused, and the session is handed
//! to [`Fence::lost`] so its task stops acting for it.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::mpsc;

use crate::server::session::persist::StoreOp;

/// Why the database writer refused a change: the answer to whoever waited for it.
pub const MOVED: &str = "another node serves this session now; this change was not stored";

/// The leases this node holds, shared by the cluster tasks (which take and renew them) and the
/// database writer (which checks them).
pub struct Fence {
    /// This node's name: the `owner` of its lease rows.
    pub node: String,
    /// Session name → the epoch this node holds it at.
    epochs: Mutex<HashMap<String, i64>>,
    /// Sessions found taken by another node, for the cluster task to stop.
    lost: mpsc::UnboundedSender<String>,
}

impl Fence {
    pub fn new(node: String) -> (Fence, mpsc::UnboundedReceiver<String>) {
        let (lost, rx) = mpsc::unbounded_channel();
        let fence = Fence {
            node,
            epochs: Mutex::default(),
            lost,
        };
        (fence, rx)
    }

    /// This node holds `session` at `epoch` from now on. Epochs only grow: two takeovers of
    /// one session by this node (an adoption and a request at the same moment) may report
    /// theirs in either order, and the later one is what the row holds.
    pub fn hold(&self, session: &str, epoch: i64) {
        let mut epochs = self.epochs.lock().unwrap();
        let held = epochs.entry(session.to_string()).or_insert(epoch);
        *held = (*held).max(epoch);
    }

    /// This node created `session`: it holds its first lease (epoch 1, whatever an earlier
    /// session of the name had).
    pub fn hold_new(&self, session: &str) {
        self.epochs.lock().unwrap().insert(session.to_string(), 1);
    }

    /// The epoch this node holds `session` at, if it does.
    pub fn epoch(&self, session: &str) -> Option<i64> {
        self.epochs.lock().unwrap().get(session).copied()
    }

    /// This node no longer acts for `session`.
    pub fn release(&self, session: &str) {
        self.epochs.lock().unwrap().remove(session);
    }

    /// Every lease this node holds, as (session, epoch).
    pub fn snapshot(&self) -> Vec<(String, i64)> {
        let epochs = self.epochs.lock().unwrap();
        epochs.iter().map(|(s, e)| (s.clone(), *e)).collect()
    }

    /// How many leases this node holds.
    pub fn held(&self) -> usize {
        self.epochs.lock().unwrap().len()
    }

    /// `session` belongs to another node now: stop acting for it (once).
    pub fn lose(&self, session: &str) {
        if self.epochs.lock().unwrap().remove(session).is_some() {
            let _ = self.lost.send(session.to_string());
        }
    }

    /// The sessions of `ops` whose lease must be checked (a creation makes its own lease).
    pub fn to_check<'a>(ops: &[&'a StoreOp]) -> Vec<&'a str> {
        let mut names: Vec<&str> = ops
            .iter()
            .filter(|op| !matches!(op, StoreOp::Create(_)))
            .filter_map(|op| op.session())
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Which of `ops` this node may write, given the lease rows `found` (session, epoch) that
    /// name this node as owner: a creation and what follows it in the batch (its lease is
    /// written with it), a change of a session whose row holds this node's epoch, anything that
    /// names no session. The sessions refused are [lost](Self::lose).
    pub fn allowed(&self, ops: &[&StoreOp], found: &[(String, i64)]) -> Vec<bool> {
        let mut refused = Vec::new();
        let mut created: Vec<&str> = Vec::new();
        let allowed = ops
            .iter()
            .map(|op| match (op, op.session()) {
                (StoreOp::Create(rec), _) => {
                    created.push(&rec.name);
                    true
                }
                (_, None) => true,
                (_, Some(session)) if created.contains(&session) => true,
                (_, Some(session)) => {
                    let mine = self.epoch(session);
                    let ok = mine.is_some()
                        && found.iter().any(|(s, e)| s == session && Some(*e) == mine);
                    if !ok {
                        refused.push(session.to_string());
                    }
                    ok
                }
            })
            .collect();
        for session in refused {
            if self.epoch(&session).is_some() {
                tracing::warn!(
                    session,
                    "another node took this session over: this node's changes to it are refused and it stops serving it"
                );
            }
            self.lose(&session);
        }
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(session: &str) -> StoreOp {
        StoreOp::Tally {
            session: session.into(),
            stream: "cam1".into(),
            state: crate::protocol::TallyState::OnAir,
        }
    }

    #[test]
    fn a_write_passes_only_with_the_epoch_this_node_holds() {
        let (fence, mut lost) = Fence::new("a".into());
        fence.hold("s1", 3);
        fence.hold("s2", 1);
        let (t1, t2, t3) = (tally("s1"), tally("s2"), tally("s3"));
        let ops = [&t1, &t2, &t3, &StoreOp::Flush];
        assert_eq!(Fence::to_check(&ops), ["s1", "s2", "s3"]);
        // s1 still ours at epoch 3; s2 taken over (its row has epoch 2 now, another owner:
        // not among the rows naming this node); s3 never held
        let allowed = fence.allowed(&ops, &[("s1".into(), 3)]);
        assert_eq!(allowed, [true, false, false, true]);
        assert_eq!(lost.try_recv().unwrap(), "s2");
        assert!(lost.try_recv().is_err(), "s3 was not held: nothing to stop");
        assert_eq!(fence.epoch("s2"), None);
        assert_eq!(fence.held(), 1);
    }

    #[test]
    fn a_session_created_in_the_batch_is_written_with_it() {
        let (fence, mut lost) = Fence::new("a".into());
        let mut rec = crate::server::session::tests::record(&[]);
        rec.name = "new".into();
        let (create, t) = (StoreOp::Create(Box::new(rec)), tally("new"));
        assert_eq!(Fence::to_check(&[&create, &t]), ["new"]);
        // no lease row yet (it is written in this transaction)
        assert_eq!(fence.allowed(&[&create, &t], &[]), [true, true]);
        assert!(lost.try_recv().is_err());
    }

    #[test]
    fn two_takeovers_told_out_of_order_keep_the_later_epoch() {
        let (fence, _lost) = Fence::new("a".into());
        fence.hold("s1", 3);
        fence.hold("s1", 2);
        assert_eq!(fence.epoch("s1"), Some(3));
        fence.hold_new("s1");
        assert_eq!(
            fence.epoch("s1"),
            Some(1),
            "a new session of the name starts again"
        );
    }

    #[test]
    fn an_older_epoch_of_this_node_is_refused_too() {
        // this node held s1 at 1, lost it, took it again at 3: a write queued under 1 that
        // checks a row at 4 (taken again meanwhile) is refused
        let (fence, _lost) = Fence::new("a".into());
        fence.hold("s1", 3);
        let t = tally("s1");
        assert_eq!(fence.allowed(&[&t], &[("s1".into(), 4)]), [false]);
    }
}
