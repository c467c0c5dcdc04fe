//! A backup of the cluster state as a file: one header line (JSON: the
//! format, the cluster id, the Raft index and term it was taken at, the
//! version that took it, when, and the size and SHA-256 of the state), then
//! the state's snapshot bytes. Sealed secrets stay sealed: the file holds the
//! state as it is replicated, and the cluster's secrets key is not in it.
//!
//! Reading checks everything before the state is used: the format, the
//! header's bounds, the size and the checksum, then the state's own decoding.

use std::io::Write;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use thiserror::Error;

use crate::{ClusterState, StateCodecError};

/// The format this version writes and reads.
pub const FORMAT: &str = "ferry-backup/1";

/// Longest header line read (the header is a few hundred bytes).
const MAX_HEADER: usize = 64 * 1024;

/// What a backup says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupHeader {
    pub format: String,
    /// The cluster it was taken from ("" for one formed before cluster ids).
    pub cluster_id: String,
    /// The Raft index and term of the applied state it holds: everything
    /// committed up to `index` is in it.
    pub index: u64,
    pub term: u64,
    /// The version of the member that took it.
    pub version: String,
    /// Unix milliseconds.
    pub taken_at: i64,
    /// Bytes of the state after the header line, and their SHA-256 (hex).
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Error)]
pub enum BackupError {
    #[error("not a Ferry backup: {0}")]
    NotABackup(String),
    #[error("backup format `{0}` is not one this version reads ({FORMAT})")]
    Format(String),
    #[error(
        "the backup is truncated or padded: its header says {expected} bytes of state, it holds {found}"
    )]
    Size { expected: u64, found: u64 },
    #[error("the backup is corrupt: its state's SHA-256 is {found}, its header says {expected}")]
    Checksum { expected: String, found: String },
    #[error("the backup's state: {0}")]
    State(#[from] StateCodecError),
    #[error("writing the backup: {0}")]
    Io(#[from] std::io::Error),
}

/// Hex SHA-256 of `bytes`.
fn sha256(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The backup file of `state` (a snapshot's bytes), taken at `index` and
/// `term` by `version` at `taken_at`.
pub fn encode(
    state: &[u8],
    cluster_id: &str,
    (index, term): (u64, u64),
    version: &str,
    taken_at: i64,
) -> Result<Vec<u8>, BackupError> {
    let header = BackupHeader {
        format: FORMAT.to_string(),
        cluster_id: cluster_id.to_string(),
        index,
        term,
        version: version.to_string(),
        taken_at,
        size: state.len() as u64,
        sha256: sha256(state),
    };
    let mut out = Vec::with_capacity(state.len() + 512);
    serde_json::to_writer(&mut out, &header)
        .map_err(|e| BackupError::Io(std::io::Error::other(e)))?;
    out.push(b'\n');
    out.write_all(state)?;
    Ok(out)
}

/// The header and the state of backup file `bytes`, each checked.
pub fn decode(bytes: &[u8]) -> Result<(BackupHeader, ClusterState), BackupError> {
    let end = bytes
        .iter()
        .take(MAX_HEADER)
        .position(|b| *b == b'\n')
        .ok_or_else(|| BackupError::NotABackup("no header line".into()))?;
    let header: BackupHeader = serde_json::from_slice(&bytes[..end])
        .map_err(|e| BackupError::NotABackup(format!("its header does not read: {e}")))?;
    if header.format != FORMAT {
        return Err(BackupError::Format(
            header.format.chars().take(64).collect(),
        ));
    }
    let state = &bytes[end + 1..];
    if state.len() as u64 != header.size {
        return Err(BackupError::Size {
            expected: header.size,
            found: state.len() as u64,
        });
    }
    let found = sha256(state);
    if found != header.sha256 {
        return Err(BackupError::Checksum {
            expected: header.sha256.chars().take(64).collect(),
            found,
        });
    }
    let state = ClusterState::from_snapshot(state)?;
    Ok((header, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup() -> Vec<u8> {
        let state = crate::testing::applied(crate::testing::YAML);
        let bytes = state.to_snapshot().unwrap_or_else(|e| panic!("{e}"));
        encode(&bytes, "c1", (42, 3), "0.1.0", 1_000).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_backup_reads_back_whole() {
        let (header, state) = decode(&backup()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((header.index, header.term), (42, 3));
        assert_eq!(header.cluster_id, "c1");
        assert_eq!(state, crate::testing::applied(crate::testing::YAML));
    }

    #[test]
    fn a_damaged_backup_is_refused_before_its_state_is_read() {
        let good = backup();
        let mut flipped = good.clone();
        let last = flipped.len() - 2;
        flipped[last] ^= 0x20;
        assert!(matches!(
            decode(&flipped),
            Err(BackupError::Checksum { .. })
        ));
        assert!(matches!(
            decode(&good[..good.len() - 1]),
            Err(BackupError::Size { .. })
        ));
        assert!(matches!(decode(b"hello"), Err(BackupError::NotABackup(_))));
        let other = String::from_utf8_lossy(&good).replacen(FORMAT, "ferry-backup/9", 1);
        assert!(matches!(
            decode(other.as_bytes()),
            Err(BackupError::Format(f)) if f == "ferry-backup/9"
        ));
    }
}
