//! Moving an execution forward: settling its status, retrying a failed
//! stage, skipping what its conditions rule out and starting the next group
//! of actions; recording an action's end; winding a stopped execution down.

use super::{
    ActionRun, ActionStatus, ExecutionState, ExecutionStatus, Gates, Started, StopRequest,
};
use std::collections::BTreeSet;

use crate::condition::OnFailure;
use crate::vars::Ref;
use crate::{ActionKind, Pipeline};

impl ExecutionState {
    /// Marks the actions of stage `si` that have not started skipped (all
    /// of them, when the stage's `when` did not hold).
    pub(super) fn skip(&mut self, si: usize, why: &str, now: i64) {
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
            let Some(groups) = self.failures_tolerated(pipeline).filter(|g| !g.is_empty()) else {
                // Let running siblings finish on their own; nothing new
                // starts, and actions still waiting for an agent are not
                // started at all.
                self.unqueue("not started: the execution failed");
                self.status = ExecutionStatus::Failed;
                self.finished_at = Some(now);
                self.waiting = None;
                return started;
            };
            // Only cells of `fail_fast: false` matrices failed, and some of
            // them have not ended: those run on, then the execution fails.
            self.waiting = None;
            for (si, stage) in pipeline.stages.iter().enumerate() {
                for (ai, spec) in stage.actions.iter().enumerate() {
                    let in_group = spec
                        .matrix
                        .as_ref()
                        .is_some_and(|m| groups.contains(&(si, m.base.clone())));
                    if in_group && self.may_start_cell(pipeline, (si, ai)) {
                        self.start(pipeline, (si, ai), now, &mut started);
                    }
                }
            }
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
                if spec.run_order != order || !self.may_start_cell(pipeline, (si, ai)) {
                    continue;
                }
                match self.start(pipeline, (si, ai), now, &mut started) {
                    Begin::Skipped => skipped = true,
                    Begin::FailedToStart => failed_to_start = true,
                    Begin::Started | Begin::NotPending => {}
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

    /// Starts action (`si`, `ai`) if it is pending: skips it when its
    /// `when` does not hold, fails it when its references do not resolve,
    /// and otherwise queues it (or makes it wait for approval) in `started`.
    fn start(
        &mut self,
        pipeline: &Pipeline,
        (si, ai): (usize, usize),
        now: i64,
        started: &mut Started,
    ) -> Begin {
        let Some(spec) = pipeline.stages.get(si).and_then(|s| s.actions.get(ai)) else {
            return Begin::NotPending;
        };
        if self
            .action(si, ai)
            .is_none_or(|r| r.status() != ActionStatus::Pending)
        {
            return Begin::NotPending;
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
            return Begin::Skipped;
        }
        // An upstream's output it takes must have been there when the
        // upstream succeeded (its pipeline may have changed since).
        let missing = spec.inputs.iter().find(|i| {
            crate::upstream::upstream_input(i).is_some() && !self.upstream_outputs.contains_key(*i)
        });
        if let Some(missing) = missing.cloned() {
            if let Some(run) = self.action_mut(si, ai) {
                run.status = Some(ActionStatus::Failed);
                run.started_at = Some(now);
                run.finished_at = Some(now);
                run.message = format!(
                    "input `{missing}`: the upstream execution that started this one has no such output"
                );
            }
            return Begin::FailedToStart;
        }
        let resolved = self.resolve(pipeline, spec);
        let Some(run) = self.action_mut(si, ai) else {
            return Begin::NotPending;
        };
        run.started_at = Some(now);
        // An image with references (the action's or a service's) must still
        // name an image.
        let resolved = resolved.map_err(Unresolved::Missing).and_then(|values| {
            let images = std::iter::once(("`image`".to_string(), spec.image.as_deref())).chain(
                spec.services.iter().map(|s| {
                    (
                        format!("the `image` of service `{}`", s.name),
                        Some(&*s.image),
                    )
                }),
            );
            for (what, image) in images {
                let image = image.unwrap_or_default();
                if !image.contains("#{") {
                    continue;
                }
                let text = crate::vars::substitute(image, |r| values.get(&r.key()).cloned())
                    .unwrap_or_else(|_| image.to_string());
                if let Err(why) = crate::vars::check_image(&text) {
                    return Err(Unresolved::Image(format!("{what} resolved to {why}")));
                }
            }
            Ok(values)
        });
        match resolved {
            Ok(values) => run.resolved = values,
            Err(Unresolved::Image(message)) => {
                run.status = Some(ActionStatus::Failed);
                run.finished_at = Some(now);
                run.message = message;
                return Begin::FailedToStart;
            }
            Err(Unresolved::Missing(missing)) => {
                // It cannot run: fail it by name, and the execution with it.
                run.status = Some(ActionStatus::Failed);
                run.finished_at = Some(now);
                run.message = format!(
                    "variable {missing} has no value{}",
                    match &missing {
                        Ref::Pipeline(_) | Ref::Matrix(_) | Ref::HashFiles(_) => String::new(),
                        Ref::Output {
                            stage,
                            action,
                            name,
                        } => format!(
                            ": action {stage}/{action} wrote no {name} to $FERRY_OUTPUT_VARS"
                        ),
                    }
                );
                return Begin::FailedToStart;
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
            ActionKind::Build | ActionKind::Test | ActionKind::Deploy | ActionKind::Plugin => {
                run.status = Some(ActionStatus::InProgress);
                run.message = "waiting for an agent".into();
                started.queued.push((si, ai));
            }
        }
        Begin::Started
    }

    /// Whether the execution's failures may wait: `Some(groups)` when each
    /// failed action is a cell of a `fail_fast: false` matrix, with those
    /// matrices (stage, name) that still have cells to run (empty: all have
    /// ended); `None` when another action failed (or none did).
    fn failures_tolerated(&self, pipeline: &Pipeline) -> Option<BTreeSet<(usize, String)>> {
        let mut groups = BTreeSet::new();
        let mut any = false;
        for (si, stage) in pipeline.stages.iter().enumerate() {
            for (ai, spec) in stage.actions.iter().enumerate() {
                if self
                    .action(si, ai)
                    .is_none_or(|r| r.status() != ActionStatus::Failed)
                {
                    continue;
                }
                any = true;
                match &spec.matrix {
                    Some(m) if !m.fail_fast => {
                        groups.insert((si, m.base.clone()));
                    }
                    // Another failure: the execution fails now.
                    _ => return None,
                }
            }
        }
        if !any {
            return None;
        }
        groups.retain(|(si, base)| {
            pipeline.stages[*si]
                .actions
                .iter()
                .enumerate()
                .any(|(ai, a)| {
                    a.matrix.as_ref().is_some_and(|m| &m.base == base)
                        && self.action(*si, ai).is_some_and(|r| !r.status().is_final())
                })
        });
        Some(groups)
    }

    /// Whether action (`si`, `ai`) may start as far as its matrix's
    /// `max_parallel` goes: fewer of its cells than that are running.
    fn may_start_cell(&self, pipeline: &Pipeline, (si, ai): (usize, usize)) -> bool {
        let Some(m) = pipeline.stages[si].actions[ai].matrix.as_ref() else {
            return true;
        };
        if m.max_parallel == 0 {
            return true;
        }
        let running = pipeline.stages[si]
            .actions
            .iter()
            .enumerate()
            .filter(|(i, a)| {
                a.matrix.as_ref().is_some_and(|c| c.base == m.base)
                    && self
                        .action(si, *i)
                        .is_some_and(|r| r.status() == ActionStatus::InProgress)
            })
            .count();
        running < m.max_parallel as usize
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
    pub(super) fn wind_down(&mut self, now: i64) {
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
}

/// What [`ExecutionState::start`] did with an action.
enum Begin {
    /// It was not pending (already started or ended).
    NotPending,
    /// Its `when` did not hold.
    Skipped,
    /// Its references did not resolve: it failed.
    FailedToStart,
    /// It is queued for an agent or waits for approval.
    Started,
}

/// Why an action's references do not give it what it needs to start.
enum Unresolved {
    /// A reference has no value.
    Missing(Ref),
    /// An `image` resolved to something that is not an image reference:
    /// the message that says which.
    Image(String),
}
