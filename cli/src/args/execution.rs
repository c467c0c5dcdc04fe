//! The commands on a pipeline's executions: `ferry run`, `stop`, `retry`,
//! `transition`, `status`, `executions`, `logs`, `approve`, `reject` and
//! `artifacts`.

use clap::{Args, Subcommand};

use super::{parse_action_path, parse_non_blank, parse_var};

/// The word that stands for a pipeline's newest execution in `--execution`
/// of the commands that only read (status, logs, artifacts).
pub const LATEST: &str = "latest";

/// The `--execution` of a command that changes an execution: an id, never
/// `latest`, so that a newer execution started meanwhile is never the one
/// stopped, retried, approved or rejected by mistake.
fn parse_named_execution(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("must not be empty".to_string())
    } else if s.trim().eq_ignore_ascii_case(LATEST) {
        Err(format!(
            "`{LATEST}` is only for reading (status, logs, artifacts): name the execution \
             this changes (`ferry executions PIPELINE` lists them)"
        ))
    } else {
        Ok(s.to_string())
    }
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
pub struct StopArgs {
    /// Pipeline name.
    pub name: String,
    /// Execution id, named: `latest` is refused, so that a change never
    /// lands on a newer execution by mistake.
    #[arg(long, value_name = "ID", value_parser = parse_named_execution)]
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
    /// Execution id, named: `latest` is refused, so that a change never
    /// lands on a newer execution by mistake.
    #[arg(long, value_name = "ID", value_parser = parse_named_execution)]
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
    /// Execution id, or `latest` (the default): the pipeline's newest execution.
    #[arg(long, value_name = "ID|latest")]
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
    /// Execution id, or `latest`: the pipeline's newest execution.
    #[arg(long, value_name = "ID|latest")]
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
    /// Execution id, named: `latest` is refused, so that a change never
    /// lands on a newer execution by mistake.
    #[arg(long, value_name = "ID", value_parser = parse_named_execution)]
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
    /// Execution id, named: `latest` is refused, so that a change never
    /// lands on a newer execution by mistake.
    #[arg(long, value_name = "ID", value_parser = parse_named_execution)]
    pub execution: String,
    /// The approval action, as STAGE/ACTION.
    #[arg(long, value_name = "STAGE/ACTION", value_parser = parse_action_path)]
    pub action: String,
    /// Why the change is rejected (recorded with the decision).
    #[arg(long, value_name = "TEXT", value_parser = parse_non_blank)]
    pub comment: String,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// A pipeline's cache entries: scope, key, size, digest, holders.
    List(CacheListArgs),
    /// Remove a pipeline's cache entries (all, or of one scope, or whose
    /// key starts with a prefix); the agents holding them delete them.
    Rm(CacheRmArgs),
}

#[derive(Debug, Args)]
pub struct CacheListArgs {
    /// Pipeline name.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct CacheRmArgs {
    /// Pipeline name.
    pub name: String,
    /// Only this scope: `branch:NAME`, `tag:NAME` or `pipeline`.
    #[arg(long)]
    pub scope: Option<String>,
    /// Only entries whose key starts with this.
    #[arg(long, value_name = "PREFIX")]
    pub key_prefix: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ArtifactsCommand {
    /// Outputs and logs of an execution, with digests and the agents holding them.
    List(ArtifactsListArgs),
    /// Download a blob by digest into a file, or an execution's output by
    /// name unpacked into a directory; the sha256 is checked first.
    #[command(after_help = ARTIFACTS_GET_HELP)]
    Get(ArtifactsGetArgs),
}

/// The two forms of `ferry artifacts get`.
const ARTIFACTS_GET_HELP: &str = "\
Two forms:
  ferry artifacts get DIGEST --out FILE
      The blob as stored (a tar for outputs, text for logs), written to FILE
      once its sha256 matches DIGEST.
  ferry artifacts get PIPELINE --execution ID|latest NAME [--action STAGE/ACTION] --out DIR
      Output NAME of that execution (from `ferry status`), checked like the
      digest form and unpacked into DIR, which is created and must be empty.
      Entries with an absolute path or `..`, links that point outside DIR
      (or climb with `..` after a name) and special files are refused, and
      nothing is kept then. When two actions output NAME, --action chooses.
--execution is what tells the forms apart: with it, the first word is a
pipeline and NAME is required; without it, the first word is a digest.";

#[derive(Debug, Args)]
pub struct ArtifactsListArgs {
    /// Pipeline name.
    pub name: String,
    /// Execution id, or `latest`: the pipeline's newest execution.
    #[arg(long, value_name = "ID|latest")]
    pub execution: String,
}

#[derive(Debug, Args)]
pub struct ArtifactsGetArgs {
    /// The blob's digest, `sha256:<hex>` (from `ferry artifacts list`); or,
    /// with --execution, the pipeline's name.
    #[arg(value_name = "DIGEST|PIPELINE")]
    pub target: String,
    /// The output's name (with --execution).
    #[arg(value_name = "NAME", requires = "execution")]
    pub name: Option<String>,
    /// Get an output by name from this execution: its id, or `latest` (the
    /// pipeline's newest execution).
    #[arg(long, value_name = "ID|latest", requires = "name")]
    pub execution: Option<String>,
    /// The action that made the output, when more than one of the
    /// execution's actions has an output of that name.
    #[arg(long, value_name = "STAGE/ACTION", value_parser = parse_action_path, requires = "execution")]
    pub action: Option<String>,
    /// File to write (digest form: a tar for outputs, text for logs), or
    /// directory to unpack into (name form: created; must be empty).
    #[arg(long = "out", value_name = "FILE|DIR")]
    pub out: std::path::PathBuf,
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;
    use clap::error::ErrorKind;

