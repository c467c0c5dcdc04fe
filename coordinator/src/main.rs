//! `ferry-coordinator`: parses flags and runs one coordinator member.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use ferry_coordinator::CoordinatorConfig;

#[derive(Parser)]
#[command(
    name = "ferry-coordinator",
    version,
    about = "A member of Ferry's coordinator cluster"
)]
struct Args {
    /// This member's Raft id (its certificate is coordinator-<id>.pem in --tls-dir).
    #[arg(long, default_value_t = 1)]
    id: u64,
    /// Address to serve gRPC on.
    #[arg(long, default_value = "127.0.0.1:7400")]
    listen: SocketAddr,
    /// Where the Raft log, snapshots and git mirrors live.
    #[arg(long)]
    data_dir: PathBuf,
    /// Folder with ca.pem, ca-key.pem, coordinator-<id>.pem and coordinator-<id>-key.pem.
    #[arg(long)]
    tls_dir: PathBuf,
    /// Operator name bound to the admin role when the cluster is first created.
    #[arg(long)]
    bootstrap_admin: Option<String>,
    /// Snapshot the state and compact the Raft log every N applied entries.
    #[arg(long, default_value_t = 1000)]
    snapshot_every: u64,
    /// Seconds between agent heartbeats.
    #[arg(long, default_value_t = 5)]
    heartbeat_seconds: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ferry_certs::install_crypto_provider();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,raft=warn,h2=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let a = Args::parse();
    ferry_coordinator::run(CoordinatorConfig {
        id: a.id,
        listen: a.listen,
        data_dir: a.data_dir,
        tls_dir: a.tls_dir,
        bootstrap_admin: a.bootstrap_admin,
        snapshot_every: a.snapshot_every,
        heartbeat_seconds: a.heartbeat_seconds,
    })
    .await
}
