//! The action engine's one interface, [`ActionRunner`], and the plain types
//! it speaks: the Docker executor (builds and tests) and the deployer
//! (deploy actions) sit behind it, and so can anything else that runs
//! actions. Nothing here knows about the coordinator or the protocol: an
//! attempt reaches a runner fully prepared (spec, inputs already in the
//! store, secrets already opened, a log sink, a cancellation signal), so a
//! local runner (`ferry exec`) can drive the same engine without a cluster.
//!
//! The contract of [`ActionRunner::run`]:
//! - it runs the attempt to its end and always returns an [`Outcome`]; a
//!   failure of the action or of the engine is `Outcome::result`'s error,
//!   never a panic;
//! - everything the action prints, and Ferry's own notes about it, go to the
//!   log sink (which masks secrets), not to the process's own log;
//! - it cleans up what it made on this machine (containers, scratch files)
//!   on every path: success, failure, timeout and cancellation;
//! - it honours the spec's timeout itself, and stops with
//!   [`ActionError::Cancelled`] when the signal fires, unless stopping half
//!   way would do harm: the deployer finishes its deployment (and rollback);
//! - it writes nothing secret anywhere but into the process's memory: the
//!   secrets travel only where the action needs them (an exec request, a
//!   hook's script on stdin). The one exception is a plugin action, which
//!   reads its secrets from its environment: they are in its container's
//!   configuration on the agent's engine until the container is removed.
//!
//! The plain types an attempt is described by (the spec, the deployment
//! report) are `ferry_pipeline::spec`'s, re-exported here; the `FERRY_*`
//! variables every action gets are listed once, in [`ActionContext::ferry_env`].

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use thiserror::Error;
use tokio::sync::watch;

pub use ferry_pipeline::spec::{
    ActionContext, ActionSpec, AttemptId, DeployHost, DeployOutcome, DeploySpec, DeploymentReport,
    HookPhase, HookReport, HostKind, HostOutcome, HostReport, OutputSpec, Resources, ServiceSpec,
    check_services,
};

use ferry_pipeline::reports::TestSummary;

use crate::deploy::Deployer;
use crate::executor::Executor;
use crate::store::Blob;

/// The runner an action's kind needs: the deployer for a deploy action,
/// the Docker executor for the others. The agent and `ferry exec`
/// (`local/action.rs`) both choose through this.
pub fn runner_for<'a>(
    spec: &ActionSpec,
    executor: &'a Executor,
    deployer: &'a Deployer,
) -> &'a dyn ActionRunner {
    if spec.deploy.is_some() {
        deployer
    } else {
        executor
    }
}

/// Runs actions. One engine interface for the agent and for local runs.
pub trait ActionRunner: Send + Sync {
    /// Runs one prepared attempt to its end (see the module's contract).
    fn run<'a>(&'a self, attempt: Attempt<'a>) -> BoxFuture<'a, Outcome>;
}

/// One attempt, ready to run.
pub struct Attempt<'a> {
    pub spec: &'a ActionSpec,
    /// The inputs, in order, already in this engine's artifact store.
    pub inputs: &'a [PreparedInput],
    /// The action's secrets, opened: environment variable → value.
    pub secrets: &'a Secrets,
    pub log: &'a mut dyn LogSink,
    pub cancel: Cancel,
}

/// Environment variable → secret value, opened.
pub type Secrets = BTreeMap<String, Vec<u8>>;

/// An input already materialized as a tar blob in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedInput {
    pub name: String,
    pub digest: String,
}

/// Where an attempt's output goes while it runs.
pub trait LogSink: Send {
    fn write(&mut self, bytes: &[u8]);
}

/// How an attempt ended.
#[derive(Debug)]
pub struct Outcome {
    /// The outputs it stored, or why it failed.
    pub result: Result<Vec<Output>, ActionError>,
    /// What a deploy action did on each host (also when it failed).
    pub deployment: Option<DeploymentReport>,
    /// Output variables a build or test action wrote to the file named by
    /// `$FERRY_OUTPUT_VARS` ([`OUTPUT_VARS_PATH`]), once it succeeded.
    pub variables: BTreeMap<String, String>,
    /// The outputs a failed attempt kept (`when: on_failure` or `always`).
    pub failure_outputs: Vec<Output>,
    /// What its test reports say, when it lists any; read whatever the
    /// outcome (a report matters most when the tests failed).
    pub tests: Option<TestSummary>,
    /// The caches it saved after success: the index of each in the spec's
    /// `caches`, and its blob in the agent's cache store.
    pub caches: Vec<(usize, Blob)>,
}

