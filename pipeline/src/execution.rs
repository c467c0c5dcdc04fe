//! The execution state machine as pure functions: given a pipeline version and
//! the recorded progress of one execution, decide which actions start next and
//! what the execution's status is. No clock, no I/O: callers pass `now` (unix
//! milliseconds) so that the coordinator's Raft `apply` stays deterministic.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::condition::{Condition, OnFailure, SourceRef};
use crate::vars::Ref;
use crate::{ActionKind, Pipeline};

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
    /// A person stopped the execution and abandoned the attempt.
    Stopped,
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
    /// Output variables its succeeded attempt wrote (`$FERRY_OUTPUT_VARS`).
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// The values of the references in its texts, resolved once when it
    /// started (key: the text between `#{` and `}`).
    #[serde(default)]
    pub resolved: BTreeMap<String, String>,
    /// Where the current round begins in `history` and `approvals`: a
    /// retried action keeps its earlier attempts and decisions, and its
    /// retry budget and approval count start afresh from here.
    #[serde(default)]
    pub round: Round,
}

/// The start of an action's current round (see [`ActionRun::round`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Round {
    pub history: usize,
    pub approvals: usize,
}

impl ActionRun {
    /// Attempts of the current round that ended with `outcome`.
    pub fn count(&self, outcome: Outcome) -> u32 {
        self.history
            .iter()
            .skip(self.round.history)
            .filter(|h| h.outcome == outcome)
            .count() as u32
    }

    /// Decisions of the current round.
    pub fn decisions(&self) -> &[Decision] {
        self.approvals.get(self.round.approvals..).unwrap_or(&[])
    }

    /// Whether an agent runs the current attempt right now.
    pub fn is_running(&self) -> bool {
        self.status() == ActionStatus::InProgress && self.agent.is_some()
    }

