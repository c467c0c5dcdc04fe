//! Wires a coordinator together: certificates, the Raft node, the gRPC
//! server with its authorization layer, the HTTPS listener (webhooks), and
//! the leader's background loops; and runs it until it is stopped (a
//! graceful stop on SIGTERM or SIGINT, `shutdown.rs`), removed, or its Raft
//! node fails.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use ferry_certs::{CertAuthority, CertifiedKey, read_pem};
use ferry_proto as pb;
use tonic::transport::Server;

use crate::app::{Ctx, SharedCtx};
use crate::authz::AuthLayer;
use crate::git::Git;
use crate::hub::{AgentHub, LogHub};
use crate::ops::Ops;
use crate::raft::{self, NodeConfig};
use crate::service::api::ApiService;
use crate::service::enroll::EnrollmentService;
use crate::service::peer::PeerService;
use crate::service::session::SessionService;
use crate::shutdown::{Ended, Phase};
use futures::StreamExt as _;

#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub id: u64,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub tls_dir: PathBuf,
    pub bootstrap_admin: Option<String>,
    /// Founding members (id → gRPC address), this one included; empty = a cluster of one.
    pub peers: BTreeMap<u64, String>,
    /// Start empty and wait to be added with `ferry cluster add`.
    pub join: bool,
    /// Disaster recovery: make this member's data dir a cluster of one.
    pub force_new_cluster: bool,
    pub snapshot_every: u64,
    pub heartbeat_seconds: u32,
    /// Seconds without a heartbeat before an agent's attempts are lost (0: 3 heartbeats).
    pub agent_lease_seconds: u64,
    pub artifact_replicas: usize,
    pub artifact_retention: usize,
    pub execution_retention: usize,
    /// Where to serve Prometheus metrics (plain HTTP, `GET /metrics`); None: off.
    pub metrics_listen: Option<SocketAddr>,
    /// Where to serve HTTPS (webhooks) with this member's certificate; None: off.
    pub http_listen: Option<SocketAddr>,
    /// HTTPS requests answered per source address per minute.
    pub http_per_minute: std::num::NonZeroU32,
    /// Attempts to deliver a notification before giving up.
    pub notify_attempts: u32,
    /// Networks notifications may reach besides public addresses
    /// (`--notify-allow-network`).
    pub notify_allow_networks: Vec<crate::outbound::egress::Cidr>,
    /// The console's address for browsers (default: `https://` and the
    /// `--http-listen` address).
    pub console_url: Option<String>,
    /// Connection caps and idle deadline of the gRPC listener.
    pub limits: ferry_certs::listen::Limits,
    /// Enrollment calls answered per source address per minute.
    pub enroll_per_minute: std::num::NonZeroU32,
    /// How long the certificates this member signs last.
    pub cert_lifetimes: crate::app::CertLifetimes,
    /// How long a graceful stop (SIGTERM, SIGINT) may take in all: the
    /// leadership hand-over and the drain; then the member exits anyway.
    pub shutdown_timeout: Duration,
}

