//! The Raft driver. One OS thread owns the `RawNode`: it ticks, steps peer
//! messages, takes proposals (batching whatever is queued into one Ready),
//! persists each Ready before acknowledging anything, applies committed
//! entries to the state machine, answers read-index requests, takes snapshots
//! and hands outgoing messages to the transport. Everyone else talks to it
//! through [`RaftHandle`], which also forwards a follower's proposals to the
//! leader.
//!
//! What the thread cannot do without losing its state's step with the log
//! stops it with a [`NodeError`]: a failed write, a committed entry or a
//! snapshot that does not decode, a state that does not serialize into a
//! snapshot. It never skips an entry and never writes an empty snapshot.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ferry_proto as pb;
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, ConfState, Entry, EntryType, Message, Snapshot};
use raft::{Config, RawNode, SnapshotStatus, StateRole, Storage as _};
use thiserror::Error;
use tokio::sync::{oneshot, watch};

use super::logger;
use super::storage::{LogStore, StorageError};
use super::transport::{Addresses, Feedback, PeerTls, Transport};
use crate::state::{ClusterState, Command, Output, Rejection, StateCodecError};

pub struct NodeConfig {
    pub id: u64,
    /// Members (id → gRPC address) when the cluster is formed, this one included.
    pub peers: BTreeMap<u64, String>,
    /// Start empty and wait to be added by the leader (`ferry cluster add`).
    pub join: bool,
    pub data_dir: PathBuf,
    /// Take a snapshot and compact the log after this many applied entries.
    pub snapshot_every: u64,
    pub tick: Duration,
    pub tls: PeerTls,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftStatus {
    pub id: u64,
    pub leader_id: u64,
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    pub is_leader: bool,
    pub role: raft::StateRole,
    /// Leader only: highest log index known replicated on each member.
    pub matched: BTreeMap<u64, u64>,
    /// This member was removed from the cluster and must stop serving.
    pub removed: bool,
    /// Members that receive the log but do not vote (yet).
    pub learners: std::collections::BTreeSet<u64>,
}

/// A change of Raft membership, one at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipChange {
    /// Add a non-voting member serving gRPC at this address; it catches up
    /// without counting towards any quorum.
    AddLearner(String),
    /// Make a learner a voter.
    Promote,
    /// Remove a member.
    Remove,
}

#[derive(Debug, Error)]
pub enum ProposeError {
    #[error("no leader is reachable (last known: {leader:?}); retry shortly")]
    NotLeader { leader: Option<u64> },
    #[error("the Raft node has stopped")]
    Stopped,
    #[error("forwarding to the leader failed: {0}")]
    Forward(String),
    /// The command does not serialize; nothing was proposed.
    #[error(transparent)]
    Encode(#[from] crate::state::EncodeError),
    #[error(transparent)]
    Rejected(#[from] Rejection),
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

#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the stored snapshot: {0}")]
    Snapshot(StateCodecError),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("cannot start the Raft thread: {0}")]
    Thread(std::io::Error),
    #[error("member {0} is not in --peers; list every member, this one included")]
    NotInPeers(u64),
    #[error("member {0} was removed from the cluster; wipe its data dir to join again")]
    Removed(u64),
}

/// The outcome of a local proposal and the log index it was applied at.
type Reply = oneshot::Sender<(Result<Output, ProposeError>, u64)>;

enum Msg {
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

/// Cheap to clone; proposes commands and reads the applied state.
#[derive(Clone)]
pub struct RaftHandle {
    tx: mpsc::Sender<Msg>,
    state: Arc<RwLock<ClusterState>>,
    applied: watch::Receiver<u64>,
    status: watch::Receiver<RaftStatus>,
    addresses: Addresses,
    tls: PeerTls,
}

const WAIT_FOR_LEADER: Duration = Duration::from_secs(5);

impl RaftHandle {
    /// Proposes a command and waits until it is committed and applied on this
    /// member. A follower forwards it to the leader; without a leader it waits
    /// a few seconds for one.
    pub async fn propose(&self, cmd: Command) -> Result<Output, ProposeError> {
        let deadline = tokio::time::Instant::now() + WAIT_FOR_LEADER;
        loop {
            let status = self.status();
            if status.removed {
                return Err(ProposeError::Stopped);
            }
            let attempt = if status.is_leader {
                self.propose_local(cmd.clone()).await.map(|(r, _)| r)
            } else if status.leader_id != 0 {
                self.forward(status.leader_id, &cmd).await
            } else {
                Err(ProposeError::NotLeader { leader: None })
            };
            match attempt {
                Ok(r) => return r,
                Err(e @ ProposeError::Stopped) => return Err(e),
                Err(e) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(e);
                    }
                    let mut watch = self.status.clone();
                    tokio::select! {
                        _ = watch.changed() => {}
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
            }
        }
    }

