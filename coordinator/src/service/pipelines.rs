//! gRPC adapter: pipelines (apply, list, show, transitions).

use ferry_proto as pb;
use tonic::{Request, Response, Status};

use super::caller;
use crate::ops::{Ops, RequestId};
use crate::views;

pub async fn apply_pipeline(
    ops: &Ops,
    req: Request<pb::ApplyPipelineRequest>,
) -> Result<Response<pb::ApplyPipelineResponse>, Status> {
    let who = caller(&req)?;
    let req = req.into_inner();
    let request = RequestId::new(
        &req.request_id,
        "ApplyPipeline",
        &[&req.file_name, &req.yaml],
    )?;
    let a = ops
        .apply_pipeline(&who, &req.file_name, req.yaml, request.as_ref())
        .await?;
    Ok(Response::new(pb::ApplyPipelineResponse {
        name: a.name,
        version: a.version,
        unchanged: a.unchanged,
    }))
}

pub async fn list_pipelines(
    ops: &Ops,
    req: Request<pb::ListPipelinesRequest>,
) -> Result<Response<pb::ListPipelinesResponse>, Status> {
    let req = req.into_inner();
    let page = crate::ops::page::PageRequest::all(req.page_size, &req.page_token)?;
    let (pipelines, next_page_token) = ops.list_pipelines(&page, views::pipeline_summary).await?;
    Ok(Response::new(pb::ListPipelinesResponse {
        pipelines,
        next_page_token,
    }))
}

pub async fn get_pipeline(
    ops: &Ops,
    req: Request<pb::GetPipelineRequest>,
) -> Result<Response<pb::PipelineView>, Status> {
    let req = req.into_inner();
    let view = ops
        .get_pipeline(&req.name, req.version, |rec, v| pb::PipelineView {
            name: rec.name.clone(),
            version: v.version,
            yaml: v.yaml.clone(),
            applied_by: v.applied_by.clone(),
            applied_at: views::timestamp(Some(v.applied_at)),
            versions: rec.versions.iter().map(|v| v.version).collect(),
            last_seen_revision: rec.last_seen_revision.clone().unwrap_or_default(),
            disabled_transitions: rec
                .disabled_transitions
                .iter()
                .map(|(stage, lock)| pb::DisabledTransition {
                    stage: stage.clone(),
                    by: lock.by.clone(),
                    reason: lock.reason.clone(),
                    at: views::timestamp(Some(lock.at)),
                })
                .collect(),
            schedule: rec
                .schedule
                .as_ref()
                .map(|s| format!("{} ({})", s.cron, s.timezone))
                .unwrap_or_default(),
            next_scheduled_at: views::timestamp(rec.schedule.as_ref().and_then(|s| s.next)),
            execution_mode: rec
                .latest()
                .map_or(pb::ExecutionMode::Unspecified, |l| {
                    pb::ExecutionMode::from(l.spec.execution_mode)
                })
                .into(),
        })
        .await?;
    Ok(Response::new(view))
}

pub async fn set_transition(
    ops: &Ops,
    req: Request<pb::SetTransitionRequest>,
) -> Result<Response<pb::SetTransitionResponse>, Status> {
    let who = caller(&req)?;
    let req = req.into_inner();
    ops.set_transition(&who, &req.pipeline, &req.stage, req.enabled, &req.reason)
        .await?;
    Ok(Response::new(pb::SetTransitionResponse {}))
}
