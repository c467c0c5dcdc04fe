//! A new cluster from a backup (`ferry-coordinator restore`): the backup's
//! state becomes the founding snapshot of an empty data dir, with this
//! member as the one voter, its address as the only member's, and a new
//! cluster id, so members of the cluster the backup came from are refused
//! by this one. Start the member on that data dir as usual afterwards.

use std::path::Path;

use raft::eraftpb::{ConfState, HardState, Snapshot};
use thiserror::Error;

use super::storage::{LogStore, StorageError};
use ferry_state::backup::{BackupError, BackupHeader};
use ferry_state::{ClusterState, StateCodecError};

#[derive(Debug, Error)]
pub enum RestoreError {
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the restored state: {0}")]
    State(#[from] StateCodecError),
    #[error("cannot make the data dir {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error(
        "{0} already holds Raft state: restore only into an empty data dir (a new cluster), never over a member's"
    )]
    NotEmpty(String),
}

/// What a restore made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub header: BackupHeader,
    pub cluster_id: String,
}

/// Writes the founding snapshot of a new cluster from backup file `bytes`
/// into `data_dir`: member `id` at `address` is its one voter, and
/// `cluster_id` its new id. Nothing is written unless the backup reads
/// whole (format, size, checksum, state) and the data dir is empty.
pub fn restore(
    bytes: &[u8],
    data_dir: &Path,
    id: u64,
    address: &str,
    cluster_id: &str,
) -> Result<Restored, RestoreError> {
    let (header, mut state): (BackupHeader, ClusterState) = ferry_state::backup::decode(bytes)?;
    std::fs::create_dir_all(data_dir).map_err(|e| RestoreError::Backup(BackupError::Io(e)))?;
    let path = data_dir.join("raft.redb");
    let recovered = LogStore::open(&path)?;
    if !recovered.fresh {
        return Err(RestoreError::NotEmpty(data_dir.display().to_string()));
    }
    state.members = [(id, address.to_string())].into();
    state.cluster_id = cluster_id.to_string();
    let index = header.index.max(1);
    let term = header.term.max(1);
    let voters = ConfState {
        voters: vec![id],
        ..Default::default()
    };
    let mut snap = Snapshot {
        data: state.to_snapshot()?.into(),
        ..Default::default()
    };
    let meta = snap.mut_metadata();
    meta.index = index;
    meta.term = term;
    meta.set_conf_state(voters.clone());
    let store = recovered.store;
    store.install_snapshot(&snap)?;
    store.set_conf_state(&voters)?;
    // The log starts at the snapshot: its term and commit point are the
    // backup's, so this member's first term as leader comes after them.
    store.persist(
        &[],
        Some(&HardState {
            term,
            commit: index,
            ..Default::default()
        }),
    )?;
    Ok(Restored {
        header,
        cluster_id: cluster_id.to_string(),
    })
}