    /// Proposes on this member, which must lead. Outer error: not proposed
    /// for want of a leader (worth retrying).
    pub async fn propose_local(
        &self,
        cmd: Command,
    ) -> Result<(Result<Output, ProposeError>, u64), ProposeError> {
        let data = match cmd.encode() {
            Ok(data) => data,
            Err(e) => return Ok((Err(e.into()), 0)),
        };
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Propose { data, reply })
            .map_err(|_| ProposeError::Stopped)?;
        let (result, index) = rx.await.map_err(|_| ProposeError::Stopped)?;
        match result {
            Err(e @ (ProposeError::NotLeader { .. } | ProposeError::Stopped)) => Err(e),
            r => Ok((r, index)),
        }
    }

    async fn forward(
        &self,
        leader: u64,
        cmd: &Command,
    ) -> Result<Result<Output, ProposeError>, ProposeError> {
        let command = match cmd.encode() {
            Ok(data) => data,
            Err(e) => return Ok(Err(e.into())),
        };
        let addr = self.address_of(leader).ok_or(ProposeError::NotLeader {
            leader: Some(leader),
        })?;
        let channel = self
            .tls
            .channel(leader, &addr)
            .map_err(|e| ProposeError::Forward(e.to_string()))?;
        let mut client = pb::internal::raft_peer_client::RaftPeerClient::new(channel);
        let resp = client
            .propose(pb::internal::ForwardRequest { command })
            .await
            .map_err(|s| ProposeError::Forward(s.message().to_string()))?
            .into_inner();
        let result: Result<Output, Rejection> = serde_json::from_slice(&resp.result)
            .map_err(|e| ProposeError::Forward(e.to_string()))?;
        // Read your own writes: wait until this member applied it too.
        let mut applied = self.applied.clone();
        let wait = async {
            while *applied.borrow() < resp.index {
                if applied.changed().await.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), wait).await;
        Ok(result.map_err(ProposeError::Rejected))
    }

    /// Proposes a membership change; this member must lead.
    pub async fn change_membership(
        &self,
        id: u64,
        change: MembershipChange,
    ) -> Result<u64, ProposeError> {
        let mut cc = ConfChange {
            node_id: id,
            ..Default::default()
        };
        match change {
            MembershipChange::AddLearner(a) => {
                cc.set_change_type(ConfChangeType::AddLearnerNode);
                cc.context = a.into_bytes().into();
            }
            MembershipChange::Promote => {
                cc.set_change_type(ConfChangeType::AddNode);
                // The address is already known; carried again so the entry stands alone.
                if let Some(a) = self.address_of(id) {
                    cc.context = a.into_bytes().into();
                }
            }
            MembershipChange::Remove => cc.set_change_type(ConfChangeType::RemoveNode),
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::ConfChange { cc, reply })
            .map_err(|_| ProposeError::Stopped)?;
        let (result, index) = rx.await.map_err(|_| ProposeError::Stopped)?;
        result.map(|_| index)
    }

    pub fn transfer_leader(&self, to: u64) -> Result<(), ProposeError> {
        self.tx
            .send(Msg::TransferLeader(to))
            .map_err(|_| ProposeError::Stopped)
    }

