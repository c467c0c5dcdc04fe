//! `ferry notify` (cluster-wide notification targets) and `ferry events`.

use clap::{Args, Subcommand, ValueEnum};

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Add or replace a cluster-wide target: every pipeline's events go to it.
    Set(NotifySetArgs),
    /// Remove a cluster-wide target.
    Rm(NotifyNameArgs),
    /// The cluster-wide targets, and every delivery still tried or given up on.
    Status,
}

#[derive(Debug, Args)]
pub struct NotifySetArgs {
    /// Target name.
    pub name: String,
    /// Where events are POSTed (http:// or https://).
    #[arg(
        long,
        value_name = "URL",
        required_unless_present = "url_secret",
        conflicts_with = "url_secret"
    )]
    pub url: Option<String>,
    /// A Ferry secret holding the URL instead (a Slack webhook URL is a credential).
    #[arg(long, value_name = "SECRET")]
    pub url_secret: Option<String>,
    /// A Ferry secret to sign each request with (`X-Ferry-Signature-256`).
    #[arg(long, value_name = "SECRET")]
    pub secret: Option<String>,
    /// Body format.
    #[arg(long, value_enum, default_value_t = NotifyFormatArg::Json)]
    pub format: NotifyFormatArg,
    /// Event kinds to send (`execution.failed`, `approval.*`, ...; comma-separated); default: all.
    #[arg(long, value_name = "KIND[,KIND...]", value_delimiter = ',')]
    pub events: Vec<String>,
}

/// How a notification's body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NotifyFormatArg {
    /// The event as JSON.
    Json,
    /// A Slack incoming-webhook message.
    Slack,
}

#[derive(Debug, Args)]
pub struct NotifyNameArgs {
    /// Target name.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Keep following: print new events as they happen.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only this pipeline's events.
    #[arg(long, value_name = "PIPELINE")]
    pub pipeline: Option<String>,
    /// Start after this event id (resume where a previous run stopped).
    #[arg(long, value_name = "ID", default_value_t = 0)]
    pub after: u64,
}
