//! Steering executions: how executions of one pipeline share its stages
//! (execution modes and transitions, as [`Gates`] each execution obeys),
//! and what people do to a run — stop it, retry a stage, close or open the
//! way into a stage. Every change of one execution may let another move,
//! so each ends by [`ClusterState::progress`], which advances the
//! pipeline's running executions oldest first and supersedes waiters.

use std::collections::{BTreeMap, BTreeSet};

use ferry_pipeline::ExecutionMode;
use ferry_pipeline::condition::OnFailure;
use ferry_pipeline::execution::{ActionStatus, ExecutionStatus, Gates, StopRequest};

use super::apply::{Applied, Output, Rejection};
use super::{By, ClusterState, TransitionLock};

impl ClusterState {
    /// `ferry stop`: see [`ferry_pipeline::execution::ExecutionState::stop`].
    pub(super) fn stop_execution(
        &mut self,
        execution: &str,
        reason: String,
        abandon: bool,
        by: &By,
        at: i64,
    ) -> Applied {
        let (exec, pipeline) = self.exec_and_pipeline(execution)?;
        let request = StopRequest {
            by: by.name().to_string(),
            reason,
            abandon,
            at,
        };
        exec.state
            .stop(pipeline, request, at)
            .map_err(|e| Rejection::FailedPrecondition(e.to_string()))?;
        let name = exec.pipeline.clone();
        self.progress(&name, Some(execution), at);
        Ok(Output::None)
    }

    /// `ferry retry`: see [`ferry_pipeline::execution::ExecutionState::retry`].
    /// In superseded and queued mode a stage is not run again by an
    /// execution that a newer one has already overtaken there: an older
    /// release must never land after a newer one.
    pub(super) fn retry_stage(
        &mut self,
        execution: &str,
        stage: &str,
        all: bool,
        at: i64,
    ) -> Applied {
        let (exec, pipeline) = self.exec_and_pipeline_ref(execution)?;
        let Some(si) = pipeline.stages.iter().position(|s| s.name == stage) else {
            return Err(Rejection::NotFound(format!(
                "stage `{stage}` in execution {execution}"
            )));
        };
        let name = exec.pipeline.clone();
        if self.mode_of(&name) != ExecutionMode::Parallel
            && let Some(newer) = self.overtaken_at(execution, stage)
        {
            return Err(Rejection::FailedPrecondition(format!(
                "the newer execution {newer} has already entered stage `{stage}`; \
                 an older execution cannot run it again"
            )));
        }
        let gates = self.gates(execution);
        let (exec, pipeline) = self.exec_and_pipeline(execution)?;
        exec.state
            .retry(pipeline, si, all, &gates, at)
            .map_err(|e| Rejection::FailedPrecondition(e.to_string()))?;
        self.active.insert(execution.to_string());
        self.progress(&name, Some(execution), at);
        Ok(Output::None)
    }

    /// `ferry transition enable|disable`.
    pub(super) fn set_transition(
        &mut self,
        pipeline: &str,
        stage: &str,
        enabled: bool,
        reason: String,
        by: &By,
        at: i64,
    ) -> Applied {
        let Some(record) = self.pipelines.get_mut(pipeline) else {
            return Err(Rejection::NotFound(format!("pipeline `{pipeline}`")));
        };
        let known = record
            .latest()
            .is_some_and(|v| v.spec.stages.iter().any(|s| s.name == stage));
        if !known {
            return Err(Rejection::NotFound(format!(
                "stage `{stage}` in pipeline `{pipeline}`"
            )));
        }
        if enabled {
            if record.disabled_transitions.remove(stage).is_none() {
                return Err(Rejection::FailedPrecondition(format!(
                    "the transition into stage `{stage}` is not disabled"
                )));
            }
        } else {
            if let Some(lock) = record.disabled_transitions.get(stage) {
                return Err(Rejection::FailedPrecondition(format!(
                    "the transition into stage `{stage}` is already disabled (by {}: {})",
                    lock.by, lock.reason
                )));
            }
            let by = by.name().to_string();
            record
                .disabled_transitions
                .insert(stage.to_string(), TransitionLock { by, reason, at });
        }
        self.progress(pipeline, None, at);
        Ok(Output::None)
    }

    /// The execution mode of a pipeline: its latest version's (versions
    /// stored before modes existed read as parallel).
    pub fn mode_of(&self, pipeline: &str) -> ExecutionMode {
        self.pipelines
            .get(pipeline)
            .and_then(|p| p.latest())
            .map_or(ExecutionMode::Parallel, |v| v.spec.execution_mode)
    }