    /// Linearizable read barrier (Raft read index): returns once this member
    /// has applied everything committed when the call started.
    pub async fn read_barrier(&self) -> Result<(), ProposeError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::ReadIndex { reply })
            .map_err(|_| ProposeError::Stopped)?;
        match tokio::time::timeout(Duration::from_secs(3), rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ProposeError::Stopped),
            Err(_) => Err(ProposeError::NotLeader {
                leader: Some(self.status().leader_id).filter(|l| *l != 0),
            }),
        }
    }

    /// Steps a message received from a peer.
    pub fn step(&self, msg: Message) -> Result<(), ProposeError> {
        self.tx
            .send(Msg::Raft(Box::new(msg)))
            .map_err(|_| ProposeError::Stopped)
    }

    /// Runs `f` against the applied state.
    pub fn read<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        let guard = self.state.read().unwrap_or_else(|p| p.into_inner());
        f(&guard)
    }

    pub fn status(&self) -> RaftStatus {
        self.status.borrow().clone()
    }

    /// Changes whenever a command is applied.
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.applied.clone()
    }

    /// Changes whenever leadership, term or progress changes.
    pub fn status_watch(&self) -> watch::Receiver<RaftStatus> {
        self.status.clone()
    }

    /// gRPC address of a member (replicated membership first, then --peers).
    pub fn address_of(&self, id: u64) -> Option<String> {
        self.read(|s| s.members.get(&id).cloned()).or_else(|| {
            self.addresses
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&id)
                .cloned()
        })
    }

    pub fn tls(&self) -> &PeerTls {
        &self.tls
    }
}

