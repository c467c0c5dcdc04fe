//! gRPC adapter: deployments (list, show) and rollback.

use ferry_proto as pb;
use tonic::{Request, Response, Status};

use super::caller;
use crate::deployments::{host_releases, view};
use crate::ops::Ops;

pub async fn list_deployments(
    ops: &Ops,
    req: Request<pb::ListDeploymentsRequest>,
) -> Result<Response<pb::ListDeploymentsResponse>, Status> {
    let req = req.into_inner();
    let env = req.environment.clone();
    // `limit` is the deprecated alias of `page_size`: it applies when that is 0.
    let page =
        crate::ops::page::PageRequest::with_limit(req.page_size, req.limit, &req.page_token)?;
    let (mut out, next) = ops
        .list_deployments(&req.environment, &page, |s, deployments| {
            pb::ListDeploymentsResponse {
                deployments: deployments.into_iter().map(|d| view(s, d)).collect(),
                hosts: host_releases(s, &env),
                next_page_token: String::new(),
            }
        })
        .await?;
    out.next_page_token = next;
    Ok(Response::new(out))
}

pub async fn get_deployment(
    ops: &Ops,
    req: Request<pb::GetDeploymentRequest>,
) -> Result<Response<pb::DeploymentView>, Status> {
    let id = req.into_inner().id;
    Ok(Response::new(ops.get_deployment(id, view).await?))
}

pub async fn rollback(
    ops: &Ops,
    req: Request<pb::RollbackRequest>,
) -> Result<Response<pb::RollbackResponse>, Status> {
    let who = caller(&req)?;
    let req = req.into_inner();
    let r = ops
        .rollback(&who, &req.environment, &req.to_execution)
        .await?;
    Ok(Response::new(pb::RollbackResponse {
        pipeline: r.pipeline,
        execution_id: r.execution_id,
        release: r.release,
        from_deployment: r.from_deployment,
    }))
}
