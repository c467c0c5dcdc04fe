//! Durable Raft storage: the log, hard state, conf state and the latest
//! snapshot, kept in memory for raft-rs and written through to redb before
//! anything that depends on them is acknowledged. A write that fails is
//! returned as an error and must stop the node: it never acknowledges what it
//! did not persist.

use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError as RaftStorageError};
use redb::{Database, TableDefinition};
use thiserror::Error;

const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_entries");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
const HARD_STATE: &str = "hard_state";
const CONF_STATE: &str = "conf_state";
const SNAPSHOT: &str = "snapshot";

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("cannot open the Raft store {path}: {source}")]
    Open {
        path: String,
        source: redb::DatabaseError,
    },
    #[error("Raft store write failed: {0}")]
    Write(String),
    #[error("Raft store read failed: {0}")]
    Read(String),
    #[error("Raft store holds a corrupt record `{0}`: {1}")]
    Corrupt(String, protobuf::ProtobufError),
}

fn write_err(e: impl std::fmt::Display) -> StorageError {
    StorageError::Write(e.to_string())
}

fn read_err(e: impl std::fmt::Display) -> StorageError {
    StorageError::Read(e.to_string())
}

#[derive(Default)]
struct Core {
    hard_state: HardState,
    conf_state: ConfState,
    /// Latest snapshot, with the serialized state machine as its data.
    snapshot: Snapshot,
    /// Entries after the snapshot, contiguous from `snapshot index + 1`.
    entries: Vec<Entry>,
}

impl Core {
    fn snap_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    fn first_index(&self) -> u64 {
        self.snap_index() + 1
    }

    fn last_index(&self) -> u64 {
        self.snap_index() + self.entries.len() as u64
    }

    fn append(&mut self, ents: &[Entry]) {
        let first = self.first_index();
        let ents: Vec<Entry> = ents.iter().filter(|e| e.index >= first).cloned().collect();
        let Some(head) = ents.first() else { return };
        let keep = (head.index - first) as usize;
        self.entries.truncate(keep);
        self.entries.extend(ents);
    }
}

/// Makes a snapshot of the state machine as applied right now: (data,
/// applied index). None when the state did not serialize: the source has
/// told the driver, which stops; the stored snapshot is served meanwhile.
pub type SnapshotSource = Arc<dyn Fn() -> Option<(Vec<u8>, u64)> + Send + Sync>;

/// The store raft-rs reads from; cheap to clone (shared).
#[derive(Clone)]
pub struct LogStore {
    core: Arc<RwLock<Core>>,
    db: Arc<Database>,
    source: Arc<RwLock<Option<SnapshotSource>>>,
}

/// What was on disk when the store was opened.
pub struct Recovered {
    pub store: LogStore,
    /// True when the data dir held no Raft state: the cluster must be formed.
    pub fresh: bool,
    /// Index and data of the latest snapshot (empty data when none).
    pub snapshot_index: u64,
    pub snapshot_data: Vec<u8>,
}

impl LogStore {
    pub fn open(path: &Path) -> Result<Recovered, StorageError> {
        let db = Database::create(path).map_err(|source| StorageError::Open {
            path: path.display().to_string(),
            source,
        })?;
        let mut core = Core::default();
        let mut fresh = true;
        {
            let txn = db.begin_write().map_err(write_err)?;
            {
                // Make sure the tables exist so a read transaction can open them.
                txn.open_table(ENTRIES).map_err(write_err)?;
                txn.open_table(META).map_err(write_err)?;
            }
            txn.commit().map_err(write_err)?;
            let txn = db.begin_read().map_err(read_err)?;
            let meta = txn.open_table(META).map_err(read_err)?;
            let load = |key: &str| -> Result<Option<Vec<u8>>, StorageError> {
                Ok(meta.get(key).map_err(read_err)?.map(|v| v.value().to_vec()))
            };
            if let Some(b) = load(SNAPSHOT)? {
                core.snapshot = Snapshot::parse_from_bytes(&b)
                    .map_err(|e| StorageError::Corrupt(SNAPSHOT.into(), e))?;
                fresh = false;
            }
            if let Some(b) = load(HARD_STATE)? {
                core.hard_state = HardState::parse_from_bytes(&b)
                    .map_err(|e| StorageError::Corrupt(HARD_STATE.into(), e))?;
                fresh = false;
            }
            if let Some(b) = load(CONF_STATE)? {
                core.conf_state = ConfState::parse_from_bytes(&b)
                    .map_err(|e| StorageError::Corrupt(CONF_STATE.into(), e))?;
                fresh = false;
            } else if core.snapshot.has_metadata() {
                core.conf_state = core.snapshot.get_metadata().get_conf_state().clone();
            }
            let table = txn.open_table(ENTRIES).map_err(read_err)?;
            let first = core.first_index();
            for row in table.range(first..).map_err(read_err)? {
                let (k, v) = row.map_err(read_err)?;
                let e = Entry::parse_from_bytes(v.value())
                    .map_err(|e| StorageError::Corrupt(format!("entry {}", k.value()), e))?;
                if e.index != core.last_index() + 1 {
                    break; // a gap means the tail was never acknowledged; raft re-replicates it
                }
                core.entries.push(e);
                fresh = false;
            }
        }
        let snapshot_index = core.snap_index();
        let snapshot_data = core.snapshot.get_data().to_vec();
        Ok(Recovered {
            store: LogStore {
                core: Arc::new(RwLock::new(core)),
                db: Arc::new(db),
                source: Arc::default(),
            },
            fresh,
            snapshot_index,
            snapshot_data,
        })
    }

