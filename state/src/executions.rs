//! Executions in the replicated state: starting one, assigning its actions
//! to agents under a fencing epoch, recording results, approval decisions
//! and their expiry, and forgetting old ones — with the queries the
//! scheduler and timers ask. Who may decide an approval is `approval.rs`.
//! Each command checks everything (a stale epoch included) before it
//! changes anything.

use std::collections::{BTreeMap, BTreeSet};

use ferry_pipeline::Pipeline;
use ferry_pipeline::execution::{
    ActionStatus, ArtifactRef, AttemptRecord, Decision, ExecutionState, Outcome,
};

use super::apply::{Applied, Output, Rejection};
use super::{ArtifactRecord, AttemptLoc, ClusterState, Execution};

/// An agent's result for one attempt, as `FinishAttempt` carries it.
pub(super) struct AttemptResult {
    pub success: bool,
    pub exit_code: Option<i32>,
    pub message: String,
    pub outputs: BTreeMap<String, ArtifactRef>,
    pub log: Option<ArtifactRef>,
    /// A deploy action's report, protobuf-encoded.
    pub deployment: Option<Vec<u8>>,
    /// Output variables the attempt wrote.
    pub variables: BTreeMap<String, String>,
    /// What its test reports said.
    pub tests: Option<ferry_pipeline::reports::TestSummary>,
    /// Cache entries it saved or now holds.
    pub caches: Vec<crate::caches::CacheReport>,
}

/// An approval decision, as `Decide` carries it.
pub(super) struct Verdict {
    pub by: String,
    pub approve: bool,
    pub comment: String,
}

impl ClusterState {
    /// Starts execution `id` of the latest version of `pipeline`.
    pub(super) fn start_execution(
        &mut self,
        id: String,
        pipeline: String,
        (revision, source): (String, Option<ferry_pipeline::condition::SourceRef>),
        (trigger, started_by, once): (String, Option<String>, Option<super::triggers::Once>),
        variables: BTreeMap<String, String>,
        at: i64,
    ) -> Applied {
        if self.executions.contains_key(&id) {
            return Err(Rejection::AlreadyExists(format!("execution {id}")));
        }
        let Some(record) = self.pipelines.get_mut(&pipeline) else {
            return Err(Rejection::NotFound(format!("pipeline `{pipeline}`")));
        };
        if let Some(once) = &once {
            record.check_once(once)?;
        }
        let Some(latest) = record.latest() else {
            return Err(Rejection::NotFound(format!(
                "pipeline `{pipeline}` has no version"
            )));
        };
        if let Some(first) = latest.spec.source.upstreams.first() {
            return Err(Rejection::FailedPrecondition(format!(
                "pipeline `{pipeline}` starts when its upstream succeeds (source: {{pipeline: {}}}): \
                 run the upstream (`ferry run {}`)",
                first.pipeline, first.pipeline
            )));
        }
        if let Some(unknown) = variables
            .keys()
            .find(|name| !latest.spec.variables.contains_key(*name))
        {
            let declared: Vec<&str> = latest.spec.variables.keys().map(String::as_str).collect();
            return Err(Rejection::FailedPrecondition(format!(
                "pipeline `{pipeline}` declares no variable `{unknown}` (declared: {})",
                if declared.is_empty() {
                    "none".to_string()
                } else {
                    declared.join(", ")
                }
            )));
        }
        let mut state = ExecutionState::new(&latest.spec);
        state.variables.extend(variables);
        state.source = source;
        let version = latest.version;
        if let Some(once) = once {
            record.record_once(once, &id, at);
        }
        if record.last_seen_revision.is_none() {
            record.last_seen_revision = Some(revision.clone());
        }
        self.open_execution(
            Execution {
                id: id.clone(),
                pipeline,
                version,
                revision,
                trigger,
                started_by,
                started_at: at,
                state,
                release_of: None,
                rollbacks: None,
                upstream: Vec::new(),
                fed: None,
            },
            at,
        );
        Ok(Output::Execution { id })
    }

    /// Records `exec` as a new running execution of its pipeline, starts
    /// its first group (or it waits at a gate), and lets the pipeline's
    /// other executions react to it (`progress`).
    pub(super) fn open_execution(&mut self, exec: Execution, at: i64) {
        let (id, pipeline) = (exec.id.clone(), exec.pipeline.clone());
        if let Some(record) = self.pipelines.get_mut(&pipeline) {
            record.executions.push(id.clone());
        }
        self.executions.insert(id.clone(), exec);
        self.active.insert(id.clone());
        let gates = self.gates(&id);
        if let Ok((exec, spec)) = self.exec_and_pipeline(&id) {
            exec.state.advance(spec, &gates, at);
        }
        self.progress(&pipeline, Some(&id), at);
    }

