//! The command line: every subcommand and flag of `ferry`, declared with
//! clap's derive API. Values are checked here (durations, `STAGE/ACTION`
//! paths) so mistakes are usage errors (exit code 2) before anything runs.
//!
//! This file holds the top level (global flags, the list of commands) and
//! the value parsers several commands share; each group of commands has its
//! arguments in a submodule, re-exported here: `certs`, `pipeline`,
//! `execution` (run, stop, retry, transitions, status, logs, approvals,
//! artifacts), `exec` (local runs), `agents` (with join tokens), `rbac`
//! (with the console link), `cluster`, `secret`, `deploy` (environments,
//! deployments, rollback) and `notify` (with events).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod agents;
mod certs;
mod cluster;
mod deploy;
mod exec;
mod execution;
mod notify;
mod pipeline;
mod rbac;
mod secret;
#[cfg(test)]
mod tests;

pub use agents::*;
pub use certs::*;
pub use cluster::*;
pub use deploy::*;
pub use exec::*;
pub use execution::*;
pub use notify::*;
pub use pipeline::*;
pub use rbac::*;
pub use secret::*;

/// Default coordinator address when neither --coordinator nor
/// FERRY_COORDINATOR is given.
pub const DEFAULT_COORDINATOR: &str = "127.0.0.1:7400";

#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about = "Operate a Ferry CI/CD cluster: certificates, pipelines, runs, approvals, agents and roles"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags accepted by every subcommand, before or after it.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Coordinator addresses (HOST:PORT, comma-separated): give every member's. The first that
    /// connects is used; a call moves to another when one does not answer (see --retry-for).
    #[arg(
        long,
        env = "FERRY_COORDINATOR",
        value_name = "ADDR[,ADDR...]",
        value_delimiter = ',',
        default_value = DEFAULT_COORDINATOR,
        global = true
    )]
    pub coordinator: Vec<String>,
    /// The cluster's CA certificate (ca.pem); the coordinator must present a certificate it signed.
    #[arg(long, env = "FERRY_CA", value_name = "FILE", global = true)]
    pub ca: Option<PathBuf>,
    /// Your operator certificate (from `ferry certs issue operator`).
    #[arg(long, env = "FERRY_CERT", value_name = "FILE", global = true)]
    pub cert: Option<PathBuf>,
    /// The private key of --cert.
    #[arg(long, env = "FERRY_KEY", value_name = "FILE", global = true)]
    pub key: Option<PathBuf>,
    /// How long a call keeps trying the other --coordinator addresses when a member does not
    /// answer or no leader is elected (a restart, a leader change); 0 tries once. A write is
    /// sent again only when it was certainly not applied.
    #[arg(
        long,
        env = "FERRY_RETRY_FOR",
        value_name = "SECONDS",
        default_value_t = 30,
        global = true
    )]
    pub retry_for: u64,
    /// Output format.
    #[arg(
        short = 'o',
        long,
        env = "FERRY_OUTPUT",
        value_name = "FORMAT",
        value_enum,
        default_value_t = Format::Table,
        global = true
    )]
    pub output: Format,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable text and aligned tables.
    Table,
    /// One compact JSON document per line.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the cluster CA and issue coordinator and operator certificates (offline).
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Lint, apply, list and show pipelines.
    #[command(subcommand)]
    Pipeline(PipelineCommand),
    /// Start an execution of a pipeline; prints the execution id (with
    /// --wait, follows it and exits 0 only if it succeeded).
    Run(RunArgs),
    /// Run a pipeline's build and test actions on the local Docker Engine
    /// with the agent's own engine, from the git working tree as it is (no
    /// cluster, no certificates); exits 0 if all succeeded, 1 if an action
    /// failed, 2 if the pipeline is invalid or the run could not start.
    Exec(ExecArgs),
    /// Stop an execution: running actions finish (or, with --abandon, are cancelled).
    Stop(StopArgs),
    /// Run a failed or stopped stage of an execution again.
    Retry(RetryArgs),
    /// Disable or enable the transition into a stage (a change freeze).
    #[command(subcommand)]
    Transition(TransitionCommand),
    /// Show (or --watch) an execution of a pipeline.
    Status(StatusArgs),
    /// List recent executions of a pipeline.
    Executions(ExecutionsArgs),
    /// Print the log of one action.
    Logs(LogsArgs),
    /// Approve an approval action.
    Approve(ApproveArgs),
    /// Reject an approval action (a comment is required).
    Reject(RejectArgs),
    /// Inspect build agents.
    #[command(subcommand)]
    Agents(AgentsCommand),
    /// Create join tokens for enrolling agents.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Grant, revoke and list role bindings.
    #[command(subcommand)]
    Rbac(RbacCommand),
    /// Show the identity the coordinator sees and its roles.
    Whoami,
    /// Print a one-time link that logs a browser in to the web console as you.
    Ui(UiArgs),
    /// Coordinator cluster: status, membership, leadership.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// List an execution's artifacts and logs, or download one by digest.
    #[command(subcommand)]
    Artifacts(ArtifactsCommand),
    /// List and remove a pipeline's build caches (`cache:` entries).
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Set, list and remove secrets (values are never shown).
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Deployment environments: lint, apply, list and show their target hosts.
    #[command(subcommand)]
    Env(EnvCommand),
    /// Deployment history: what was deployed where, host by host and hook by hook.
    #[command(subcommand)]
    Deployments(DeploymentsCommand),
    /// Redeploy an earlier good release of an environment (as a new execution).
    Rollback(RollbackArgs),
    /// Cluster-wide notification targets (outgoing webhooks) and deliveries.
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// Print what happens in the cluster (runs, approvals, deployments) as events.
    Events(EventsArgs),
}

/// Accepts `STAGE/ACTION` with both parts non-empty.
fn parse_action_path(s: &str) -> Result<String, String> {
    match s.split_once('/') {
        Some((stage, action))
            if !stage.trim().is_empty() && !action.trim().is_empty() && !action.contains('/') =>
        {
            Ok(s.to_string())
        }
        _ => Err("expected STAGE/ACTION, e.g. deploy/approve-prod".to_string()),
    }
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| "must be NAME=VALUE".to_string())?;
    ferry_pipeline::vars::check_name(name)?;
    Ok((name.to_string(), value.to_string()))
}

fn parse_non_blank(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("must not be empty".to_string())
    } else {
        Ok(s.to_string())
    }
}

/// A humantime duration of at least one second.
fn parse_ttl(s: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(s).map_err(|e| format!("{e} (try 30m, 1h or 7d)"))?;
    if ttl < Duration::from_secs(1) {
        return Err("must be at least 1s".to_string());
    }
    Ok(ttl)
}
