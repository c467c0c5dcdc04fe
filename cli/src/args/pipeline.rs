//! `ferry pipeline`: lint, apply, list and show pipelines.

use std::path::PathBuf;

use clap::{Args, Subcommand};

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