/// Where a build or test action writes its output variables (`NAME=VALUE`
/// lines), inside its container; `$FERRY_OUTPUT_VARS` names it.
pub const OUTPUT_VARS_PATH: &str = "/tmp/ferry-output-vars";

impl Outcome {
    /// An outcome that is only this failure.
    pub fn failed(error: ActionError) -> Outcome {
        Outcome {
            result: Err(error),
            deployment: None,
            variables: BTreeMap::new(),
            failure_outputs: Vec::new(),
            tests: None,
            caches: Vec::new(),
        }
    }

    pub fn success(&self) -> bool {
        self.result.is_ok()
    }

    /// The code of the last command run to its end: 0 on success, the
    /// failing command's code, and `None` when no command ran to its end
    /// (a timeout, a cancellation, a missing image, a deployment...).
    pub fn exit_code(&self) -> Option<i32> {
        match &self.result {
            Ok(_) => Some(0),
            Err(e) => e.exit_code(),
        }
    }

    /// True when the attempt stopped because it was cancelled with `reason`.
    pub fn cancelled_with(&self, reason: &str) -> bool {
        matches!(&self.result, Err(ActionError::Cancelled(r)) if r == reason)
    }
}

/// An output the attempt stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub name: String,
    pub blob: Blob,
}

/// Why an attempt failed.
#[derive(Debug, Error)]
pub enum ActionError {
    #[error("image `{image}` is not present on this agent and could not be pulled: {reason}")]
    Image { image: String, reason: String },
    #[error("docker: {0}")]
    Docker(#[from] bollard::errors::Error),
    #[error("command {index} `{command}` exited with code {code}")]
    CommandFailed {
        index: usize,
        command: String,
        code: i32,
    },
    #[error("plugin `{image}` exited with code {code}")]
    PluginFailed { image: String, code: i32 },
    #[error("timed out after {0:?}; the container was killed")]
    Timeout(Duration),
    #[error("service `{service}` could not start: {reason}")]
    ServiceStart { service: String, reason: String },
    #[error(
        "service `{service}` was not ready within {timeout:?} ({last}){}",
        last_lines(.logs)
    )]
    ServiceNotReady {
        service: String,
        timeout: Duration,
        /// How its ready command last ended.
        last: String,
        /// Its last log lines.
        logs: String,
    },
    #[error(
        "service `{service}` exited with code {code} before it was ready{}",
        last_lines(.logs)
    )]
    ServiceExited {
        service: String,
        code: i64,
        /// Its last log lines.
        logs: String,
    },
    #[error("cancelled: {0}")]
    Cancelled(String),
    #[error("$FERRY_OUTPUT_VARS: {0}")]
    OutputVariables(String),
    #[error("output `{name}`: path `{path}` does not exist in /workspace")]
    MissingOutput { name: String, path: String },
    #[error("{0}")]
    Input(String),
    /// A deployment failed; the text is its summary.
    #[error("{0}")]
    Deploy(String),
    #[error("{0}")]
    Limit(String),
    #[error(transparent)]
    Archive(#[from] crate::archive::ArchiveError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// A service's last log lines for an error message, or nothing.
fn last_lines(logs: &str) -> String {
    if logs.trim().is_empty() {
        String::new()
    } else {
        format!("; its last log lines:\n{}", logs.trim_end())
    }
}

impl ActionError {
    /// Whether a command (or a plugin) ran to its end and failed: what
    /// `ferry exec --keep` keeps the container for.
    pub fn ran_and_failed(&self) -> bool {
        self.exit_code().is_some()
    }

    /// The failing command's (or plugin's) code; `None` when the attempt
    /// failed without a command that ran to its end.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            ActionError::CommandFailed { code, .. } | ActionError::PluginFailed { code, .. } => {
                Some(*code)
            }
            _ => None,
        }
    }
}

