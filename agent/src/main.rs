//! `ferry-agent`: parses flags, wires signals, runs the agent;
//! `ferry-agent install ...` sets up a build machine (`ferry_agent::install`).

use std::path::PathBuf;

use clap::Parser;
use ferry_agent::shutdown::Shutdown;

#[derive(Parser)]
#[command(
    name = "ferry-agent",
    version,
    about = "Ferry build agent (to set up a build machine: ferry-agent install --help)"
)]
struct Args {
    /// Coordinator addresses, comma-separated.
    #[arg(
        long,
        env = "FERRY_COORDINATOR",
        value_delimiter = ',',
        required = true
    )]
    coordinator: Vec<String>,
    /// Where the agent keeps its key, certificate, artifacts and logs (the last one given wins).
    #[arg(long, overrides_with = "state_dir")]
    state_dir: PathBuf,
    /// Join token for the first start (from `ferry token create`).
    #[arg(long, env = "FERRY_JOIN_TOKEN")]
    join_token: Option<String>,
    /// The cluster's ca.pem, needed to enroll.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Agent name (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// Labels that pipelines select with `runs_on`, comma-separated, asked for
    /// at enrollment (a join token made with `--labels` refuses others). Bound
    /// from then on: an admin changes them with `ferry agents label`; a
    /// different value here later is only warned about.
    #[arg(long, value_delimiter = ',')]
    labels: Vec<String>,
    /// Actions run at once.
    #[arg(long, default_value_t = 2)]
    capacity: u32,
    /// HOST:PORT other agents fetch artifacts from (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    advertise: String,
    /// Enroll (if needed) and exit, e.g. from an install script.
    #[arg(long)]
    enroll_only: bool,
    /// Largest output artifact an action may produce, in MiB (0: no limit).
    #[arg(long, default_value_t = 4096)]
    max_artifact_mb: u64,
    /// Most space the artifact store may use, in MiB (0: no limit).
    #[arg(long, default_value_t = 0)]
    store_limit_mb: u64,
    /// Most space build caches (`cache:`) may use on this agent, in MiB; the
    /// least recently used entries go first (0: no caches kept).
    #[arg(long, default_value_t = 20 * 1024)]
    cache_limit_mb: u64,
    /// Largest build cache entry this agent saves or fetches, in MiB.
    #[arg(long, default_value_t = 4096)]
    cache_entry_limit_mb: u64,
    /// Serve Prometheus metrics on HOST:PORT (plain HTTP, GET /metrics). Off when not given.
    #[arg(long)]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Memory limit of a container whose action sets no `resources.memory` (like 512m, 2g).
    #[arg(long, env = "FERRY_AGENT_DEFAULT_MEMORY", default_value = "2g", value_parser = memory_flag)]
    default_memory: u64,
    /// CPU limit of a container whose action sets no `resources.cpus` (like 1.5); at most
    /// this host's CPUs.
    #[arg(long, env = "FERRY_AGENT_DEFAULT_CPUS", default_value = "2", value_parser = cpus_flag)]
    default_cpus: u64,
    /// Process (and thread) limit of a container whose action sets no `resources.pids`.
    #[arg(
        long,
        env = "FERRY_AGENT_DEFAULT_PIDS",
        default_value_t = 1024,
        value_parser = clap::value_parser!(u64).range(ferry_pipeline::MIN_PIDS..=ferry_pipeline::MAX_PIDS)
    )]
    default_pids: u64,
}

/// `--default-memory`: a size as `resources.memory` takes it, in bytes.
fn memory_flag(text: &str) -> Result<u64, String> {
    ferry_pipeline::parse_memory_bytes(text)
}

/// `--default-cpus`: a CPU count as `resources.cpus` takes it, in millicpus.
fn cpus_flag(text: &str) -> Result<u64, String> {
    ferry_pipeline::parse_cpus(text)
}

fn default_name() -> String {
    let raw =
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "agent".into());
    let name: String = raw
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if name.is_empty() {
        "agent".into()
    } else {
        name
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ferry_certs::install_crypto_provider();
    ferry_telemetry::init_tracing("info,h2=warn");
    if std::env::args_os().nth(1).is_some_and(|a| a == "install") {
        let args = ferry_agent::install::InstallArgs::parse_from(
            std::env::args_os()
                .enumerate()
                .filter_map(|(i, a)| (i != 1).then_some(a)),
        );
        return match ferry_agent::install::run(args, default_name()).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let a = Args::parse();
    let (tx, rx) = tokio::sync::watch::channel(Shutdown::Run);
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        // SIGTERM: finish running actions, then exit. A second SIGTERM, or SIGINT: cancel them.
        let first_is_int = tokio::select! {
            _ = term.recv() => false,
            _ = int.recv() => true,
        };
        if !first_is_int {
            tracing::info!("SIGTERM: draining");
            let _ = tx.send(Shutdown::Drain);
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        tracing::info!("cancelling running actions and exiting");
        let _ = tx.send(Shutdown::Cancel);
    });
    let result = ferry_agent::run(
        ferry_agent::Options {
            coordinators: a.coordinator,
            state_dir: a.state_dir,
            join_token: a.join_token,
            ca: a.ca,
            name: a.name.unwrap_or_else(default_name),
            labels: a.labels,
            capacity: a.capacity,
            advertise: a.advertise,
            enroll_only: a.enroll_only,
            limits: ferry_engine::executor::Limits {
                max_artifact_bytes: a.max_artifact_mb.saturating_mul(1024 * 1024),
                store_limit_bytes: a.store_limit_mb.saturating_mul(1024 * 1024),
            },
            metrics_listen: a.metrics_listen,
            cache: (a.cache_limit_mb > 0).then(|| ferry_engine::cache_store::CacheLimits {
                entry_bytes: a.cache_entry_limit_mb.saturating_mul(1024 * 1024),
                total_bytes: a.cache_limit_mb.saturating_mul(1024 * 1024),
            }),
            container: ferry_engine::executor::ContainerDefaults {
                memory_bytes: a.default_memory,
                millicpus: a.default_cpus,
                pids: a.default_pids,
            },
        },
        rx,
    )
    .await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
