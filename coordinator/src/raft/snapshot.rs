//! Snapshots: taking one every `snapshot_every` applied entries (serialized
//! off the Raft thread) and compacting the log behind it, installing one
//! sent by the leader, and serving the live state to a follower that needs
//! one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use raft::Storage as _;
use raft::eraftpb::Snapshot;

use super::driver::{Driver, Msg, NodeError};
use super::storage::LogStore;
use ferry_state::{ClusterState, StateCodecError};

/// Lets the storage build a snapshot of the live state for a follower; a
/// state that does not serialize is recorded in `serve_failed`.
pub(super) fn serve_live_state(
    store: &LogStore,
    state: &Arc<RwLock<ClusterState>>,
    applied_now: &Arc<AtomicU64>,
    serve_failed: &Arc<Mutex<Option<StateCodecError>>>,
) {
    let state = state.clone();
    let applied_now = applied_now.clone();
    let serve_failed = serve_failed.clone();
    store.set_snapshot_source(Arc::new(move || {
        let s = state.read().unwrap_or_else(|p| p.into_inner());
        match s.to_snapshot() {
            Ok(data) => Some((data, applied_now.load(Ordering::SeqCst))),
            Err(e) => {
                // Raised by the driver after this Ready: the member stops.
                *serve_failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                None
            }
        }
    }));
}

impl Driver {
    /// Installs a snapshot sent by the leader (Ready step 2).
    pub(super) fn install_from_leader(&mut self, snap: Snapshot) -> Result<(), NodeError> {
        // Decoded before it is installed: a bad one changes nothing here.
        let state = ClusterState::from_snapshot(snap.get_data()).map_err(|source| {
            NodeError::SnapshotFromLeader {
                index: snap.get_metadata().index,
                source,
            }
        })?;
        self.store.install_snapshot(&snap)?;
        self.restore(state, snap.get_metadata().index);
        Ok(())
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
        self.applied_now.store(self.applied, Ordering::SeqCst);
        let _ = self.applied_tx.send(self.applied);
        tracing::info!(index = self.applied, "installed a snapshot from the leader");
    }

    /// Stops on a live state that did not serialize for a follower's snapshot.
    pub(super) fn raise_serve_failure(&mut self) -> Result<(), NodeError> {
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

    /// Every `snapshot_every` applied entries, copy the state (cheap, on this
    /// thread, so it matches the applied index exactly) and serialize it on
    /// another thread; the result comes back as `Msg::SnapshotBuilt`.
    pub(super) fn maybe_snapshot(&mut self) -> Result<(), NodeError> {
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

    /// A snapshot serialized on another thread is ready to install.
    pub(super) fn snapshot_built(&mut self, snap: Snapshot) {
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

    /// The state copied for a snapshot did not serialize: raised on the next Ready.
    pub(super) fn snapshot_failed(&mut self, index: u64, error: StateCodecError) {
        self.snapshotting = false;
        self.failed = Some(NodeError::TakeSnapshot {
            index,
            source: error,
        });
    }
}
