//! `ferry-coordinator`: parses flags and runs one coordinator member.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use ferry_coordinator::CoordinatorConfig;

#[derive(Parser)]
#[command(
    name = "ferry-coordinator",
    version,
    about = "A member of Ferry's coordinator cluster",
    // A flag given twice takes the last value (wrappers append overrides).
    args_override_self = true,
    // `restore` needs none of a running member's flags.
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Sub>,
    /// This member's Raft id (its certificate is coordinator-<id>.pem in --tls-dir).
    #[arg(long, default_value_t = 1)]
    id: u64,
    /// Address to serve gRPC on.
    #[arg(long, default_value = "127.0.0.1:7400")]
    listen: SocketAddr,
    /// Where the Raft log, snapshots and git mirrors live.
    #[arg(long, required = true)]
    data_dir: Option<PathBuf>,
    /// Folder with ca.pem, ca-key.pem, coordinator-<id>.pem and coordinator-<id>-key.pem.
    #[arg(long, required = true)]
    tls_dir: Option<PathBuf>,
    /// Operator name bound to the admin role when the cluster is first created.
    #[arg(long)]
    bootstrap_admin: Option<String>,
    /// Founding members as ID=HOST:PORT,... (this one included). Omit for a cluster of one.
    #[arg(long, value_delimiter = ',', value_parser = parse_peer)]
    peers: Vec<(u64, String)>,
    /// Start empty and wait to be added by `ferry cluster add`; --peers then lists the
    /// members already in the cluster, so this one can answer them.
    #[arg(long)]
    join: bool,
    /// Disaster recovery, when a quorum is lost for good: make this member's
    /// data dir a cluster of one with the state it holds (entries it logged
    /// but never saw committed are committed too); add others back with
    /// `ferry cluster add`. Run it on one survivor, once, with the others stopped.
    #[arg(long)]
    force_new_cluster: bool,
    /// Snapshot the state and compact the Raft log every N applied entries.
    #[arg(long, default_value_t = 1000)]
    snapshot_every: u64,
    /// Seconds between agent heartbeats.
    #[arg(long, default_value_t = 5)]
    heartbeat_seconds: u32,
    /// Seconds without a heartbeat before an agent's attempts are declared lost
    /// and re-queued (default: three heartbeats). A new leader waits this long
    /// after its election before declaring any agent lost.
    #[arg(long, default_value_t = 0)]
    agent_lease_seconds: u64,
    /// Copies of every artifact and log kept on distinct agents (where there are enough).
    #[arg(long, default_value_t = 2)]
    artifact_replicas: usize,
    /// Keep the artifacts and logs of the newest N executions of each pipeline
    /// (and of every running one); older ones are deleted from the agents.
    #[arg(long, default_value_t = 20)]
    artifact_retention: usize,
    /// Keep the records of the newest N finished executions of each pipeline
    /// (never fewer than --artifact-retention); older ones are forgotten, which
    /// bounds the state and its snapshots.
    #[arg(long, default_value_t = 1000)]
    execution_retention: usize,
    /// Serve HTTPS on HOST:PORT with this member's certificate: git webhooks
    /// (`POST /hooks/git/PIPELINE`). Off when not given.
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// The console's address as browsers reach it (`https://ferry.example:7443`),
    /// for the links `ferry ui` prints; default: https:// and --http-listen.
    #[arg(long)]
    console_url: Option<String>,
    /// HTTPS requests answered per source address per minute (git hosts send
    /// every repository's webhooks from a few shared addresses).
    #[arg(long, default_value = "300")]
    http_per_minute: std::num::NonZeroU32,
    /// Attempts to deliver one notification before it is given up on (shown
    /// by `ferry notify status`); waits double from 1 s up to 5 min between them.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    notify_attempts: u32,
    /// Let notifications reach this network too (CIDR like 10.20.0.0/16 or
    /// fd00::/8; repeat the flag or separate with commas). By default they
    /// reach public addresses only: loopback, private, link-local, CGNAT,
    /// multicast and other special ranges are refused after DNS resolution.
    #[arg(long = "notify-allow-network", value_name = "CIDR", value_delimiter = ',', action = clap::ArgAction::Append)]
    notify_allow_network: Vec<ferry_coordinator::outbound::egress::Cidr>,
    /// Serve Prometheus metrics on HOST:PORT (plain HTTP, GET /metrics). Off when not given.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Open gRPC connections held at most; beyond it new ones wait in the backlog.
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,
    /// Open gRPC connections from one source address held at most; beyond it
    /// new ones from that address are closed at once.
    #[arg(long, default_value_t = 256)]
    max_connections_per_source: usize,
    /// Seconds a connection may stay silent (no TLS, no HTTP/2, no answer to
    /// pings) before it is closed.
    #[arg(long, default_value_t = 60)]
    idle_timeout_seconds: u64,
    /// Enrollment calls answered per source address per minute (the one call
    /// that needs no certificate).
    #[arg(long, default_value = "30")]
    enroll_per_minute: std::num::NonZeroU32,
    /// How long agent certificates last (like 30d, 12h); agents renew theirs
    /// over their session when a third of it is left.
    #[arg(long, default_value = "30d", value_parser = lifetime_flag)]
    agent_certificate_lifetime: Duration,
    /// How long this member's own certificate lasts when it renews it (a
    /// third of it before it expires, without a restart).
    #[arg(long, default_value = "365d", value_parser = lifetime_flag)]
    member_certificate_lifetime: Duration,
    /// How long the certificates `ferry certs renew` gives operators last.
    #[arg(long, default_value = "90d", value_parser = lifetime_flag)]
    operator_certificate_lifetime: Duration,
    /// Seconds a graceful stop (SIGTERM or SIGINT) may take in all: a leader
    /// hands leadership over, then the member takes no new connections, ends
    /// long-lived streams and lets requests in flight finish; after this it
    /// exits anyway. A second signal exits at once.
    #[arg(long, default_value_t = 10)]
    shutdown_timeout: u64,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Start a new cluster from a backup (`ferry cluster backup`): writes
    /// the founding state of a new cluster, with a new cluster id, into an
    /// empty --data-dir, with member --id at --address as its one member.
    /// Then start `ferry-coordinator` on that data dir as usual (same
    /// --tls-dir as the old cluster, so agents and operators are trusted);
    /// add members with `ferry cluster add`.
    Restore {
        /// The backup file.
        #[arg(long)]
        from: PathBuf,
        /// An empty (or absent) data dir for the new cluster's first member.
        #[arg(long)]
        data_dir: PathBuf,
        /// The member's Raft id.
        #[arg(long, default_value_t = 1)]
        id: u64,
        /// HOST:PORT the member will serve gRPC on (its --listen).
        #[arg(long, default_value = "127.0.0.1:7400")]
        address: String,
    },
}

