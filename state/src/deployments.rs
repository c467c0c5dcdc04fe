//! Deployment history in the replicated state: one record per deploy
//! attempt that reported, the redeploy of an earlier release as a new
//! execution that runs only that deploy action (`ferry rollback`), and the
//! queries about both. A redeploy checks everything before it changes anything.

use ferry_pipeline::execution::{ActionStatus, ArtifactRef, ExecutionState, Gates};
use ferry_pipeline::spec::{DeployOutcome, DeploymentReport};
use serde::{Deserialize, Serialize};

use super::apply::{Applied, Output, Rejection};
use super::{ClusterState, Execution};

/// Deployment records kept per environment (older ones are dropped).
pub const DEPLOYMENTS_KEPT: usize = 50;

/// Newest deployments per environment whose artifacts retention keeps, so
/// that `ferry rollback` can return to them.
pub const ROLLBACK_ARTIFACTS_KEPT: usize = 10;

/// One deployment: a deploy action's attempt and what it did on each host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    pub id: u64,
    pub environment: String,
    pub pipeline: String,
    /// Pipeline version of the execution (a redeploy needs the same one).
    pub version: u64,
    pub execution: String,
    pub stage: usize,
    pub action: usize,
    /// Commit of the execution.
    pub revision: String,
    /// The execution whose artifact was deployed (names the release directory).
    pub release: String,
    /// Name of the deployed input, and the blob (`None` for the git source).
    pub input: String,
    pub artifact: Option<ArtifactRef>,
    pub agent: String,
    pub started_at: i64,
    pub finished_at: i64,
    #[serde(with = "outcome_word")]
    pub outcome: DeployOutcome,
    /// The agent's whole report: `ferry.internal.v1.DeploymentReport`, protobuf-encoded
    /// (at most about 64 KiB of step output: the agent trims it).
    #[serde(with = "hex::serde")]
    pub report: Vec<u8>,
}

impl DeploymentRecord {
    /// The report. Its bytes decoded when the result was applied (a result
    /// whose report does not decode is refused), so they decode here too.
    pub fn report(&self) -> DeploymentReport {
        crate::report::decode(&self.report).unwrap_or_default()
    }

    pub fn succeeded(&self) -> bool {
        self.outcome == DeployOutcome::Succeeded
    }
}