    use crate::args::{ArtifactsCommand, Cli, Command};

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ferry").chain(args.iter().copied()))
    }

    #[test]
    fn latest_reads_but_never_writes() {
        for read in [
            &["logs", "p", "--execution", "latest", "--action", "s/a"][..],
            &["status", "p", "--execution", "latest"],
            &["artifacts", "list", "p", "--execution", "latest"],
        ] {
            parse(read).unwrap_or_else(|e| panic!("{read:?}: {e}"));
        }
        for write in [
            &["stop", "p", "--execution", "latest", "--reason", "r"][..],
            &["retry", "p", "--execution", "latest", "--stage", "s"],
            &["approve", "p", "--execution", "latest", "--action", "s/a"],
            &[
                "reject",
                "p",
                "--execution",
                "LATEST",
                "--action",
                "s/a",
                "--comment",
                "c",
            ],
        ] {
            let err = parse(write).expect_err("latest is refused for writes");
            assert_eq!(err.kind(), ErrorKind::ValueValidation, "{write:?}");
            assert!(err.to_string().contains("name the execution"), "{err}");
        }
    }

    #[test]
    fn artifacts_get_has_two_forms() {
        let by_digest =
            parse(&["artifacts", "get", "sha256:ab", "--out", "f.tar"]).expect("digest");
        let Command::Artifacts(ArtifactsCommand::Get(a)) = by_digest.command else {
            panic!("not artifacts get")
        };
        assert_eq!(
            (a.target.as_str(), a.name, a.execution),
            ("sha256:ab", None, None)
        );

        let by_name = parse(&[
            "artifacts",
            "get",
            "hello",
            "--execution",
            "latest",
            "app",
            "--out",
            "dir",
        ])
        .expect("name");
        let Command::Artifacts(ArtifactsCommand::Get(a)) = by_name.command else {
            panic!("not artifacts get")
        };
        assert_eq!(
            (
                a.target.as_str(),
                a.name.as_deref(),
                a.execution.as_deref(),
                a.action
            ),
            ("hello", Some("app"), Some("latest"), None)
        );
        parse(&[
            "artifacts",
            "get",
            "hello",
            "app",
            "--execution",
            "x",
            "--action",
            "b/m",
            "--out",
            "d",
        ])
        .expect("--action with the name form");

        for wrong in [
            &["artifacts", "get", "hello", "app", "--out", "d"][..],
            &[
                "artifacts",
                "get",
                "hello",
                "--execution",
                "latest",
                "--out",
                "d",
            ],
            &[
                "artifacts",
                "get",
                "sha256:ab",
                "--action",
                "b/m",
                "--out",
                "d",
            ],
        ] {
            let err = parse(wrong).expect_err("half a form");
            assert_eq!(
                err.kind(),
                ErrorKind::MissingRequiredArgument,
                "{wrong:?}: {err}"
            );
        }
    }
}