    /// Gives a queued action to `agent` under the next fencing epoch.
    pub(super) fn assign(
        &mut self,
        execution: String,
        (stage, action): (usize, usize),
        agent: String,
        at: i64,
    ) -> Applied {
        match self.agents.get(&agent) {
            None => return Err(Rejection::NotFound(format!("agent `{agent}`"))),
            Some(a) if a.draining => {
                return Err(Rejection::FailedPrecondition(format!(
                    "agent `{agent}` is draining"
                )));
            }
            Some(_) => {}
        }
        let Some(exec) = self.executions.get_mut(&execution) else {
            return Err(Rejection::NotFound(format!("execution {execution}")));
        };
        let Some(run) = exec.state.action_mut(stage, action) else {
            return Err(Rejection::NotFound("action".into()));
        };
        if !run.is_queued() {
            return Err(Rejection::FailedPrecondition(
                "action is not waiting for an agent".into(),
            ));
        }
        self.epoch += 1;
        run.epoch = self.epoch;
        run.attempt += 1;
        run.agent = Some(agent.clone());
        run.started_at = Some(at);
        run.message = String::new();
        run.history.push(AttemptRecord {
            attempt: run.attempt,
            epoch: self.epoch,
            agent: agent.clone(),
            outcome: Outcome::Running,
            exit_code: None,
            started_at: at,
            finished_at: None,
            message: String::new(),
        });
        let attempt = run.attempt;
        self.attempts.insert(
            self.epoch,
            AttemptLoc {
                execution,
                stage,
                action,
                agent,
            },
        );
        Ok(Output::Assigned {
            epoch: self.epoch,
            attempt,
        })
    }

    /// Records `agent`'s result for the attempt with fencing epoch `epoch`,
    /// if that attempt is its and still current; otherwise refuses it and
    /// changes nothing (not even which blobs the agent holds).
    pub(super) fn finish_attempt(
        &mut self,
        epoch: u64,
        agent: String,
        mut result: AttemptResult,
        at: i64,
    ) -> Applied {
        let refused = |reason: String| {
            Ok(Output::Attempt {
                accepted: false,
                reason,
            })
        };
        let loc = match self.attempts.get(&epoch) {
            Some(loc) if loc.agent == agent => loc.clone(),
            _ => return refused(format!("attempt epoch {epoch} is not assigned to {agent}")),
        };
        // Every check first: the attempt is current, and its report reads.
        let (exec, pipeline) = self.exec_and_pipeline_ref(&loc.execution)?;
        let Some(run) = exec.state.action(loc.stage, loc.action) else {
            return Err(Rejection::NotFound("action".into()));
        };
        if run.epoch != epoch || run.agent.is_none() || run.status() != ActionStatus::InProgress {
            return refused(format!("stale attempt: epoch {epoch} is no longer current"));
        }
        let retries = pipeline
            .stages
            .get(loc.stage)
            .and_then(|s| s.actions.get(loc.action))
            .map_or(0, |a| a.retries);
        let report = match &result.deployment {
            Some(bytes) => match crate::report::decode(bytes) {
                Ok(decoded) => Some((bytes.clone(), decoded)),
                Err(e) => return refused(e.to_string()),
            },
            None => None,
        };
        // Outputs and the log are recorded with their holder, whatever the
        // outcome (a failed attempt's log is kept too).
        for art in result.outputs.values().chain(result.log.iter()) {
            self.artifacts
                .entry(art.digest.clone())
                .or_insert_with(|| ArtifactRecord {
                    size: art.size,
                    ..Default::default()
                })
                .holders
                .insert(agent.clone());
        }
        let caches = std::mem::take(&mut result.caches);
        self.record_caches(&loc, &agent, (caches, result.success), at);
        // Found just above; the lookups cannot fail now.
        let gates = self.gates(&loc.execution);
        let (exec, pipeline) = self.exec_and_pipeline(&loc.execution)?;
        let name = exec.pipeline.clone();
        // A sibling failed (or a person stopped the run) meanwhile: a retry
        // queued in it would wait forever (found by the replicas property test).
        let ended = !exec.state.accepts_work();
        let Some(run) = exec.state.action_mut(loc.stage, loc.action) else {
            return Err(Rejection::NotFound("action".into()));
        };
        let AttemptResult {
            success,
            exit_code,
            message,
            outputs,
            log,
            variables,
            tests,
            ..
        } = result;
        let outcome = if success {
            Outcome::Succeeded
        } else {
            Outcome::Failed
        };
        run.close_attempt(epoch, outcome, exit_code, &message, at);
        let started_at = run
            .history
            .iter()
            .rev()
            .find(|h| h.epoch == epoch)
            .map_or(at, |h| h.started_at);
        run.exit_code = exit_code;
        run.log = log;
        run.tests = tests;
        if !success && !ended && run.count(Outcome::Failed) <= retries {
            let n = run.count(Outcome::Failed);
            run.requeue(format!(
                "retrying after a failure ({n} of {retries} retries): {message}"
            ));
        } else {
            run.outputs = outputs;
            if success {
                run.variables = variables;
            }
            exec.state.finish_action(
                pipeline,
                (loc.stage, loc.action),
                success,
                message,
                &gates,
                at,
            );
        }
        if let Some((bytes, decoded)) = report {
            self.record_deployment(
                (&loc.execution, loc.stage, loc.action),
                &agent,
                started_at,
                (bytes, decoded),
                at,
            );
        }
        self.progress(&name, Some(&loc.execution), at);
        Ok(Output::Attempt {
            accepted: true,
            reason: String::new(),
        })
    }