/// Opens storage, restores the state machine and starts the driver thread.
/// The join handle yields an error if the node had to stop ([`NodeError`]).
pub fn start(
    cfg: NodeConfig,
    runtime: tokio::runtime::Handle,
) -> Result<(RaftHandle, JoinHandle<Result<(), NodeError>>), StartError> {
    let recovered = LogStore::open(&cfg.data_dir.join("raft.redb"))?;
    let store = recovered.store;
    let mut snapshot_index = recovered.snapshot_index;
    let mut snapshot_data = recovered.snapshot_data;
    if recovered.fresh && !cfg.join {
        if !cfg.peers.contains_key(&cfg.id) {
            return Err(StartError::NotInPeers(cfg.id));
        }
        // Every founding member starts from the same snapshot at index 1 that
        // holds the initial membership, so a member added later learns it
        // from a snapshot rather than from a log that never recorded it.
        let cs = ConfState {
            voters: cfg.peers.keys().copied().collect(),
            ..Default::default()
        };
        let mut snap = Snapshot::default();
        let initial = ClusterState::default();
        snap.data = initial.to_snapshot().map_err(StartError::Snapshot)?.into();
        let meta = snap.mut_metadata();
        meta.index = 1;
        meta.term = 1;
        meta.set_conf_state(cs.clone());
        store.install_snapshot(&snap)?;
        store.set_conf_state(&cs)?;
        snapshot_index = 1;
        snapshot_data = snap.get_data().to_vec();
    }
    let state = if snapshot_data.is_empty() {
        ClusterState::default()
    } else {
        ClusterState::from_snapshot(&snapshot_data).map_err(StartError::Snapshot)?
    };
    let voters = store.conf_state().voters;
    if !recovered.fresh && !voters.is_empty() && !voters.contains(&cfg.id) {
        return Err(StartError::Removed(cfg.id));
    }
    let raft_cfg = Config {
        id: cfg.id,
        election_tick: 10,
        heartbeat_tick: 2,
        applied: snapshot_index,
        max_size_per_msg: 4 * 1024 * 1024,
        max_inflight_msgs: 256,
        check_quorum: true,
        pre_vote: true,
        ..Default::default()
    };
    raft_cfg.validate()?;
    let log = logger::logger(cfg.id);
    let mut node = RawNode::new(&raft_cfg, store.clone(), &log)?;
    if voters == vec![cfg.id] {
        node.campaign()?;
    }
    let (tx, rx) = mpsc::channel();
    let (fb_tx, fb_rx) = mpsc::channel();
    let addresses: Addresses = Arc::new(RwLock::new(cfg.peers.clone()));
    let transport = Transport::new(runtime, cfg.tls.clone(), addresses.clone(), fb_tx);
    // Feedback from the transport joins the driver's queue.
    let fb_forward = tx.clone();
    std::thread::Builder::new()
        .name("raft-feedback".into())
        .spawn(move || {
            while let Ok(f) = fb_rx.recv() {
                if fb_forward.send(Msg::Feedback(f)).is_err() {
                    return;
                }
            }
        })
        .map_err(StartError::Thread)?;
    let state = Arc::new(RwLock::new(state));
    let applied_now = Arc::new(std::sync::atomic::AtomicU64::new(snapshot_index));
    let serve_failed: Arc<Mutex<Option<StateCodecError>>> = Arc::default();
    {
        let state = state.clone();
        let applied_now = applied_now.clone();
        let serve_failed = serve_failed.clone();
        store.set_snapshot_source(Arc::new(move || {
            let s = state.read().unwrap_or_else(|p| p.into_inner());
            match s.to_snapshot() {
                Ok(data) => Some((data, applied_now.load(std::sync::atomic::Ordering::SeqCst))),
                Err(e) => {
                    // Raised by the driver after this Ready: the member stops.
                    *serve_failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    None
                }
            }
        }));
    }
    {
        // Replicated membership wins over --peers once known.
        let s = state.read().unwrap_or_else(|p| p.into_inner());
        let mut a = addresses.write().unwrap_or_else(|p| p.into_inner());
        for (id, addr) in &s.members {
            a.insert(*id, addr.clone());
        }
    }
    let (applied_tx, applied_rx) = watch::channel(snapshot_index);
    let (status_tx, status_rx) = watch::channel(RaftStatus {
        id: cfg.id,
        ..Default::default()
    });
    let mut driver = Driver {
        id: cfg.id,
        node,
        store,
        state: state.clone(),
        applied_tx,
        status_tx,
        transport,
        addresses: addresses.clone(),
        pending: HashMap::new(),
        reads: HashMap::new(),
        ready_reads: Vec::new(),
        nonce: rand::random(),
        seq: 0,
        applied: snapshot_index,
        applied_now,
        snapshot_every: cfg.snapshot_every.max(1),
        removed: false,
        snapshotting: false,
        failed: None,
        serve_failed,
        self_tx: tx.clone(),
    };
    let tick = cfg.tick;
    let join = std::thread::Builder::new()
        .name("raft".into())
        .spawn(move || driver.run(rx, tick))
        .map_err(StartError::Thread)?;
    Ok((
        RaftHandle {
            tx,
            state,
            applied: applied_rx,
            status: status_rx,
            addresses,
            tls: cfg.tls,
        },
        join,
    ))
}

struct Driver {
    id: u64,
    node: RawNode<LogStore>,
    store: LogStore,
    state: Arc<RwLock<ClusterState>>,
    applied_tx: watch::Sender<u64>,
    status_tx: watch::Sender<RaftStatus>,
    transport: Transport,
    addresses: Addresses,
    /// Proposals made on this process, by the seq carried in the entry context.
    pending: HashMap<u64, Reply>,
    /// Read-index requests by context seq, waiting for their read state.
    reads: HashMap<u64, oneshot::Sender<Result<(), ProposeError>>>,
    /// Read states received: (index to reach, reply).
    ready_reads: Vec<(u64, oneshot::Sender<Result<(), ProposeError>>)>,
    nonce: u64,
    seq: u64,
    applied: u64,
    /// `applied`, readable by the storage when it builds a snapshot.
    applied_now: Arc<std::sync::atomic::AtomicU64>,
    snapshot_every: u64,
    removed: bool,
    /// A snapshot is being serialized on another thread.
    snapshotting: bool,
    /// A fatal failure seen while handling a message, raised on the next Ready.
    failed: Option<NodeError>,
    /// Set by the storage's snapshot source when the live state did not
    /// serialize for a follower; raised on the next Ready.
    serve_failed: Arc<Mutex<Option<StateCodecError>>>,
    /// This driver's own queue, for work finished on other threads.
    self_tx: mpsc::Sender<Msg>,
}

