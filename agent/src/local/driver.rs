//! The loop of a local run: the pipeline crate's [`ExecutionState`] says
//! what starts next (stages in order, run-order groups, `when:`,
//! `on_failure:`, variables resolved when an action starts); each build or
//! test action of a group runs at once, in parallel, through the Docker
//! [`Executor`] — the agent's engine — with its inputs from the run's
//! store; its outputs and output variables are recorded in the state as
//! the coordinator records an agent's result; approvals are asked of the
//! [`Observer`]. Ctrl-C cancels what runs (the engine removes the
//! containers) and ends the run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bollard::Docker;
use ferry_pipeline::execution::{
    ActionStatus, ArtifactRef, AttemptRecord, Decision as Recorded, ExecutionState,
    ExecutionStatus, Gates, Outcome as AttemptOutcome, Started, StopRequest,
};
use ferry_pipeline::{ActionKind, Environment, Pipeline, SOURCE_ARTIFACT, vars};
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;

use super::log::LineLog;
use super::source::{self, PreparedSource, Revision};
use super::spec::{self, secret_env_var};
use super::{
    ActionEnd, ActionName, ApprovalAsk, Decision, LocalError, Observer, Selection, lock, plan,
};
use crate::deploy::Deployer;
use crate::executor::{ContainerDefaults, Executor};
use crate::mask::Masker;
use crate::runner::{
    ActionError, ActionRunner, Attempt, Cancel, CancelHandle, LogSink as _, Outcome, PreparedInput,
    Secrets,
};
use crate::store::Store;

/// What to run, and how.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The top of the git working tree the `source` input comes from.
    pub repo: PathBuf,
    pub revision: Revision,
    pub selection: Selection,
    /// `--var NAME=VALUE`: values for declared pipeline variables.
    pub variables: BTreeMap<String, String>,
    /// Secret name → value (`--secret NAME=@FILE`); a secret not here is
    /// read from [`secret_env_var`]'s variable.
    pub secrets: BTreeMap<String, Vec<u8>>,
    /// Keep the container of an action whose command failed.
    pub keep: bool,
    /// `--deploy ENV_FILE`: the environments deploy actions may deploy to,
    /// by name (deploy actions to any other are skipped).
    pub environments: BTreeMap<String, Environment>,
    /// The run's scratch folder: its artifact store lives here.
    pub work_dir: PathBuf,
    pub container: ContainerDefaults,
}

/// How a local run ended.
#[derive(Debug)]
pub struct Report {
    pub execution_id: String,
    pub source: PreparedSource,
    /// Every action's record, as a coordinator would keep it.
    pub state: ExecutionState,
    /// Containers kept for inspection (`--keep`).
    pub kept: Vec<String>,
    /// Ctrl-C ended it (the state records the stop).
    pub interrupted: bool,
}

impl Report {
    /// Everything that ran succeeded (skips included).
    pub fn succeeded(&self) -> bool {
        self.state.status == ExecutionStatus::Succeeded && !self.interrupted
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Who decides approvals on this machine, as recorded.
fn local_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "local user".to_string())
}

/// Checks `--var` values: declared by the pipeline, and within the bounds
/// a coordinator enforces.
fn check_variables(
    pipeline: &Pipeline,
    given: &BTreeMap<String, String>,
) -> Result<(), LocalError> {
    vars::check_values(given, vars::MAX_PIPELINE_VARS, "--var value")
        .map_err(LocalError::Variables)?;
    if let Some(name) = given.keys().find(|n| !pipeline.variables.contains_key(*n)) {
        let declared: Vec<&str> = pipeline.variables.keys().map(String::as_str).collect();
        return Err(LocalError::Variables(format!(
            "pipeline `{}` declares no variable `{name}` (declared: {})",
            pipeline.name,
            if declared.is_empty() {
                "none".to_string()
            } else {
                declared.join(", ")
            }
        )));
    }
    Ok(())
}

