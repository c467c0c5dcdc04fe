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
pub mod status;

use ferry_certs::Identity;
use ferry_state::{Reason, Rejection};
use tonic::Status;

use crate::ops::{Leader, OpError, Ops};
use crate::raft::ProposeError;

/// Part of the public API: the metadata entry `ferry-not-applied: 1` on an
/// UNAVAILABLE status says that this member put the request in no Raft log
/// entry and sent it to no other member, so a client may send the very same
/// request again, to this member or another, without applying it twice. The
/// CLI's failover transport (`cli/src/failover/methods.rs`, which spells the same
/// name) sends a write to another member only on this mark, or on the texts
/// v0.1 members answer the same conditions with (frozen below).
///
/// It is set where nothing was proposed: [`ProposeError::NotLeader`] (this
/// member does not lead and knows no leader to forward to, or a read
/// barrier found none), and every refusal of [`leader_channel`] (before a
/// leader-only call is forwarded). Never set it on a status that can come
/// after a proposal: [`ProposeError::Stopped`] (the Raft node may have taken
/// the command before it stopped) and [`ProposeError::Forward`] (the leader
/// may have taken it before the connection broke) do not carry it.
///
/// Two limits a client must know, both outside this mapping:
/// - a handler that answers a write with a linearizable read or a call on
///   the leader made *after* the write (notification targets' set and
///   remove, and agents' drain, labels and remove, which answer with the
///   agent list) may return that read's marked status although the write
///   was applied; the CLI does not trust the mark for those methods;
/// - a v0.1 member answers a proposal that was in flight when its leader
///   stepped down (which the next leader may still commit) with its
///   unmarked "no leader" text; from v0.2 on that is
///   [`ProposeError::Dropped`], never marked and never proposed again.
pub const NOT_APPLIED: &str = "ferry-not-applied";

/// `status` with the [`NOT_APPLIED`] mark, when it is UNAVAILABLE (the only
/// code the mark is defined for).
pub fn not_applied(mut status: Status) -> Status {
    if status.code() == tonic::Code::Unavailable {
        status.metadata_mut().insert(
            NOT_APPLIED,
            tonic::metadata::MetadataValue::from_static("1"),
        );
    }
    status
}

/// The one mapping of an operation's error to a gRPC status, with its
/// details ([`status::refused`]): every status carries an `ErrorInfo` with
/// a stable reason, a lint failure a `BadRequest` violation per problem, a
/// state conflict a `PreconditionFailure`.
impl From<OpError> for Status {
    fn from(e: OpError) -> Status {
        use tonic::Code;
        match e {
            OpError::Invalid(m) => {
                status::refused(Code::InvalidArgument, Reason::InvalidArgument, m)
            }
            OpError::Lint { summary, problems } => status::lint(summary, &problems),
            OpError::NotFound(m) => status::refused(Code::NotFound, Reason::NotFound, m),
            OpError::AlreadyExists(m) => {
                status::refused(Code::AlreadyExists, Reason::AlreadyExists, m)
            }
            OpError::FailedPrecondition(m) => status::precondition(Reason::FailedPrecondition, m),
            OpError::PermissionDenied(reason, m) => {
                status::refused(Code::PermissionDenied, reason, m)
            }
            OpError::Unavailable(m) => status::refused(Code::Unavailable, Reason::Unavailable, m),
            OpError::DeadlineExceeded(m) => {
                status::refused(Code::DeadlineExceeded, Reason::DeadlineExceeded, m)
            }
            OpError::Internal(m) => status::refused(Code::Internal, Reason::Internal, m),
            OpError::Rejected(r) => {
                let reason = r.reason();
                match r {
                    Rejection::NotFound(_) => {
                        status::refused(Code::NotFound, reason, r.to_string())
                    }
                    Rejection::AlreadyExists(_) => {
                        status::refused(Code::AlreadyExists, reason, r.to_string())
                    }
                    Rejection::FailedPrecondition(_) | Rejection::Conflict(..) => {
                        status::precondition(reason, r.to_string())
                    }
                    Rejection::BadToken | Rejection::PermissionDenied(..) => {
                        status::refused(Code::PermissionDenied, reason, r.to_string())
                    }
                }
            }
            OpError::Raft(e) => match e {
                // Nothing was proposed: marked (see NOT_APPLIED). These two
                // texts are frozen: v0.1 members answer the same conditions
                // with them and without the mark, and clients (the CLI's
                // failover) recognise them word for word.
                ProposeError::NotLeader { leader } => not_applied(status::refused(
                    Code::Unavailable,
                    Reason::NoLeader,
                    match leader {
                        Some(id) => {
                            format!("this coordinator is not the leader; the leader is member {id}")
                        }
                        None => "no leader is elected right now; retry shortly".to_string(),
                    },
                )),
                ProposeError::Dropped => {
                    status::refused(Code::Unavailable, Reason::Unavailable, e.to_string())
                }
                ProposeError::Stopped => status::refused(
                    Code::Unavailable,
                    Reason::Unavailable,
                    "this coordinator has stopped serving",
                ),
                ProposeError::Forward(e) => status::refused(
                    Code::Unavailable,
                    Reason::Unavailable,
                    format!("could not reach the leader: {e}"),
                ),
                ProposeError::Encode(e) => {
                    status::refused(Code::Internal, Reason::Internal, e.to_string())
                }
                ProposeError::Rejected(r) => OpError::Rejected(r).into(),
            },
        }
    }
}

/// The channel to the leader when another member leads (None: this one
/// does), for calls only the leader can serve; the caller wraps it in the
/// client of its service.
pub fn leader_channel(ops: &Ops) -> Result<Option<tonic::transport::Channel>, Status> {
    // Every refusal here comes before the call was forwarded: marked.
    let leader = ops.leader().map_err(|e| not_applied(e.into()))?;
    Ok(match leader {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn marked(status: &Status) -> bool {
        status
            .metadata()
            .get(NOT_APPLIED)
            .is_some_and(|v| v.as_bytes() == b"1")
    }

    #[test]
    fn not_leader_is_marked_not_applied_with_the_frozen_texts() {
        let status = Status::from(OpError::Raft(ProposeError::NotLeader { leader: None }));
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(
            status.message(),
            "no leader is elected right now; retry shortly"
        );
        assert!(marked(&status));
        let status = Status::from(OpError::Raft(ProposeError::NotLeader { leader: Some(2) }));
        assert_eq!(
            status.message(),
            "this coordinator is not the leader; the leader is member 2"
        );
        assert!(marked(&status));
    }

    #[test]
    fn what_may_have_been_proposed_is_not_marked() {
        for e in [
            OpError::Raft(ProposeError::Stopped),
            OpError::Raft(ProposeError::Forward("connection reset".into())),
            OpError::Unavailable("the log is kept by agents that cannot be reached now".into()),
        ] {
            let status = Status::from(e);
            assert_eq!(status.code(), tonic::Code::Unavailable);
            assert!(!marked(&status), "{status:?}");
        }
        // The mark is for UNAVAILABLE only.
        assert!(!marked(&not_applied(Status::not_found("x"))));
    }
}
