//! One build, test, plugin or deploy action of a local run: started through the
//! runner its kind needs — the agent's Docker executor or its deployer, as
//! the agent's `attempt.rs` picks them — with its inputs from the run's
//! store, its secrets and host keys masked in its log; and its end recorded
//! in the execution state as the coordinator records an agent's result
//! (outputs, output variables, exit code, attempt history), retried when
//! its `retries:` allow.

use ferry_pipeline::execution::{
    ActionStatus, ArtifactRef, AttemptRecord, Gates, Outcome as AttemptOutcome, Started,
};
use ferry_pipeline::{ActionKind, SOURCE_ARTIFACT};

use super::driver::{Done, Run, now_ms};
use super::log::LineLog;
use super::spec::{self, secret_env_var};
use super::{ActionEnd, lock};
use crate::runner::{ActionError, Attempt, Cancel, LogSink as _, Outcome, PreparedInput, Secrets};
use ferry_pipeline::mask::Masker;

impl Run<'_> {
    /// Starts one build, test or deploy action; when it cannot start, fails
    /// it (or, a deploy after a skipped approval, skips it) and returns what
    /// that started.
    pub(super) fn start(&mut self, at: (usize, usize)) -> Option<Started> {
        let name = self.name(at);
        let action = self.pipeline.stages.get(at.0)?.actions.get(at.1)?;
        if action.kind == ActionKind::Deploy
            && let Some(approval) = &self.approval_skipped
        {
            let why = format!("skipped: approval {approval} was not given");
            lock(&self.observer).note(&format!("{name} {why}"));
            let run = self.state.action_mut(at.0, at.1)?;
            run.status = Some(ActionStatus::Skipped);
            run.finished_at = Some(now_ms());
            run.message = why;
            return Some(self.state.advance(self.pipeline, &Gates::open(), now_ms()));
        }
        if let Some(deploy) = &action.deploy
            && !self.environments.contains_key(&deploy.environment)
        {
            // `plan` skips these; never hand a deploy to the executor.
            let why = format!(
                "no --deploy file describes environment `{}`",
                deploy.environment
            );
            return Some(self.fail_to_start(at, why));
        }
        let secrets: Secrets = match spec::secrets(action, &self.secrets) {
            Ok(s) => s,
            Err(missing) => {
                let why = format!(
                    "secret `{missing}` has no value: pass --secret {missing}=@FILE or set {}",
                    secret_env_var(&missing)
                );
                return Some(self.fail_to_start(at, why));
            }
        };
        let inputs = match self.inputs(action) {
            Ok(i) => i,
            Err(why) => return Some(self.fail_to_start(at, why)),
        };
        self.epoch += 1;
        let epoch = self.epoch;
        let now = now_ms();
        let run = self.state.action_mut(at.0, at.1)?;
        run.attempt += 1;
        run.epoch = epoch;
        run.agent = Some("local".into());
        run.message = "running".into();
        run.history.push(AttemptRecord {
            attempt: run.attempt,
            epoch,
            agent: "local".into(),
            outcome: AttemptOutcome::Running,
            exit_code: None,
            started_at: now,
            finished_at: None,
            message: String::new(),
        });
        let mut spec = ferry_pipeline::spec::action_spec(
            self.pipeline,
            at,
            run,
            (&self.execution_id, &self.source.revision),
            epoch,
        )?;
        if let Some(deploy) = &action.deploy
            && let Some(env) = self.environments.get(&deploy.environment)
        {
            spec.deploy = Some(spec::deploy_spec(
                deploy,
                env,
                &self.secrets,
                &self.execution_id,
            ));
        }
        // Host keys are masked too, should a hook print one.
        let credentials = spec.deploy.iter().flat_map(|d| d.credentials());
        let masker = Masker::new(secrets.values().cloned().chain(credentials));
        let log = LineLog::new(name.clone(), masker, self.observer.clone());
        let (handle, cancel) = Cancel::new();
        self.cancels.insert(at, handle);

        // The runner its kind needs, chosen as on an agent.
        let runner = crate::runner::runner_for(&spec, self.executor, self.deployer);
        let container = spec
            .deploy
            .is_none()
            .then(|| self.executor.container_name(epoch));
        lock(&self.observer).started(&name, container.as_deref());
        self.running.push(Box::pin(async move {
            let mut log = log;
            let attempt = Attempt {
                spec: &spec,
                inputs: &inputs,
                secrets: &secrets,
                log: &mut log,
                cancel,
            };
            let outcome = runner.run(attempt).await;
            (at, epoch, outcome, log)
        }));
        None
    }

    /// The action's inputs from the run's store: `source`, then what
    /// earlier actions produced.
    fn inputs(&self, action: &ferry_pipeline::Action) -> Result<Vec<PreparedInput>, String> {
        let produced = self.state.produced();
        action
            .inputs
            .iter()
            .map(|name| {
                let digest = if name == SOURCE_ARTIFACT {
                    self.source.blob.digest.clone()
                } else {
                    produced
                        .get(name.as_str())
                        .map(|a| a.digest.clone())
                        .ok_or_else(|| {
                            format!("input `{name}` was not produced (its action did not run)")
                        })?
                };
                Ok(PreparedInput {
                    name: name.clone(),
                    digest,
                })
            })
            .collect()
    }

    fn fail_to_start(&mut self, at: (usize, usize), why: String) -> Started {
        let name = self.name(at);
        lock(&self.observer).finished(&ActionEnd {
            name,
            succeeded: false,
            exit_code: None,
            message: why.clone(),
            kept_container: None,
            stopped: false,
            tests: None,
        });
        self.state
            .finish_action(self.pipeline, at, false, why, &Gates::open(), now_ms())
    }

    /// Records an action's end, retries it if its `retries` allow, and
    /// returns what its end started.
    pub(super) fn end(&mut self, (at, epoch, outcome, mut log): Done) -> Started {
        self.cancels.remove(&at);
        let now = now_ms();
        let (success, exit_code) = (outcome.success(), outcome.exit_code());
        let kept = outcome
            .result
            .as_ref()
            .is_err_and(ActionError::ran_and_failed)
            .then(|| self.executor.container_name(epoch))
            .filter(|_| self.executor.keeps_failed());
        let Outcome {
            result,
            variables,
            deployment,
            failure_outputs,
            tests,
            // `ferry exec` keeps no caches.
            caches: _,
        } = outcome;
        if let Some(report) = deployment {
            let summary = log.mask(&report.summary);
            lock(&self.observer).note(&format!(
                "{}: deployment to {} {}: {summary}",
                self.name(at),
                report.environment,
                report.outcome
            ));
        }
        let (message, outputs) = match result {
            Ok(outputs) => (String::new(), outputs),
            Err(e) => {
                log.write(format!("[ferry] {e}\n").as_bytes());
                (log.mask(&e.to_string()), failure_outputs)
            }
        };
        log.finish();
        if let Some(name) = &kept {
            self.kept.push(name.clone());
        }
        let retries = self
            .pipeline
            .stages
            .get(at.0)
            .and_then(|s| s.actions.get(at.1))
            .map_or(0, |a| a.retries);
        let Some(run) = self.state.action_mut(at.0, at.1) else {
            return Started::default();
        };
        let outcome_kind = if success {
            AttemptOutcome::Succeeded
        } else if self.interrupted {
            AttemptOutcome::Stopped
        } else {
            AttemptOutcome::Failed
        };
        run.close_attempt(epoch, outcome_kind, exit_code, &message, now);
        run.exit_code = exit_code;
        run.tests = tests.clone();
        run.outputs = outputs
            .into_iter()
            .map(|o| {
                (
                    o.name,
                    ArtifactRef {
                        digest: o.blob.digest,
                        size: o.blob.size,
                    },
                )
            })
            .collect();
        if success {
            run.variables = variables;
        }
        let failures = run.count(AttemptOutcome::Failed);
        let name = self.name(at);
        lock(&self.observer).finished(&ActionEnd {
            name: name.clone(),
            succeeded: success,
            exit_code,
            message: message.clone(),
            kept_container: kept,
            stopped: !success && self.interrupted,
            tests,
        });
        if !success && !self.interrupted && failures <= retries {
            lock(&self.observer).note(&format!(
                "{name} failed; retrying ({failures} of its {retries} retries)"
            ));
            return Started {
                queued: vec![at],
                approvals: Vec::new(),
            };
        }
        self.state
            .finish_action(self.pipeline, at, success, message, &Gates::open(), now)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use ferry_pipeline::execution::ExecutionState;
    use futures::StreamExt as _;

    use super::super::driver::Run;
    use super::super::source::PreparedSource;
    use super::super::test_support::Recorder;
    use super::*;
    use crate::deploy::Deployer;
    use crate::executor::Executor;
    use crate::store::{Blob, Store};

    /// An action whose image cannot be had ran no command to its end: its
    /// record and its end say no exit code (as a coordinator records an
    /// agent's), not -1.
    #[tokio::test]
    async fn an_action_that_ran_no_command_has_no_exit_code()
    -> Result<(), Box<dyn std::error::Error>> {
        let pipeline = ferry_pipeline::parse(
            "name: p\nsource: {git: x}\nstages:\n  - name: build\n    actions:\n      - {name: compile, type: build, image: i, commands: [make]}\n",
        )
        .map_err(|d| format!("{d:?}"))?;
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path().join("store"))?;
        // A socket nobody listens on any more: no engine answers, so the
        // image can be neither found nor pulled.
        let socket = dir.path().join("docker.sock");
        drop(std::os::unix::net::UnixListener::bind(&socket)?);
        let docker = bollard::Docker::connect_with_unix(
            &socket.to_string_lossy(),
            5,
            bollard::API_DEFAULT_VERSION,
        )?;
        let executor = Executor::new(docker, store.clone(), "test".into());
        let deployer = Deployer::new(store);
        let recorder = Arc::new(Mutex::new(Recorder::default()));
        let mut run = Run {
            pipeline: &pipeline,
            executor: &executor,
            deployer: &deployer,
            environments: BTreeMap::new(),
            approval_skipped: None,
            observer: recorder.clone(),
            source: PreparedSource {
                blob: Blob {
                    digest: "sha256:00".into(),
                    size: 0,
                },
                revision: "worktree".into(),
                source_ref: None,
                description: "working tree".into(),
            },
            execution_id: "local-1".into(),
            secrets: BTreeMap::new(),
            state: ExecutionState::new(&pipeline),
            epoch: 0,
            running: Default::default(),
            cancels: BTreeMap::new(),
            kept: Vec::new(),
            interrupted: false,
        };
        let started = run.state.advance(&pipeline, &Gates::open(), 0);
        assert_eq!(started.queued, vec![(0, 0)]);
        assert!(run.start((0, 0)).is_none(), "it starts");
        let done = run.running.next().await.ok_or("nothing ran")?;
        run.end(done);
        let record = run.state.action(0, 0).ok_or("no action")?;
        assert_eq!(record.status(), ActionStatus::Failed);
        assert_eq!(record.exit_code, None);
        assert_eq!(record.history.len(), 1);
        assert_eq!(record.history[0].exit_code, None);
        assert!(record.message.contains("image `i`"), "{}", record.message);
        let ends = &recorder.lock().map_err(|e| e.to_string())?.ends;
        assert_eq!(ends.len(), 1);
        assert!(!ends[0].succeeded);
        assert_eq!(ends[0].exit_code, None);
        Ok(())
    }
}
