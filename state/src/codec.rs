//! The cluster state as bytes: the JSON of snapshots, and the digest members
//! compare. A state that does not serialize, or a snapshot that does not
//! decode, is an error the Raft driver treats as fatal — never an empty
//! default, which would install an empty snapshot, compact the log behind
//! it and lose the cluster's state.

use std::io::Write as _;

use sha2::Digest as _;
use thiserror::Error;

use super::ClusterState;

#[derive(Debug, Error)]
pub enum StateCodecError {
    #[error("the cluster state does not serialize to JSON: {0}")]
    Encode(serde_json::Error),
    #[error("the cluster state does not decode from JSON: {0}")]
    Decode(serde_json::Error),
}

impl ClusterState {
    /// The state as a snapshot's data.
    pub fn to_snapshot(&self) -> Result<Vec<u8>, StateCodecError> {
        serde_json::to_vec(self).map_err(StateCodecError::Encode)
    }

    /// The state a snapshot's data holds.
    pub fn from_snapshot(bytes: &[u8]) -> Result<ClusterState, StateCodecError> {
        serde_json::from_slice(bytes).map_err(StateCodecError::Decode)
    }

    /// A stable digest of the whole state (sha256 of its snapshot JSON, hex),
    /// to compare members.
    pub fn digest(&self) -> Result<String, StateCodecError> {
        let mut hasher = sha2::Sha256::new();
        serde_json::to_writer(&mut hasher, self).map_err(StateCodecError::Encode)?;
        hasher
            .flush()
            .map_err(|e| StateCodecError::Encode(serde_json::Error::io(e)))?;
        Ok(hex::encode(hasher.finalize()))
    }
}
