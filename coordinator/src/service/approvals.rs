//! gRPC adapter: approval decisions.

use ferry_proto as pb;
use tonic::{Request, Response, Status};

use super::caller;
use crate::ops::approvals::Decision;
use crate::ops::{Ops, RequestId};

pub async fn decide(
    ops: &Ops,
    req: Request<pb::DecideRequest>,
) -> Result<Response<pb::DecideResponse>, Status> {
    let who = caller(&req)?;
    let req = req.into_inner();
    let approve = match pb::ApprovalDecision::try_from(req.decision) {
        Ok(pb::ApprovalDecision::Approved) => true,
        Ok(pb::ApprovalDecision::Rejected) => false,
        Ok(pb::ApprovalDecision::Unspecified) | Err(_) => {
            return Err(Status::invalid_argument(format!(
                "the decision must be APPROVAL_DECISION_APPROVED or \
                 APPROVAL_DECISION_REJECTED (got {})",
                req.decision
            )));
        }
    };
    let request = RequestId::new(
        &req.request_id,
        "Decide",
        &[
            &req.pipeline,
            &req.execution_id,
            &req.action,
            if approve { "approve" } else { "reject" },
            &req.comment,
        ],
    )?;
    let d = ops
        .decide(
            &who,
            Decision {
                pipeline: req.pipeline,
                execution: req.execution_id,
                action: req.action,
                approve,
                comment: req.comment,
            },
            request.as_ref(),
        )
        .await?;
    Ok(Response::new(pb::DecideResponse {
        action_status: d
            .action
            .map_or(pb::ActionStatus::Unspecified, pb::ActionStatus::from)
            .into(),
        execution_status: pb::ExecutionStatus::from(d.execution).into(),
    }))
}
