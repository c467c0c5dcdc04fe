//! The Raft driver. One OS thread owns the `RawNode`: it ticks, takes
//! proposals, persists each Ready before acknowledging anything, applies
//! committed commands to the state machine, takes snapshots, and answers
//! proposers. Everyone else talks to it through [`RaftHandle`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfState, Entry, EntryType, Snapshot};
use raft::{Config, RawNode, StateRole, Storage as _};
use thiserror::Error;
use tokio::sync::{oneshot, watch};

use super::logger;
use super::storage::{LogStore, StorageError};
use crate::state::{ClusterState, Command, Output, Rejection};

pub struct NodeConfig {
    pub id: u64,
    /// Voters when the cluster is formed (this node included).
    pub voters: Vec<u64>,
    pub data_dir: PathBuf,
    /// Take a snapshot and compact the log after this many applied entries.
    pub snapshot_every: u64,
    pub tick: Duration,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftStatus {
    pub id: u64,
    pub leader_id: u64,
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    pub is_leader: bool,
}

#[derive(Debug, Error)]
pub enum ProposeError {
    #[error("this coordinator is not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<u64> },
    #[error("the Raft node has stopped")]
    Stopped,
    #[error(transparent)]
    Rejected(#[from] Rejection),
}

#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the stored snapshot does not decode: {0}")]
    Snapshot(serde_json::Error),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("cannot start the Raft thread: {0}")]
    Thread(std::io::Error),
}

type Reply = oneshot::Sender<Result<Output, ProposeError>>;

enum Msg {
    Propose { cmd: Command, reply: Reply },
}

/// Cheap to clone; proposes commands and reads the applied state.
#[derive(Clone)]
pub struct RaftHandle {
    tx: mpsc::Sender<Msg>,
    state: Arc<RwLock<ClusterState>>,
    applied: watch::Receiver<u64>,
    status: watch::Receiver<RaftStatus>,
}

impl RaftHandle {
    /// Proposes a command and waits until it is committed and applied here.
    pub async fn propose(&self, cmd: Command) -> Result<Output, ProposeError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Propose { cmd, reply })
            .map_err(|_| ProposeError::Stopped)?;
        rx.await.map_err(|_| ProposeError::Stopped)?
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

    /// Changes whenever leadership or term changes.
    pub fn status_watch(&self) -> watch::Receiver<RaftStatus> {
        self.status.clone()
    }
}

/// Opens storage, restores the state machine and starts the driver thread.
/// The join handle yields an error if the node had to stop (a failed write).
pub fn start(
    cfg: NodeConfig,
) -> Result<(RaftHandle, JoinHandle<Result<(), StorageError>>), StartError> {
    let recovered = LogStore::open(&cfg.data_dir.join("raft.redb"))?;
    let store = recovered.store;
    if recovered.fresh {
        let cs = ConfState {
            voters: cfg.voters.clone(),
            ..Default::default()
        };
        store.set_conf_state(&cs)?;
    }
    let state = if recovered.snapshot_data.is_empty() {
        ClusterState::default()
    } else {
        serde_json::from_slice(&recovered.snapshot_data).map_err(StartError::Snapshot)?
    };
    let raft_cfg = Config {
        id: cfg.id,
        election_tick: 10,
        heartbeat_tick: 2,
        applied: recovered.snapshot_index,
        max_size_per_msg: 4 * 1024 * 1024,
        max_inflight_msgs: 256,
        check_quorum: true,
        pre_vote: true,
        ..Default::default()
    };
    raft_cfg.validate()?;
    let log = logger::logger(cfg.id);
    let mut node = RawNode::new(&raft_cfg, store.clone(), &log)?;
    let single = store.conf_state().voters == vec![cfg.id];
    if single {
        node.campaign()?;
    }
    let (tx, rx) = mpsc::channel();
    let state = Arc::new(RwLock::new(state));
    let (applied_tx, applied_rx) = watch::channel(recovered.snapshot_index);
    let (status_tx, status_rx) = watch::channel(RaftStatus {
        id: cfg.id,
        ..Default::default()
    });
    let mut driver = Driver {
        node,
        store,
        state: state.clone(),
        applied_tx,
        status_tx,
        pending: HashMap::new(),
        nonce: rand::random(),
        seq: 0,
        applied: recovered.snapshot_index,
        snapshot_every: cfg.snapshot_every.max(1),
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
        },
        join,
    ))
}

struct Driver {
    node: RawNode<LogStore>,
    store: LogStore,
    state: Arc<RwLock<ClusterState>>,
    applied_tx: watch::Sender<u64>,
    status_tx: watch::Sender<RaftStatus>,
    /// Proposals made on this process, by (nonce, seq) carried in the entry context.
    pending: HashMap<u64, Reply>,
    nonce: u64,
    seq: u64,
    applied: u64,
    snapshot_every: u64,
}

