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

pub async fn list_caches(
    ops: &Ops,
    req: Request<pb::ListCachesRequest>,
) -> Result<Response<pb::ListCachesResponse>, Status> {
    let req = req.into_inner();
    let caches = ops
        .list_caches(&req.pipeline)
        .await?
        .into_iter()
        .map(|c| pb::CacheView {
            scope: c.scope,
            key: c.key,
            digest: c.record.digest,
            size: c.record.size,
            holders: c.record.holders.into_iter().collect(),
            created_at: crate::views::timestamp(Some(c.record.created_at)),
            execution_id: c.record.execution,
        })
        .collect();
    Ok(Response::new(pb::ListCachesResponse { caches }))
}

pub async fn remove_caches(
    ops: &Ops,
    req: Request<pb::RemoveCachesRequest>,
) -> Result<Response<pb::RemoveCachesResponse>, Status> {
    let who = super::caller(&req)?;
    let req = req.into_inner();
    let (removed, bytes) = ops
        .remove_caches(&who, &req.pipeline, &req.scope, &req.key_prefix)
        .await?;
    Ok(Response::new(pb::RemoveCachesResponse { removed, bytes }))
}