/// The outcome as the stored word (`Succeeded`, `Failed`, `RolledBack`); a
/// word this version does not know reads as `Failed`, as in the report.
mod outcome_word {
    use ferry_pipeline::spec::DeployOutcome;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(o: &DeployOutcome, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(o.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DeployOutcome, D::Error> {
        let word = String::deserialize(d)?;
        Ok(DeployOutcome::parse(&word).unwrap_or(DeployOutcome::Failed))
    }
}

impl ClusterState {
    /// Records a deploy attempt's report, as sent and decoded (called once
    /// the result is accepted).
    pub(super) fn record_deployment(
        &mut self,
        (execution, stage, action): (&str, usize, usize),
        agent: &str,
        started_at: i64,
        (report, decoded): (Vec<u8>, DeploymentReport),
        at: i64,
    ) {
        let Some(exec) = self.executions.get(execution) else {
            return;
        };
        let input = self
            .pipeline_of(exec)
            .and_then(|p| p.stages.get(stage))
            .and_then(|s| s.actions.get(action))
            .and_then(|a| a.inputs.first().cloned())
            .unwrap_or_default();
        let artifact = exec
            .state
            .produced()
            .get(input.as_str())
            .map(|a| (*a).clone());
        let id = self.deployments.keys().next_back().map_or(1, |id| id + 1);
        let record = DeploymentRecord {
            id,
            environment: decoded.environment.clone(),
            pipeline: exec.pipeline.clone(),
            version: exec.version,
            execution: exec.id.clone(),
            stage,
            action,
            revision: exec.revision.clone(),
            release: decoded.release.clone(),
            input,
            artifact,
            agent: agent.to_string(),
            started_at,
            finished_at: at,
            outcome: decoded.outcome,
            report,
        };
        self.deployments.insert(id, record);
        let ids: Vec<u64> = self
            .deployments
            .values()
            .filter(|d| d.environment == decoded.environment)
            .map(|d| d.id)
            .collect();
        for old in ids.iter().take(ids.len().saturating_sub(DEPLOYMENTS_KEPT)) {
            self.deployments.remove(old);
        }
    }

    /// Starts execution `id`: the deploy action of deployment `from` again,
    /// with the same artifact, every other action marked as not run.
    pub(super) fn redeploy(
        &mut self,
        id: String,
        from: u64,
        (trigger, started_by): (String, Option<String>),
        at: i64,
    ) -> Applied {
        if self.executions.contains_key(&id) {
            return Err(Rejection::AlreadyExists(format!("execution {id}")));
        }
        let Some(dep) = self.deployments.get(&from).cloned() else {
            return Err(Rejection::NotFound(format!("deployment {from}")));
        };
        let Some(spec) = self
            .pipelines
            .get(&dep.pipeline)
            .and_then(|p| p.version(dep.version))
            .map(|v| v.spec.clone())
        else {
            return Err(Rejection::NotFound(format!(
                "version {} of pipeline `{}`",
                dep.version, dep.pipeline
            )));
        };
        let mut state = ExecutionState::new(&spec);
        let note = format!("not run: redeploy of release {}", dep.release);
        let mut placed = dep.artifact.is_none();
        for (si, stage) in spec.stages.iter().enumerate() {
            for (ai, action) in stage.actions.iter().enumerate() {
                if (si, ai) == (dep.stage, dep.action) {
                    continue;
                }
                let Some(run) = state.action_mut(si, ai) else {
                    continue;
                };
                run.status = Some(ActionStatus::Succeeded);
                run.message = note.clone();
                run.started_at = Some(at);
                run.finished_at = Some(at);
                // The deployed artifact is handed on as if its producer had made it again.
                if !placed && action.outputs.contains_key(&dep.input) {
                    if let Some(art) = &dep.artifact {
                        run.outputs.insert(dep.input.clone(), art.clone());
                    }
                    placed = true;
                }
            }
        }
        if !placed {
            return Err(Rejection::NotFound(format!(
                "the action producing `{}` in pipeline `{}`",
                dep.input, dep.pipeline
            )));
        }
        // A rollback is an operator's explicit act: no gate holds it.
        state.advance(&spec, &Gates::open(), at);
        if let Some(rec) = self.pipelines.get_mut(&dep.pipeline) {
            rec.executions.push(id.clone());
        }
        self.executions.insert(
            id.clone(),
            Execution {
                id: id.clone(),
                pipeline: dep.pipeline.clone(),
                version: dep.version,
                revision: dep.revision.clone(),
                trigger,
                started_by,
                started_at: at,
                state,
                release_of: Some(dep.release.clone()),
                rollbacks: None,
                upstream: Vec::new(),
                fed: None,
            },
        );
        self.active.insert(id.clone());
        self.settle(&id);
        Ok(Output::Execution { id })
    }

    /// Blobs of the newest deployments of each environment (kept for rollback).
    pub fn deployed_artifacts(&self) -> Vec<&str> {
        let mut per_env: std::collections::BTreeMap<&str, usize> = Default::default();
        let mut out = Vec::new();
        for d in self.deployments.values().rev() {
            let n = per_env.entry(d.environment.as_str()).or_default();
            if *n < ROLLBACK_ARTIFACTS_KEPT {
                out.extend(d.artifact.as_ref().map(|a| a.digest.as_str()));
            }
            *n += 1;
        }
        out
    }

    /// Environments a deploy attempt is running against now: the scheduler
    /// starts no second deployment to them (as CodeDeploy allows one
    /// deployment per group at a time).
    pub fn environments_deploying(&self) -> std::collections::BTreeSet<&str> {
        self.attempts
            .iter()
            .filter_map(|(epoch, loc)| {
                let exec = self.executions.get(&loc.execution)?;
                let run = exec.state.action(loc.stage, loc.action)?;
                let running = run.epoch == *epoch
                    && run.agent.is_some()
                    && run.status() == ActionStatus::InProgress;
                let action = self
                    .pipeline_of(exec)?
                    .stages
                    .get(loc.stage)?
                    .actions
                    .get(loc.action)?;
                running
                    .then_some(action.deploy.as_ref())
                    .flatten()
                    .map(|d| d.environment.as_str())
            })
            .collect()
    }

    /// Deployments of `environment`, newest first.
    pub fn deployments_of<'a>(
        &'a self,
        environment: &'a str,
    ) -> impl Iterator<Item = &'a DeploymentRecord> + 'a {
        self.deployments
            .values()
            .rev()
            .filter(move |d| d.environment == environment)
    }

    /// The deployment `ferry rollback` returns to: the newest good one of
    /// release `to`; or (without `to`) the newest good one whose release
    /// differs from the current release — unless the newest deployment
    /// failed, when the last good release is applied again (it repairs hosts
    /// a failed rollback left on the new release).
    pub fn rollback_target<'a>(
        &'a self,
        environment: &'a str,
        to: &str,
    ) -> Result<&'a DeploymentRecord, String> {
        let mut good = self.deployments_of(environment).filter(|d| d.succeeded());
        if !to.is_empty() {
            return good.find(|d| d.release == to).ok_or_else(|| {
                format!("no successful deployment of release {to} to environment `{environment}` is on record")
            });
        }
        let newest_failed = self
            .deployments_of(environment)
            .next()
            .is_some_and(|d| !d.succeeded());
        let current = good
            .next()
            .ok_or_else(|| format!("environment `{environment}` has no successful deployment"))?;
        if newest_failed {
            return Ok(current);
        }
        good.find(|d| d.release != current.release).ok_or_else(|| {
            format!(
                "environment `{environment}` has no earlier good release than {} on record",
                current.release
            )
        })
    }
}
