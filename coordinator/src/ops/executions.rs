//! Executions: starting one (by hand at a resolved revision, or by the
//! poller), reading and listing them, where an action's log is, and the
//! leader's retention of old ones.

use std::collections::BTreeMap;

use ferry_certs::Identity;
use ferry_pipeline::condition::SourceRef;
use ferry_pipeline::execution::{ActionStatus, ArtifactRef};

use super::page::PageRequest;
use super::{OpError, OpResult, Ops, new_execution_id};
use crate::views::now_ms;
use ferry_state::{By, ClusterState, Command, Execution, Output};

/// An execution started by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub execution_id: String,
    /// The commit it builds.
    pub revision: String,
    pub pipeline_version: u64,
}

/// One action of one execution, as `ferry logs` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionAt {
    pub execution: String,
    pub stage: usize,
    pub action: usize,
}

/// Where an action's log is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogState {
    /// The fencing epoch of its current attempt; 0 while it never started.
    pub epoch: u64,
    pub status: ActionStatus,
    /// The stored log of the attempt, and the peer addresses of its holders.
    pub log: Option<(String, Vec<String>)>,
}

/// `--var` values from outside, bounded before anything is proposed
/// (whether the pipeline declares them is `apply`'s check).
fn check_variables(variables: &BTreeMap<String, String>) -> OpResult<()> {
    use ferry_pipeline::vars;
    vars::check_values(variables, vars::MAX_PIPELINE_VARS, "--var value").map_err(OpError::Invalid)
}

/// The execution `id` of `pipeline` (either may be empty: the latest of the
/// pipeline, or any pipeline).
fn find<'a>(s: &'a ClusterState, pipeline: &str, id: &str) -> OpResult<&'a Execution> {
    if id.is_empty() {
        let rec = s
            .pipelines
            .get(pipeline)
            .ok_or_else(|| OpError::NotFound(format!("pipeline `{pipeline}` not found")))?;
        rec.executions
            .last()
            .and_then(|id| s.executions.get(id))
            .ok_or_else(|| {
                OpError::NotFound(format!("pipeline `{pipeline}` has no executions yet"))
            })
    } else {
        s.executions
            .get(id)
            .filter(|e| pipeline.is_empty() || e.pipeline == pipeline)
            .ok_or_else(|| {
                OpError::NotFound(format!("execution {id} of pipeline `{pipeline}` not found"))
            })
    }
}

/// The execution `id`, which must be of `pipeline`.
pub(crate) fn execution_of<'a>(
    s: &'a ClusterState,
    pipeline: &str,
    id: &str,
) -> OpResult<&'a Execution> {
    s.executions
        .get(id)
        .filter(|e| e.pipeline == pipeline)
        .ok_or_else(|| {
            OpError::NotFound(format!("execution {id} of pipeline `{pipeline}` not found"))
        })
}

/// Finds `STAGE/ACTION` in an execution's pipeline version.
pub(crate) fn locate_action(
    state: &ClusterState,
    exec: &Execution,
    path: &str,
) -> OpResult<(usize, usize)> {
    let Some((stage, action)) = path.split_once('/') else {
        return Err(OpError::Invalid(format!(
            "action `{path}` must be written STAGE/ACTION, e.g. build/compile"
        )));
    };
    let spec = state
        .pipeline_of(exec)
        .ok_or_else(|| OpError::NotFound("pipeline version of this execution".into()))?;
    spec.find_action(stage, action).ok_or_else(|| {
        let known: Vec<String> = spec
            .stages
            .iter()
            .flat_map(|s| {
                s.actions
                    .iter()
                    .map(move |a| format!("{}/{}", s.name, a.name))
            })
            .collect();
        OpError::NotFound(format!(
            "no action `{path}` in pipeline `{}`; known: {}",
            exec.pipeline,
            known.join(", ")
        ))
    })
}