    /// Running executions of a pipeline, oldest first.
    fn running_of(&self, pipeline: &str) -> Vec<String> {
        self.pipelines.get(pipeline).map_or_else(Vec::new, |p| {
            p.executions
                .iter()
                .filter(|id| self.active.contains(*id))
                .cloned()
                .collect()
        })
    }

    /// Which stages execution `id` may not enter now, and why: disabled
    /// transitions, and in superseded and queued mode a stage another
    /// execution is inside (and, queued, one an older execution waits for).
    pub fn gates(&self, id: &str) -> Gates {
        let mut gates = Gates::open();
        let Some(exec) = self.executions.get(id) else {
            return gates;
        };
        let (Some(record), Some(spec)) =
            (self.pipelines.get(&exec.pipeline), self.pipeline_of(exec))
        else {
            return gates;
        };
        let index: BTreeMap<&str, usize> = spec
            .stages
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        for (stage, lock) in &record.disabled_transitions {
            if let Some(si) = index.get(stage.as_str()) {
                let why = if lock.reason.is_empty() {
                    format!(
                        "the transition into stage {stage} is disabled by {}",
                        lock.by
                    )
                } else {
                    format!(
                        "the transition into stage {stage} is disabled by {}: {}",
                        lock.by, lock.reason
                    )
                };
                gates.closed.insert(*si, why);
            }
        }
        let mode = self.mode_of(&exec.pipeline);
        if mode == ExecutionMode::Parallel {
            return gates;
        }
        let mut older = true;
        for other_id in self.running_of(&exec.pipeline) {
            if other_id == id {
                older = false;
                continue;
            }
            let Some(other) = self.executions.get(&other_id) else {
                continue;
            };
            let Some(other_spec) = self.pipeline_of(other) else {
                continue;
            };
            for (osi, stage) in other_spec.stages.iter().enumerate() {
                let Some(si) = index.get(stage.name.as_str()) else {
                    continue;
                };
                let why = if other.state.is_in_stage(osi) {
                    format!("stage {} is held by execution {other_id}", stage.name)
                } else if mode == ExecutionMode::Queued
                    && older
                    && other.state.waits_before() == Some(osi)
                {
                    format!(
                        "execution {other_id} is ahead in the queue for stage {}",
                        stage.name
                    )
                } else {
                    continue;
                };
                gates.closed.entry(*si).or_insert(why);
            }
        }
        gates
    }

    /// A newer execution of the same pipeline that is inside stage `stage`
    /// or past it, if any.
    fn overtaken_at(&self, id: &str, stage: &str) -> Option<String> {
        let exec = self.executions.get(id)?;
        let record = self.pipelines.get(&exec.pipeline)?;
        let newer = record.executions.iter().skip_while(|x| *x != id).skip(1);
        for other_id in newer {
            let Some(other) = self.executions.get(other_id) else {
                continue;
            };
            let Some(spec) = self.pipeline_of(other) else {
                continue;
            };
            let Some(si) = spec.stages.iter().position(|s| s.name == stage) else {
                continue;
            };
            let entered = other.state.actions.get(si).is_some_and(|runs| {
                runs.iter()
                    .any(|r| r.status() != ferry_pipeline::execution::ActionStatus::Pending)
            });
            if entered {
                return Some(other_id.clone());
            }
        }
        None
    }

    /// Advances every running execution of `pipeline` (oldest first) under
    /// the gates it has now, until none moves; in superseded mode an
    /// execution waiting before a stage a newer one also waits for is
    /// superseded by the newest. Deterministic: the order is the log's.
    ///
    /// `changed` names the one execution a command changed: in parallel
    /// mode no other can move because of it, so only it is looked at (a
    /// result costs the same however many executions run). `None` (a
    /// transition changed): all of them.
    pub(super) fn progress(&mut self, pipeline: &str, changed: Option<&str>, at: i64) {
        let ids = match changed {
            Some(id) if self.mode_of(pipeline) == ExecutionMode::Parallel => vec![id.to_string()],
            _ => self.running_of(pipeline),
        };
        let superseding = self.mode_of(pipeline) == ExecutionMode::Superseded;
        if changed.is_none() || ids.len() > 1 {
            self.advance_all(&ids, superseding, at);
        }
        // Otherwise (parallel mode) the command already advanced the one
        // execution it changed, under its gates, and nothing else can move.
        self.roll_back_failed_stages(&ids, at);
        self.feed_downstreams(&ids, at);
        for id in &ids {
            self.settle(id);
        }
    }

