//! What a person does to one execution: stop it (letting running actions
//! finish, or abandoning them) and retry a stage of it; and what a newer
//! execution does to a waiting one: supersede it. Each refuses with a
//! [`SteerError`] and leaves the execution unchanged, or changes it and
//! advances it.

use serde::{Deserialize, Serialize};

use super::{ActionRun, ActionStatus, ExecutionState, ExecutionStatus, Gates, Outcome, Started};
use crate::{ActionKind, Pipeline};

/// A person's request to stop an execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopRequest {
    pub by: String,
    pub reason: String,
    /// Cancel running attempts at once instead of letting them finish.
    pub abandon: bool,
    pub at: i64,
}

impl StopRequest {
    /// What stopped actions and reports say.
    pub fn message(&self) -> String {
        if self.reason.is_empty() {
            format!("stopped by {}", self.by)
        } else {
            format!("stopped by {}: {}", self.by, self.reason)
        }
    }
}

/// Why a stop or a retry was refused; the execution is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SteerError {
    #[error("the execution already ended {0}; only a running execution can be stopped")]
    AlreadyEnded(ExecutionStatus),
    #[error("the execution is already stopping{0}")]
    AlreadyStopping(&'static str),
    #[error("the execution is {0}; only a failed or stopped execution can be retried")]
    NotRetryable(ExecutionStatus),
    #[error("stage `{0}` has not succeeded yet; retry that stage first")]
    EarlierStage(String),
    #[error("stage `{0}` succeeded; there is nothing to retry")]
    StageSucceeded(String),
    #[error("action `{0}` is still running; retry once it has ended")]
    StillRunning(String),
    #[error("there is no stage {0}")]
    NoSuchStage(usize),
}

impl ExecutionState {
    /// A person stops the execution. Without `abandon`, running actions
    /// finish on their own; with it, running build and test attempts end
    /// `Stopped` at once (their agents are told to cancel them), and a
    /// running deployment keeps its attempt until its agent reports how it
    /// stopped and rolled back. Returns the epochs of the attempts it ended.
    pub fn stop(
        &mut self,
        pipeline: &Pipeline,
        request: StopRequest,
        now: i64,
    ) -> Result<Vec<u64>, SteerError> {
        if self.status.is_final() {
            return Err(SteerError::AlreadyEnded(self.status));
        }
        match &self.stop {
            Some(s) if s.abandon => return Err(SteerError::AlreadyStopping(" (abandoned)")),
            Some(_) if !request.abandon => return Err(SteerError::AlreadyStopping("")),
            _ => {}
        }
        let message = request.message();
        let mut ended = Vec::new();
        if request.abandon {
            for (si, stage) in self.actions.iter_mut().enumerate() {
                for (ai, run) in stage.iter_mut().enumerate() {
                    let deploys = pipeline
                        .stages
                        .get(si)
                        .and_then(|s| s.actions.get(ai))
                        .is_some_and(|a| a.kind == ActionKind::Deploy);
                    if !run.is_running() || deploys {
                        continue;
                    }
                    ended.push(run.epoch);
                    run.close_attempt(run.epoch, Outcome::Stopped, None, &message, now);
                    run.status = Some(ActionStatus::Stopped);
                    run.finished_at = Some(now);
                    run.message = message.clone();
                }
            }
        }
        self.stop = Some(request);
        self.wind_down(now);
        Ok(ended)
    }

    /// Re-runs stage `stage` of a failed or stopped execution: its actions
    /// that did not succeed (or, with `all`, every one of them) start a new
    /// round, keeping their earlier attempts; the execution runs again
    /// from there.
    pub fn retry(
        &mut self,
        pipeline: &Pipeline,
        stage: usize,
        all: bool,
        gates: &Gates,
        now: i64,
    ) -> Result<Started, SteerError> {
        if !matches!(
            self.status,
            ExecutionStatus::Failed | ExecutionStatus::Stopped
        ) {
            return Err(SteerError::NotRetryable(self.status));
        }
        let name = |si: usize| {
            pipeline
                .stages
                .get(si)
                .map(|s| s.name.clone())
                .unwrap_or_default()
        };
        if stage >= self.actions.len() {
            return Err(SteerError::NoSuchStage(stage));
        }
        if let Some(earlier) = (0..stage).find(|si| !self.stage_status(*si).is_done()) {
            return Err(SteerError::EarlierStage(name(earlier)));
        }
        if self.stage_status(stage).is_done() {
            return Err(SteerError::StageSucceeded(name(stage)));
        }
        if let Some((si, ai)) = self.actions.iter().enumerate().find_map(|(si, runs)| {
            runs.iter()
                .position(ActionRun::is_running)
                .map(|ai| (si, ai))
        }) {
            let action = pipeline
                .stages
                .get(si)
                .and_then(|s| s.actions.get(ai))
                .map(|a| format!("{}/{}", name(si), a.name))
                .unwrap_or_default();
            return Err(SteerError::StillRunning(action));
        }
        for run in self.actions.iter_mut().skip(stage).flatten() {
            if all || !run.status().is_done() {
                run.reset();
            }
        }
        self.status = ExecutionStatus::InProgress;
        self.finished_at = None;
        self.stop = None;
        self.waiting = None;
        self.superseded_by = None;
        Ok(self.advance(pipeline, gates, now))
    }

    /// Ends an execution that waited to enter a stage: a newer one replaced it.
    pub fn supersede(&mut self, by: &str, now: i64) {
        if self.status.is_final() {
            return;
        }
        self.status = ExecutionStatus::Superseded;
        self.superseded_by = Some(by.to_string());
        self.waiting = None;
        self.finished_at = Some(now);
    }
}
