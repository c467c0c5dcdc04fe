//! gRPC services of the coordinator: thin adapters over `ops`. Each decodes
//! the request, calls one operation and encodes the answer; they never check
//! permissions (the `authz` layer did) and never touch Raft (`ops` does).
//! The public API is one gRPC service per resource (`api.rs`), whose methods
//! each delegate to the adapter of their resource.

pub mod access;
pub mod agents;
pub mod api;
pub mod approvals;
pub mod artifacts;
pub mod bounds;
pub mod cluster;
pub mod deployments;
pub mod enroll;
pub mod environments;
pub mod executions;
pub mod notifications;
pub mod peer;
pub mod pipelines;
pub mod renew;
pub mod secrets;
pub mod session;

use std::sync::Arc;

use ferry_certs::{CertAuthority, CertifiedKey, Identity};
use tonic::Status;

use crate::git::Git;
use crate::hub::{AgentHub, LogHub};
use crate::ops::{Leader, OpError, Ops};
use crate::raft::{ProposeError, RaftHandle};
use ferry_state::Rejection;

/// Everything the coordinator holds; `ops::Ops` wraps it, and only `ops`
/// touches its Raft handle.
pub struct Ctx {
    pub raft: RaftHandle,
    pub ca: CertAuthority,
    /// This coordinator's own certificate, used as a client toward agents.
    pub identity: CertifiedKey,
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
    pub notify_policy: crate::http::egress::Policy,
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
}

impl Default for CertLifetimes {
    fn default() -> Self {
        CertLifetimes {
            agent: ferry_certs::AGENT_VALIDITY,
            operator: ferry_certs::OPERATOR_VALIDITY,
        }
    }
}

pub type SharedCtx = Arc<Ctx>;

/// The one mapping of an operation's error to a gRPC status.
impl From<OpError> for Status {
    fn from(e: OpError) -> Status {
        match e {
            OpError::Invalid(m) => Status::invalid_argument(m),
            OpError::NotFound(m) => Status::not_found(m),
            OpError::AlreadyExists(m) => Status::already_exists(m),
            OpError::FailedPrecondition(m) => Status::failed_precondition(m),
            OpError::PermissionDenied(m) => Status::permission_denied(m),
            OpError::Unavailable(m) => Status::unavailable(m),
            OpError::DeadlineExceeded(m) => Status::deadline_exceeded(m),
            OpError::Internal(m) => Status::internal(m),
            OpError::Rejected(r) => match r {
                Rejection::NotFound(_) => Status::not_found(r.to_string()),
                Rejection::AlreadyExists(_) => Status::already_exists(r.to_string()),
                Rejection::FailedPrecondition(_) => Status::failed_precondition(r.to_string()),
                Rejection::BadToken | Rejection::PermissionDenied(_) => {
                    Status::permission_denied(r.to_string())
                }
            },
            OpError::Raft(e) => match e {
                ProposeError::NotLeader { leader } => Status::unavailable(match leader {
                    Some(id) => {
                        format!("this coordinator is not the leader; the leader is member {id}")
                    }
                    None => "no leader is elected right now; retry shortly".to_string(),
                }),
                ProposeError::Stopped => {
                    Status::unavailable("this coordinator has stopped serving")
                }
                ProposeError::Forward(e) => {
                    Status::unavailable(format!("could not reach the leader: {e}"))
                }
                ProposeError::Encode(e) => Status::internal(e.to_string()),
                ProposeError::Rejected(r) => OpError::Rejected(r).into(),
            },
        }
    }
}

/// The channel to the leader when another member leads (None: this one
/// does), for calls only the leader can serve; the caller wraps it in the
/// client of its service.
pub fn leader_channel(ops: &Ops) -> Result<Option<tonic::transport::Channel>, Status> {
    Ok(match ops.leader()? {
        Leader::Here => None,
        Leader::At { channel, .. } => Some(channel),
    })
}

/// The verified caller of a request (the authz layer put it there).
pub fn caller<T>(req: &tonic::Request<T>) -> Result<Identity, Status> {
    req.extensions()
        .get::<crate::authz::Caller>()
        .map(|c| c.0.clone())
        .ok_or_else(|| Status::unauthenticated("no verified client identity"))
}
