//! The application context: everything a coordinator member holds while it
//! runs (the Raft handle, the hubs of connected agents and live logs, the
//! CA, metrics, limits and policies), built once by `server.rs`. The
//! application layer (`ops`) wraps it, and every adapter — the gRPC
//! `service`s, the inbound `http` side, the `leader` loops, `authz`,
//! `health` and `metrics` — depends on it, never the reverse. Only `ops`
//! touches its Raft handle.

use std::sync::Arc;

use ferry_certs::CertAuthority;

use crate::git::Git;
use crate::hub::{AgentHub, LogHub};
use crate::raft::RaftHandle;

/// Everything the coordinator holds; `ops::Ops` wraps it, and only `ops`
/// touches its Raft handle.
pub struct Ctx {
    pub raft: RaftHandle,
    pub ca: CertAuthority,
    /// This coordinator's own certificate, used as a client toward agents
    /// and members; renewed while it runs (`member_cert.rs`).
    pub identity: ferry_certs::tls::SharedIdentity,
    pub agents: AgentHub,
    pub logs: LogHub,
    pub git: Git,
    pub heartbeat_seconds: u32,
    /// An agent not heard from for this long loses its running attempts.
    pub agent_lease: std::time::Duration,
    /// Copies of each artifact and log to keep on distinct agents.
    pub artifact_replicas: usize,
    /// Artifacts and logs of the newest this-many executions per pipeline are kept.
    pub artifact_retention: usize,
    /// Finished executions kept per pipeline; older records are forgotten.
    pub execution_retention: usize,
    /// Seals and opens secrets; None when --tls-dir has no secrets.key.
    pub secrets: Option<ferry_certs::SecretBox>,
    /// Prometheus metrics (served only with `--metrics-listen`).
    pub metrics: crate::metrics::Metrics,
    /// How long the certificates this member signs last.
    pub cert_lifetimes: CertLifetimes,
    /// Attempts to deliver a notification before the notifier gives up.
    pub notify_attempts: u32,
    /// Where notifications may connect: public addresses and the networks
    /// an admin allowed (`--notify-allow-network`).
    pub notify_policy: crate::outbound::egress::Policy,
    /// Where browsers reach this member's console (`https://HOST:PORT`);
    /// None without an HTTPS listener.
    pub console_url: Option<String>,
}

/// How long the certificates a coordinator signs (at enrollment and on
/// renewal) last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertLifetimes {
    pub agent: std::time::Duration,
    pub operator: std::time::Duration,
    /// A member's own certificate, when it renews it.
    pub member: std::time::Duration,
}

impl Default for CertLifetimes {
    fn default() -> Self {
        CertLifetimes {
            agent: ferry_certs::AGENT_VALIDITY,
            operator: ferry_certs::OPERATOR_VALIDITY,
            member: ferry_certs::COORDINATOR_VALIDITY,
        }
    }
}

pub type SharedCtx = Arc<Ctx>;
