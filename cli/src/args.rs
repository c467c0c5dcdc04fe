//! The command line: every subcommand and flag of `ferry`, declared with
//! clap's derive API. Values are checked here (durations, `STAGE/ACTION`
//! paths) so mistakes are usage errors (exit code 2) before anything runs.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    /// Coordinator addresses (HOST:PORT, comma-separated); the first that connects is used.
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
pub enum SecretCommand {
    /// Set a secret from a file, or from standard input.
    Set(SecretSetArgs),
    /// Secret names, who set them and when.
    List,
    /// Remove a secret.
    Rm(SecretNameArgs),
}

#[derive(Debug, Args)]
pub struct SecretSetArgs {
    /// Secret name (lowercase letters, digits, `.`, `_`, `-`).
    pub name: String,
    /// Read the value from this file instead of standard input.
    #[arg(long, value_name = "FILE")]
    pub from_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct SecretNameArgs {
    /// Secret name.
    pub name: String,
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

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Leader, term, commit index and every member's role and applied index.
    Status,
    /// Ask every --coordinator address the standard gRPC health question
    /// (grpc.health.v1); fails unless all answer SERVING. Needs no certificate.
    Health,
    /// Add a member (start it first with `ferry-coordinator --join`).
    Add(MemberArgs),
    /// Remove a member; it stops serving once the change commits.
    Remove(MemberIdArgs),
    /// Hand leadership to another member.
    TransferLeader(TransferArgs),
}

#[derive(Debug, Args)]
pub struct MemberArgs {
    /// The new member's Raft id.
    #[arg(long)]
    pub id: u64,
    /// HOST:PORT the new member serves gRPC on.
    #[arg(long)]
    pub address: String,
}

#[derive(Debug, Args)]
pub struct MemberIdArgs {
    /// The member's Raft id.
    #[arg(long)]
    pub id: u64,
}

#[derive(Debug, Args)]
pub struct TransferArgs {
    /// The member that should lead.
    #[arg(long)]
    pub to: u64,
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create a new CA (ca.pem, ca-key.pem) in --dir.
    Init(CertsInitArgs),
    /// Issue a certificate signed by the CA.
    #[command(subcommand)]
    Issue(IssueCommand),
    /// Refuse a certificate everywhere in the cluster until it expires (admin).
    Revoke(CertsRevokeArgs),
    /// Replace the certificate and key of --cert/--key with new ones of the same
    /// identity: signed by the cluster (your operator certificate, while it is
    /// valid), or with --ca-dir by the CA itself (coordinator certificates, then
    /// restart that member; or an operator certificate that has expired).
    Renew(CertsRenewArgs),
}

#[derive(Debug, Args)]
pub struct CertsRenewArgs {
    /// Sign with the CA in DIR (ca.pem, ca-key.pem) instead of asking the cluster.
    #[arg(long, value_name = "DIR")]
    pub ca_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CertsRevokeArgs {
    /// The certificate (PEM) to revoke, e.g. an operator's NAME.pem.
    #[arg(value_name = "CERT_FILE")]
    pub certificate: PathBuf,
}

#[derive(Debug, Args)]
pub struct CertsInitArgs {
    /// Directory for ca.pem and ca-key.pem (created if missing).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Trust domain of every identity this CA issues.
    #[arg(long, default_value = ferry_certs::DEFAULT_TRUST_DOMAIN)]
    pub trust_domain: String,
}

#[derive(Debug, Subcommand)]
pub enum IssueCommand {
    /// A coordinator certificate: coordinator-<ID>.pem and coordinator-<ID>-key.pem.
    Coordinator(IssueCoordinatorArgs),
    /// An operator certificate: <NAME>.pem and <NAME>-key.pem.
    Operator(IssueOperatorArgs),
}

#[derive(Debug, Args)]
pub struct IssueCoordinatorArgs {
    /// Directory holding ca.pem and ca-key.pem.
    #[arg(long, value_name = "DIR")]
    pub ca_dir: PathBuf,
    /// The coordinator's Raft id.
    #[arg(long, value_name = "N")]
    pub id: u64,
    /// Host names or IP addresses clients reach the coordinator at (repeat or comma-separate).
    #[arg(
        long,
        value_name = "NAME_OR_IP",
        required = true,
        num_args = 1..,
        value_delimiter = ','
    )]
    pub san: Vec<String>,
    /// Directory to write the certificate and key into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct IssueOperatorArgs {
    /// Directory holding ca.pem and ca-key.pem.
    #[arg(long, value_name = "DIR")]
    pub ca_dir: PathBuf,
    /// The operator's name (the identity role bindings refer to).
    #[arg(long)]
    pub name: String,
    /// Directory to write the certificate and key into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    /// Check a pipeline file locally; prints FILE:LINE:COL: message per problem.
    Lint(LintArgs),
    /// Create or update a pipeline from a file.
    Apply(ApplyArgs),
    /// List pipelines.
    List,
    /// Show a pipeline and its YAML.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct LintArgs {
    /// The pipeline file (`-` for standard input).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The pipeline file (`-` for standard input).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Pipeline name.
    pub name: String,
    /// A specific version (default: the latest).
    #[arg(long, value_name = "V", value_parser = clap::value_parser!(u64).range(1..))]
    pub version: Option<u64>,
}

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
pub struct ExecArgs {
    /// The pipeline file (default: ferry.yml, else .ferry.yml, in the
    /// current directory). Its `source:` is not fetched: the source is the
    /// repository of the current directory (or --repo).
    #[arg(value_name = "PIPELINE.yml")]
    pub file: Option<PathBuf>,
    /// Run only this stage (and the earlier actions whose outputs it needs).
    #[arg(long, value_name = "STAGE", conflicts_with = "action")]
    pub stage: Option<String>,
    /// Run only this action (and the earlier actions whose outputs it needs).
    #[arg(long, value_name = "STAGE/ACTION", value_parser = parse_action_path)]
    pub action: Option<String>,
    /// A value for a pipeline variable, as NAME=VALUE (repeatable; the
    /// pipeline must declare NAME under `variables:`).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Build this branch, tag or commit (`git archive`) instead of the working tree.
    #[arg(long, value_name = "REV", conflicts_with = "worktree")]
    pub revision: Option<String>,
    /// Build the working tree as it is, uncommitted and untracked (not
    /// ignored) files included (the default).
    #[arg(long)]
    pub worktree: bool,
    /// The git repository whose working tree (or --revision) is the
    /// `source` input (default: the one the current directory is in).
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// A secret's value from a file, as NAME=@FILE (repeatable); a secret
    /// not given so is read from $FERRY_SECRET_<NAME> (capitals, `-` and `.`
    /// as `_`). Values are masked in the output.
    #[arg(long = "secret", value_name = "NAME=@FILE", value_parser = parse_secret_file)]
    pub secrets: Vec<(String, PathBuf)>,
    /// Approve every approval action without asking (otherwise they are
    /// asked on the terminal, or skipped with a note when there is none).
    #[arg(long)]
    pub approve: bool,
    /// Keep the container of a command that failed, for `docker exec`.
    #[arg(long)]
    pub keep: bool,
    /// Run the deploy actions to the environment this file describes (the
    /// format of `ferry env apply`; repeatable), with host keys from
    /// --secret files or $FERRY_SECRET_<NAME>, never from a cluster.
    /// Without it deploy actions are skipped.
    #[arg(long = "deploy", value_name = "ENV_FILE")]
    pub deploy: Vec<PathBuf>,
}

