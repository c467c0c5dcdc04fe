//! The commands on a pipeline's executions: `ferry run`, `stop`, `retry`,
//! `transition`, `status`, `executions`, `logs`, `approve`, `reject` and
//! `artifacts`.

use clap::{Args, Subcommand};

use super::{parse_action_path, parse_non_blank, parse_var};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Pipeline name.
    pub name: String,
    /// Branch, tag or commit to build (default: the pipeline's branch).
    #[arg(long, value_name = "REV")]
    pub revision: Option<String>,
    /// A value for a pipeline variable, as NAME=VALUE (repeatable; the
    /// pipeline must declare NAME under `variables:`).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Follow the execution until it ends (a live table on a terminal) and
    /// exit 0 if it succeeded, 1 if it failed, was stopped or superseded, 2
    /// on a usage or connection error.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Pipeline name.
    pub name: String,
    /// Execution id.
    #[arg(long, value_name = "ID")]
    pub execution: String,
    /// Why (recorded and shown with the execution).
    #[arg(long, value_name = "TEXT", value_parser = parse_non_blank)]
    pub reason: String,
    /// Cancel running actions at once (containers removed; a deployment
    /// stops after the host step in progress and rolls back).
    #[arg(long)]
    pub abandon: bool,
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    /// Pipeline name.
    pub name: String,
    /// Execution id.
    #[arg(long, value_name = "ID")]
    pub execution: String,
    /// The stage to run again.
    #[arg(long, value_name = "STAGE")]
    pub stage: String,
    /// Run only the actions that did not succeed (the default).
    #[arg(long, conflicts_with = "all")]
    pub failed_only: bool,
    /// Run every action of the stage again.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Subcommand)]
pub enum TransitionCommand {
    /// Executions wait before the stage until the transition is enabled.
    Disable(TransitionDisableArgs),
    /// Waiting executions go on into the stage.
    Enable(TransitionEnableArgs),
}

#[derive(Debug, Args)]
pub struct TransitionDisableArgs {
    /// Pipeline name.
    pub name: String,
    /// The stage the transition leads into.
    #[arg(long, value_name = "STAGE")]
    pub into: String,
    /// Why (shown to everyone whose execution waits).
    #[arg(long, value_name = "TEXT", value_parser = parse_non_blank)]
    pub reason: String,
}

#[derive(Debug, Args)]
pub struct TransitionEnableArgs {
    /// Pipeline name.
    pub name: String,
    /// The stage the transition leads into.
    #[arg(long, value_name = "STAGE")]
    pub into: String,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Pipeline name.
    pub name: String,
    /// Execution id (default: the latest execution).
    #[arg(long, value_name = "ID")]
    pub execution: Option<String>,
    /// Keep printing updates until the execution finishes.
    #[arg(long)]
    pub watch: bool,
}

#[derive(Debug, Args)]
pub struct ExecutionsArgs {
    /// Pipeline name.
    pub name: String,
    /// At most this many executions, newest first (the coordinator defaults to 20).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Pipeline name.
    pub name: String,
    /// Execution id.
    #[arg(long, value_name = "ID")]
    pub execution: String,
    /// The action, as STAGE/ACTION.
    #[arg(long, value_name = "STAGE/ACTION", value_parser = parse_action_path)]
    pub action: String,
    /// Wait for the action to start and stream its log until it ends.
    #[arg(short = 'f', long)]
    pub follow: bool,
}

#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// Pipeline name.
    pub name: String,
    /// Execution id.
    #[arg(long, value_name = "ID")]
    pub execution: String,
    /// The approval action, as STAGE/ACTION.
    #[arg(long, value_name = "STAGE/ACTION", value_parser = parse_action_path)]
    pub action: String,
    /// A note recorded with the decision.
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,
}

#[derive(Debug, Args)]
pub struct RejectArgs {
    /// Pipeline name.
    pub name: String,
    /// Execution id.
    #[arg(long, value_name = "ID")]
    pub execution: String,
    /// The approval action, as STAGE/ACTION.
    #[arg(long, value_name = "STAGE/ACTION", value_parser = parse_action_path)]
    pub action: String,
    /// Why the change is rejected (recorded with the decision).
    #[arg(long, value_name = "TEXT", value_parser = parse_non_blank)]
    pub comment: String,
}

#[derive(Debug, Subcommand)]
pub enum ArtifactsCommand {
    /// Outputs and logs of an execution, with digests and the agents holding them.
    List(ArtifactsListArgs),
    /// Download a blob by digest; its sha256 is checked before the file is kept.
    Get(ArtifactsGetArgs),
}

#[derive(Debug, Args)]
pub struct ArtifactsListArgs {
    /// Pipeline name.
    pub name: String,
    /// Execution id.
    #[arg(long, value_name = "ID")]
    pub execution: String,
}

#[derive(Debug, Args)]
pub struct ArtifactsGetArgs {
    /// The blob's digest, `sha256:<hex>` (from `ferry artifacts list`).
    pub digest: String,
    /// File to write (a tar for outputs, text for logs).
    #[arg(long = "out", value_name = "FILE")]
    pub out: std::path::PathBuf,
}
