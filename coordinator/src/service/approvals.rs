//! gRPC adapter: approval decisions.

use ferry_proto as pb;
use tonic::{Request, Response, Status};

use super::caller;
use crate::ops::Ops;
use crate::ops::approvals::Decision;

pub async fn decide(
    ops: &Ops,
    req: Request<pb::DecideRequest>,
) -> Result<Response<pb::DecideResponse>, Status> {
    let who = caller(&req)?;
    let req = req.into_inner();
    let d = ops
        .decide(
            &who,
            Decision {
                pipeline: req.pipeline,
                execution: req.execution_id,
                action: req.action,
                approve: req.approve,
                comment: req.comment,
            },
        )
        .await?;
    Ok(Response::new(pb::DecideResponse {
        action_status: d.action.map(|s| s.to_string()).unwrap_or_default(),
        execution_status: d.execution.to_string(),
    }))
}
