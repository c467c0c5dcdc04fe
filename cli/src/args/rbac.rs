//! `ferry rbac` (role bindings) and `ferry ui` (a one-time console link).

use std::time::Duration;

use clap::{Args, Subcommand};

use super::parse_ttl;

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

#[derive(Debug, Args)]
pub struct UiArgs {
    /// How long the link stays valid unused (at most 15m).
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl, default_value = "5m")]
    pub ttl: Duration,
}
