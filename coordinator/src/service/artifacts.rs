//! gRPC adapter: artifacts (list an execution's, download one from an agent
//! that holds it).

use ferry_proto as pb;
use tonic::{Request, Response, Status};

use super::api::Stream_;
use crate::ops::{OpError, Ops};

pub async fn list_artifacts(
    ops: &Ops,
    req: Request<pb::ListArtifactsRequest>,
) -> Result<Response<pb::ListArtifactsResponse>, Status> {
    let req = req.into_inner();
    let page = crate::ops::page::PageRequest::all(req.page_size, &req.page_token)?;
    let (artifacts, next_page_token) = ops
        .list_artifacts(&req.pipeline, &req.execution_id, &page)
        .await?;
    let artifacts = artifacts
        .into_iter()
        .map(|a| pb::ArtifactEntry {
            name: a.name,
            action: a.action,
            digest: a.digest,
            size: a.size,
            holders: a.holders,
            attempt: a.attempt,
        })
        .collect();
    Ok(Response::new(pb::ListArtifactsResponse {
        artifacts,
        next_page_token,
    }))
}

pub async fn get_artifact(
    ops: &Ops,
    req: Request<pb::GetArtifactRequest>,
) -> Result<Response<Stream_<pb::Chunk>>, Status> {
    let digest = req.into_inner().digest;
    let holders = ops.artifact_holders(&digest).await?;
    let ctx = ops.ctx();
    let stream = crate::peer::fetch(ctx.ca.ca_pem(), &ctx.identity.current(), &holders, &digest)
        .await
        .map_err(|e| OpError::Unavailable(format!("no holder of {digest} answered: {e}")))?;
    Ok(Response::new(Box::pin(stream)))
}