    /// Advances `ids` (oldest first) until none moves, superseding waiters
    /// in superseded mode. Each round either moves an execution or stops;
    /// an execution moves at most once per stage and status, so this ends.
    fn advance_all(&mut self, ids: &[String], superseding: bool, at: i64) {
        for _ in 0..=ids.len() {
            let mut moved = false;
            for id in ids {
                let gates = self.gates(id);
                let Ok((exec, spec)) = self.exec_and_pipeline(id) else {
                    continue;
                };
                let before = (
                    exec.state.status,
                    exec.state.current_stage(),
                    exec.state.waiting.clone(),
                );
                let started = exec.state.advance(spec, &gates, at);
                let after = (
                    exec.state.status,
                    exec.state.current_stage(),
                    exec.state.waiting.clone(),
                );
                moved |=
                    before != after || !started.queued.is_empty() || !started.approvals.is_empty();
            }
            if superseding {
                moved |= self.supersede_waiters(ids, at);
            }
            if !moved {
                break;
            }
        }
    }

    /// `on_failure: rollback`: each execution of `ids` that failed in a
    /// stage that says so (and runs nothing any more) has, once, every
    /// environment that stage deployed to redeployed with its previous good
    /// release, as a new execution per environment (`{id}-rollback-{env}`,
    /// as `ferry rollback` would start it).
    fn roll_back_failed_stages(&mut self, ids: &[String], at: i64) {
        for id in ids {
            let Some(exec) = self.executions.get(id) else {
                continue;
            };
            // A redeploy (`release_of`) never rolls itself back: its failure
            // is for a person to look at, not a chain of redeploys.
            if exec.state.status != ExecutionStatus::Failed
                || exec.rollbacks.is_some()
                || exec.release_of.is_some()
                || exec.state.has_running()
            {
                continue;
            }
            let Some(spec) = self.pipeline_of(exec) else {
                continue;
            };
            let failed = exec
                .state
                .actions
                .iter()
                .position(|runs| runs.iter().any(|r| r.status() == ActionStatus::Failed));
            let Some((si, stage)) = failed.and_then(|si| spec.stages.get(si).map(|s| (si, s)))
            else {
                continue;
            };
            if stage.on_failure != OnFailure::Rollback {
                continue;
            }
            let why = format!(
                "on_failure rollback of execution {id} (stage {})",
                stage.name
            );
            let environments: BTreeSet<String> = self
                .deployments
                .values()
                .filter(|d| d.execution == *id && d.stage == si)
                .map(|d| d.environment.clone())
                .collect();
            let mut started = Vec::new();
            for env in environments {
                let Ok(target) = self.rollback_target(&env, "").map(|d| d.id) else {
                    continue;
                };
                let rollback = format!("{id}-rollback-{env}");
                if self
                    .redeploy(rollback.clone(), target, (why.clone(), None), at)
                    .is_ok()
                {
                    started.push(rollback);
                }
            }
            if let Some(exec) = self.executions.get_mut(id) {
                exec.rollbacks = Some(started);
            }
        }
    }

    /// Superseded mode: of the executions waiting before the same stage,
    /// only the newest keeps waiting. Returns whether any was superseded.
    fn supersede_waiters(&mut self, ids: &[String], at: i64) -> bool {
        // Stage name → newest waiter; `ids` is oldest first.
        let mut newest: BTreeMap<String, String> = BTreeMap::new();
        let mut waiting: Vec<(String, String)> = Vec::new();
        for id in ids {
            let Some(exec) = self.executions.get(id) else {
                continue;
            };
            let Some(stage) = exec
                .state
                .waits_before()
                .and_then(|si| self.pipeline_of(exec)?.stages.get(si))
            else {
                continue;
            };
            newest.insert(stage.name.clone(), id.clone());
            waiting.push((id.clone(), stage.name.clone()));
        }
        let mut any = false;
        for (id, stage) in waiting {
            let Some(by) = newest.get(&stage).filter(|n| **n != id) else {
                continue;
            };
            if let Some(exec) = self.executions.get_mut(&id) {
                exec.state.supersede(by, at);
                any = true;
            }
        }
        any
    }
}