/// Writes a new cluster's data dir from a backup, and says what it did.
fn restore(
    from: &std::path::Path,
    data_dir: &std::path::Path,
    id: u64,
    address: &str,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let bytes = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    let cluster_id = ferry_coordinator::ops::new_cluster_id();
    let r = ferry_coordinator::raft::restore::restore(&bytes, data_dir, id, address, &cluster_id)
        .with_context(|| format!("restoring {}", from.display()))?;
    println!(
        "restored the state of cluster {} at index {} (term {}, taken {} by version {}) into {}",
        if r.header.cluster_id.is_empty() {
            "(no id)"
        } else {
            &r.header.cluster_id
        },
        r.header.index,
        r.header.term,
        ferry_coordinator::views::rfc3339(r.header.taken_at),
        r.header.version,
        data_dir.display()
    );
    println!(
        "new cluster id {cluster_id}, member {id} at {address}; start it with:\n  ferry-coordinator --id {id} --listen {address} --data-dir {} --tls-dir DIR",
        data_dir.display()
    );
    Ok(())
}

/// A certificate lifetime: at least 30 seconds, at most five years.
fn lifetime_flag(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if d < Duration::from_secs(30) || d > Duration::from_secs(5 * 365 * 24 * 60 * 60) {
        return Err("a certificate lifetime is between 30s and 5 years".into());
    }
    Ok(d)
}

fn parse_peer(s: &str) -> Result<(u64, String), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not ID=HOST:PORT"))?;
    let id: u64 = id
        .parse()
        .map_err(|_| format!("`{id}` is not a member id"))?;
    if !addr.contains(':') {
        return Err(format!("`{addr}` is not HOST:PORT"));
    }
    Ok((id, addr.to_string()))
}

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(serve());
    // Blocking work still under way (a DNS lookup, a file being written)
    // gets a moment, not a veto over the exit a stop asked for.
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

async fn serve() -> std::process::ExitCode {
    ferry_certs::install_crypto_provider();
    ferry_telemetry::init_tracing("info,raft=warn,h2=warn");
    let a = Args::parse();
    if let Some(Sub::Restore {
        from,
        data_dir,
        id,
        address,
    }) = &a.command
    {
        return match restore(from, data_dir, *id, address) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    // Required by clap when no subcommand is given.
    let (Some(data_dir), Some(tls_dir)) = (a.data_dir, a.tls_dir) else {
        eprintln!("error: --data-dir and --tls-dir are required");
        return std::process::ExitCode::from(2);
    };
    let result = ferry_coordinator::run(CoordinatorConfig {
        id: a.id,
        listen: a.listen,
        data_dir,
        tls_dir,
        bootstrap_admin: a.bootstrap_admin,
        peers: a.peers.into_iter().collect(),
        join: a.join,
        force_new_cluster: a.force_new_cluster,
        snapshot_every: a.snapshot_every,
        heartbeat_seconds: a.heartbeat_seconds,
        agent_lease_seconds: a.agent_lease_seconds,
        artifact_replicas: a.artifact_replicas,
        artifact_retention: a.artifact_retention,
        execution_retention: a.execution_retention,
        metrics_listen: a.metrics_listen,
        http_listen: a.http_listen,
        http_per_minute: a.http_per_minute,
        notify_attempts: a.notify_attempts,
        notify_allow_networks: a.notify_allow_network,
        console_url: a.console_url,
        limits: ferry_certs::listen::Limits {
            max_connections: a.max_connections,
            per_source: a.max_connections_per_source,
            idle: std::time::Duration::from_secs(a.idle_timeout_seconds.max(1)),
        },
        enroll_per_minute: a.enroll_per_minute,
        cert_lifetimes: ferry_coordinator::app::CertLifetimes {
            agent: a.agent_certificate_lifetime,
            operator: a.operator_certificate_lifetime,
            member: a.member_certificate_lifetime,
        },
        shutdown_timeout: Duration::from_secs(a.shutdown_timeout),
    })
    .await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
