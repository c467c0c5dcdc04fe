//! The status of a whole execution and of one action (from which a
//! stage's is derived).

use serde::{Deserialize, Serialize};

/// Status of a whole execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecutionStatus {
    InProgress,
    /// Stopped by a person; actions still running finish (or, abandoned,
    /// wind down) and nothing new starts.
    Stopping,
    Succeeded,
    Failed,
    /// Stopped by a person, and nothing of it runs any more.
    Stopped,
    /// Replaced by a newer execution while it waited to enter a stage.
    Superseded,
}

impl ExecutionStatus {
    /// True once the execution can no longer change (until a retry).
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            ExecutionStatus::InProgress | ExecutionStatus::Stopping
        )
    }
}

/// Status of one action (and, derived, of one stage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActionStatus {
    Pending,
    InProgress,
    WaitingForApproval,
    Succeeded,
    Failed,
    /// Stopped by a person before it ended on its own.
    Stopped,
    /// Not run: its (or its stage's) `when:` did not hold.
    Skipped,
}

impl ActionStatus {
    /// True once the action can no longer change (until a retry).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ActionStatus::Succeeded
                | ActionStatus::Failed
                | ActionStatus::Stopped
                | ActionStatus::Skipped
        )
    }

    /// Done in a way that lets the execution go on: succeeded or skipped.
    pub fn is_done(self) -> bool {
        matches!(self, ActionStatus::Succeeded | ActionStatus::Skipped)
    }
}

macro_rules! display_as_debug {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Debug::fmt(self, f)
            }
        }
    )*};
}
display_as_debug!(ExecutionStatus, ActionStatus);
