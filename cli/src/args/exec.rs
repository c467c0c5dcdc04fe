//! `ferry exec`: a pipeline run on the local Docker Engine from the git
//! working tree, and its `NAME=@FILE` secrets.

use std::path::PathBuf;

use clap::Args;

use super::{parse_action_path, parse_var};

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
    /// Keep the outputs: unpack each output of each action under
    /// DIR/<stage>/<action>/<output>/ when the run ends (DIR must be new
    /// or empty; it is made if missing). Without it they are deleted.
    #[arg(long, value_name = "DIR")]
    pub artifacts: Option<PathBuf>,
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