/// Runs the coordinator until it is stopped by SIGTERM or SIGINT (then it
/// stops gracefully and returns `Ok`), removed from the cluster, or its
/// storage fails (both errors).
pub async fn run(cfg: CoordinatorConfig) -> anyhow::Result<()> {
    // First: a stop asked for while the member starts waits for it to serve.
    let mut signals = crate::shutdown::Signals::install()
        .context("installing the SIGTERM and SIGINT handlers")?;
    let stop = crate::shutdown::Stop::new();
    let mut limits = cfg.limits;
    match ferry_certs::listen::raise_open_files_limit() {
        Ok(n) => {
            // Leave descriptors for the log store, git mirrors and outgoing links.
            let fit = usize::try_from(n.saturating_sub(256))
                .unwrap_or(usize::MAX)
                .max(64);
            if fit < limits.max_connections {
                tracing::warn!(
                    open_files = n,
                    max_connections = fit,
                    "few open files allowed: holding fewer connections"
                );
                limits.max_connections = fit;
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not raise the open-files limit"),
    }
    // Bound first: a port already taken is reported before any state is touched,
    // and clients that connect during start-up wait in the backlog.
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding the gRPC listener to {}", cfg.listen))?;
    let http_listener = match cfg.http_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the HTTPS listener to {addr}"))?,
        ),
        None => None,
    };
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create data dir {}", cfg.data_dir.display()))?;
    let ca = CertAuthority::load(&cfg.tls_dir).context("loading the cluster CA from --tls-dir")?;
    let cert_path = cfg.tls_dir.join(format!("coordinator-{}.pem", cfg.id));
    let key_path = cfg.tls_dir.join(format!("coordinator-{}-key.pem", cfg.id));
    let identity = CertifiedKey {
        cert_pem: read_pem(&cert_path)?,
        key_pem: read_pem(&key_path)?,
    };
    // Presented by the listeners and as a client; renewed while it runs.
    let server_cert =
        ferry_certs::tls::ReloadableCert::new(&identity).context("this member's certificate")?;
    let tls = ferry_certs::tls::coordinator_server_config(ca.ca_pem(), server_cert.clone())
        .context("building the server TLS configuration")?;
    let identity = ferry_certs::tls::SharedIdentity::new(identity);

    let mut peers = cfg.peers.clone();
    if peers.is_empty() {
        peers.insert(cfg.id, cfg.listen.to_string());
    }
    let (handle, raft_thread) = raft::start(
        NodeConfig {
            id: cfg.id,
            peers: peers.clone(),
            join: cfg.join,
            data_dir: cfg.data_dir.clone(),
            snapshot_every: cfg.snapshot_every,
            tick: Duration::from_millis(50),
            tls: raft::PeerTls {
                ca_pem: ca.ca_pem().to_string(),
                identity: identity.clone(),
            },
            force_new_cluster: cfg.force_new_cluster,
        },
        tokio::runtime::Handle::current(),
    )
    .context("starting the Raft node")?;

    let ctx: SharedCtx = Arc::new(Ctx {
        raft: handle.clone(),
        ca,
        identity,
        agents: AgentHub::default(),
        logs: LogHub::default(),
        git: Git::new(cfg.data_dir.join("git")),
        heartbeat_seconds: cfg.heartbeat_seconds,
        agent_lease: Duration::from_secs(if cfg.agent_lease_seconds == 0 {
            3 * u64::from(cfg.heartbeat_seconds.max(1))
        } else {
            cfg.agent_lease_seconds
        }),
        artifact_replicas: cfg.artifact_replicas.max(1),
        artifact_retention: cfg.artifact_retention.max(1),
        execution_retention: cfg.execution_retention.max(cfg.artifact_retention).max(1),
        secrets: match ferry_certs::load_secrets_key(&cfg.tls_dir) {
            Ok(key) => Some(ferry_certs::SecretBox::new(&key)?),
            Err(e) => {
                tracing::warn!(error = %e, "no secrets key: `ferry secret set` is refused until --tls-dir has secrets.key");
                None
            }
        },
        metrics: crate::metrics::Metrics::new(),
        cert_lifetimes: cfg.cert_lifetimes,
        notify_attempts: cfg.notify_attempts,
        notify_policy: crate::outbound::egress::Policy::new(cfg.notify_allow_networks.clone()),
        console_url: cfg.console_url.clone().or_else(|| {
            http_listener
                .as_ref()
                .and_then(|l| l.local_addr().ok())
                .map(|a| format!("https://{a}"))
        }),
    });

    if !cfg.notify_allow_networks.is_empty() {
        let networks: Vec<String> = cfg
            .notify_allow_networks
            .iter()
            .map(ToString::to_string)
            .collect();
        tracing::info!(
            networks = %networks.join(", "),
            "notifications may reach these networks besides public addresses"
        );
    }

    if let Some(addr) = cfg.metrics_listen {
        let listener = ferry_telemetry::metrics::bind(addr).await?;
        let local = listener.local_addr().unwrap_or(addr);
        tracing::info!(metrics = %local, "serving Prometheus metrics at /metrics");
        let scraped = Ops::new(ctx.clone());
        tokio::spawn(ferry_telemetry::metrics::serve(listener, move || {
            let ops = scraped.clone();
            async move { ops.ctx().metrics.render(&ops) }
        }));
    }

    if let Some(a) = &cfg.bootstrap_admin {
        ferry_certs::validate_name(a).context("--bootstrap-admin")?;
    }
    // A founding member bootstraps the cluster if it leads first; one that
    // joins later finds it bootstrapped.
    let founding = (!cfg.join).then(|| crate::leader::bootstrap::Founding {
        admin: cfg.bootstrap_admin.clone(),
        members: peers,
    });
    // Bootstrap, scheduling, polling, timers, leases, replication and
    // retention run only while this member leads, under one supervisor.
    let ops = Ops::new(ctx.clone());
    tokio::spawn(crate::leader::supervise(ops.clone(), founding));
    let renewal = crate::member_cert::MemberCert {
        id: cfg.id,
        ca: CertAuthority::load(&cfg.tls_dir).context("loading the cluster CA from --tls-dir")?,
        tls_dir: cfg.tls_dir.clone(),
        lifetime: cfg.cert_lifetimes.member,
        server: server_cert.clone(),
        client: ctx.identity.clone(),
    };
    tokio::spawn(renewal.run());
    if cfg.force_new_cluster {
        let ops = ops.clone();
        tokio::spawn(async move { ops.forget_lost_members(Duration::from_secs(60)).await });
    }

    let mut https = None;
    if let Some(http) = http_listener {
        // Webhooks (and later the console): the member's own certificate,
        // no client certificates, the same `ops` as gRPC.
        let tls = ferry_certs::tls::https_server_config_reloadable(server_cert.clone())
            .context("building the HTTPS configuration")?;
        let http_limits = crate::http::HttpLimits {
            per_minute: cfg.http_per_minute,
            ..Default::default()
        };
        let app = crate::http::router(ops.clone(), &http_limits)
            .merge(crate::http::console::router(ops.clone(), &http_limits));
        tracing::info!(https = %http.local_addr().map_or_else(|_| "?".to_string(), |a| a.to_string()), "serving webhooks at /hooks/git/PIPELINE and the console at /");
        https = Some(tokio::spawn(crate::http::serve_until(
            http,
            tls,
            limits,
            http_limits,
            app,
            stop.reached(Phase::Draining),
        )));
    }

    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let outcome = raft_thread.join();
        let _ = stopped_tx.send(outcome);
    });

    // Server reflection of the public API (both versions: grpcurl and
    // others still ask v1alpha).
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .context("building the reflection service")?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .context("building the reflection service")?;
    let (health, health_service) = tonic_health::server::health_reporter();
    tokio::spawn(crate::health::report(ops.clone(), health));

    tracing::info!(id = cfg.id, listen = %cfg.listen, "coordinator serving");
    let api = ApiService(ops.clone());
    let server = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        // Outermost: every request is counted in flight, refused or not.
        .layer(stop.layer())
        .layer(AuthLayer::new(ops.clone()))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(pb::enrollment_server::EnrollmentServer::new(
            EnrollmentService::new(ops.clone(), cfg.enroll_per_minute),
        ))
        .add_service(pb::pipelines_server::PipelinesServer::new(api.clone()))
        .add_service(pb::executions_server::ExecutionsServer::new(api.clone()))
        .add_service(pb::approvals_server::ApprovalsServer::new(api.clone()))
        .add_service(pb::agents_server::AgentsServer::new(api.clone()))
        .add_service(pb::environments_server::EnvironmentsServer::new(
            api.clone(),
        ))
        .add_service(pb::deployments_server::DeploymentsServer::new(api.clone()))
        .add_service(pb::artifacts_server::ArtifactsServer::new(api.clone()))
        .add_service(pb::secrets_server::SecretsServer::new(api.clone()))
        .add_service(pb::notifications_server::NotificationsServer::new(
            api.clone(),
        ))
        .add_service(pb::access_server::AccessServer::new(api.clone()))
        .add_service(pb::cluster_server::ClusterServer::new(api.clone()))
        .add_service(pb::internal::agent_session_server::AgentSessionServer::new(
            SessionService(ops.clone()),
        ))
        .add_service(pb::internal::raft_peer_server::RaftPeerServer::new(
            PeerService(ops.clone()),
        ))
        // On a stop: the listener closes (no new connections), the open
        // ones are asked to finish (GOAWAY) and the server returns once
        // they all closed.
        .serve_with_incoming_shutdown(
            ferry_certs::listen::tls_incoming(
                ferry_certs::listen::incoming(listener, limits)
                    .take_until(stop.reached(Phase::Draining)),
                tls,
            ),
            stop.reached(Phase::Draining),
        );
    tokio::pin!(server);
    let mut status = handle.status_watch();
    let removed = async move {
        loop {
            if status.borrow().removed {
                return;
            }
            if status.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    let signal = tokio::select! {
        r = &mut server => {
            r.context("gRPC server failed")?;
            bail!("the gRPC server stopped");
        }
        _ = removed => bail!("this member was removed from the cluster; it no longer serves"),
        outcome = stopped_rx => {
            match outcome {
                Ok(Ok(Err(e))) => bail!("stopped serving: {e}"),
                Ok(Ok(Ok(()))) => bail!("the Raft node stopped"),
                _ => bail!("the Raft thread panicked"),
            }
        }
        signal = signals.recv() => signal,
    };
    tracing::info!(
        signal,
        id = cfg.id,
        timeout = ?cfg.shutdown_timeout,
        "stopping: handing leadership over if this member leads, then finishing requests in flight"
    );
    let ended = crate::shutdown::graceful(
        &ops,
        &stop,
        &mut signals,
        cfg.shutdown_timeout,
        server.as_mut(),
        https,
    )
    .await;
    match ended {
        Ended::Drained => tracing::info!("stopped: every request finished"),
        Ended::TimedOut => tracing::warn!(
            timeout = ?cfg.shutdown_timeout,
            in_flight = stop.in_flight(),
            "stopped: --shutdown-timeout passed with connections still open; they are cut"
        ),
        Ended::Interrupted => {
            tracing::warn!("stopped at once, without finishing requests in flight")
        }
    }
    Ok(())
}
