//! A pipeline run on this machine without a cluster (`ferry exec`): the
//! same action engine as the agent's session (the Docker [`Executor`]
//! behind [`ActionRunner`](crate::runner::ActionRunner)), the same input
//! re-packing, the same content-addressed [`Store`](crate::store::Store)
//! between actions, the same secret masking, and the pipeline crate's own
//! execution state machine for stage order, run-order groups, `when:`,
//! `on_failure:` and variables. What is local is only what the cluster
//! would otherwise provide: the `source` input from the working tree
//! ([`source`]), which actions run ([`plan`]), the specs a scheduler would
//! send (`spec`), the loop that starts actions and records their ends
//! ([`driver`], `action`, `approval`), where their log lines go ([`log`]),
//! and the outputs kept after the run when asked ([`artifacts`]).
//!
//! It must never talk to a coordinator, read cluster secrets or keys, or
//! leave a container behind except the one `--keep` asked for.
//!
//! [`Executor`]: crate::executor::Executor

mod action;
mod approval;
pub mod artifacts;
pub mod driver;
pub mod log;
pub mod plan;
pub mod source;
mod spec;
#[cfg(test)]
mod test_support;

use std::sync::{Mutex, MutexGuard};

use thiserror::Error;

pub use artifacts::{KeptArtifacts, KeptOutput};
pub use driver::{Options, Report, run};
pub use plan::Selection;
pub use source::{PreparedSource, Revision};

/// An action by its stage's and its own name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ActionName {
    pub stage: String,
    pub action: String,
}

impl std::fmt::Display for ActionName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.stage, self.action)
    }
}

/// What a person (or `--approve`) says to an approval action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Approve,
    /// With the reason given.
    Reject(String),
    /// Nobody could be asked: the approval is skipped with this note, and
    /// deploy actions after it do not run.
    Skip(String),
}

/// An approval waiting for a decision.
#[derive(Debug, Clone)]
pub struct ApprovalAsk {
    pub name: ActionName,
    /// What the approvers are asked, references filled in.
    pub message: String,
    pub url: String,
}

/// How one action ended, as the observer hears it.
#[derive(Debug, Clone)]
pub struct ActionEnd {
    pub name: ActionName,
    pub succeeded: bool,
    /// The code of the last command run to its end; `None` when none ran to
    /// its end (a timeout, a cancellation, a missing image, a deployment).
    pub exit_code: Option<i32>,
    /// Why it failed (secrets masked); empty on success.
    pub message: String,
    /// The container kept for inspection (`--keep`), if any.
    pub kept_container: Option<String>,
    /// It ended because the run was stopped (Ctrl-C), not on its own.
    pub stopped: bool,
    /// What its test reports said, when it lists any.
    pub tests: Option<ferry_pipeline::reports::TestSummary>,
}

/// What the terminal (or a test) hears while a local run goes on. Calls
/// come from one task, one at a time; `approve` may block.
pub trait Observer: Send {
    /// An action is about to start; a build or test in `container`.
    fn started(&mut self, name: &ActionName, container: Option<&str>);
    /// One line of an action's log, secrets masked.
    fn log(&mut self, name: &ActionName, line: &str);
    /// An action ended.
    fn finished(&mut self, end: &ActionEnd);
    /// Something Ferry says about the run itself (skips, sources).
    fn note(&mut self, text: &str);
    /// Decides an approval.
    fn approve(&mut self, ask: &ApprovalAsk) -> Decision;
}

/// Why a local run could not run (an action that fails is not an error:
/// it is in the [`Report`]).
#[derive(Debug, Error)]
pub enum LocalError {
    #[error("git: {0}")]
    Git(String),
    #[error("{0}")]
    Selection(String),
    #[error("{0}")]
    Docker(String),
    #[error("--var: {0}")]
    Variables(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("--artifacts {dir}: {why}")]
    Artifacts { dir: String, why: String },
    #[error("packing the working tree: {0}")]
    Io(#[from] std::io::Error),
}

/// The local Docker Engine, checked to answer, and the container limits
/// an action gets when its `resources:` leave them unset (the agent's
/// defaults, the CPU limit lowered to this machine's count).
pub async fn docker() -> Result<(bollard::Docker, crate::executor::ContainerDefaults), LocalError> {
    let unreachable = |e: bollard::errors::Error| {
        LocalError::Docker(format!(
            "the Docker Engine cannot be reached (is it running, and may this user reach its \
             socket? DOCKER_HOST names another): {e}"
        ))
    };
    let docker = bollard::Docker::connect_with_local_defaults().map_err(unreachable)?;
    docker.ping().await.map_err(unreachable)?;
    let cpus = docker
        .info()
        .await
        .ok()
        .and_then(|info| info.ncpu)
        .and_then(|n| u64::try_from(n).ok());
    let (defaults, _) = crate::executor::ContainerDefaults::default().fit_host(cpus);
    Ok((docker, defaults))
}

/// A mutex's guard, also after a panic elsewhere poisoned it.
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
