//! The cluster state as bytes: the JSON of snapshots, and the digest members
//! compare. A state that does not serialize, or a snapshot that does not
//! decode, is an error the Raft driver treats as fatal — never an empty
//! default, which would install an empty snapshot, compact the log behind
//! it and lose the cluster's state.
//!
//! Snapshots carry a format number (`{"format": N, "state": ...}`) and are
//! read through migrations, as garage's versioned tables are: a reader
//! knows every earlier format and turns it into the current one
//! ([`ClusterState::from_snapshot`]); a format newer than it knows is an
//! error that names it, not a guess.
//!
//! - Format 1: the state's JSON alone, as every snapshot before formats
//!   were numbered was written.
//! - Format 2: the same state in the envelope. Nothing in the state changed:
//!   the envelope is what lets the next change be a migration.

use std::io::Write as _;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use thiserror::Error;

use super::ClusterState;

/// The snapshot format this version writes.
pub const SNAPSHOT_FORMAT: u32 = 2;

#[derive(Debug, Error)]
pub enum StateCodecError {
    #[error("the cluster state does not serialize to JSON: {0}")]
    Encode(serde_json::Error),
    #[error("the cluster state does not decode from JSON: {0}")]
    Decode(serde_json::Error),
    #[error(
        "the snapshot is in format {0}, newer than this version reads ({SNAPSHOT_FORMAT}): upgrade this member"
    )]
    NewerFormat(u32),
    #[error("the snapshot names format {0}, which no version of Ferry wrote")]
    UnknownFormat(u32),
}

/// How a snapshot is written.
#[derive(Serialize)]
struct Envelope<'a> {
    format: u32,
    state: &'a ClusterState,
}

/// A snapshot's format number, if it has one (format 1 has none).
#[derive(Deserialize)]
struct Probe {
    format: Option<u32>,
}

/// Format 2 as read.
#[derive(Deserialize)]
struct Format2 {
    state: ClusterState,
}

impl ClusterState {
    /// The state as a snapshot's data (format [`SNAPSHOT_FORMAT`]).
    pub fn to_snapshot(&self) -> Result<Vec<u8>, StateCodecError> {
        serde_json::to_vec(&Envelope {
            format: SNAPSHOT_FORMAT,
            state: self,
        })
        .map_err(StateCodecError::Encode)
    }

    /// The state a snapshot's data holds, in any format this version knows,
    /// migrated to the current one.
    pub fn from_snapshot(bytes: &[u8]) -> Result<ClusterState, StateCodecError> {
        let probe: Probe = serde_json::from_slice(bytes).map_err(StateCodecError::Decode)?;
        match probe.format {
            // Format 1: the bare state (its fields include no `format`).
            None => serde_json::from_slice(bytes).map_err(StateCodecError::Decode),
            // Format 2 holds the same state as format 1.
            Some(2) => serde_json::from_slice::<Format2>(bytes)
                .map(|f| f.state)
                .map_err(StateCodecError::Decode),
            Some(newer) if newer > SNAPSHOT_FORMAT => Err(StateCodecError::NewerFormat(newer)),
            Some(other) => Err(StateCodecError::UnknownFormat(other)),
        }
    }

    /// A stable digest of the whole state (sha256 of its JSON, hex), to
    /// compare members; the same whatever the snapshot format.
    pub fn digest(&self) -> Result<String, StateCodecError> {
        let mut hasher = sha2::Sha256::new();
        serde_json::to_writer(&mut hasher, self).map_err(StateCodecError::Encode)?;
        hasher
            .flush()
            .map_err(|e| StateCodecError::Encode(serde_json::Error::io(e)))?;
        Ok(hex::encode(hasher.finalize()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> ClusterState {
        crate::testing::applied(crate::testing::YAML)
    }

    #[test]
    fn a_snapshot_of_the_previous_format_is_read_and_migrated() {
        // Format 1, as members before numbered formats wrote it.
        let bare = serde_json::to_vec(&state()).unwrap_or_else(|e| panic!("{e}"));
        let read = ClusterState::from_snapshot(&bare).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read, state());
        // Written again, it is in the current format, and reads back.
        let now = read.to_snapshot().unwrap_or_else(|e| panic!("{e}"));
        assert!(now.starts_with(b"{\"format\":2,"));
        assert_eq!(ClusterState::from_snapshot(&now).ok(), Some(state()));
        assert_eq!(read.digest().ok(), state().digest().ok());
    }

    #[test]
    fn a_newer_format_is_refused_by_name() {
        let newer = br#"{"format":3,"state":{}}"#;
        assert!(matches!(
            ClusterState::from_snapshot(newer),
            Err(StateCodecError::NewerFormat(3))
        ));
        assert!(ClusterState::from_snapshot(b"[1,2]").is_err());
    }
}
