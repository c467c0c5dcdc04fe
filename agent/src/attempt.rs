//! Runs one assignment to its result: open its secrets, fetch or build its
//! inputs, hand it to the runner its kind needs (the Docker executor, or the
//! deployer for deploy actions), and turn the outcome and the stored log
//! into an `AttemptResult`. Which attempts run, their cancellation and the
//! delivery of results are the session's business, not this module's.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_proto as pb;

use crate::attempt_log::{AttemptLog, Live};
use crate::identity::AgentIdentity;
use crate::shutdown::SHUTDOWN_REASON;
use crate::wire;
use ferry_engine::deploy::Deployer;
use ferry_engine::executor::Executor;
use ferry_engine::runner::{
    ActionError, ActionRunner, ActionSpec, Attempt, Cancel, LogSink as _, Outcome, PreparedInput,
};
use ferry_engine::source::Sources;
use ferry_engine::store::Store;
use ferry_pipeline::mask::Masker;

/// What every attempt on this agent runs with.
pub struct Attempts {
    logs: PathBuf,
    id: Arc<AgentIdentity>,
    sources: Sources,
    store: Store,
    executor: Executor,
    deployer: Deployer,
}

impl Attempts {
    /// Attempts whose logs, git mirrors and artifacts live under `state_dir`.
    pub fn new(
        state_dir: &Path,
        id: Arc<AgentIdentity>,
        executor: Executor,
        store: Store,
    ) -> std::io::Result<Attempts> {
        let logs = state_dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        Ok(Attempts {
            logs,
            id,
            sources: Sources::new(
                state_dir.join("git"),
                store.clone(),
                executor.limits().max_artifact_bytes,
            ),
            deployer: Deployer::new(store.clone()),
            store,
            executor,
        })
    }

    /// Where a running attempt's log is (until it moves into the store).
    pub fn log_path(&self, epoch: u64) -> PathBuf {
        self.logs.join(format!("{epoch}.log"))
    }

    /// The runner an action needs.
    fn runner(&self, spec: &ActionSpec) -> &dyn ActionRunner {
        ferry_engine::runner::runner_for(spec, &self.executor, &self.deployer)
    }

    /// Runs one attempt, its log bytes streaming to `live`; None when it was
    /// cancelled because the agent shuts down (not to be reported: it is
    /// re-run elsewhere).
    pub async fn run(
        &self,
        a: &pb::internal::Assignment,
        cancel: Cancel,
        live: Live,
    ) -> Option<pb::internal::AttemptResult> {
        let (opened, unseal_problem) = match crate::unseal::open(a, self.id.secrets.as_ref()) {
            Ok(opened) => (opened, None),
            Err(problem) => (a.clone(), Some(problem)),
        };
        let a = &opened;
        let mut spec = ActionSpec::from(a);
        let secrets = wire::secrets(a);
        // Deploy hosts' keys are masked too, should a hook print one.
        let credentials = spec.deploy.iter().flat_map(|d| d.credentials());
        let mut log = AttemptLog::create(
            self.log_path(spec.attempt.epoch),
            Masker::new(secrets.values().cloned().chain(credentials)),
            live,
        );
        let mut fetched = Vec::new();
        let outcome = if let Some(problem) = unseal_problem {
            Outcome::failed(ActionError::Input(problem))
        } else if !a.secrets_problem.is_empty() {
            Outcome::failed(ActionError::Input(a.secrets_problem.clone()))
        } else if let Err(problem) = ferry_engine::runner::check_services(&spec) {
            // Bounded before anything starts: the coordinator's reader
            // refused such services, so this assignment is not one it made.
            Outcome::failed(ActionError::Input(format!(
                "the assignment's services cannot run: {problem}"
            )))
        } else if let Some(name) = a.missing_secrets.first() {
            Outcome::failed(ActionError::Input(format!(
                "secret `{name}` is not set, or could not be sealed to this agent (the coordinator's \
                 log says which); an admin can set it with `ferry secret set {name}`"
            )))
        } else {
            match self.prepare_inputs(a, &mut log).await {
                Ok(inputs) => {
                    if let Some(caches) = self.executor.caches() {
                        fetched = crate::caches::prepare(
                            caches,
                            &self.id,
                            &mut spec,
                            (&self.store, &inputs),
                            (&self.sources, &a.git_url),
                            &mut log,
                        )
                        .await;
                    }
                    let attempt = Attempt {
                        spec: &spec,
                        inputs: &inputs,
                        secrets: &secrets,
                        log: &mut log,
                        cancel,
                    };
                    self.runner(&spec).run(attempt).await
                }
                Err(e) => Outcome::failed(ActionError::Input(e)),
            }
        };
        if outcome.cancelled_with(SHUTDOWN_REASON) {
            return None;
        }
        // On the wire, -1 still stands for "no command ran to its end".
        let (success, exit_code) = (outcome.success(), outcome.exit_code().unwrap_or(-1));
        let Outcome {
            result,
            deployment,
            variables,
            failure_outputs,
            tests,
            caches,
        } = outcome;
        let caches = crate::caches::reports(&spec, &caches, fetched);
        let (message, outputs) = match result {
            Ok(outputs) => (String::new(), wire::outputs(outputs)),
            Err(e) => {
                log.write(format!("[ferry] {e}\n").as_bytes());
                (log.mask(&e.to_string()), wire::outputs(failure_outputs))
            }
        };
        let (log_digest, log_size) = log
            .finish(&self.store)
            .map_or((String::new(), 0), |b| (b.digest, b.size));
        Some(pb::internal::AttemptResult {
            attempt: Some(a.attempt.clone().unwrap_or_default()),
            success,
            exit_code,
            message,
            outputs,
            log_digest,
            log_size,
            deployment: deployment.map(Into::into),
            output_variables: variables.into_iter().collect(),
            tests: tests.map(Into::into),
            caches,
        })
    }

    /// Deletes the least recently used cache entries over this agent's
    /// limit, and `forget` (entries the cluster removed); returns what is
    /// gone, for the coordinators.
    pub fn drop_caches(&self, forget: &[String]) -> Vec<String> {
        let Some(caches) = self.executor.caches() else {
            return forget.to_vec();
        };
        for digest in forget {
            caches.remove(digest);
        }
        let mut gone = forget.to_vec();
        gone.extend(caches.evict());
        gone
    }

    /// Puts every input in the store: `source` from git, the others from
    /// the peers that hold them.
    async fn prepare_inputs(
        &self,
        a: &pb::internal::Assignment,
        log: &mut AttemptLog,
    ) -> Result<Vec<PreparedInput>, String> {
        let mut out = Vec::new();
        for input in &a.inputs {
            let blob = if input.digest.is_empty() {
                log.write(format!("[ferry] source {} at {}\n", a.git_url, a.revision).as_bytes());
                self.sources.archive(&a.git_url, &a.revision).await?
            } else {
                log.write(format!("[ferry] input {} = {}\n", input.name, input.digest).as_bytes());
                crate::peer::fetch(
                    &self.store,
                    &self.id.ca_pem,
                    &self.id.key.current(),
                    &input.holders,
                    &input.digest,
                )
                .await?
            };
            out.push(PreparedInput {
                name: input.name.clone(),
                digest: blob.digest,
            });
        }
        Ok(out)
    }
}
