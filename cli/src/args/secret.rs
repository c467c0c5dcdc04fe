//! `ferry secret`: set, list and remove secrets.

use clap::{Args, Subcommand};

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
