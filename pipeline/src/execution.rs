//! The execution state machine as pure functions: given a pipeline version and
//! the recorded progress of one execution, decide which actions start next and
//! what the execution's status is. No clock, no I/O: callers pass `now` (unix
//! milliseconds) so that the coordinator's Raft `apply` stays deterministic.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{ActionKind, Pipeline};

/// Status of a whole execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecutionStatus {
    InProgress,
    Succeeded,
    Failed,
}

/// Status of one action (and, derived, of one stage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActionStatus {
    Pending,
    InProgress,
    WaitingForApproval,
    Succeeded,
    Failed,
}

impl ActionStatus {
    /// True once the action can no longer change.
    pub fn is_final(self) -> bool {
        matches!(self, ActionStatus::Succeeded | ActionStatus::Failed)
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

/// A content-addressed blob and the agents that hold a copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRef {
    pub digest: String,
    pub size: u64,
}

/// How one attempt of an action ended (or that it still runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Running,
    Succeeded,
    Failed,
    /// Its agent stopped answering; the action was re-queued or failed.
    Lost,
}

/// One attempt of an action: which agent, under which fencing epoch, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub epoch: u64,
    pub agent: String,
    pub outcome: Outcome,
    pub exit_code: Option<i32>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub message: String,
}

/// One person's decision on an approval action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub by: String,
    pub approve: bool,
    pub comment: String,
    pub at: i64,
}

/// Recorded progress of one action in one execution.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ActionRun {
    pub status: Option<ActionStatus>,
    /// Number of attempts made so far (0 before the first assignment).
    pub attempt: u32,
    /// Fencing epoch of the current attempt; results from other epochs are refused.
    pub epoch: u64,
    pub agent: Option<String>,
    pub exit_code: Option<i32>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// Why the action failed, or what it waits for.
    pub message: String,
    pub approvals: Vec<Decision>,
    /// Approval deadline (unix ms).
    pub deadline: Option<i64>,
    pub outputs: BTreeMap<String, ArtifactRef>,
    pub log: Option<ArtifactRef>,
    /// Every attempt so far, oldest first.
    #[serde(default)]
    pub history: Vec<AttemptRecord>,
}

impl ActionRun {
    /// Attempts that ended with `outcome`.
    pub fn count(&self, outcome: Outcome) -> u32 {
        self.history.iter().filter(|h| h.outcome == outcome).count() as u32
    }

    /// Closes the record of the attempt with fencing epoch `epoch`.
    pub fn close_attempt(
        &mut self,
        epoch: u64,
        outcome: Outcome,
        exit_code: Option<i32>,
        message: &str,
        now: i64,
    ) {
        if let Some(h) = self.history.iter_mut().rev().find(|h| h.epoch == epoch) {
            h.outcome = outcome;
            h.exit_code = exit_code;
            h.finished_at = Some(now);
            h.message = message.to_string();
        }
    }

    /// Puts the action back in the queue for a new attempt; results from the
    /// old attempt no longer match (its epoch is gone).
    pub fn requeue(&mut self, message: String) {
        self.status = Some(ActionStatus::InProgress);
        self.agent = None;
        self.epoch = 0;
        self.exit_code = None;
        self.message = message;
    }

    pub fn status(&self) -> ActionStatus {
        self.status.unwrap_or(ActionStatus::Pending)
    }

    /// Queued: started by the pipeline but not yet given to an agent.
    pub fn is_queued(&self) -> bool {
        self.status() == ActionStatus::InProgress && self.agent.is_none()
    }
}

