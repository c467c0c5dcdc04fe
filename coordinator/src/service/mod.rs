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

use ferry_certs::Identity;
use ferry_state::Rejection;
use tonic::Status;

use crate::ops::{Leader, OpError, Ops};
use crate::raft::ProposeError;

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
