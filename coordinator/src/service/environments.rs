//! gRPC adapter: environments (apply, list, show).

use ferry_proto as pb;
use tonic::{Request, Response, Status};

use super::caller;
use crate::ops::Ops;
use crate::views;

pub async fn apply_environment(
    ops: &Ops,
    req: Request<pb::ApplyEnvironmentRequest>,
) -> Result<Response<pb::EnvironmentView>, Status> {
    let who = caller(&req)?;
    let req = req.into_inner();
    let (name, unchanged) = ops
        .apply_environment(&who, &req.file_name, req.yaml)
        .await?;
    let mut view = ops.applied_environment(&name, views::environment)?;
    view.unchanged = unchanged;
    Ok(Response::new(view))
}

pub async fn list_environments(
    ops: &Ops,
    req: Request<pb::ListEnvironmentsRequest>,
) -> Result<Response<pb::ListEnvironmentsResponse>, Status> {
    let req = req.into_inner();
    let page = crate::ops::page::PageRequest::all(req.page_size, &req.page_token)?;
    let (environments, next_page_token) = ops.list_environments(&page, views::environment).await?;
    Ok(Response::new(pb::ListEnvironmentsResponse {
        environments,
        next_page_token,
    }))
}

pub async fn get_environment(
    ops: &Ops,
    req: Request<pb::GetEnvironmentRequest>,
) -> Result<Response<pb::EnvironmentView>, Status> {
    let name = req.into_inner().name;
    Ok(Response::new(
        ops.get_environment(&name, views::environment).await?,
    ))
}
