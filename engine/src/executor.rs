//! The Docker executor, the [`ActionRunner`] for build and test actions:
//! runs one attempt in a fresh Docker container: make sure the
//! image is there (pulling it if it can), upload the inputs to `/workspace`,
//! run each command with `/bin/sh -c` until one fails, stream its output,
//! collect the outputs as content-addressed tars, and always remove the
//! container — on success, failure, timeout or cancellation alike.
//!
//! Every container is bounded (memory, CPUs, processes: the action's
//! `resources:` or this agent's defaults), keeps only the capabilities in
//! [`KEPT_CAPABILITIES`], runs with no-new-privileges and never privileged.
//! Secrets must never go into a build or test container's configuration
//! (which `docker inspect` shows and the engine writes to disk): they travel
//! only in each command's exec request.
//!
//! A plugin action (`spec.plugin`) runs its image's own entrypoint instead
//! of commands, with the same limits and hardening; a plugin reads its
//! configuration, secrets included, from its environment, so its secrets
//! are the one exception: they are in its container's configuration
//! (`plugin`).
//!
//! An action's `services:` run beside it in containers of their own, on a
//! network of the attempt's own, with the same limits and hardening; its
//! commands start once every service is ready, and the services and the
//! network go with the action's container.
//!
//! An action's `cache:` entries that the agent found are restored with the
//! inputs, and after success those whose key had no entry are saved.
//!
//! By concern: `limits` (what a container may use and do), `caches` (build
//! caches in and out), `container`
//! (the container's life from image to removal), `services` (the services'
//! network, containers and readiness), `service_log` (their output in the
//! action's log), `workspace` (inputs in, commands run), `plugin` (a
//! plugin's own entrypoint run instead) and `outputs` (outputs and output
//! variables out).

mod caches;
mod container;
mod limits;
mod outputs;
mod plugin;
mod reports;
mod service_log;
mod services;
mod workspace;

use bollard::Docker;
use futures::future::BoxFuture;

use crate::runner::{ActionRunner, Attempt, Outcome};
use crate::store::Store;

pub use limits::{ContainerDefaults, ContainerLimits, KEPT_CAPABILITIES, Limits};
pub use services::SERVICE_LABEL;
pub(crate) use workspace::file_chunks;

/// Label on every container Ferry starts, for cleanup and inspection.
pub const LABEL: &str = "ferry.attempt";

pub struct Executor {
    docker: Docker,
    store: Store,
    agent: String,
    limits: Limits,
    container: ContainerDefaults,
    /// Leave the container of an attempt whose command failed in place, for
    /// inspection (`ferry exec --keep`); never set on an agent.
    keep_failed: bool,
    /// Where build caches are restored from and saved to; None: caches
    /// are neither restored nor saved (`ferry exec`).
    caches: Option<crate::cache_store::CacheStore>,
}

impl Executor {
    pub fn new(docker: Docker, store: Store, agent: String) -> Self {
        Executor {
            docker,
            store,
            agent,
            limits: Limits::default(),
            container: ContainerDefaults::default(),
            keep_failed: false,
            caches: None,
        }
    }

    /// Restores and saves build caches in `caches`.
    pub fn with_caches(mut self, caches: crate::cache_store::CacheStore) -> Self {
        self.caches = Some(caches);
        self
    }

    /// Keeps the container of an attempt whose command failed (not one that
    /// timed out or was cancelled) instead of removing it; its log says how
    /// to enter it. For `ferry exec --keep`: the container is the user's to
    /// remove.
    pub fn with_keep_failed(mut self, keep: bool) -> Self {
        self.keep_failed = keep;
        self
    }

    /// Where build caches are kept, when they are.
    pub fn caches(&self) -> Option<&crate::cache_store::CacheStore> {
        self.caches.as_ref()
    }

    /// Whether containers of failed commands are kept ([`Self::with_keep_failed`]).
    pub fn keeps_failed(&self) -> bool {
        self.keep_failed
    }

    /// The name of the container of the attempt with fencing epoch `epoch`.
    pub fn container_name(&self, epoch: u64) -> String {
        format!("ferry-{}-{}", self.agent, epoch)
    }

    /// Limits for containers whose action does not set them.
    pub fn with_container_defaults(mut self, defaults: ContainerDefaults) -> Self {
        self.container = defaults;
        self
    }

    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The size limits attempts on this agent run under.
    pub fn limits(&self) -> Limits {
        self.limits
    }
}

impl ActionRunner for Executor {
    fn run<'a>(&'a self, attempt: Attempt<'a>) -> BoxFuture<'a, Outcome> {
        Box::pin(self.run_attempt(attempt))
    }
}
