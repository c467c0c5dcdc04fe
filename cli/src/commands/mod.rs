//! One module per command group. Each command takes the global flags and
//! its own arguments, does its work and prints through [`crate::output`].

pub mod agents;
pub mod approve;
pub mod artifacts;
pub mod cache;
pub mod certs;
pub mod cluster;
pub mod deployments;
pub mod env;
pub mod events;
pub mod exec;
pub mod logs;
pub mod matrix_view;
pub mod new_member;
pub mod notify;
pub mod pipeline;
pub mod rbac;
pub mod run;
pub mod secret;
pub mod status;
pub mod steer;
pub mod tests_view;
pub mod token;

use std::path::Path;

use anyhow::{Context, Result};

/// Reads a text file, or standard input for `-`; errors name the file.
pub fn read_input(path: &Path) -> Result<String> {
    if path == Path::new("-") {
        return std::io::read_to_string(std::io::stdin()).context("cannot read standard input");
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The name a file is reported under: as given, `<stdin>` for `-`.
pub fn display_name(path: &Path) -> String {
    if path == Path::new("-") {
        "<stdin>".to_string()
    } else {
        path.display().to_string()
    }
}