/// Recorded progress of one execution: `actions[stage][action]` mirrors the
/// pipeline version the execution started with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionState {
    pub status: ExecutionStatus,
    pub actions: Vec<Vec<ActionRun>>,
    pub finished_at: Option<i64>,
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
        }
    }

    pub fn action(&self, stage: usize, action: usize) -> Option<&ActionRun> {
        self.actions.get(stage).and_then(|s| s.get(action))
    }

    pub fn action_mut(&mut self, stage: usize, action: usize) -> Option<&mut ActionRun> {
        self.actions.get_mut(stage).and_then(|s| s.get_mut(action))
    }

    /// Derived status of a stage.
    pub fn stage_status(&self, stage: usize) -> ActionStatus {
        let Some(runs) = self.actions.get(stage) else {
            return ActionStatus::Pending;
        };
        if runs.iter().any(|r| r.status() == ActionStatus::Failed) {
            ActionStatus::Failed
        } else if runs.iter().all(|r| r.status() == ActionStatus::Succeeded) {
            ActionStatus::Succeeded
        } else if runs
            .iter()
            .any(|r| r.status() == ActionStatus::WaitingForApproval)
        {
            ActionStatus::WaitingForApproval
        } else if runs.iter().any(|r| r.status() != ActionStatus::Pending) {
            ActionStatus::InProgress
        } else {
            ActionStatus::Pending
        }
    }

    /// Moves the execution forward: settles its status and starts the next
    /// group of actions (the lowest `run_order` not yet done in the first
    /// unfinished stage). Idempotent: calling it again starts nothing twice.
    pub fn advance(&mut self, pipeline: &Pipeline, now: i64) -> Started {
        let mut started = Started::default();
        if self.status != ExecutionStatus::InProgress {
            return started;
        }
        if self
            .actions
            .iter()
            .flatten()
            .any(|r| r.status() == ActionStatus::Failed)
        {
            // Let running siblings finish on their own; nothing new starts,
            // and actions still waiting for an agent are not started at all.
            for run in self.actions.iter_mut().flatten() {
                if run.is_queued() {
                    run.status = Some(ActionStatus::Pending);
                    run.started_at = None;
                    run.message = "not started: the execution failed".into();
                }
            }
            self.status = ExecutionStatus::Failed;
            self.finished_at = Some(now);
            return started;
        }
        for (si, stage) in pipeline.stages.iter().enumerate() {
            if self.stage_status(si) == ActionStatus::Succeeded {
                continue;
            }
            // Lowest run_order that still has unfinished actions.
            let Some(order) = stage
                .actions
                .iter()
                .enumerate()
                .filter(|(ai, _)| {
                    self.action(si, *ai)
                        .is_some_and(|r| r.status() != ActionStatus::Succeeded)
                })
                .map(|(_, a)| a.run_order)
                .min()
            else {
                continue;
            };
            for (ai, spec) in stage.actions.iter().enumerate() {
                if spec.run_order != order {
                    continue;
                }
                let Some(run) = self.action_mut(si, ai) else {
                    continue;
                };
                if run.status() != ActionStatus::Pending {
                    continue;
                }
                run.started_at = Some(now);
                match spec.kind {
                    ActionKind::Approval => {
                        run.status = Some(ActionStatus::WaitingForApproval);
                        // The reader caps timeouts far below i64::MAX; a stored spec
                        // from before that cap still must not wrap into the past.
                        let timeout = i64::try_from(spec.timeout_ms).unwrap_or(i64::MAX);
                        run.deadline = Some(now.saturating_add(timeout));
                        run.message = "waiting for approval".into();
                        started.approvals.push((si, ai));
                    }
                    ActionKind::Build | ActionKind::Test | ActionKind::Deploy => {
                        run.status = Some(ActionStatus::InProgress);
                        run.message = "waiting for an agent".into();
                        started.queued.push((si, ai));
                    }
                }
            }
            return started;
        }
        self.status = ExecutionStatus::Succeeded;
        self.finished_at = Some(now);
        started
    }

    /// Records the end of an action and advances the execution.
    pub fn finish_action(
        &mut self,
        pipeline: &Pipeline,
        (stage, action): (usize, usize),
        succeeded: bool,
        message: String,
        now: i64,
    ) -> Started {
        if let Some(run) = self.action_mut(stage, action) {
            run.status = Some(if succeeded {
                ActionStatus::Succeeded
            } else {
                ActionStatus::Failed
            });
            run.finished_at = Some(now);
            run.message = message;
            run.deadline = None;
        }
        self.advance(pipeline, now)
    }

    /// Artifacts produced so far, by output name.
    pub fn produced(&self) -> BTreeMap<&str, &ArtifactRef> {
        self.actions
            .iter()
            .flatten()
            .flat_map(|r| r.outputs.iter().map(|(k, v)| (k.as_str(), v)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
name: demo
source: {git: /tmp/x.git}
stages:
  - name: build
    actions:
      - {name: a, type: build, image: img, commands: [true]}
      - {name: b, type: build, image: img, commands: [true]}
      - {name: c, type: test, image: img, commands: [true], run_order: 2}
  - name: gate
    actions:
      - {name: ok, type: approval}
"#;

    fn pipeline() -> Pipeline {
        match crate::parse(YAML) {
            Ok(p) => p,
            Err(e) => panic!("test pipeline invalid: {e:?}"),
        }
    }

    #[test]
    fn runs_groups_then_stages_then_succeeds() {
        let p = pipeline();
        let mut e = ExecutionState::new(&p);
        let s = e.advance(&p, 1);
        assert_eq!(s.queued, vec![(0, 0), (0, 1)]);
        assert!(e.advance(&p, 2).queued.is_empty(), "advance is idempotent");
        assert!(
            e.finish_action(&p, (0, 0), true, String::new(), 3)
                .queued
                .is_empty()
        );
        assert_eq!(
            e.finish_action(&p, (0, 1), true, String::new(), 4).queued,
            vec![(0, 2)]
        );
        let s = e.finish_action(&p, (0, 2), true, String::new(), 5);
        assert_eq!(s.approvals, vec![(1, 0)]);
        assert_eq!(e.stage_status(1), ActionStatus::WaitingForApproval);
        assert_eq!(
            e.action(1, 0).and_then(|r| r.deadline),
            Some(5 + 7 * 24 * 3600 * 1000)
        );
        e.finish_action(&p, (1, 0), true, String::new(), 6);
        assert_eq!(e.status, ExecutionStatus::Succeeded);
        assert_eq!(e.finished_at, Some(6));
    }

    #[test]
    fn an_approval_deadline_never_wraps_into_the_past() {
        // The reader caps timeouts at a year; a spec stored before that cap
        // may hold anything, and its deadline must still lie ahead.
        let mut p = pipeline();
        p.stages[1].actions[0].timeout_ms = u64::MAX;
        let mut e = ExecutionState::new(&p);
        e.advance(&p, 1);
        for action in [(0, 0), (0, 1), (0, 2)] {
            e.finish_action(&p, action, true, String::new(), 2);
        }
        assert_eq!(e.action(1, 0).and_then(|r| r.deadline), Some(i64::MAX));
    }

    #[test]
    fn a_failure_fails_the_execution_and_starts_nothing_more() {
        let p = pipeline();
        let mut e = ExecutionState::new(&p);
        e.advance(&p, 1);
        let s = e.finish_action(&p, (0, 0), false, "exit 1".into(), 2);
        assert!(s.queued.is_empty() && s.approvals.is_empty());
        assert_eq!(e.status, ExecutionStatus::Failed);
        assert_eq!(e.stage_status(0), ActionStatus::Failed);
        assert_eq!(e.stage_status(1), ActionStatus::Pending);
        assert_eq!(
            e.action(1, 0).map(|r| r.status()),
            Some(ActionStatus::Pending)
        );
    }
}
