//! `ferry agents` (list, drain, remove, label) and `ferry token` (join
//! tokens for enrolling agents).

use std::time::Duration;

use clap::{Args, Subcommand};

use super::parse_ttl;

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// List enrolled agents.
    List,
    /// Let an agent finish its current work and take no new work (`--undo` to resume).
    Drain(DrainArgs),
    /// Remove an agent: its running work is re-queued and its certificate refused from now on.
    Remove(AgentNameArgs),
    /// Change the labels an agent is bound to (admin): `--set a,b`, or `--add`/`--remove`.
    /// Agents cannot change their own labels.
    Label(LabelArgs),
}

#[derive(Debug, Args)]
pub struct LabelArgs {
    /// The agent's name.
    pub name: String,
    /// Replace all its labels with these, comma-separated (`--set ""` clears them).
    #[arg(long, value_delimiter = ',', num_args = 0..=1, conflicts_with_all = ["add", "remove"])]
    pub set: Option<Vec<String>>,
    /// Labels to add, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub add: Vec<String>,
    /// Labels to take away, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub remove: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DrainArgs {
    /// The agent's name.
    pub name: String,
    /// Take the agent back into service.
    #[arg(long)]
    pub undo: bool,
}

#[derive(Debug, Args)]
pub struct AgentNameArgs {
    /// The agent's name.
    pub name: String,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a join token; prints only the token.
    Create(TokenCreateArgs),
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// How long the token is valid, e.g. 10m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: Duration,
    /// How many agents may enroll with it.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub uses: u32,
    /// The agent labels it grants, comma-separated: an agent asking for others is refused,
    /// one asking for none gets these. Without it, each agent's own `--labels` are recorded.
    #[arg(long, value_delimiter = ',')]
    pub labels: Vec<String>,
}
