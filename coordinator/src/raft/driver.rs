//! The Raft driver. One OS thread owns the `RawNode`: it ticks, steps peer
//! messages, takes proposals (batching whatever is queued into one Ready),
//! persists each Ready before acknowledging anything, and hands outgoing
//! messages to the transport. Applying committed entries (`apply.rs`),
//! membership changes (`membership.rs`) and snapshots (`snapshot.rs`) are
//! further `impl Driver` blocks beside this one.
//!
//! What the thread cannot do without losing its state's step with the log
//! stops it with a [`NodeError`]: a failed write, a committed entry or a
//! snapshot that does not decode, a state that does not serialize into a
//! snapshot. It never skips an entry and never writes an empty snapshot.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use raft::eraftpb::{ConfChange, Message, Snapshot};
use raft::{RawNode, SnapshotStatus, StateRole};
use thiserror::Error;
use tokio::sync::{oneshot, watch};

use super::handle::{ProposeError, RaftStatus};
use super::storage::{LogStore, StorageError};
use super::transport::{Addresses, Feedback, Transport};
use ferry_state::{ClusterState, Output, Rejection, StateCodecError};

/// The outcome of a local proposal and the log index it was applied at.
pub(super) type Reply = oneshot::Sender<(Result<Output, ProposeError>, u64)>;

/// What the driver's queue carries: requests from the [`super::RaftHandle`],
/// peer messages, transport feedback and snapshots built on other threads.
pub(super) enum Msg {
    /// A command, encoded.
    Propose {
        data: Vec<u8>,
        reply: Reply,
    },
    ConfChange {
        cc: ConfChange,
        reply: Reply,
    },
    TransferLeader(u64),
    /// A snapshot built off the Raft thread, ready to install.
    SnapshotBuilt(Box<Snapshot>),
    /// The state copied for a snapshot did not serialize: fatal.
    SnapshotFailed {
        index: u64,
        error: StateCodecError,
    },
    ReadIndex {
        reply: oneshot::Sender<Result<(), ProposeError>>,
    },
    Raft(Box<Message>),
    Feedback(Feedback),
}

/// Why the Raft thread stopped: it could not go on without losing its
/// state's step with the log. The member stops serving.
#[derive(Debug, Error)]
pub enum NodeError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(
        "committed entry {index} does not decode as a command: {source}; this member cannot \
         apply the log (is it running an older version than the leader?)"
    )]
    Command {
        index: u64,
        source: serde_json::Error,
    },
    #[error("committed membership change {index} does not decode: {source}")]
    ConfChange {
        index: u64,
        source: protobuf::ProtobufError,
    },
    #[error("the snapshot at index {index} from the leader: {source}")]
    SnapshotFromLeader { index: u64, source: StateCodecError },
    #[error("cannot take a snapshot at index {index}: {source}")]
    TakeSnapshot { index: u64, source: StateCodecError },
    #[error("cannot send a follower a snapshot of the live state: {0}")]
    ServeSnapshot(StateCodecError),
}

/// What the Raft thread owns; built by `start.rs`.
pub(super) struct Driver {
    pub(super) id: u64,
    pub(super) node: RawNode<LogStore>,
    pub(super) store: LogStore,
    pub(super) state: Arc<RwLock<ClusterState>>,
    pub(super) applied_tx: watch::Sender<u64>,
    pub(super) status_tx: watch::Sender<RaftStatus>,
    pub(super) transport: Transport,
    pub(super) addresses: Addresses,
    /// Proposals made on this process, by the seq carried in the entry context.
    pub(super) pending: HashMap<u64, Reply>,
    /// Read-index requests by context seq, waiting for their read state.
    pub(super) reads: HashMap<u64, oneshot::Sender<Result<(), ProposeError>>>,
    /// Read states received: (index to reach, reply).
    pub(super) ready_reads: Vec<(u64, oneshot::Sender<Result<(), ProposeError>>)>,
    pub(super) nonce: u64,
    pub(super) seq: u64,
    pub(super) applied: u64,
    /// `applied`, readable by the storage when it builds a snapshot.
    pub(super) applied_now: Arc<AtomicU64>,
    pub(super) snapshot_every: u64,
    pub(super) removed: bool,
    /// A snapshot is being serialized on another thread.
    pub(super) snapshotting: bool,
    /// A fatal failure seen while handling a message, raised on the next Ready.
    pub(super) failed: Option<NodeError>,
    /// Set by the storage's snapshot source when the live state did not
    /// serialize for a follower; raised on the next Ready.
    pub(super) serve_failed: Arc<Mutex<Option<StateCodecError>>>,
    /// This driver's own queue, for work finished on other threads.
    pub(super) self_tx: mpsc::Sender<Msg>,
    /// After `--force-new-cluster`: membership changes logged up to this
    /// index belong to the lost cluster and are not applied again (0: none).
    pub(super) old_conf_changes_until: u64,
}