impl Driver {
    fn run(&mut self, rx: mpsc::Receiver<Msg>, tick: Duration) -> Result<(), NodeError> {
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
            Msg::SnapshotBuilt(snap) => {
                self.snapshotting = false;
                // A newer snapshot from the leader may have been installed meanwhile.
                if snap.get_metadata().index > self.store.snapshot_index() {
                    let index = snap.get_metadata().index;
                    match self.store.install_snapshot(&snap) {
                        Ok(()) => tracing::info!(index, "snapshot taken; log compacted"),
                        Err(e) => self.failed = Some(e.into()),
                    }
                }
            }
            Msg::SnapshotFailed { index, error } => {
                self.snapshotting = false;
                self.failed = Some(NodeError::TakeSnapshot {
                    index,
                    source: error,
                });
            }
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
            let snap = ready.snapshot().clone();
            // Decoded before it is installed: a bad one changes nothing here.
            let state = ClusterState::from_snapshot(snap.get_data()).map_err(|source| {
                NodeError::SnapshotFromLeader {
                    index: snap.get_metadata().index,
                    source,
                }
            })?;
            self.store.install_snapshot(&snap)?;
            self.restore(state, snap.get_metadata().index);
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

    /// Stops on a live state that did not serialize for a follower's snapshot.
    fn raise_serve_failure(&mut self) -> Result<(), NodeError> {
        let failed = self
            .serve_failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match failed {
            Some(e) => Err(NodeError::ServeSnapshot(e)),
            None => Ok(()),
        }
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

    /// Takes the state of an installed snapshot from the leader, applied up to `index`.
    fn restore(&mut self, s: ClusterState, index: u64) {
        {
            let mut a = self.addresses.write().unwrap_or_else(|p| p.into_inner());
            for (id, addr) in &s.members {
                a.insert(*id, addr.clone());
            }
        }
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = s;
        self.applied = index;
        self.applied_now
            .store(self.applied, std::sync::atomic::Ordering::SeqCst);
        let _ = self.applied_tx.send(self.applied);
        tracing::info!(index = self.applied, "installed a snapshot from the leader");
    }

    fn apply_entries(&mut self, entries: Vec<Entry>) -> Result<(), NodeError> {
        for entry in entries {
            if entry.index <= self.applied {
                continue;
            }
            let result = match entry.get_entry_type() {
                EntryType::EntryNormal => self.apply_normal(&entry)?,
                EntryType::EntryConfChange => self.apply_conf_change(&entry)?,
                EntryType::EntryConfChangeV2 => {
                    tracing::warn!(
                        index = entry.index,
                        "ConfChangeV2 entries are not used by Ferry; ignored"
                    );
                    Ok(Output::None)
                }
            };
            self.applied = entry.index;
            self.applied_now
                .store(entry.index, std::sync::atomic::Ordering::SeqCst);
            if let Some((nonce, seq)) = split_ctx(entry.get_context())
                && nonce == self.nonce
                && let Some(reply) = self.pending.remove(&seq)
            {
                let _ = reply.send((result, entry.index));
            }
        }
        let _ = self.applied_tx.send(self.applied);
        Ok(())
    }

    /// Applies a command entry. One that does not decode stops the member:
    /// skipping it would leave its state behind every member that applied it.
    fn apply_normal(&mut self, entry: &Entry) -> Result<Result<Output, ProposeError>, NodeError> {
        if entry.get_data().is_empty() {
            return Ok(Ok(Output::None)); // a new leader's empty entry
        }
        let cmd = Command::decode(entry.get_data()).map_err(|source| NodeError::Command {
            index: entry.index,
            source,
        })?;
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        Ok(state.apply(cmd).map_err(ProposeError::Rejected))
    }

    fn apply_conf_change(
        &mut self,
        entry: &Entry,
    ) -> Result<Result<Output, ProposeError>, NodeError> {
        let cc = ConfChange::parse_from_bytes(entry.get_data()).map_err(|source| {
            NodeError::ConfChange {
                index: entry.index,
                source,
            }
        })?;
        let cs = match self.node.apply_conf_change(&cc) {
            Ok(cs) => cs,
            Err(e) => {
                let why =
                    Rejection::FailedPrecondition(format!("membership change not applied: {e}"));
                return Ok(Err(ProposeError::Rejected(why)));
            }
        };
        self.store.set_conf_state(&cs)?;
        let id = cc.node_id;
        let address = match cc.get_change_type() {
            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                let known = self
                    .addresses
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&id)
                    .cloned();
                match (cc.get_context(), known) {
                    // A promotion may carry no address; keep the one we have.
                    ([], Some(known)) => Some(known),
                    (context, _) => Some(String::from_utf8_lossy(context).into_owned()),
                }
            }
            ConfChangeType::RemoveNode => None,
        };
        {
            let mut a = self.addresses.write().unwrap_or_else(|p| p.into_inner());
            match &address {
                Some(addr) => {
                    a.insert(id, addr.clone());
                }
                None => {
                    a.remove(&id);
                }
            }
        }
        self.state
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .apply_membership(id, address.clone());
        if address.is_none() {
            self.transport.forget(id);
            if id == self.id {
                tracing::warn!("this member was removed from the cluster; it stops serving");
                self.removed = true;
            }
        }
        tracing::info!(member = id, ?address, voters = ?cs.voters, "membership changed");
        Ok(Ok(Output::None))
    }