/// `NAME=@FILE`: a secret name and the file its value is in.
fn parse_secret_file(s: &str) -> Result<(String, PathBuf), String> {
    let (name, file) = s
        .split_once("=@")
        .ok_or_else(|| "must be NAME=@FILE (values never go on the command line)".to_string())?;
    ferry_pipeline::validate_secret_name(name).map_err(|e| format!("secret name `{name}` {e}"))?;
    if file.is_empty() {
        return Err("the file after `=@` is missing".to_string());
    }
    Ok((name.to_string(), PathBuf::from(file)))
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

#[derive(Debug, Subcommand)]
pub enum RbacCommand {
    /// Bind ROLE to operator NAME.
    Grant(RoleArgs),
    /// Remove the binding of ROLE to operator NAME.
    Revoke(RoleArgs),
    /// List role bindings.
    List,
}

#[derive(Debug, Args)]
pub struct RoleArgs {
    /// Operator name.
    pub name: String,
    /// Role: admin, operator, approver or viewer.
    pub role: String,
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

#[derive(Debug, Args)]
pub struct UiArgs {
    /// How long the link stays valid unused (at most 15m).
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl, default_value = "5m")]
    pub ttl: Duration,
}

/// A humantime duration of at least one second.
fn parse_ttl(s: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(s).map_err(|e| format!("{e} (try 30m, 1h or 7d)"))?;
    if ttl < Duration::from_secs(1) {
        return Err("must be at least 1s".to_string());
    }
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ferry").chain(args.iter().copied()))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn exec_takes_secrets_from_files_only_and_one_of_stage_or_action() {
        let cli = parse(&[
            "exec",
            "p.yml",
            "--action",
            "test/unit",
            "--secret",
            "db-password=@/run/pw",
            "--var",
            "A=1",
            "--deploy",
            "staging.yml",
            "--keep",
        ])
        .expect("parse");
        let Command::Exec(e) = cli.command else {
            panic!("not exec: {:?}", cli.command)
        };
        assert_eq!(e.file, Some(PathBuf::from("p.yml")));
        assert_eq!(e.action.as_deref(), Some("test/unit"));
        assert_eq!(
            e.secrets,
            [("db-password".to_string(), PathBuf::from("/run/pw"))]
        );
        assert_eq!(e.vars, [("A".to_string(), "1".to_string())]);
        assert_eq!(e.deploy, [PathBuf::from("staging.yml")]);
        assert!(e.keep && !e.approve);
        for bad in [
            &["exec", "--secret", "pw=hunter2"][..],
            &["exec", "--secret", "Bad=@f"],
            &["exec", "--stage", "a", "--action", "a/b"],
            &["exec", "--revision", "main", "--worktree"],
            &["exec", "--action", "nostage"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn global_flags_before_or_after_the_subcommand() {
        let cli = parse(&[
            "--coordinator",
            "a:1,b:2",
            "status",
            "demo",
            "--ca",
            "ca.pem",
            "-o",
            "json",
            "--watch",
        ])
        .expect("parse");
        assert_eq!(cli.global.coordinator, ["a:1", "b:2"]);
        assert_eq!(cli.global.ca, Some(PathBuf::from("ca.pem")));
        assert_eq!(cli.global.output, Format::Json);
        let Command::Status(s) = cli.command else {
            panic!("not status: {:?}", cli.command)
        };
        assert_eq!(s.name, "demo");
        assert_eq!(s.execution, None);
        assert!(s.watch);
    }

    #[test]
    fn defaults() {
        let cli = parse(&["whoami"]).expect("parse");
        // Only true when the environment does not override it.
        if std::env::var_os("FERRY_COORDINATOR").is_none() {
            assert_eq!(cli.global.coordinator, [DEFAULT_COORDINATOR]);
        }
        if std::env::var_os("FERRY_OUTPUT").is_none() {
            assert_eq!(cli.global.output, Format::Table);
        }
        let cli = parse(&["token", "create"]).expect("parse");
        let Command::Token(TokenCommand::Create(t)) = cli.command else {
            panic!("not token create")
        };
        assert_eq!(t.ttl, Duration::from_secs(3600));
        assert_eq!(t.uses, 1);
    }

    #[test]
    fn certs_issue_coordinator() {
        let cli = parse(&[
            "certs",
            "issue",
            "coordinator",
            "--ca-dir",
            "ca",
            "--id",
            "2",
            "--san",
            "localhost",
            "127.0.0.1",
            "--san",
            "::1,coord-2",
            "--out",
            "tls",
        ])
        .expect("parse");
        let Command::Certs(CertsCommand::Issue(IssueCommand::Coordinator(a))) = cli.command else {
            panic!("not certs issue coordinator")
        };
        assert_eq!(a.id, 2);
        assert_eq!(a.san, ["localhost", "127.0.0.1", "::1", "coord-2"]);
        assert_eq!(a.out, PathBuf::from("tls"));

        let err = parse(&[
            "certs",
            "issue",
            "coordinator",
            "--ca-dir",
            "ca",
            "--id",
            "2",
            "--out",
            "tls",
        ])
        .expect_err("--san is required");
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn logs_and_decisions() {
        let cli = parse(&[
            "logs",
            "demo",
            "--execution",
            "abc",
            "--action",
            "build/compile",
            "-f",
        ])
        .expect("parse");
        let Command::Logs(l) = cli.command else {
            panic!("not logs")
        };
        assert_eq!(
            (l.execution.as_str(), l.action.as_str(), l.follow),
            ("abc", "build/compile", true)
        );

        let err = parse(&["logs", "demo", "--execution", "abc", "--action", "compile"])
            .expect_err("action without stage");
        assert_eq!(err.kind(), ErrorKind::ValueValidation);

        let err = parse(&["reject", "demo", "--execution", "abc", "--action", "d/ok"])
            .expect_err("reject needs a comment");
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);

        let cli = parse(&["approve", "demo", "--execution", "abc", "--action", "d/ok"])
            .expect("approve without comment");
        assert!(matches!(
            cli.command,
            Command::Approve(ApproveArgs { comment: None, .. })
        ));
    }

    #[test]
    fn pipeline_and_token_values() {
        let cli = parse(&["pipeline", "apply", "-f", "p.yaml"]).expect("parse");
        assert!(matches!(
            cli.command,
            Command::Pipeline(PipelineCommand::Apply(ApplyArgs { ref file })) if file == &PathBuf::from("p.yaml")
        ));
        let cli = parse(&["pipeline", "show", "demo", "--version", "3"]).expect("parse");
        assert!(matches!(
            cli.command,
            Command::Pipeline(PipelineCommand::Show(ShowArgs {
                version: Some(3),
                ..
            }))
        ));
        let cli = parse(&[
            "token", "create", "--ttl", "90m", "--uses", "3", "--labels", "a,b",
        ])
        .expect("parse");
        let Command::Token(TokenCommand::Create(t)) = cli.command else {
            panic!("not token create")
        };
        assert_eq!((t.ttl, t.uses), (Duration::from_secs(5400), 3));
        assert_eq!(t.labels, ["a", "b"]);
        // `agents label`: --set (also empty, to clear), or --add/--remove.
        for (args, set, add, remove) in [
            (&["--set", "x,y"][..], Some(vec!["x", "y"]), vec![], vec![]),
            (&["--set", ""], Some(vec![""]), vec![], vec![]),
            (&["--add", "x", "--remove", "y"], None, vec!["x"], vec!["y"]),
        ] {
            let mut argv = vec!["agents", "label", "a1"];
            argv.extend(args);
            let cli = parse(&argv).expect("parse");
            let Command::Agents(AgentsCommand::Label(l)) = cli.command else {
                panic!("not agents label")
            };
            assert_eq!(l.name, "a1");
            assert_eq!(
                l.set,
                set.map(|v| v.iter().map(|s| s.to_string()).collect())
            );
            assert_eq!(l.add, add);
            assert_eq!(l.remove, remove);
        }
        assert!(parse(&["agents", "label", "a1", "--set", "x", "--add", "y"]).is_err());

        for bad in [
            &["token", "create", "--ttl", "soon"][..],
            &["token", "create", "--ttl", "0s"],
            &["token", "create", "--uses", "0"],
        ] {
            let err = parse(bad).expect_err("invalid value");
            assert_eq!(err.kind(), ErrorKind::ValueValidation, "{bad:?}: {err}");
        }
        let err = parse(&["status", "demo", "-o", "yaml"]).expect_err("unknown format");
        assert_eq!(err.kind(), ErrorKind::InvalidValue);
    }

    #[test]
    fn usage_errors_exit_2() {
        let err = parse(&["frobnicate"]).expect_err("unknown command");
        assert_eq!(err.exit_code(), 2);
    }
}