/// Runs `pipeline` on the local Docker Engine (see the module's comment).
pub async fn run(
    pipeline: &Pipeline,
    opts: Options,
    docker: Docker,
    observer: Arc<Mutex<dyn Observer>>,
) -> Result<Report, LocalError> {
    check_variables(pipeline, &opts.variables)?;
    let wanted = plan::selected(pipeline, &opts.selection)?;
    let store = Store::open(opts.work_dir.join("store"))?;
    let source = source::prepare(&opts.repo, &opts.revision, &store).await?;
    lock(&observer).note(&format!(
        "source: {} ({})",
        source.description, source.blob.digest
    ));
    let execution_id = format!("local-{}", now_ms());
    let deployer = Deployer::new(store.clone());
    let executor = Executor::new(docker, store, format!("exec-{}", std::process::id()))
        .with_keep_failed(opts.keep)
        .with_container_defaults(opts.container);
    let mut state = ExecutionState::new(pipeline);
    state.variables.extend(opts.variables.clone());
    state.source = source.source_ref.clone();
    let deployable = opts.environments.keys().cloned().collect();
    for note in plan::skip_unselected(pipeline, &mut state, &wanted, &deployable) {
        lock(&observer).note(&note);
    }
    let mut secrets = opts.secrets.clone();
    let host_secrets = opts.environments.values().flat_map(spec::host_secrets);
    for name in needed_secrets(pipeline, &wanted)
        .into_iter()
        .chain(host_secrets)
    {
        if !secrets.contains_key(&name)
            && let Some(value) = std::env::var_os(secret_env_var(&name))
        {
            secrets.insert(
                name,
                std::os::unix::ffi::OsStrExt::as_bytes(value.as_os_str()).to_vec(),
            );
        }
    }
    let mut run = Run {
        pipeline,
        executor: &executor,
        deployer: &deployer,
        environments: opts.environments,
        approval_skipped: None,
        observer,
        source,
        execution_id,
        secrets,
        state,
        epoch: 0,
        running: FuturesUnordered::new(),
        cancels: BTreeMap::new(),
        kept: Vec::new(),
        interrupted: false,
    };
    run.drive().await;
    Ok(Report {
        execution_id: run.execution_id,
        source: run.source,
        state: run.state,
        kept: run.kept,
        interrupted: run.interrupted,
    })
}

/// The secret names the selected actions use.
fn needed_secrets(pipeline: &Pipeline, wanted: &BTreeSet<(usize, usize)>) -> BTreeSet<String> {
    wanted
        .iter()
        .filter_map(|(si, ai)| pipeline.stages.get(*si)?.actions.get(*ai))
        .flat_map(|a| a.secrets.values().cloned())
        .collect()
}

/// An action that ended: where, its outcome, its log.
type Done = ((usize, usize), u64, Outcome, LineLog);
type Running<'a> = FuturesUnordered<Pin<Box<dyn Future<Output = Done> + Send + 'a>>>;

struct Run<'a> {
    pipeline: &'a Pipeline,
    executor: &'a Executor,
    deployer: &'a Deployer,
    environments: BTreeMap<String, Environment>,
    /// An approval nobody could be asked about: deploys after it do not run.
    approval_skipped: Option<ActionName>,
    observer: Arc<Mutex<dyn Observer>>,
    source: PreparedSource,
    execution_id: String,
    secrets: BTreeMap<String, Vec<u8>>,
    state: ExecutionState,
    epoch: u64,
    running: Running<'a>,
    cancels: BTreeMap<(usize, usize), CancelHandle>,
    kept: Vec<String>,
    interrupted: bool,
}

impl<'a> Run<'a> {
    fn name(&self, (si, ai): (usize, usize)) -> ActionName {
        let stage = self.pipeline.stages.get(si);
        ActionName {
            stage: stage.map(|s| s.name.clone()).unwrap_or_default(),
            action: stage
                .and_then(|s| s.actions.get(ai))
                .map(|a| a.name.clone())
                .unwrap_or_default(),
        }
    }

    async fn drive(&mut self) {
        // One listener for the whole run, so no Ctrl-C falls between two turns.
        let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
        // False once the run was interrupted, or no handler could be installed.
        let mut listening = true;
        let mut started = self.state.advance(self.pipeline, &Gates::open(), now_ms());
        loop {
            self.begin(started);
            if self.running.is_empty() {
                return;
            }
            tokio::select! {
                Some(done) = self.running.next() => started = self.end(done),
                signal = &mut ctrl_c, if listening => {
                    listening = false;
                    started = match signal {
                        Ok(()) => self.interrupt(),
                        Err(_) => Started::default(),
                    };
                }
            }
        }
    }

    /// Ctrl-C: the execution is stopped as `ferry stop --abandon` stops
    /// one (the state machine's own `stop`): builds and tests are cancelled
    /// (the engine removes their containers), a deployment stops after its
    /// step in progress and rolls back; nothing new starts.
    fn interrupt(&mut self) -> Started {
        self.interrupted = true;
        let now = now_ms();
        let reason = "interrupted (Ctrl-C)";
        lock(&self.observer).note(&format!(
            "{reason}: cancelling what runs (its containers are removed)"
        ));
        let request = StopRequest {
            by: local_user(),
            reason: reason.to_string(),
            abandon: true,
            at: now,
        };
        // Only refused when the execution already ended or is stopping.
        let _ = self.state.stop(self.pipeline, request, now);
        for (&(si, ai), cancel) in &self.cancels {
            let deploys = self
                .pipeline
                .stages
                .get(si)
                .and_then(|s| s.actions.get(ai))
                .is_some_and(|a| a.kind == ActionKind::Deploy);
            if deploys {
                cancel.stop(reason);
            } else {
                cancel.cancel(reason);
            }
        }
        self.state.advance(self.pipeline, &Gates::open(), now)
    }