    /// Makes the action pending again for a new round, keeping its history.
    fn reset(&mut self) {
        let history = std::mem::take(&mut self.history);
        let approvals = std::mem::take(&mut self.approvals);
        *self = ActionRun {
            attempt: self.attempt,
            round: Round {
                history: history.len(),
                approvals: approvals.len(),
            },
            history,
            approvals,
            ..ActionRun::default()
        };
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
}

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
        }
    }

    /// Whether `condition` holds for this execution now; else why not.
    fn condition_holds(&self, pipeline: &Pipeline, condition: &Condition) -> Result<(), String> {
        condition.holds(self.source.as_ref(), |key| {
            let reference = crate::vars::references(&format!("#{{{key}}}"))
                .ok()?
                .into_iter()
                .next()?;
            self.value_of(pipeline, &reference)
        })
    }

    /// Marks the actions of stage `si` that have not started skipped (all
    /// of them, when the stage's `when` did not hold).
    fn skip(&mut self, si: usize, why: &str, now: i64) {
        for run in self.actions.get_mut(si).into_iter().flatten() {
            if run.status() == ActionStatus::Pending {
                run.status = Some(ActionStatus::Skipped);
                run.finished_at = Some(now);
                run.message = format!("skipped: {why}");
            }
        }
    }

    /// `on_failure: {retry: N}`: the first failed stage whose failed
    /// actions may run again now (none of its actions still running).
    /// `Some(None)` means: it may, once its running actions end.
    fn stage_to_retry(&self, pipeline: &Pipeline) -> Option<Option<usize>> {
        let si = (0..self.actions.len()).find(|si| {
            self.actions[*si]
                .iter()
                .any(|r| r.status() == ActionStatus::Failed)
        })?;
        let OnFailure::Retry(limit) = pipeline.stages.get(si)?.on_failure else {
            return None;
        };
        if self.stage_retries.get(&si).copied().unwrap_or(0) >= limit {
            return None;
        }
        if self.actions[si].iter().any(ActionRun::is_running) {
            return Some(None);
        }
        Some(Some(si))
    }

    /// The value of reference `r` now, if it has one.
    fn value_of(&self, pipeline: &Pipeline, r: &Ref) -> Option<String> {
        match r {
            Ref::Pipeline(name) => self.variables.get(name).cloned(),
            Ref::Output {
                stage,
                action,
                name,
            } => {
                let (si, ai) = pipeline.find_action(stage, action)?;
                self.action(si, ai)?.variables.get(name).cloned()
            }
        }
    }

    /// Resolves the references of action `spec` for its run: every value
    /// found, or the first reference without one.
    fn resolve(
        &self,
        pipeline: &Pipeline,
        spec: &crate::Action,
    ) -> Result<BTreeMap<String, String>, Ref> {
        crate::vars::action_references(spec)
            .into_iter()
            .map(|r| match self.value_of(pipeline, &r) {
                Some(v) => Ok((r.key(), v)),
                None => Err(r),
            })
            .collect()
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
        let any = |status| runs.iter().any(|r| r.status() == status);
        if any(ActionStatus::Failed) {
            ActionStatus::Failed
        } else if runs.iter().all(|r| r.status() == ActionStatus::Skipped) {
            ActionStatus::Skipped
        } else if runs.iter().all(|r| r.status().is_done()) {
            ActionStatus::Succeeded
        } else if any(ActionStatus::WaitingForApproval) {
            ActionStatus::WaitingForApproval
        } else if any(ActionStatus::InProgress) {
            ActionStatus::InProgress
        } else if any(ActionStatus::Stopped) {
            ActionStatus::Stopped
        } else if runs.iter().any(|r| r.status() != ActionStatus::Pending) {
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

    /// Moves the execution forward: settles its status and starts the next
    /// group of actions (the lowest `run_order` not yet done in the first
    /// unfinished stage), unless `gates` keep it out of that stage.
    /// Idempotent: calling it again starts nothing twice.
    pub fn advance(&mut self, pipeline: &Pipeline, gates: &Gates, now: i64) -> Started {
        let mut started = Started::default();
        if self.status.is_final() {
            return started;
        }
        if self.stop.is_some() {
            self.wind_down(now);
            return started;
        }
        match self.stage_to_retry(pipeline) {
            // Its running actions end first; nothing new starts meanwhile.
            Some(None) => return started,
            Some(Some(si)) => {
                let used = self.stage_retries.entry(si).or_insert(0);
                *used += 1;
                let note =
                    format!("retried automatically ({used} of the stage's on_failure retries)");
                for run in &mut self.actions[si] {
                    if run.status() == ActionStatus::Failed {
                        run.reset();
                        run.message = note.clone();
                    }
                }
            }
            None => {}
        }
        if self
            .actions
            .iter()
            .flatten()
            .any(|r| r.status() == ActionStatus::Failed)
        {
            // Let running siblings finish on their own; nothing new starts,
            // and actions still waiting for an agent are not started at all.
            self.unqueue("not started: the execution failed");
            self.status = ExecutionStatus::Failed;
            self.finished_at = Some(now);
            self.waiting = None;
            return started;
        }
        for (si, stage) in pipeline.stages.iter().enumerate() {
            if self.stage_status(si).is_done() {
                continue;
            }
            if self.stage_status(si) == ActionStatus::Pending {
                if let Some(why) = gates.closed.get(&si) {
                    self.waiting = Some(why.clone());
                    return started;
                }
                if let Some(when) = &stage.when
                    && let Err(why) = self.condition_holds(pipeline, when)
                {
                    self.skip(si, &why, now);
                    continue;
                }
            }
            self.waiting = None;
            let mut failed_to_start = false;
            let mut skipped = false;
            // Lowest run_order that still has unfinished actions.
            let Some(order) = stage
                .actions
                .iter()
                .enumerate()
                .filter(|(ai, _)| self.action(si, *ai).is_some_and(|r| !r.status().is_done()))
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
                if let Some(when) = &spec.when
                    && let Err(why) = self.condition_holds(pipeline, when)
                {
                    if let Some(run) = self.action_mut(si, ai) {
                        run.status = Some(ActionStatus::Skipped);
                        run.started_at = Some(now);
                        run.finished_at = Some(now);
                        run.message = format!("skipped: {why}");
                    }
                    skipped = true;
                    continue;
                }
                let resolved = self.resolve(pipeline, spec);
                let Some(run) = self.action_mut(si, ai) else {
                    continue;
                };
                run.started_at = Some(now);
                match resolved {
                    Ok(values) => run.resolved = values,
                    Err(missing) => {
                        // It cannot run: fail it by name, and the execution with it.
                        run.status = Some(ActionStatus::Failed);
                        run.finished_at = Some(now);
                        run.message = format!(
                            "variable {missing} has no value{}",
                            match &missing {
                                Ref::Pipeline(_) => String::new(),
                                Ref::Output {
                                    stage,
                                    action,
                                    name,
                                } => format!(
                                    ": action {stage}/{action} wrote no {name} to $FERRY_OUTPUT_VARS"
                                ),
                            }
                        );
                        failed_to_start = true;
                        continue;
                    }
                }
                match spec.kind {
                    ActionKind::Approval => {
                        run.status = Some(ActionStatus::WaitingForApproval);
                        // The reader caps timeouts far below i64::MAX; a stored spec
                        // from before that cap still must not wrap into the past.
                        let timeout = i64::try_from(spec.timeout_ms).unwrap_or(i64::MAX);
                        run.deadline = Some(now.saturating_add(timeout));
                        run.message = if spec.required > 1 {
                            format!("waiting for {} approvals", spec.required)
                        } else {
                            "waiting for approval".into()
                        };
                        started.approvals.push((si, ai));
                    }
                    ActionKind::Build | ActionKind::Test | ActionKind::Deploy => {
                        run.status = Some(ActionStatus::InProgress);
                        run.message = "waiting for an agent".into();
                        started.queued.push((si, ai));
                    }
                }
            }
            if failed_to_start {
                // An action that cannot start fails the execution: what
                // this group queued goes back to pending.
                return self.advance(pipeline, gates, now);
            }
            if skipped && started.queued.is_empty() && started.approvals.is_empty() {
                // The whole group was skipped: go on to the next one.
                return self.advance(pipeline, gates, now);
            }
            return started;
        }
        self.status = ExecutionStatus::Succeeded;
        self.finished_at = Some(now);
        self.waiting = None;
        started
    }

    /// Actions queued but not yet given to an agent go back to pending.
    fn unqueue(&mut self, why: &str) {
        for run in self.actions.iter_mut().flatten() {
            if run.is_queued() {
                run.status = Some(ActionStatus::Pending);
                run.started_at = None;
                run.message = why.into();
            }
        }
    }

    /// A stopped execution: nothing new starts, approvals stop waiting, and
    /// it ends `Stopped` once no agent runs any of it.
    fn wind_down(&mut self, now: i64) {
        let message = self
            .stop
            .as_ref()
            .map(StopRequest::message)
            .unwrap_or_default();
        self.unqueue("not started: the execution was stopped");
        for run in self.actions.iter_mut().flatten() {
            if run.status() == ActionStatus::WaitingForApproval {
                run.status = Some(ActionStatus::Stopped);
                run.finished_at = Some(now);
                run.deadline = None;
                run.message = message.clone();
            }
        }
        self.waiting = None;
        if self.has_running() {
            self.status = ExecutionStatus::Stopping;
        } else {
            self.status = ExecutionStatus::Stopped;
            self.finished_at = Some(now);
        }
    }

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

    /// Records the end of an action and advances the execution. A failure
    /// of an abandoned execution's action is recorded as `Stopped`.
    pub fn finish_action(
        &mut self,
        pipeline: &Pipeline,
        (stage, action): (usize, usize),
        succeeded: bool,
        message: String,
        gates: &Gates,
        now: i64,
    ) -> Started {
        let abandoned = self.stop.as_ref().is_some_and(|s| s.abandon);
        if let Some(run) = self.action_mut(stage, action) {
            run.status = Some(match (succeeded, abandoned) {
                (true, _) => ActionStatus::Succeeded,
                (false, true) => ActionStatus::Stopped,
                (false, false) => ActionStatus::Failed,
            });
            run.finished_at = Some(now);
            run.message = message;
            run.deadline = None;
        }
        self.advance(pipeline, gates, now)
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
        let s = e.advance(&p, &Gates::open(), 1);
        assert_eq!(s.queued, vec![(0, 0), (0, 1)]);
        assert!(
            e.advance(&p, &Gates::open(), 2).queued.is_empty(),
            "advance is idempotent"
        );
        assert!(
            e.finish_action(&p, (0, 0), true, String::new(), &Gates::open(), 3)
                .queued
                .is_empty()
        );
        assert_eq!(
            e.finish_action(&p, (0, 1), true, String::new(), &Gates::open(), 4)
                .queued,
            vec![(0, 2)]
        );
        let s = e.finish_action(&p, (0, 2), true, String::new(), &Gates::open(), 5);
        assert_eq!(s.approvals, vec![(1, 0)]);
        assert_eq!(e.stage_status(1), ActionStatus::WaitingForApproval);
        assert_eq!(
            e.action(1, 0).and_then(|r| r.deadline),
            Some(5 + 7 * 24 * 3600 * 1000)
        );
        e.finish_action(&p, (1, 0), true, String::new(), &Gates::open(), 6);
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
        e.advance(&p, &Gates::open(), 1);
        for action in [(0, 0), (0, 1), (0, 2)] {
            e.finish_action(&p, action, true, String::new(), &Gates::open(), 2);
        }
        assert_eq!(e.action(1, 0).and_then(|r| r.deadline), Some(i64::MAX));
    }

    #[test]
    fn a_failure_fails_the_execution_and_starts_nothing_more() {
        let p = pipeline();
        let mut e = ExecutionState::new(&p);
        e.advance(&p, &Gates::open(), 1);
        let s = e.finish_action(&p, (0, 0), false, "exit 1".into(), &Gates::open(), 2);
        assert!(s.queued.is_empty() && s.approvals.is_empty());
        assert_eq!(e.status, ExecutionStatus::Failed);
        assert_eq!(e.stage_status(0), ActionStatus::Failed);
        assert_eq!(e.stage_status(1), ActionStatus::Pending);
        assert_eq!(
            e.action(1, 0).map(|r| r.status()),
            Some(ActionStatus::Pending)
        );
    }

    fn stop(by: &str, abandon: bool) -> StopRequest {
        StopRequest {
            by: by.into(),
            reason: "bad release".into(),
            abandon,
            at: 0,
        }
    }

    /// Gives queued action `at` to an agent under `epoch`, as the coordinator does.
    fn assign(e: &mut ExecutionState, at: (usize, usize), epoch: u64) {
        if let Some(run) = e.action_mut(at.0, at.1) {
            run.agent = Some("agent-1".into());
            run.epoch = epoch;
            run.attempt += 1;
            run.history.push(AttemptRecord {
                attempt: run.attempt,
                epoch,
                agent: "agent-1".into(),
                outcome: Outcome::Running,
                exit_code: None,
                started_at: 1,
                finished_at: None,
                message: String::new(),
            });
        }
    }

    #[test]
    fn stop_and_wait_lets_running_actions_finish_and_starts_nothing() {
        let p = pipeline();
        let mut e = ExecutionState::new(&p);
        e.advance(&p, &Gates::open(), 1);
        assign(&mut e, (0, 0), 1);
        assert_eq!(e.stop(&p, stop("ann", false), 2), Ok(vec![]));
        assert_eq!(e.status, ExecutionStatus::Stopping);
        // The queued sibling never starts; the running one finishes.
        assert_eq!(
            e.action(0, 1).map(|r| r.status()),
            Some(ActionStatus::Pending)
        );
        assert_eq!(
            e.stop(&p, stop("bob", false), 3),
            Err(SteerError::AlreadyStopping(""))
        );
        let s = e.finish_action(&p, (0, 0), true, String::new(), &Gates::open(), 4);
        assert_eq!(s, Started::default());
        assert_eq!(e.status, ExecutionStatus::Stopped);
        assert_eq!(e.stage_status(0), ActionStatus::Stopped);
        assert_eq!(e.finished_at, Some(4));
        assert!(matches!(
            e.stop(&p, stop("ann", true), 5),
            Err(SteerError::AlreadyEnded(ExecutionStatus::Stopped))
        ));
    }

    #[test]
    fn abandon_ends_running_attempts_at_once() {
        let p = pipeline();
        let mut e = ExecutionState::new(&p);
        e.advance(&p, &Gates::open(), 1);
        assign(&mut e, (0, 0), 7);
        assert_eq!(e.stop(&p, stop("ann", false), 2), Ok(vec![]));
        // Stop-and-wait can be upgraded to abandon, not the other way round.
        assert_eq!(e.stop(&p, stop("ann", true), 3), Ok(vec![7]));
        assert_eq!(e.status, ExecutionStatus::Stopped);
        let run = e.action(0, 0).cloned().unwrap_or_default();
        assert_eq!(run.status(), ActionStatus::Stopped);
        assert_eq!(run.message, "stopped by ann: bad release");
        assert_eq!(run.history[0].outcome, Outcome::Stopped);
    }

    #[test]
    fn a_stop_ends_a_waiting_approval() {
        let p = pipeline();
        let mut e = ExecutionState::new(&p);
        e.advance(&p, &Gates::open(), 1);
        for a in [(0, 0), (0, 1), (0, 2)] {
            e.finish_action(&p, a, true, String::new(), &Gates::open(), 2);
        }
        assert_eq!(e.stage_status(1), ActionStatus::WaitingForApproval);
        assert_eq!(e.stop(&p, stop("ann", false), 3), Ok(vec![]));
        assert_eq!(e.status, ExecutionStatus::Stopped);
        assert_eq!(
            e.action(1, 0).map(|r| r.status()),
            Some(ActionStatus::Stopped)
        );
    }

    #[test]
    fn retry_reruns_only_what_did_not_succeed_and_keeps_history() {
        let p = pipeline();
        let mut e = ExecutionState::new(&p);
        e.advance(&p, &Gates::open(), 1);
        assign(&mut e, (0, 0), 1);
        assign(&mut e, (0, 1), 2);
        e.finish_action(&p, (0, 0), true, String::new(), &Gates::open(), 2);
        if let Some(run) = e.action_mut(0, 1) {
            run.close_attempt(2, Outcome::Failed, Some(1), "exit 1", 3);
        }
        e.finish_action(&p, (0, 1), false, "exit 1".into(), &Gates::open(), 3);
        assert_eq!(e.status, ExecutionStatus::Failed);
        assert_eq!(
            e.retry(&p, 1, false, &Gates::open(), 4),
            Err(SteerError::EarlierStage("build".into()))
        );
        let s = e.retry(&p, 0, false, &Gates::open(), 4);
        assert_eq!(s.map(|s| s.queued), Ok(vec![(0, 1)]));
        assert_eq!(e.status, ExecutionStatus::InProgress);
        let run = e.action(0, 1).cloned().unwrap_or_default();
        assert_eq!(
            (run.history.len(), run.round.history, run.attempt),
            (1, 1, 1)
        );
        assert_eq!(
            run.count(Outcome::Failed),
            0,
            "a new round has its own retry budget"
        );
        assert_eq!(
            e.action(0, 0).map(|r| r.status()),
            Some(ActionStatus::Succeeded)
        );
        assert!(matches!(
            e.retry(&p, 0, true, &Gates::open(), 5),
            Err(SteerError::NotRetryable(ExecutionStatus::InProgress))
        ));
    }

    #[test]
    fn retry_all_reruns_every_action_of_the_stage() {
        let p = pipeline();
        let mut e = ExecutionState::new(&p);
        e.advance(&p, &Gates::open(), 1);
        e.finish_action(&p, (0, 0), true, String::new(), &Gates::open(), 2);
        e.finish_action(&p, (0, 1), false, "exit 1".into(), &Gates::open(), 2);
        let s = e.retry(&p, 0, true, &Gates::open(), 3);
        assert_eq!(s.map(|s| s.queued), Ok(vec![(0, 0), (0, 1)]));
    }

    #[test]
    fn a_closed_gate_holds_the_execution_before_the_stage() {
        let p = pipeline();
        let mut e = ExecutionState::new(&p);
        e.advance(&p, &Gates::open(), 1);
        let mut gates = Gates::open();
        gates
            .closed
            .insert(1, "the transition into gate is disabled".into());
        for a in [(0, 0), (0, 1), (0, 2)] {
            e.finish_action(&p, a, true, String::new(), &gates, 2);
        }
        assert_eq!(e.status, ExecutionStatus::InProgress);
        assert_eq!(e.waits_before(), Some(1));
        assert_eq!(
            e.waiting.as_deref(),
            Some("the transition into gate is disabled")
        );
        // A gate only matters on the way in: the stage it guards is not entered.
        assert!(!e.is_in_stage(1));
        let s = e.advance(&p, &Gates::open(), 3);
        assert_eq!(s.approvals, vec![(1, 0)]);
        assert_eq!(e.waiting, None);
        assert!(e.is_in_stage(1));
    }

    #[test]
    fn references_resolve_when_an_action_starts_or_fail_it_by_name() {
        let p = match crate::parse(
            "name: v\nsource: {git: /x}\nvariables: {REGION: eu}\nstages:\n  - name: b\n    actions:\n      - {name: c, type: build, image: i, commands: [true]}\n  - name: t\n    actions:\n      - {name: u, type: test, image: i, commands: [\"echo #{b.c.V} #{variables.REGION}\"]}\n      - {name: w, type: test, image: i, commands: [\"echo #{b.c.GONE}\"], run_order: 2}\n",
        ) {
            Ok(p) => p,
            Err(e) => panic!("{e:?}"),
        };
        let mut e = ExecutionState::new(&p);
        assert_eq!(e.variables.get("REGION").map(String::as_str), Some("eu"));
        e.advance(&p, &Gates::open(), 1);
        if let Some(run) = e.action_mut(0, 0) {
            run.variables.insert("V".into(), "1.4".into());
        }
        let s = e.finish_action(&p, (0, 0), true, String::new(), &Gates::open(), 2);
        assert_eq!(s.queued, vec![(1, 0)]);
        let u = e.action(1, 0).cloned().unwrap_or_default();
        assert_eq!(u.resolved.get("b.c.V").map(String::as_str), Some("1.4"));
        assert_eq!(
            u.resolved.get("variables.REGION").map(String::as_str),
            Some("eu")
        );
        let s = e.finish_action(&p, (1, 0), true, String::new(), &Gates::open(), 3);
        assert_eq!(s, Started::default(), "w cannot start");
        let w = e.action(1, 1).cloned().unwrap_or_default();
        assert_eq!(w.status(), ActionStatus::Failed);
        assert_eq!(
            w.message,
            "variable #{b.c.GONE} has no value: action b/c wrote no GONE to $FERRY_OUTPUT_VARS"
        );
        assert_eq!(e.status, ExecutionStatus::Failed);
    }

    fn parsed(text: &str) -> Pipeline {
        match crate::parse(text) {
            Ok(p) => p,
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn when_skips_stages_and_actions_with_the_reason() {
        let p = parsed(
            "name: w\nsource: {git: /x}\nstages:\n  - name: b\n    actions:\n      - {name: c, type: build, image: i, commands: [true]}\n      - {name: docs, type: build, image: i, commands: [true], when: {variables: {\"#{b.c.KIND}\": release}}, run_order: 2}\n  - name: prod\n    when: {branch: [main, \"release/*\"]}\n    actions:\n      - {name: ok, type: approval}\n  - name: after\n    actions:\n      - {name: t, type: test, image: i, commands: [true]}\n",
        );
        let mut e = ExecutionState::new(&p);
        e.source = Some(SourceRef::Branch("feature/x".into()));
        e.advance(&p, &Gates::open(), 1);
        if let Some(run) = e.action_mut(0, 0) {
            run.variables.insert("KIND".into(), "debug".into());
        }
        // docs is skipped, prod too: the run goes straight to `after`.
        let s = e.finish_action(&p, (0, 0), true, String::new(), &Gates::open(), 2);
        assert_eq!(s.queued, vec![(2, 0)]);
        let docs = e.action(0, 1).cloned().unwrap_or_default();
        assert_eq!(docs.status(), ActionStatus::Skipped);
        assert_eq!(
            docs.message,
            "skipped: #{b.c.KIND} is \"debug\", not \"release\""
        );
        assert_eq!(e.stage_status(0), ActionStatus::Succeeded);
        assert_eq!(e.stage_status(1), ActionStatus::Skipped);
        assert_eq!(
            e.action(1, 0).map(|r| r.message.clone()),
            Some("skipped: branch feature/x matches none of main, release/*".to_string())
        );
        e.finish_action(&p, (2, 0), true, String::new(), &Gates::open(), 3);
        assert_eq!(e.status, ExecutionStatus::Succeeded);

        let mut on_main = ExecutionState::new(&p);
        on_main.source = Some(SourceRef::Branch("release/1.4".into()));
        on_main.advance(&p, &Gates::open(), 1);
        on_main.finish_action(&p, (0, 0), true, String::new(), &Gates::open(), 2);
        assert_eq!(on_main.stage_status(1), ActionStatus::WaitingForApproval);
    }

    #[test]
    fn on_failure_retry_reruns_the_failed_actions_of_the_stage() {
        let p = parsed(
            "name: r\nsource: {git: /x}\nstages:\n  - name: b\n    on_failure: {retry: 1}\n    actions:\n      - {name: c, type: build, image: i, commands: [true]}\n      - {name: d, type: build, image: i, commands: [true]}\n",
        );
        let mut e = ExecutionState::new(&p);
        e.advance(&p, &Gates::open(), 1);
        assign(&mut e, (0, 1), 2);
        // c fails while d still runs: nothing happens until d ends.
        e.finish_action(&p, (0, 0), false, "exit 1".into(), &Gates::open(), 2);
        assert_eq!(e.status, ExecutionStatus::InProgress);
        assert_eq!(
            e.action(0, 0).map(|r| r.status()),
            Some(ActionStatus::Failed)
        );
        let s = e.finish_action(&p, (0, 1), true, String::new(), &Gates::open(), 3);
        assert_eq!(s.queued, vec![(0, 0)], "c runs again");
        assert_eq!(e.stage_retries.get(&0), Some(&1));
        // The second failure has no retry left.
        e.finish_action(&p, (0, 0), false, "exit 1".into(), &Gates::open(), 4);
        assert_eq!(e.status, ExecutionStatus::Failed);
    }
}