    /// Lets `snapshot()` serve the live state to a follower that needs one,
    /// so what it receives includes the current membership.
    pub fn set_snapshot_source(&self, source: SnapshotSource) {
        *self.source.write().unwrap_or_else(|p| p.into_inner()) = Some(source);
    }

    fn rl(&self) -> RwLockReadGuard<'_, Core> {
        self.core.read().unwrap_or_else(|p| p.into_inner())
    }

    fn wl(&self) -> RwLockWriteGuard<'_, Core> {
        self.core.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Durably records new entries and/or a new hard state, in one transaction.
    pub fn persist(
        &self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(), StorageError> {
        if entries.is_empty() && hard_state.is_none() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(write_err)?;
        {
            if let Some(first) = entries.first() {
                let mut table = txn.open_table(ENTRIES).map_err(write_err)?;
                table
                    .retain_in(first.index.., |_, _| false)
                    .map_err(write_err)?;
                for e in entries {
                    let bytes = e.write_to_bytes().map_err(write_err)?;
                    table.insert(e.index, bytes.as_slice()).map_err(write_err)?;
                }
            }
            if let Some(hs) = hard_state {
                let mut meta = txn.open_table(META).map_err(write_err)?;
                let bytes = hs.write_to_bytes().map_err(write_err)?;
                meta.insert(HARD_STATE, bytes.as_slice())
                    .map_err(write_err)?;
            }
        }
        txn.commit().map_err(write_err)?;
        let mut core = self.wl();
        core.append(entries);
        if let Some(hs) = hard_state {
            core.hard_state = hs.clone();
        }
        Ok(())
    }

    /// Records a new commit index (from a light ready).
    pub fn set_commit(&self, commit: u64) -> Result<(), StorageError> {
        let mut hs = self.rl().hard_state.clone();
        hs.commit = commit;
        self.persist(&[], Some(&hs))
    }

    pub fn set_conf_state(&self, cs: &ConfState) -> Result<(), StorageError> {
        let txn = self.db.begin_write().map_err(write_err)?;
        {
            let mut meta = txn.open_table(META).map_err(write_err)?;
            let bytes = cs.write_to_bytes().map_err(write_err)?;
            meta.insert(CONF_STATE, bytes.as_slice())
                .map_err(write_err)?;
        }
        txn.commit().map_err(write_err)?;
        self.wl().conf_state = cs.clone();
        Ok(())
    }

    pub fn conf_state(&self) -> ConfState {
        self.rl().conf_state.clone()
    }

    pub fn snapshot_index(&self) -> u64 {
        self.rl().snap_index()
    }

    /// Installs a snapshot: either one received from the leader (replacing the
    /// log) or one taken locally at an applied index (compacting the log).
    pub fn install_snapshot(&self, snap: &Snapshot) -> Result<(), StorageError> {
        let meta = snap.get_metadata();
        let index = meta.index;
        let txn = self.db.begin_write().map_err(write_err)?;
        {
            let mut m = txn.open_table(META).map_err(write_err)?;
            let bytes = snap.write_to_bytes().map_err(write_err)?;
            m.insert(SNAPSHOT, bytes.as_slice()).map_err(write_err)?;
            let cs = meta.get_conf_state().write_to_bytes().map_err(write_err)?;
            m.insert(CONF_STATE, cs.as_slice()).map_err(write_err)?;
            let mut table = txn.open_table(ENTRIES).map_err(write_err)?;
            table.retain_in(..=index, |_, _| false).map_err(write_err)?;
        }
        txn.commit().map_err(write_err)?;
        let mut core = self.wl();
        let keep_from = (index + 1).saturating_sub(core.first_index()) as usize;
        let keep_from = keep_from.min(core.entries.len());
        let entry_matches = keep_from > 0
            && core
                .entries
                .get(keep_from - 1)
                .is_some_and(|e| e.term == meta.term);
        if entry_matches {
            core.entries.drain(..keep_from);
        } else {
            core.entries.clear();
        }
        core.hard_state.commit = core.hard_state.commit.max(index);
        core.hard_state.term = core.hard_state.term.max(meta.term);
        core.conf_state = meta.get_conf_state().clone();
        core.snapshot = snap.clone();
        Ok(())
    }
}

