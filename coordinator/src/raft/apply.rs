//! Applying committed entries: each command entry goes to the state
//! machine in log order and its outcome back to the local proposer waiting
//! on it; membership entries go to `membership.rs`.

use raft::eraftpb::{Entry, EntryType};

use super::driver::{Driver, NodeError, split_ctx};
use super::handle::ProposeError;
use ferry_state::{Command, Output};

impl Driver {
    pub(super) fn apply_entries(&mut self, entries: Vec<Entry>) -> Result<(), NodeError> {
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
}
