//! Ferry's build agent: enrolls with a join token, keeps a session with the
//! coordinators, runs actions through the action engine (`ferry_engine`:
//! build and test actions in Docker containers, deploy actions on target
//! hosts), and serves the artifacts and logs it produced to its peers.

pub mod attempt;
pub mod attempt_log;
pub mod caches;
pub mod coordinators;
pub mod identity;
pub mod install;
pub mod metrics;
pub mod outbox;
pub mod peer;
pub mod renew;
pub mod session;
pub mod shutdown;
pub mod unseal;
pub mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use ferry_engine::{executor, store};
use ferry_proto as pb;
use tokio::sync::watch;

pub struct Options {
    pub coordinators: Vec<String>,
    pub state_dir: PathBuf,
    pub join_token: Option<String>,
    pub ca: Option<PathBuf>,
    pub name: String,
    pub labels: Vec<String>,
    pub capacity: u32,
    /// host:port peers reach this agent at; port 0 picks a free port.
    pub advertise: String,
    /// Enroll (if needed) and return without serving.
    pub enroll_only: bool,
    pub limits: executor::Limits,
    /// Where to serve Prometheus metrics (plain HTTP, `GET /metrics`); None: off.
    pub metrics_listen: Option<SocketAddr>,
    /// Build cache limits; None: no caches are kept.
    pub cache: Option<ferry_engine::cache_store::CacheLimits>,
    /// Container limits for actions whose `resources:` leave them unset.
    pub container: executor::ContainerDefaults,
}

/// Runs the agent until `shutdown` asks it to drain or cancel (see [`shutdown`]).
pub async fn run(
    opts: Options,
    shutdown: watch::Receiver<shutdown::Shutdown>,
) -> anyhow::Result<()> {
    if opts.enroll_only {
        let host = opts
            .advertise
            .rsplit_once(':')
            .map_or(opts.advertise.as_str(), |(h, _)| h)
            .trim_matches(['[', ']']);
        let sans = identity::sans_for(host);
        let id = identity::load_or_enroll(
            &opts.state_dir,
            &opts.coordinators,
            opts.join_token.as_deref(),
            opts.ca.as_deref(),
            identity::Enrollment {
                name: &opts.name,
                sans: &sans,
                labels: &opts.labels,
            },
        )
        .await?;
        println!("{}", id.identity);
        return Ok(());
    }
    let docker = bollard::Docker::connect_with_local_defaults()
        .context("connecting to the Docker Engine")?;
    docker.ping().await.context(
        "the Docker Engine does not answer (is it running, and may this user reach its socket?)",
    )?;
    let host_cpus = match docker.info().await {
        Ok(info) => info.ncpu.and_then(|n| u64::try_from(n).ok()),
        Err(e) => {
            tracing::warn!(error = %e, "could not ask the Docker Engine for its CPU count");
            None
        }
    };
    let (container, warning) = opts.container.fit_host(host_cpus);
    if let Some(warning) = warning {
        tracing::warn!("{warning}");
    }
    let (host, port) = opts
        .advertise
        .rsplit_once(':')
        .with_context(|| format!("--advertise `{}` must be HOST:PORT", opts.advertise))?;
    let host = host.trim_matches(['[', ']']).to_string();
    let id = identity::load_or_enroll(
        &opts.state_dir,
        &opts.coordinators,
        opts.join_token.as_deref(),
        opts.ca.as_deref(),
        identity::Enrollment {
            name: &opts.name,
            sans: &identity::sans_for(&host),
            labels: &opts.labels,
        },
    )
    .await?;
    let store = store::Store::open(opts.state_dir.join("artifacts"))?;
    let metrics = match opts.metrics_listen {
        Some(addr) => {
            let listener = ferry_telemetry::metrics::bind(addr).await?;
            let local = listener.local_addr().unwrap_or(addr);
            tracing::info!(metrics = %local, "serving Prometheus metrics at /metrics");
            let scraped = store.clone();
            Some(tokio::spawn(ferry_telemetry::metrics::serve(
                listener,
                move || {
                    let store = scraped.clone();
                    async move { metrics::render(&store).await }
                },
            )))
        }
        None => None,
    };

    // The peer server: artifacts and logs for other agents and coordinators.
    let bind: SocketAddr = format!(
        "{}:{port}",
        if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        }
    )
    .parse()
    .or_else(|_| format!("0.0.0.0:{port}").parse())
    .context("--advertise port")?;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("binding the peer server to {bind}"))?;
    let local = listener.local_addr()?;
    let address = format!(
        "{}:{}",
        if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        },
        local.port()
    );
    // The agent renews its certificate while it runs, so the peer server
    // does its own TLS with a certificate it can swap.
    let tls = ferry_certs::tls::mtls_server_config(&id.ca_pem, id.key.server_cert())?;
    let revoked = peer::Revoked::default();
    let caches = match opts.cache {
        Some(limits) => Some(ferry_engine::cache_store::CacheStore::open(
            opts.state_dir.join("caches"),
            limits,
        )?),
        None => None,
    };
    let peer = peer::PeerService {
        store: store.clone(),
        caches: caches.as_ref().map(|c| c.store().clone()),
        trust_domain: id.identity.trust_domain.clone(),
        revoked: revoked.clone(),
    };
    // Anyone who reaches the port can connect before proving who they are:
    // caps and an idle deadline bound what that costs (pings keep live peers busy).
    let incoming = ferry_certs::listen::incoming(listener, ferry_certs::listen::Limits::default());
    let incoming = ferry_certs::listen::tls_incoming(incoming, tls);
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(20)))
        .initial_stream_window_size(peer::STREAM_WINDOW)
        .initial_connection_window_size(peer::CONNECTION_WINDOW)
        .max_frame_size(peer::MAX_FRAME)
        .add_service(pb::internal::artifact_peer_server::ArtifactPeerServer::new(
            peer,
        ))
        .serve_with_incoming(incoming);
    let server = tokio::spawn(server);
    tracing::info!(identity = %id.identity, peer = %address, "agent starting");

    let renewer = tokio::spawn(
        renew::Renewer {
            coordinators: opts.coordinators.clone(),
            ca_pem: id.ca_pem.clone(),
            state_dir: opts.state_dir.clone(),
            credentials: id.key.clone(),
        }
        .run(),
    );

    let mut executor = executor::Executor::new(docker, store.clone(), id.identity.name.clone())
        .with_limits(opts.limits)
        .with_container_defaults(container);
    if let Some(caches) = caches {
        executor = executor.with_caches(caches);
    }
    executor.remove_stale().await;
    let cfg = session::AgentConfig {
        coordinators: opts.coordinators,
        state_dir: opts.state_dir,
        labels: opts.labels,
        capacity: opts.capacity.max(1),
        address,
        revoked,
    };
    let result = session::Agent::run(cfg, id, executor, store, shutdown).await;
    server.abort();
    renewer.abort();
    if let Some(m) = metrics {
        m.abort();
    }
    result
}