impl Driver {
    fn run(&mut self, rx: mpsc::Receiver<Msg>, tick: Duration) -> Result<(), StorageError> {
        let mut next_tick = Instant::now() + tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(msg) => {
                    self.handle(msg);
                    // Batch whatever else is queued into the same Ready.
                    while let Ok(msg) = rx.try_recv() {
                        self.handle(msg);
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
                tracing::error!(error = %e, "Raft storage failed; this coordinator stops serving");
                for (_, reply) in self.pending.drain() {
                    let _ = reply.send(Err(ProposeError::Stopped));
                }
                return Err(e);
            }
            self.publish_status();
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Propose { cmd, reply } => {
                if self.node.raft.state != StateRole::Leader {
                    let leader = self.node.raft.leader_id;
                    let _ = reply.send(Err(ProposeError::NotLeader {
                        leader: (leader != 0).then_some(leader),
                    }));
                    return;
                }
                self.seq += 1;
                let mut ctx = self.nonce.to_be_bytes().to_vec();
                ctx.extend_from_slice(&self.seq.to_be_bytes());
                match self.node.propose(ctx, cmd.encode()) {
                    Ok(()) => {
                        self.pending.insert(self.seq, reply);
                    }
                    Err(_) => {
                        let leader = self.node.raft.leader_id;
                        let _ = reply.send(Err(ProposeError::NotLeader {
                            leader: (leader != 0).then_some(leader),
                        }));
                    }
                }
            }
        }
    }

    fn on_ready(&mut self) -> Result<(), StorageError> {
        if !self.node.has_ready() {
            return Ok(());
        }
        let mut ready = self.node.ready();
        self.send(ready.take_messages());
        if !ready.snapshot().is_empty() {
            let snap = ready.snapshot().clone();
            self.store.install_snapshot(&snap)?;
            self.restore(&snap);
        }
        let committed = ready.take_committed_entries();
        self.apply_entries(committed)?;
        self.store.persist(ready.entries(), ready.hs())?;
        self.send(ready.take_persisted_messages());
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.store.set_commit(commit)?;
        }
        self.send(light.take_messages());
        self.apply_entries(light.take_committed_entries())?;
        self.node.advance_apply();
        self.maybe_snapshot()?;
        Ok(())
    }

    fn send(&mut self, msgs: Vec<raft::eraftpb::Message>) {
        for m in msgs {
            // Multi-member transport arrives with the cluster issue; a single
            // member never addresses anyone else.
            tracing::debug!(to = m.to, "no transport to Raft peer; message dropped");
        }
    }

    fn restore(&mut self, snap: &Snapshot) {
        match serde_json::from_slice::<ClusterState>(snap.get_data()) {
            Ok(s) => {
                *self.state.write().unwrap_or_else(|p| p.into_inner()) = s;
                self.applied = snap.get_metadata().index;
            }
            Err(e) => tracing::error!(error = %e, "snapshot from leader does not decode"),
        }
    }

    fn apply_entries(&mut self, entries: Vec<Entry>) -> Result<(), StorageError> {
        for entry in entries {
            if entry.index <= self.applied {
                continue;
            }
            match entry.get_entry_type() {
                EntryType::EntryNormal => self.apply_normal(&entry),
                EntryType::EntryConfChange => {
                    if let Ok(cc) = ConfChange::parse_from_bytes(entry.get_data())
                        && let Ok(cs) = self.node.apply_conf_change(&cc)
                    {
                        self.store.set_conf_state(&cs)?;
                    }
                }
                EntryType::EntryConfChangeV2 => {
                    tracing::warn!(
                        index = entry.index,
                        "ConfChangeV2 entries are not used by Ferry; ignored"
                    );
                }
            }
            self.applied = entry.index;
        }
        let _ = self.applied_tx.send(self.applied);
        Ok(())
    }

    fn apply_normal(&mut self, entry: &Entry) {
        if entry.get_data().is_empty() {
            return; // a new leader's empty entry
        }
        let result = match Command::decode(entry.get_data()) {
            Ok(cmd) => {
                let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
                state.apply(cmd).map_err(ProposeError::Rejected)
            }
            Err(e) => {
                tracing::error!(index = entry.index, error = %e, "undecodable command skipped");
                Err(ProposeError::Stopped)
            }
        };
        let ctx = entry.get_context();
        if ctx.len() == 16 {
            let (nonce, seq) = ctx.split_at(8);
            let nonce = u64::from_be_bytes(nonce.try_into().unwrap_or_default());
            let seq = u64::from_be_bytes(seq.try_into().unwrap_or_default());
            if nonce == self.nonce
                && let Some(reply) = self.pending.remove(&seq)
            {
                let _ = reply.send(result);
            }
        }
    }

    fn maybe_snapshot(&mut self) -> Result<(), StorageError> {
        let last = self.store.snapshot_index();
        if self.applied < last + self.snapshot_every {
            return Ok(());
        }
        let term = self.store.term(self.applied).unwrap_or(0);
        let data = {
            let state = self.state.read().unwrap_or_else(|p| p.into_inner());
            serde_json::to_vec(&*state).unwrap_or_default()
        };
        let mut snap = Snapshot {
            data: data.into(),
            ..Default::default()
        };
        let meta = snap.mut_metadata();
        meta.index = self.applied;
        meta.term = term;
        meta.set_conf_state(self.store.conf_state());
        self.store.install_snapshot(&snap)?;
        tracing::info!(index = self.applied, "snapshot taken; log compacted");
        Ok(())
    }

    fn publish_status(&mut self) {
        let raft = &self.node.raft;
        let status = RaftStatus {
            id: raft.id,
            leader_id: raft.leader_id,
            term: raft.term,
            commit: raft.raft_log.committed,
            applied: self.applied,
            is_leader: raft.state == StateRole::Leader,
        };
        if *self.status_tx.borrow() != status {
            if !status.is_leader {
                for (_, reply) in self.pending.drain() {
                    let leader = status.leader_id;
                    let _ = reply.send(Err(ProposeError::NotLeader {
                        leader: (leader != 0).then_some(leader),
                    }));
                }
            }
            let _ = self.status_tx.send(status);
        }
    }
}