    /// Every `snapshot_every` applied entries, copy the state (cheap, on this
    /// thread, so it matches the applied index exactly) and serialize it on
    /// another thread; the result comes back as `Msg::SnapshotBuilt`.
    fn maybe_snapshot(&mut self) -> Result<(), NodeError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let last = self.store.snapshot_index();
        if self.snapshotting || self.applied < last + self.snapshot_every {
            return Ok(());
        }
        let index = self.applied;
        let term = self.store.term(index).unwrap_or(0);
        let conf = self.store.conf_state();
        let state = self.state.read().unwrap_or_else(|p| p.into_inner()).clone();
        let tx = self.self_tx.clone();
        self.snapshotting = true;
        let spawned = std::thread::Builder::new()
            .name("raft-snapshot".into())
            .spawn(move || {
                let data = match state.to_snapshot() {
                    Ok(data) => data,
                    Err(error) => {
                        let _ = tx.send(Msg::SnapshotFailed { index, error });
                        return;
                    }
                };
                let mut snap = Snapshot {
                    data: data.into(),
                    ..Default::default()
                };
                let meta = snap.mut_metadata();
                meta.index = index;
                meta.term = term;
                meta.set_conf_state(conf);
                let _ = tx.send(Msg::SnapshotBuilt(Box::new(snap)));
            });
        if spawned.is_err() {
            self.snapshotting = false;
        }
        Ok(())
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
            let leader = status.leader_id;
            for (_, reply) in self.pending.drain() {
                let _ = reply.send((
                    Err(ProposeError::NotLeader {
                        leader: (leader != 0).then_some(leader),
                    }),
                    0,
                ));
            }
        }
        if *self.status_tx.borrow() != status {
            let _ = self.status_tx.send(status);
        }
    }
}

fn split_ctx(ctx: &[u8]) -> Option<(u64, u64)> {
    if ctx.len() != 16 {
        return None;
    }
    let (a, b) = ctx.split_at(8);
    Some((
        u64::from_be_bytes(a.try_into().ok()?),
        u64::from_be_bytes(b.try_into().ok()?),
    ))
}