    /// A person's decision on an approval, once [`ClusterState::may_decide`]
    /// agrees against this very state.
    pub(super) fn decide(
        &mut self,
        execution: &str,
        (stage, action): (usize, usize),
        verdict: Verdict,
        at: i64,
    ) -> Applied {
        let Some(exec) = self.executions.get(execution) else {
            return Err(Rejection::NotFound(format!("execution {execution}")));
        };
        self.may_decide(&verdict.by, exec, stage, action)?;
        let gates = self.gates(execution);
        let (exec, pipeline) = self.exec_and_pipeline(execution)?;
        let name = exec.pipeline.clone();
        let Some(run) = exec.state.action_mut(stage, action) else {
            return Err(Rejection::NotFound("action".into()));
        };
        if run.status() != ActionStatus::WaitingForApproval {
            return Err(Rejection::FailedPrecondition(format!(
                "action is {}, not WaitingForApproval",
                run.status()
            )));
        }
        if run.decisions().iter().any(|d| d.by == verdict.by) {
            return Err(Rejection::FailedPrecondition(format!(
                "operator `{}` has already decided this approval; each person counts once",
                verdict.by
            )));
        }
        let required = pipeline
            .stages
            .get(stage)
            .and_then(|s| s.actions.get(action))
            .map_or(1, |a| a.required.max(1));
        let Verdict {
            by,
            approve,
            comment,
        } = verdict;
        run.approvals.push(Decision {
            by,
            approve,
            comment,
            at,
        });
        let approvers: BTreeSet<&str> = run
            .decisions()
            .iter()
            .filter(|d| d.approve)
            .map(|d| d.by.as_str())
            .collect();
        let approvals = approvers.len() as u32;
        if approve && approvals < required {
            // Not decided yet: it waits for more people.
            run.message = format!(
                "approved by {approvals} of {required}; waiting for {} more",
                required - approvals
            );
            return Ok(Output::None);
        }
        // Who decided and why is in `approvals`; the message only flags a rejection.
        let message = if approve {
            String::new()
        } else {
            "rejected".to_string()
        };
        exec.state
            .finish_action(pipeline, (stage, action), approve, message, &gates, at);
        self.progress(&name, Some(execution), at);
        Ok(Output::None)
    }

    /// Fails an approval whose deadline has passed by `at` (a no-op before it).
    pub(super) fn expire_approval(
        &mut self,
        execution: &str,
        (stage, action): (usize, usize),
        at: i64,
    ) -> Applied {
        let gates = self.gates(execution);
        let (exec, pipeline) = self.exec_and_pipeline(execution)?;
        let Some(run) = exec.state.action(stage, action) else {
            return Err(Rejection::NotFound("action".into()));
        };
        if run.status() != ActionStatus::WaitingForApproval || run.deadline.is_none_or(|d| d > at) {
            return Ok(Output::None);
        }
        let name = exec.pipeline.clone();
        exec.state.finish_action(
            pipeline,
            (stage, action),
            false,
            "approval timed out".into(),
            &gates,
            at,
        );
        self.progress(&name, Some(execution), at);
        Ok(Output::None)
    }

    /// Retention: forgets these finished executions (never a running one).
    pub(super) fn prune_executions(&mut self, ids: Vec<String>) -> Applied {
        let ids: BTreeSet<String> = ids
            .into_iter()
            .filter(|id| !self.active.contains(id))
            .collect();
        for id in &ids {
            if let Some(e) = self.executions.remove(id)
                && let Some(p) = self.pipelines.get_mut(&e.pipeline)
            {
                p.executions.retain(|x| x != id);
            }
        }
        self.attempts.retain(|_, loc| !ids.contains(&loc.execution));
        Ok(Output::None)
    }

