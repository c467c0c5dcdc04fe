//! [`ExecutionState`], the recorded progress of one execution, the gates
//! that keep it out of stages and what can be read off it: the status of
//! each stage, the stage it is in or waits before, what it produced.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ActionRun, ActionStatus, ArtifactRef, ExecutionStatus, StopRequest};
use crate::Pipeline;
use crate::condition::SourceRef;

/// Recorded progress of one execution: `actions[stage][action]` mirrors the
/// pipeline version the execution started with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionState {
    pub status: ExecutionStatus,
    pub actions: Vec<Vec<ActionRun>>,
    pub finished_at: Option<i64>,
    /// Set once a person stopped the execution (cleared by a retry).
    #[serde(default)]
    pub stop: Option<StopRequest>,
    /// Why the execution waits to enter its next stage, while it does.
    #[serde(default)]
    pub waiting: Option<String>,
    /// The newer execution that replaced this one (status `Superseded`).
    #[serde(default)]
    pub superseded_by: Option<String>,
    /// Its pipeline variables: the defaults, with `--var` overrides.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// The branch or tag it started from (`when:` conditions match it);
    /// none when it started from a bare commit.
    #[serde(default)]
    pub source: Option<SourceRef>,
    /// Automatic retries each stage used so far (`on_failure: {retry: N}`).
    #[serde(default)]
    pub stage_retries: BTreeMap<usize, u32>,
    /// The outputs of the upstream executions that started it, as
    /// `UPSTREAM.OUTPUT` (`source: {pipeline: ...}`); empty (and left out
    /// of the stored form) otherwise.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub upstream_outputs: BTreeMap<String, ArtifactRef>,
}

/// Which stages an execution may enter now: a stage not in `closed` is
/// open. The coordinator derives them from the pipeline's transitions and
/// execution mode; the execution itself only obeys them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gates {
    /// Stage index → why it cannot be entered now.
    pub closed: BTreeMap<usize, String>,
}

impl Gates {
    /// Every stage open (a parallel pipeline with every transition enabled).
    pub fn open() -> Gates {
        Gates::default()
    }
}

/// What `advance` started, so the caller can schedule or notify.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Started {
    /// Build/test actions now queued for an agent.
    pub queued: Vec<(usize, usize)>,
    /// Approval actions now waiting for a person.
    pub approvals: Vec<(usize, usize)>,
}

impl ExecutionState {
    /// A fresh execution: every action pending.
    pub fn new(pipeline: &Pipeline) -> Self {
        ExecutionState {
            status: ExecutionStatus::InProgress,
            actions: pipeline
                .stages
                .iter()
                .map(|s| vec![ActionRun::default(); s.actions.len()])
                .collect(),
            finished_at: None,
            stop: None,
            waiting: None,
            superseded_by: None,
            variables: pipeline
                .variables
                .iter()
                .map(|(name, v)| (name.clone(), v.default.clone()))
                .collect(),
            source: None,
            stage_retries: BTreeMap::new(),
            upstream_outputs: BTreeMap::new(),
        }
    }

    pub fn action(&self, stage: usize, action: usize) -> Option<&ActionRun> {
        self.actions.get(stage).and_then(|s| s.get(action))
    }

    pub fn action_mut(&mut self, stage: usize, action: usize) -> Option<&mut ActionRun> {
        self.actions.get_mut(stage).and_then(|s| s.get_mut(action))
    }

    /// Whether new actions may still start: running and not stopped.
    pub fn accepts_work(&self) -> bool {
        self.status == ExecutionStatus::InProgress && self.stop.is_none()
    }

    /// Whether an agent runs some action of it right now.
    pub fn has_running(&self) -> bool {
        self.actions.iter().flatten().any(ActionRun::is_running)
    }

    /// Derived status of a stage.
    pub fn stage_status(&self, stage: usize) -> ActionStatus {
        let Some(runs) = self.actions.get(stage) else {
            return ActionStatus::Pending;
        };
        // One pass: a stage may hold a thousand actions, and this is asked
        // for every result.
        const STATUSES: usize = ActionStatus::Skipped as usize + 1;
        let mut seen = [false; STATUSES];
        let (mut all_skipped, mut all_done) = (true, true);
        for r in runs {
            let status = r.status();
            seen[status as usize] = true;
            all_skipped &= status == ActionStatus::Skipped;
            all_done &= status.is_done();
        }
        let any = |status: ActionStatus| seen[status as usize];
        if any(ActionStatus::Failed) {
            ActionStatus::Failed
        } else if all_skipped {
            ActionStatus::Skipped
        } else if all_done {
            ActionStatus::Succeeded
        } else if any(ActionStatus::WaitingForApproval) {
            ActionStatus::WaitingForApproval
        } else if any(ActionStatus::InProgress) {
            ActionStatus::InProgress
        } else if any(ActionStatus::Stopped) {
            ActionStatus::Stopped
        } else if any(ActionStatus::Succeeded) || any(ActionStatus::Skipped) {
            // Some succeeded, the rest were never started (a stop came between).
            if self.stop.is_some() {
                ActionStatus::Stopped
            } else {
                ActionStatus::InProgress
            }
        } else {
            ActionStatus::Pending
        }
    }

    /// The first stage that has not succeeded, if any.
    pub fn current_stage(&self) -> Option<usize> {
        (0..self.actions.len()).find(|si| !self.stage_status(*si).is_done())
    }

    /// Whether the execution is inside stage `stage` (started some of it
    /// and has not finished it), so that it holds the stage.
    pub fn is_in_stage(&self, stage: usize) -> bool {
        !self.status.is_final()
            && self.current_stage() == Some(stage)
            && self.stage_status(stage) != ActionStatus::Pending
    }

    /// The stage the execution waits to enter, if it is running and waits.
    pub fn waits_before(&self) -> Option<usize> {
        if !self.accepts_work() {
            return None;
        }
        self.current_stage()
            .filter(|si| self.stage_status(*si) == ActionStatus::Pending)
    }

    /// Artifacts produced so far, by output name, with the upstream
    /// executions' outputs it started with (`UPSTREAM.OUTPUT`).
    pub fn produced(&self) -> BTreeMap<&str, &ArtifactRef> {
        self.upstream_outputs
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .chain(
                self.actions
                    .iter()
                    .flatten()
                    .flat_map(|r| r.outputs.iter().map(|(k, v)| (k.as_str(), v))),
            )
            .collect()
    }
}
