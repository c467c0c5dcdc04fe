//! Start-up: opens the Raft storage, bootstraps a founding member's first
//! snapshot (or waits, empty, to be added when joining), restores the state
//! machine, builds the `RawNode` and starts the driver thread and the
//! [`RaftHandle`] that talks to it.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use raft::eraftpb::{ConfState, Snapshot};
use raft::{Config, RawNode};
use thiserror::Error;
use tokio::sync::watch;

use super::driver::{Driver, Msg, NodeError};
use super::handle::{RaftHandle, RaftStatus};
use super::logger;
use super::snapshot;
use super::storage::{LogStore, StorageError};
use super::transport::{Addresses, PeerTls, Transport};
use ferry_state::{ClusterState, StateCodecError};

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
    /// Disaster recovery (`--force-new-cluster`): this member's data dir
    /// becomes a cluster of one, whatever the membership it recorded.
    pub force_new_cluster: bool,
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
    #[error("--force-new-cluster: {0} holds no Raft state to recover from")]
    NothingToForce(String),
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
    let mut old_conf_changes_until = 0;
    if cfg.force_new_cluster {
        if recovered.fresh {
            return Err(StartError::NothingToForce(
                cfg.data_dir.display().to_string(),
            ));
        }
        // The one voter from now on. What this member logged stays: entries
        // it holds beyond its commit index are committed by its first term
        // as leader (as etcd's --force-new-cluster does); membership changes
        // among them belong to the lost cluster and are not applied.
        let before = store.conf_state();
        store.set_conf_state(&ConfState {
            voters: vec![cfg.id],
            ..Default::default()
        })?;
        old_conf_changes_until = raft::Storage::last_index(&store)?;
        tracing::warn!(
            id = cfg.id,
            voters_before = ?before.voters,
            learners_before = ?before.learners,
            "--force-new-cluster: this member is now a cluster of one; add others with `ferry cluster add`"
        );
    }
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
    let state = Arc::new(RwLock::new(state));
    let transport = Transport::new(
        runtime,
        cfg.tls.clone(),
        addresses.clone(),
        fb_tx,
        state.clone(),
    );
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
    let applied_now = Arc::new(AtomicU64::new(snapshot_index));
    let serve_failed: Arc<Mutex<Option<StateCodecError>>> = Arc::default();
    snapshot::serve_live_state(&store, &state, &applied_now, &serve_failed);
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
        old_conf_changes_until,
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
