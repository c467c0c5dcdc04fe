//! `ferry env` (deployment environments), `ferry deployments` (their
//! history) and `ferry rollback`.

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Check an environment file locally; prints FILE:LINE:COL: message per error.
    Lint(EnvFileArgs),
    /// Create or update an environment.
    Apply(EnvApplyArgs),
    /// Environments and their hosts.
    List,
    /// One environment: every host, its pinned key and credentials' secret.
    Show(EnvNameArgs),
}

#[derive(Debug, Args)]
pub struct EnvFileArgs {
    /// The environment file.
    pub file: std::path::PathBuf,
}

#[derive(Debug, Args)]
pub struct EnvApplyArgs {
    /// The environment file.
    #[arg(short = 'f', long = "file")]
    pub file: std::path::PathBuf,
}

#[derive(Debug, Args)]
pub struct EnvNameArgs {
    /// Environment name.
    pub name: String,
}

#[derive(Debug, Subcommand)]
pub enum DeploymentsCommand {
    /// Deployments to an environment, newest first, and the release each host runs.
    List(DeploymentsListArgs),
    /// One deployment: every host, every hook, with the end of each hook's output.
    Show(DeploymentShowArgs),
}

#[derive(Debug, Args)]
pub struct DeploymentsListArgs {
    /// Environment name.
    pub environment: String,
    /// How many deployments to show.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
}

#[derive(Debug, Args)]
pub struct DeploymentShowArgs {
    /// Deployment id (from `ferry deployments list`).
    pub id: u64,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Environment name.
    pub environment: String,
    /// Release (execution id) to return to; default: the newest good release before the current one.
    #[arg(long = "to", value_name = "EXECUTION")]
    pub to: Option<String>,
}
