//! The execution state machine as pure functions: given a pipeline version and
//! the recorded progress of one execution, decide which actions start next and
//! what the execution's status is. No clock, no I/O: callers pass `now` (unix
//! milliseconds) so that the coordinator's Raft `apply` stays deterministic.
//!
//! - `status`: the statuses of an execution and of an action.
//! - `action_run`: the recorded progress of one action and its attempts.
//! - `state`: [`ExecutionState`], the recorded progress of one execution,
//!   and what can be read off it (stage statuses, where it waits).
//! - `advance`: moving an execution forward, starting actions, recording
//!   their ends.
//! - `references`: the values of `#{...}` references and `when:`
//!   conditions for one execution.
//! - `steer`: what a person does to an execution (stop, retry) and what a
//!   newer execution does to a waiting one (supersede).

mod action_run;
mod advance;
mod references;
mod state;
mod status;
mod steer;
#[cfg(test)]
mod tests;

pub use action_run::{
    ActionRun, ArtifactRef, AttemptRecord, Decision, Outcome, Round, is_blob_digest,
};
pub use state::{ExecutionState, Gates, Started};
pub use status::{ActionStatus, ExecutionStatus};
pub use steer::{SteerError, StopRequest};
