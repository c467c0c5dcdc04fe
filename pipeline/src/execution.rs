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

    /// `text` (one of its action's texts) with the values its references
    /// resolved to when it started; as written while it has not started.
    pub fn resolved_text(&self, text: &str) -> String {
        crate::vars::substitute(text, |r| self.resolved.get(&r.key()).cloned())
            .unwrap_or_else(|_| text.to_string())
    }

    /// What `action` (its action) runs: its `commands` with their
    /// references as shell variables, and its environment — those
    /// variables with the values they resolved to when it started
    /// (`vars::commands_as_data`: values are data, never command text),
    /// then its `env` with references substituted.
    pub fn resolved_commands_and_env(
        &self,
        action: &crate::Action,
    ) -> (Vec<String>, BTreeMap<String, String>) {
        let (commands, mut env) = crate::vars::commands_as_data(&action.commands, |r| {
            self.resolved.get(&r.key()).cloned()
        });
        env.extend(
            action
                .env
                .iter()
                .map(|(k, v)| (k.clone(), self.resolved_text(v))),
        );
        (commands, env)
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
                // An image with references must still name an image.
                let resolved = resolved.map_err(Unresolved::Missing).and_then(|values| {
                    let image = spec.image.as_deref().unwrap_or_default();
                    if !image.contains("#{") {
                        return Ok(values);
                    }
                    let text = crate::vars::substitute(image, |r| values.get(&r.key()).cloned())
                        .unwrap_or_else(|_| image.to_string());
                    match crate::vars::check_image(&text) {
                        Ok(()) => Ok(values),
                        Err(why) => Err(Unresolved::Image(why)),
                    }
                });
                match resolved {
                    Ok(values) => run.resolved = values,
                    Err(Unresolved::Image(why)) => {
                        run.status = Some(ActionStatus::Failed);
                        run.finished_at = Some(now);
                        run.message = format!("`image` resolved to {why}");
                        failed_to_start = true;
                        continue;
                    }
                    Err(Unresolved::Missing(missing)) => {
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

/// Why an action's references do not give it what it needs to start.
enum Unresolved {
    /// A reference has no value.
    Missing(Ref),
    /// `image` resolved to something that is not an image reference.
    Image(String),
}

mod steer;
#[cfg(test)]
mod tests;

pub use steer::{SteerError, StopRequest};