/// The command that starts execution `id` now (not from a trigger).
fn start_command(
    id: &str,
    pipeline: &str,
    revision: String,
    trigger: String,
    started_by: Option<By>,
    (variables, source): (BTreeMap<String, String>, Option<SourceRef>),
) -> Command {
    Command::StartExecution {
        id: id.to_string(),
        pipeline: pipeline.to_string(),
        revision,
        trigger,
        started_by,
        variables,
        source,
        once: None,
        at: now_ms(),
    }
}

impl Ops {
    /// Write: starts an execution of the latest version of `pipeline` at
    /// `revision` (empty: the head of its branch), resolved to a commit first.
    /// Where the source is comes from a local read: `apply` checks the
    /// pipeline and the caller's role again, on the log's order (a member
    /// that lags behind a revocation gets this far, and `apply` refuses the
    /// command: tests/authz_in_apply.rs).
    pub async fn start_execution(
        &self,
        who: &Identity,
        pipeline: &str,
        revision: &str,
        variables: BTreeMap<String, String>,
        request: Option<&super::RequestId>,
    ) -> OpResult<Started> {
        check_variables(&variables)?;
        if let Some(first) = self.remembered(who, request)? {
            return self.started(first);
        }
        let (url, branch, version) = self.local_read(|s| {
            s.pipelines
                .get(pipeline)
                .and_then(|p| p.latest())
                .map(|v| {
                    (
                        v.spec.source.git.clone(),
                        v.spec.source.branch.clone(),
                        v.version,
                    )
                })
                .ok_or_else(|| OpError::NotFound(format!("pipeline `{pipeline}` not found")))
        })?;
        let rev = if revision.is_empty() {
            branch
        } else {
            revision.to_string()
        };
        let revision = self
            .ctx()
            .git
            .resolve(&url, &rev)
            .await
            .map_err(|e| OpError::FailedPrecondition(e.to_string()))?;
        let source = self.ctx().git.ref_kind(&url, &rev).await;
        let id = new_execution_id();
        let cmd = start_command(
            &id,
            pipeline,
            revision.clone(),
            format!("manual by {}", who.name),
            Some(super::access::acting(who)),
            (variables, source),
        );
        // The same request id again answers the execution it started first.
        if request.is_some() {
            let out = self.write_requested(who, request, cmd).await?;
            if out != (Output::Execution { id: id.clone() }) {
                return self.started(out);
            }
        } else {
            self.write_new(cmd).await?;
        }
        tracing::info!(%pipeline, execution = %id, %revision, "execution started by hand");
        Ok(Started {
            execution_id: id,
            revision,
            pipeline_version: version,
        })
    }

    /// Local read: the execution a request with this id started before.
    fn started(&self, out: Output) -> OpResult<Started> {
        let Output::Execution { id } = out else {
            return Err(OpError::Internal("unexpected start result".into()));
        };
        self.local_read(|s| {
            let exec = s.executions.get(&id).ok_or_else(|| {
                OpError::NotFound(format!("execution {id} (pruned since it started)"))
            })?;
            Ok(Started {
                execution_id: id.clone(),
                revision: exec.revision.clone(),
                pipeline_version: exec.version,
            })
        })
    }

    /// Write (new id): starts an execution at an already-resolved commit;
    /// `started_by` None is the system (triggers use [`Ops::start_once`]).
    pub async fn start_at(
        &self,
        pipeline: &str,
        revision: String,
        trigger: String,
        started_by: Option<By>,
        (variables, source): (BTreeMap<String, String>, Option<SourceRef>),
    ) -> OpResult<String> {
        let id = new_execution_id();
        self.write_new(start_command(
            &id,
            pipeline,
            revision,
            trigger,
            started_by,
            (variables, source),
        ))
        .await?;
        Ok(id)
    }