    /// An execution and the pipeline version it runs, borrowed side by side
    /// (no copy of the pipeline on the hot path of every result).
    pub(super) fn exec_and_pipeline(
        &mut self,
        id: &str,
    ) -> Result<(&mut Execution, &Pipeline), Rejection> {
        let pipelines = &self.pipelines;
        let Some(exec) = self.executions.get_mut(id) else {
            return Err(Rejection::NotFound(format!("execution {id}")));
        };
        let Some(pipeline) = pipelines
            .get(&exec.pipeline)
            .and_then(|p| p.version(exec.version))
            .map(|v| &v.spec)
        else {
            return Err(Rejection::NotFound(format!(
                "pipeline {} version {}",
                exec.pipeline, exec.version
            )));
        };
        Ok((exec, pipeline))
    }

    /// [`ClusterState::exec_and_pipeline`] for looking only.
    pub(super) fn exec_and_pipeline_ref(
        &self,
        id: &str,
    ) -> Result<(&Execution, &Pipeline), Rejection> {
        let Some(exec) = self.executions.get(id) else {
            return Err(Rejection::NotFound(format!("execution {id}")));
        };
        let Some(pipeline) = self.pipeline_of(exec) else {
            return Err(Rejection::NotFound(format!(
                "pipeline {} version {}",
                exec.pipeline, exec.version
            )));
        };
        Ok((exec, pipeline))
    }

    /// Drops a finished execution from the active set and its attempts from the index.
    pub(super) fn settle(&mut self, id: &str) {
        let finished = self
            .executions
            .get(id)
            .is_some_and(|e| e.state.status.is_final());
        if finished {
            let still_running = self
                .executions
                .get(id)
                .is_some_and(|e| e.state.has_running());
            // Keep attempt records while a sibling still runs so its result is accepted.
            if !still_running {
                self.active.remove(id);
                self.attempts.retain(|_, loc| loc.execution != id);
            }
        }
    }

    pub fn pipeline_of(&self, exec: &Execution) -> Option<&Pipeline> {
        self.pipelines
            .get(&exec.pipeline)
            .and_then(|p| p.version(exec.version))
            .map(|v| &v.spec)
    }

    /// The attempt with fencing epoch `epoch`: where it runs, its execution
    /// and the spec of its action (in the pipeline version it runs).
    pub fn attempt_action(
        &self,
        epoch: u64,
    ) -> Option<(&AttemptLoc, &Execution, &ferry_pipeline::Action)> {
        let loc = self.attempts.get(&epoch)?;
        let exec = self.executions.get(&loc.execution)?;
        let action = self
            .pipeline_of(exec)?
            .stages
            .get(loc.stage)?
            .actions
            .get(loc.action)?;
        Some((loc, exec, action))
    }

    /// Build/test actions waiting for an agent, oldest execution first.
    pub fn queued(&self) -> Vec<(String, usize, usize)> {
        let mut out: Vec<(i64, String, usize, usize)> = Vec::new();
        for id in &self.active {
            let Some(exec) = self.executions.get(id) else {
                continue;
            };
            for (si, stage) in exec.state.actions.iter().enumerate() {
                for (ai, run) in stage.iter().enumerate() {
                    if run.is_queued() {
                        out.push((exec.started_at, id.clone(), si, ai));
                    }
                }
            }
        }
        out.sort();
        out.into_iter().map(|(_, id, s, a)| (id, s, a)).collect()
    }

    /// Approvals whose deadline has passed at `now`.
    pub fn expired_approvals(&self, now: i64) -> Vec<(String, usize, usize)> {
        let mut out = Vec::new();
        for id in &self.active {
            let Some(exec) = self.executions.get(id) else {
                continue;
            };
            if !exec.state.accepts_work() {
                continue;
            }
            for (si, stage) in exec.state.actions.iter().enumerate() {
                for (ai, run) in stage.iter().enumerate() {
                    if run.status() == ActionStatus::WaitingForApproval
                        && run.deadline.is_some_and(|d| d <= now)
                    {
                        out.push((id.clone(), si, ai));
                    }
                }
            }
        }
        out
    }

    /// Finished executions beyond the newest `keep` of each pipeline (oldest first).
    pub fn prunable_executions(&self, keep: usize) -> Vec<String> {
        let mut out = Vec::new();
        for p in self.pipelines.values() {
            let excess = p.executions.len().saturating_sub(keep);
            out.extend(
                p.executions
                    .iter()
                    .take(excess)
                    .filter(|id| !self.active.contains(*id))
                    .cloned(),
            );
        }
        out
    }
}
