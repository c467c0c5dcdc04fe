//! gRPC services of the coordinator. Handlers validate input, read state or
//! propose commands, and shape answers; they never check permissions (the
//! `authz` layer did) and never change state except through Raft.

pub mod enroll;
pub mod operator;
pub mod peer;
pub mod renew;
pub mod session;

use std::sync::Arc;

use ferry_certs::{CertAuthority, CertifiedKey, Identity};
use tonic::Status;

use crate::git::Git;
use crate::hub::{AgentHub, LogHub};
use crate::raft::{ProposeError, RaftHandle};
use crate::state::{By, Rejection};

/// Everything a handler may use.
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

impl From<ProposeError> for Status {
    fn from(e: ProposeError) -> Status {
        match e {
            ProposeError::NotLeader { leader } => Status::unavailable(match leader {
                Some(id) => {
                    format!("this coordinator is not the leader; the leader is member {id}")
                }
                None => "no leader is elected right now; retry shortly".to_string(),
            }),
            ProposeError::Stopped => Status::unavailable("this coordinator has stopped serving"),
            ProposeError::Forward(e) => {
                Status::unavailable(format!("could not reach the leader: {e}"))
            }
            ProposeError::Encode(e) => Status::internal(e.to_string()),
            ProposeError::Rejected(r) => r.into(),
        }
    }
}

impl From<Rejection> for Status {
    fn from(r: Rejection) -> Status {
        match r {
            Rejection::NotFound(_) => Status::not_found(r.to_string()),
            Rejection::AlreadyExists(_) => Status::already_exists(r.to_string()),
            Rejection::FailedPrecondition(_) => Status::failed_precondition(r.to_string()),
            Rejection::BadToken | Rejection::PermissionDenied(_) => {
                Status::permission_denied(r.to_string())
            }
        }
    }
}

impl Ctx {
    /// A linearizable read barrier before serving a read from local state.
    pub async fn fresh(&self) -> Result<(), Status> {
        self.raft.read_barrier().await.map_err(Status::from)
    }

    /// Waits up to `limit` until this member's Raft status satisfies `done`.
    pub async fn wait_for_status(
        &self,
        limit: std::time::Duration,
        done: impl Fn(&crate::raft::RaftStatus) -> bool,
    ) -> bool {
        let mut w = self.raft.status_watch();
        let wait = async {
            while !done(&w.borrow()) {
                if w.changed().await.is_err() {
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(limit, wait).await.unwrap_or(false)
    }

    /// NotFound unless `id` is a member of the cluster.
    pub fn member(&self, id: u64) -> Result<(), Status> {
        if self.raft.read(|s| s.members.contains_key(&id)) {
            Ok(())
        } else {
            Err(Status::not_found(format!(
                "member {id} is not in the cluster"
            )))
        }
    }

    /// The leader's operator API, for calls only the leader can serve.
    pub fn leader_operator(
        &self,
    ) -> Result<ferry_proto::operator_client::OperatorClient<tonic::transport::Channel>, Status>
    {
        let (_, ch) = self.leader_channel()?;
        Ok(ferry_proto::operator_client::OperatorClient::new(ch))
    }

    /// A channel to the current leader, for calls only the leader can serve.
    pub fn leader_channel(&self) -> Result<(u64, tonic::transport::Channel), Status> {
        let leader = self.raft.status().leader_id;
        if leader == 0 {
            return Err(Status::unavailable(
                "no leader is elected right now; retry shortly",
            ));
        }
        let addr = self.raft.address_of(leader).ok_or_else(|| {
            Status::unavailable(format!(
                "the leader is member {leader}, whose address is unknown"
            ))
        })?;
        let ch = self
            .raft
            .tls()
            .channel(leader, &addr)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok((leader, ch))
    }
}

/// Who a command proposed for `who` acts for, as `apply` checks it again:
/// a member (which `authz` lets call operator APIs) or an operator.
pub fn acting(who: &Identity) -> By {
    match who.kind {
        ferry_certs::IdentityKind::Coordinator => By::member(&who.name),
        _ => By::operator(&who.name),
    }
}

/// The verified caller of a request (the authz layer put it there).
pub fn caller<T>(req: &tonic::Request<T>) -> Result<Identity, Status> {
    req.extensions()
        .get::<crate::authz::Caller>()
        .map(|c| c.0.clone())
        .ok_or_else(|| Status::unauthenticated("no verified client identity"))
}