/// The signal that asks a running attempt to stop, with a reason.
#[derive(Debug, Clone)]
pub struct Cancel(watch::Receiver<Option<Signal>>);

/// The sending side of a [`Cancel`].
#[derive(Debug)]
pub struct CancelHandle(watch::Sender<Option<Signal>>);

/// Why an attempt is asked to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Signal {
    reason: String,
    /// A person stopped the execution: even a deployment stops, at its
    /// next step, and rolls back what it changed.
    stop: bool,
}

impl Cancel {
    /// A signal and the handle that fires it.
    pub fn new() -> (CancelHandle, Cancel) {
        let (tx, rx) = watch::channel(None);
        (CancelHandle(tx), Cancel(rx))
    }

    /// Waits until the attempt is cancelled and returns why; never returns
    /// if the handle is dropped without firing.
    pub async fn cancelled(&mut self) -> String {
        loop {
            if let Some(signal) = self.0.borrow_and_update().clone() {
                return signal.reason;
            }
            if self.0.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Why a person stopped the execution, if they did ([`CancelHandle::stop`]).
    pub fn stop_requested(&self) -> Option<String> {
        self.0
            .borrow()
            .as_ref()
            .filter(|s| s.stop)
            .map(|s| s.reason.clone())
    }
}

impl CancelHandle {
    /// Asks the attempt to stop. A later reason replaces an earlier one
    /// the attempt has not acted on yet; a person's stop is never replaced.
    pub fn cancel(&self, reason: &str) {
        self.0.send_if_modified(|current| {
            if current.as_ref().is_some_and(|s| s.stop) {
                return false;
            }
            *current = Some(Signal {
                reason: reason.to_string(),
                stop: false,
            });
            true
        });
    }

    /// A person stopped the execution: builds and tests are cancelled, and
    /// a deployment stops after the step in progress and rolls back.
    pub fn stop(&self, reason: &str) {
        self.0.send_replace(Some(Signal {
            reason: reason.to_string(),
            stop: true,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cancel_carries_its_reason() {
        let (handle, mut cancel) = Cancel::new();
        let mut other = cancel.clone();
        let waiter = tokio::spawn(async move { other.cancelled().await });
        handle.cancel("superseded");
        assert_eq!(cancel.cancelled().await, "superseded");
        assert!(waiter.await.is_ok_and(|r| r == "superseded"));
        handle.cancel("agent shutting down");
        assert_eq!(cancel.cancelled().await, "agent shutting down");
    }

    #[tokio::test]
    async fn a_persons_stop_is_seen_by_deployments_and_never_replaced() {
        let (handle, mut cancel) = Cancel::new();
        handle.cancel("no longer current");
        assert_eq!(cancel.stop_requested(), None);
        handle.stop("stopped by ann: bad release");
        handle.cancel("agent shutting down");
        assert_eq!(
            cancel.stop_requested().as_deref(),
            Some("stopped by ann: bad release")
        );
        assert_eq!(cancel.cancelled().await, "stopped by ann: bad release");
    }

    #[tokio::test]
    async fn a_dropped_handle_never_cancels() {
        let (handle, mut cancel) = Cancel::new();
        drop(handle);
        let waited = tokio::time::timeout(Duration::from_millis(50), cancel.cancelled()).await;
        assert!(waited.is_err());
    }

    #[test]
    fn outcomes_say_success_exit_code_and_cancellation() {
        let ok = Outcome {
            result: Ok(Vec::new()),
            deployment: None,
            variables: BTreeMap::new(),
            failure_outputs: Vec::new(),
            tests: None,
            caches: Vec::new(),
        };
        assert!(ok.success());
        assert_eq!(ok.exit_code(), Some(0));
        let failed = Outcome::failed(ActionError::CommandFailed {
            index: 1,
            command: "false".into(),
            code: 3,
        });
        assert!(!failed.success());
        assert_eq!(failed.exit_code(), Some(3));
        let cancelled = Outcome::failed(ActionError::Cancelled("why".into()));
        assert!(cancelled.cancelled_with("why"));
        assert!(!cancelled.cancelled_with("other"));
        assert_eq!(cancelled.exit_code(), None);
    }
}
