//! The loop of a local run: the pipeline crate's [`ExecutionState`] says
//! what starts next (stages in order, run-order groups, `when:`,
//! `on_failure:`, variables resolved when an action starts); every action
//! it queues starts at once, so a run-order group runs in parallel
//! (`action.rs`: through the agent's own runners; `approval.rs`: asked of
//! the [`Observer`]), and each end advances the state again. Ctrl-C stops
//! the execution as `ferry stop --abandon` would.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bollard::Docker;
use ferry_pipeline::execution::{ExecutionState, ExecutionStatus, Gates, Started, StopRequest};
use ferry_pipeline::{ActionKind, Environment, Pipeline, vars};
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;

use super::artifacts::{self, KeptArtifacts};
use super::log::LineLog;
use super::source::{self, PreparedSource, Revision};
use super::spec::{self, secret_env_var};
use super::{ActionName, LocalError, Observer, Selection, lock, plan};
use crate::deploy::Deployer;
use crate::executor::{ContainerDefaults, Executor};
use crate::runner::{CancelHandle, Outcome};
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
    /// `--artifacts DIR`: unpack every output under
    /// `DIR/<stage>/<action>/<output>/` when the run ends (a new or empty
    /// folder, checked before anything runs).
    pub artifacts: Option<PathBuf>,
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
    /// Where the outputs were unpacked (`--artifacts`).
    pub artifacts: Option<KeptArtifacts>,
}

impl Report {
    /// Everything that ran succeeded (skips included), and every output
    /// `--artifacts` asked for was kept.
    pub fn succeeded(&self) -> bool {
        self.state.status == ExecutionStatus::Succeeded
            && !self.interrupted
            && self
                .artifacts
                .as_ref()
                .is_none_or(|k| k.problems.is_empty())
    }
}

pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Who decides approvals on this machine, as recorded.
pub(super) fn local_user() -> String {
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
    if let Some(dir) = &opts.artifacts {
        artifacts::prepare(dir)?;
    }
    let store = Store::open(opts.work_dir.join("store"))?;
    let source = source::prepare(&opts.repo, &opts.revision, &store).await?;
    lock(&observer).note(&format!(
        "source: {} ({})",
        source.description, source.blob.digest
    ));
    let execution_id = format!("local-{}", now_ms());
    let deployer = Deployer::new(store.clone());
    let executor = Executor::new(
        docker,
        store.clone(),
        format!("exec-{}", std::process::id()),
    )
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
    let kept_artifacts = match opts.artifacts {
        Some(dir) => {
            let (pipeline, state) = (pipeline.clone(), run.state.clone());
            let kept = tokio::task::spawn_blocking(move || {
                artifacts::keep(&dir, &pipeline, &state, &store)
            })
            .await
            .map_err(|e| LocalError::Io(std::io::Error::other(e)))?;
            Some(kept)
        }
        None => None,
    };
    Ok(Report {
        execution_id: run.execution_id,
        source: run.source,
        state: run.state,
        kept: run.kept,
        interrupted: run.interrupted,
        artifacts: kept_artifacts,
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
pub(super) type Done = ((usize, usize), u64, Outcome, LineLog);
type Running<'a> = FuturesUnordered<Pin<Box<dyn Future<Output = Done> + Send + 'a>>>;

pub(super) struct Run<'a> {
    pub(super) pipeline: &'a Pipeline,
    pub(super) executor: &'a Executor,
    pub(super) deployer: &'a Deployer,
    pub(super) environments: BTreeMap<String, Environment>,
    /// An approval nobody could be asked about: deploys after it do not run.
    pub(super) approval_skipped: Option<ActionName>,
    pub(super) observer: Arc<Mutex<dyn Observer>>,
    pub(super) source: PreparedSource,
    pub(super) execution_id: String,
    pub(super) secrets: BTreeMap<String, Vec<u8>>,
    pub(super) state: ExecutionState,
    pub(super) epoch: u64,
    pub(super) running: Running<'a>,
    pub(super) cancels: BTreeMap<(usize, usize), CancelHandle>,
    pub(super) kept: Vec<String>,
    pub(super) interrupted: bool,
}

impl<'a> Run<'a> {
    pub(super) fn name(&self, (si, ai): (usize, usize)) -> ActionName {
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
}
