//! `ferry cluster`: status, health, membership and leadership of the
//! coordinators.

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Leader, term, commit index and every member's role and applied index.
    Status,
    /// Ask every --coordinator address the standard gRPC health question
    /// (grpc.health.v1); fails unless all answer SERVING. Needs no certificate.
    Health,
    /// Add a member. It must run first: when it does not answer, this says
    /// what to run on its host (its certificate, files and flags, with the
    /// current members as --peers), as does `--print-command`.
    Add(MemberArgs),
    /// Remove a member; it stops serving once the change commits.
    Remove(MemberIdArgs),
    /// Hand leadership to another member.
    TransferLeader(TransferArgs),
    /// Write a backup of the whole cluster state (admin): consistent, with
    /// its Raft index, term, cluster id and a checksum; sealed secrets stay
    /// sealed. Restore it with `ferry-coordinator restore --from FILE`.
    Backup(BackupArgs),
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where to write it (readable by you alone); an existing file is replaced
    /// only once the new backup is whole.
    #[arg(long)]
    pub out: std::path::PathBuf,
}

#[derive(Debug, Args)]
pub struct MemberArgs {
    /// The new member's Raft id.
    #[arg(long)]
    pub id: u64,
    /// HOST:PORT the new member serves gRPC on.
    #[arg(long)]
    pub address: String,
    /// Print what to run on the new member's host, and change nothing.
    #[arg(long)]
    pub print_command: bool,
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