    /// Linearizable: execution `id` of `pipeline` (empty id: its latest), as
    /// `view` shows it.
    pub async fn get_execution<R>(
        &self,
        pipeline: &str,
        id: &str,
        view: impl FnOnce(&ClusterState, &Execution) -> R,
    ) -> OpResult<R> {
        self.read(|s| find(s, pipeline, id).map(|e| view(s, e)))
            .await?
    }

    /// Local read, for the follow-ups of a watch that began with
    /// [`Ops::get_execution`]: this member's applied state only moves on.
    pub fn local_execution<R>(
        &self,
        pipeline: &str,
        id: &str,
        view: impl FnOnce(&ClusterState, &Execution) -> R,
    ) -> OpResult<R> {
        self.local_read(|s| find(s, pipeline, id).map(|e| view(s, e)))
    }

    /// Linearizable: one page of the executions of `pipeline`, newest first,
    /// and the next page's token.
    pub async fn list_executions<R>(
        &self,
        pipeline: &str,
        page: &PageRequest,
        view: impl Fn(&ClusterState, &Execution) -> R,
    ) -> OpResult<(Vec<R>, String)> {
        self.read(|s| {
            let rec = s
                .pipelines
                .get(pipeline)
                .ok_or_else(|| OpError::NotFound(format!("pipeline `{pipeline}` not found")))?;
            let (ids, next) = page.apply(
                rec.executions
                    .iter()
                    .rev()
                    .filter(|id| s.executions.contains_key(*id)),
                |id| id.to_string(),
            )?;
            let views = ids
                .into_iter()
                .filter_map(|id| s.executions.get(id))
                .map(|e| view(s, e))
                .collect();
            Ok((views, next))
        })
        .await?
    }

    /// Linearizable: the action `STAGE/ACTION` of an execution, and whether
    /// it is running (then its live lines are on the leader only).
    pub async fn locate_log(
        &self,
        pipeline: &str,
        id: &str,
        action: &str,
    ) -> OpResult<(ActionAt, bool)> {
        self.read(|s| {
            let exec = execution_of(s, pipeline, id)?;
            let (stage, ai) = locate_action(s, exec, action)?;
            let running = exec
                .state
                .action(stage, ai)
                .is_some_and(|r| !r.status().is_final());
            Ok((
                ActionAt {
                    execution: exec.id.clone(),
                    stage,
                    action: ai,
                },
                running,
            ))
        })
        .await?
    }

    /// Local read, for a log stream that began with [`Ops::locate_log`].
    pub fn local_log_state(&self, at: &ActionAt) -> LogState {
        self.local_read(|s| {
            let run = s
                .executions
                .get(&at.execution)
                .and_then(|e| e.state.action(at.stage, at.action))
                .cloned()
                .unwrap_or_default();
            let log = run.log.as_ref().map(|l: &ArtifactRef| {
                (
                    l.digest.clone(),
                    crate::views::holder_addresses(s, &l.digest),
                )
            });
            LogState {
                epoch: run.epoch,
                status: run.status(),
                log,
            }
        })
    }

    /// Leader loop (retention), local read then write: forgets finished
    /// executions past the retention of their pipeline. Returns how many.
    pub async fn prune_executions(&self, keep: usize) -> OpResult<usize> {
        let old = self.local_read(|s| s.prunable_executions(keep));
        if old.is_empty() {
            return Ok(0);
        }
        let n = old.len();
        self.write(Command::PruneExecutions { ids: old }).await?;
        Ok(n)
    }

    /// Write (the scheduler, on the leader): gives an action to `agent`.
    /// The epoch fixed for the attempt, or None if `apply` made none.
    pub async fn assign(
        &self,
        execution: String,
        stage: usize,
        action: usize,
        agent: &str,
    ) -> OpResult<Option<u64>> {
        let out = self
            .write(Command::Assign {
                execution,
                stage,
                action,
                agent: agent.to_string(),
                at: now_ms(),
            })
            .await?;
        Ok(match out {
            ferry_state::Output::Assigned { epoch, .. } => Some(epoch),
            _ => None,
        })
    }
}