impl Driver {
    pub(super) fn run(&mut self, rx: mpsc::Receiver<Msg>, tick: Duration) -> Result<(), NodeError> {
        let mut next_tick = Instant::now() + tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(msg) => {
                    self.handle(msg);
                    // Batch whatever else is queued into the same Ready.
                    let mut n = 0;
                    while let Ok(msg) = rx.try_recv() {
                        self.handle(msg);
                        n += 1;
                        if n > 4096 {
                            break;
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            if Instant::now() >= next_tick {
                self.node.tick();
                next_tick = Instant::now() + tick;
            }
            if let Err(e) = self.on_ready() {
                let what = match e {
                    NodeError::Storage(_) => "Raft storage failed",
                    _ => "this member's state cannot follow the log",
                };
                tracing::error!(error = %e, "{what}; this coordinator stops serving");
                self.fail_all(|| ProposeError::Stopped);
                return Err(e);
            }
            self.publish_status();
        }
    }

    fn next_ctx(&mut self) -> (u64, Vec<u8>) {
        self.seq += 1;
        let mut ctx = self.nonce.to_be_bytes().to_vec();
        ctx.extend_from_slice(&self.seq.to_be_bytes());
        (self.seq, ctx)
    }

    fn not_leader(&self) -> ProposeError {
        let leader = self.node.raft.leader_id;
        ProposeError::NotLeader {
            leader: (leader != 0).then_some(leader),
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Propose { data, reply } => {
                if self.node.raft.state != StateRole::Leader || self.removed {
                    let _ = reply.send((Err(self.not_leader()), 0));
                    return;
                }
                let (seq, ctx) = self.next_ctx();
                match self.node.propose(ctx, data) {
                    Ok(()) => {
                        self.pending.insert(seq, reply);
                    }
                    Err(_) => {
                        let _ = reply.send((Err(self.not_leader()), 0));
                    }
                }
            }
            Msg::ConfChange { cc, reply } => {
                if self.node.raft.state != StateRole::Leader {
                    let _ = reply.send((Err(self.not_leader()), 0));
                    return;
                }
                let (seq, ctx) = self.next_ctx();
                match self.node.propose_conf_change(ctx, cc) {
                    Ok(()) => {
                        self.pending.insert(seq, reply);
                    }
                    Err(e) => {
                        let why = Rejection::FailedPrecondition(format!(
                            "membership change refused: {e}"
                        ));
                        let _ = reply.send((Err(ProposeError::Rejected(why)), 0));
                    }
                }
            }
            Msg::TransferLeader(to) => self.node.transfer_leader(to),
            Msg::SnapshotBuilt(snap) => self.snapshot_built(*snap),
            Msg::SnapshotFailed { index, error } => self.snapshot_failed(index, error),
            Msg::ReadIndex { reply } => {
                let (seq, ctx) = self.next_ctx();
                self.reads.insert(seq, reply);
                self.node.read_index(ctx);
            }
            Msg::Raft(m) => {
                if let Err(e) = self.node.step(*m) {
                    tracing::debug!(error = %e, "peer message not stepped");
                }
            }
            Msg::Feedback(Feedback::Unreachable(id)) => self.node.report_unreachable(id),
            Msg::Feedback(Feedback::SnapshotSent { to, ok }) => self.node.report_snapshot(
                to,
                if ok {
                    SnapshotStatus::Finish
                } else {
                    SnapshotStatus::Failure
                },
            ),
        }
    }

    /// One Ready, step by step in the order raft-rs requires (its
    /// `five_mem_node` example is the model); each step says why it is there.
    fn on_ready(&mut self) -> Result<(), NodeError> {
        // A failure recorded since the last round (an entry that did not
        // decode, a snapshot that did not serialize) stops the member before
        // it acknowledges anything more.
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        self.raise_serve_failure()?;
        if !self.node.has_ready() {
            return Ok(());
        }
        let mut ready = self.node.ready();
        // 1. Messages that may leave before anything is persisted (a
        //    leader's appends and heartbeats): the leader writes its own log
        //    in parallel with its followers.
        self.send(ready.take_messages());
        // 2. A snapshot from the leader replaces the state and the log
        //    prefix, so it goes in before any entry that follows it.
        if !ready.snapshot().is_empty() {
            self.install_from_leader(ready.snapshot().clone())?;
        }
        // 3. Read indexes confirmed by a quorum: a linearizable read may be
        //    served once this member has applied up to that index (step 8).
        for rs in ready.take_read_states() {
            self.read_state(rs.index, &rs.request_ctx);
        }
        // 4. Committed entries are on a majority's disks already, so they
        //    may be applied before this member persists its new ones.
        let committed = ready.take_committed_entries();
        self.apply_entries(committed)?;
        // 5. New entries and the hard state (term, vote, commit) reach the
        //    disk, fsynced, before any message that promises they are there.
        self.store.persist(ready.entries(), ready.hs())?;
        // 6. Those messages: votes and append responses.
        self.send(ready.take_persisted_messages());
        // 7. Advance: what became committed by this round's persistence
        //    (a single member commits its own entries here) is recorded,
        //    sent and applied, then raft-rs is told it was applied.
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.store.set_commit(commit)?;
        }
        self.send(light.take_messages());
        self.apply_entries(light.take_committed_entries())?;
        self.node.advance_apply();
        // 8. Reads waiting for an index now applied are answered.
        self.answer_reads();
        // 9. Only applied state is snapshotted, and the log compacted
        //    behind it, after everything above is durable.
        self.maybe_snapshot()?;
        self.raise_serve_failure()
    }

    fn read_state(&mut self, index: u64, ctx: &[u8]) {
        if let Some((nonce, seq)) = split_ctx(ctx)
            && nonce == self.nonce
            && let Some(reply) = self.reads.remove(&seq)
        {
            self.ready_reads.push((index, reply));
        }
    }

    fn answer_reads(&mut self) {
        let applied = self.applied;
        let (done, waiting): (Vec<_>, Vec<_>) =
            self.ready_reads.drain(..).partition(|(i, _)| *i <= applied);
        self.ready_reads = waiting;
        for (_, reply) in done {
            let _ = reply.send(Ok(()));
        }
    }

    fn send(&mut self, msgs: Vec<Message>) {
        for m in msgs {
            if m.to != self.id {
                self.transport.send(m);
            }
        }
    }

    fn fail_all(&mut self, err: impl Fn() -> ProposeError) {
        for (_, reply) in self.pending.drain() {
            let _ = reply.send((Err(err()), 0));
        }
        for (_, reply) in self.reads.drain() {
            let _ = reply.send(Err(err()));
        }
        for (_, reply) in self.ready_reads.drain(..) {
            let _ = reply.send(Err(err()));
        }
    }

    fn publish_status(&mut self) {
        let raft = &self.node.raft;
        let is_leader = raft.state == StateRole::Leader;
        let matched = if is_leader {
            raft.prs()
                .iter()
                .map(|(id, pr)| (*id, pr.matched))
                .collect()
        } else {
            BTreeMap::new()
        };
        let status = RaftStatus {
            id: raft.id,
            leader_id: raft.leader_id,
            term: raft.term,
            commit: raft.raft_log.committed,
            applied: self.applied,
            is_leader,
            role: raft.state,
            matched,
            removed: self.removed,
            learners: raft.prs().conf().learners().iter().copied().collect(),
        };
        let changed = {
            let old = self.status_tx.borrow();
            old.leader_id != status.leader_id
                || old.term != status.term
                || old.is_leader != status.is_leader
                || old.removed != status.removed
                || old.role != status.role
        };
        if changed && !status.is_leader {
            // In the log, maybe replicated: the next leader may commit them.
            for (_, reply) in self.pending.drain() {
                let _ = reply.send((Err(ProposeError::Dropped), 0));
            }
        }
        if *self.status_tx.borrow() != status {
            let _ = self.status_tx.send(status);
        }
    }
}

pub(super) fn split_ctx(ctx: &[u8]) -> Option<(u64, u64)> {
    if ctx.len() != 16 {
        return None;
    }
    let (a, b) = ctx.split_at(8);
    Some((
        u64::from_be_bytes(a.try_into().ok()?),
        u64::from_be_bytes(b.try_into().ok()?),
    ))
}