impl raft::Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let core = self.rl();
        Ok(RaftState {
            hard_state: core.hard_state.clone(),
            conf_state: core.conf_state.clone(),
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let core = self.rl();
        if low < core.first_index() {
            return Err(raft::Error::Store(RaftStorageError::Compacted));
        }
        if high > core.last_index() + 1 {
            return Err(raft::Error::Store(RaftStorageError::Unavailable));
        }
        let offset = core.first_index();
        let mut ents = core.entries[(low - offset) as usize..(high - offset) as usize].to_vec();
        raft::util::limit_size(&mut ents, max_size.into());
        Ok(ents)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let core = self.rl();
        let snap = core.snapshot.get_metadata();
        if idx == snap.index {
            return Ok(snap.term);
        }
        if idx < core.first_index() {
            return Err(raft::Error::Store(RaftStorageError::Compacted));
        }
        if idx > core.last_index() {
            return Err(raft::Error::Store(RaftStorageError::Unavailable));
        }
        Ok(core.entries[(idx - core.first_index()) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.rl().first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.rl().last_index())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let source = self
            .source
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        // Called on the Raft thread, so state, applied index and conf
        // state are consistent with each other.
        if let Some((data, applied)) = source.and_then(|source| source())
            && applied >= request_index
            && applied >= self.rl().snap_index()
        {
            let term = self.term(applied)?;
            let mut snap = Snapshot {
                data: data.into(),
                ..Default::default()
            };
            let meta = snap.mut_metadata();
            meta.index = applied;
            meta.term = term;
            meta.set_conf_state(self.rl().conf_state.clone());
            return Ok(snap);
        }
        let core = self.rl();
        if core.snap_index() < request_index {
            return Err(raft::Error::Store(
                RaftStorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(core.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage as _;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8].into(),
            ..Default::default()
        }
    }

    #[test]
    fn survives_reopen_and_truncates_conflicts() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("raft.redb");
        {
            let r = LogStore::open(&path)?;
            assert!(r.fresh);
            let hs = HardState {
                term: 2,
                commit: 2,
                ..Default::default()
            };
            r.store
                .persist(&[entry(1, 1), entry(2, 1), entry(3, 1)], Some(&hs))?;
            r.store.persist(&[entry(3, 2), entry(4, 2)], None)?;
        }
        let r = LogStore::open(&path)?;
        assert!(!r.fresh);
        assert_eq!(r.store.last_index()?, 4);
        assert_eq!(r.store.term(3)?, 2);
        assert_eq!(r.store.initial_state()?.hard_state.commit, 2);
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = 3;
        snap.mut_metadata().term = 2;
        snap.data = b"state".to_vec().into();
        r.store.install_snapshot(&snap)?;
        drop(r);
        let r = LogStore::open(&path)?;
        assert_eq!(r.snapshot_index, 3);
        assert_eq!(r.snapshot_data, b"state");
        assert_eq!(r.store.first_index()?, 4);
        assert_eq!(r.store.term(3)?, 2);
        assert_eq!(
            r.store
                .entries(4, 5, None, GetEntriesContext::empty(false))?
                .len(),
            1
        );
        Ok(())
    }
}