    /// Starts what `advance` queued and decides the approvals it opened,
    /// until nothing more starts without waiting.
    fn begin(&mut self, started: Started) {
        let mut todo = vec![started];
        while let Some(started) = todo.pop() {
            for at in started.queued {
                if let Some(next) = self.start(at) {
                    todo.push(next);
                }
            }
            for at in started.approvals {
                todo.push(self.decide(at));
            }
        }
    }

    /// Starts one build or test action; when it cannot start, fails it and
    /// returns what that started.
    fn start(&mut self, at: (usize, usize)) -> Option<Started> {
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
        let mut spec = spec::action_spec(
            self.pipeline,
            at,
            run,
            &self.execution_id,
            &self.source.revision,
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
        let credentials = spec.deploy.iter().flat_map(|d| {
            d.hosts
                .iter()
                .flat_map(|h| [h.private_key.clone(), h.tls_bundle.clone()])
        });
        let masker = Masker::new(secrets.values().cloned().chain(credentials));
        let log = LineLog::new(name.clone(), masker, self.observer.clone());
        let (handle, cancel) = Cancel::new();
        self.cancels.insert(at, handle);

        // The runner its kind needs, as on an agent (`attempt.rs`).
        let runner: &dyn ActionRunner = if spec.deploy.is_some() {
            lock(&self.observer).started(&name, None);
            self.deployer
        } else {
            let container = self.executor.container_name(epoch);
            lock(&self.observer).started(&name, Some(&container));
            self.executor
        };
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
        });
        self.state
            .finish_action(self.pipeline, at, false, why, &Gates::open(), now_ms())
    }

    /// Records an action's end, retries it if its `retries` allow, and
    /// returns what its end started.
    fn end(&mut self, (at, epoch, outcome, mut log): Done) -> Started {
        self.cancels.remove(&at);
        let now = now_ms();
        let (success, exit_code) = (outcome.success(), outcome.exit_code());
        let kept = matches!(&outcome.result, Err(ActionError::CommandFailed { .. }))
            .then(|| self.executor.container_name(epoch))
            .filter(|_| self.executor.keeps_failed());
        let Outcome {
            result,
            variables,
            deployment,
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
                (log.mask(&e.to_string()), Vec::new())
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
        run.close_attempt(epoch, outcome_kind, Some(exit_code), &message, now);
        run.exit_code = Some(exit_code);
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
            exit_code: Some(exit_code),
            message: message.clone(),
            kept_container: kept,
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

    /// Asks the observer about an approval and records the answer.
    fn decide(&mut self, at: (usize, usize)) -> Started {
        let name = self.name(at);
        let Some(action) = self
            .pipeline
            .stages
            .get(at.0)
            .and_then(|s| s.actions.get(at.1))
        else {
            return Started::default();
        };
        let Some(run) = self.state.action(at.0, at.1) else {
            return Started::default();
        };
        let ask = ApprovalAsk {
            name: name.clone(),
            message: run.resolved_text(&action.message),
            url: run.resolved_text(&action.url),
        };
        let decision = lock(&self.observer).approve(&ask);
        let now = now_ms();
        let by = local_user();
        let (approve, comment) = match decision {
            Decision::Approve => (true, String::new()),
            Decision::Reject(why) => (false, why),
            Decision::Skip(note) => {
                self.approval_skipped.get_or_insert(name.clone());
                if let Some(run) = self.state.action_mut(at.0, at.1) {
                    run.status = Some(ActionStatus::Skipped);
                    run.finished_at = Some(now);
                    run.deadline = None;
                    run.message = format!("skipped: {note}");
                }
                lock(&self.observer).note(&format!("{name} skipped: {note}"));
                return self.state.advance(self.pipeline, &Gates::open(), now);
            }
        };
        if let Some(run) = self.state.action_mut(at.0, at.1) {
            run.approvals.push(Recorded {
                by: by.clone(),
                approve,
                comment: comment.clone(),
                at: now,
            });
        }
        let message = match (approve, comment.is_empty()) {
            (true, _) => format!("approved by {by} (locally)"),
            (false, true) => format!("rejected by {by}"),
            (false, false) => format!("rejected by {by}: {comment}"),
        };
        self.state
            .finish_action(self.pipeline, at, approve, message, &Gates::open(), now)
    }
}
