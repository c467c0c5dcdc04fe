//! gRPC adapter: executions (start, show, watch, list) and action logs.

use std::time::Duration;

use ferry_proto as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::api::Stream_;
use super::{caller, leader_channel};
use crate::ops::executions::ActionAt;
use crate::ops::{OpError, Ops, RequestId};
use crate::views;

pub async fn start_execution(
    ops: &Ops,
    req: Request<pb::StartExecutionRequest>,
) -> Result<Response<pb::StartExecutionResponse>, Status> {
    let who = caller(&req)?;
    let req = req.into_inner();
    let variables: std::collections::BTreeMap<String, String> = req.variables.into_iter().collect();
    let asked: Vec<String> = variables
        .iter()
        .flat_map(|(k, v)| [k.clone(), v.clone()])
        .collect();
    let parts: Vec<&str> = [req.pipeline.as_str(), req.revision.as_str()]
        .into_iter()
        .chain(asked.iter().map(String::as_str))
        .collect();
    let request = RequestId::new(&req.request_id, "StartExecution", &parts)?;
    let s = ops
        .start_execution(
            &who,
            &req.pipeline,
            &req.revision,
            variables,
            request.as_ref(),
        )
        .await?;
    Ok(Response::new(pb::StartExecutionResponse {
        execution_id: s.execution_id,
        revision: s.revision,
        pipeline_version: s.pipeline_version,
    }))
}

pub async fn get_execution(
    ops: &Ops,
    req: Request<pb::GetExecutionRequest>,
) -> Result<Response<pb::ExecutionView>, Status> {
    let req = req.into_inner();
    let view = ops
        .get_execution(&req.pipeline, &req.execution_id, views::execution)
        .await?;
    Ok(Response::new(view))
}

pub async fn watch_execution(
    ops: &Ops,
    req: Request<pb::GetExecutionRequest>,
) -> Result<Response<Stream_<pb::ExecutionView>>, Status> {
    let req = req.into_inner();
    let first = ops
        .get_execution(&req.pipeline, &req.execution_id, views::execution)
        .await?;
    let id = first.execution_id.clone();
    let pipeline = req.pipeline.clone();
    let ops = ops.clone();
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut applied = ops.applied();
        let mut last = first;
        if tx.send(Ok(last.clone())).await.is_err() {
            return;
        }
        while last.status() == pb::ExecutionStatus::InProgress {
            tokio::select! {
                changed = applied.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(Duration::from_secs(15)) => {}
                _ = tx.closed() => return,
            }
            let Ok(view) = ops.local_execution(&pipeline, &id, views::execution) else {
                return;
            };
            if view != last {
                last = view;
                if tx.send(Ok(last.clone())).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
}

pub async fn list_executions(
    ops: &Ops,
    req: Request<pb::ListExecutionsRequest>,
) -> Result<Response<pb::ListExecutionsResponse>, Status> {
    let req = req.into_inner();
    // `limit` is the deprecated alias of `page_size`: it applies when that is 0.
    let page =
        crate::ops::page::PageRequest::with_limit(req.page_size, req.limit, &req.page_token)?;
    let (executions, next_page_token) = ops
        .list_executions(&req.pipeline, &page, views::execution)
        .await?;
    Ok(Response::new(pb::ListExecutionsResponse {
        executions,
        next_page_token,
    }))
}

pub async fn stream_logs(
    ops: &Ops,
    req: Request<pb::LogsRequest>,
) -> Result<Response<Stream_<pb::LogChunk>>, Status> {
    let req = req.into_inner();
    let (at, running) = ops
        .locate_log(&req.pipeline, &req.execution_id, &req.action)
        .await?;
    if running
        && let Some(mut leader) =
            leader_channel(ops)?.map(pb::executions_client::ExecutionsClient::new)
    {
        // Live lines are held by the leader only.
        let upstream = leader.stream_logs(req).await?.into_inner();
        return Ok(Response::new(Box::pin(upstream)));
    }
    let ops = ops.clone();
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        if let Err(status) = follow_log(ops, at, req.follow, tx.clone()).await {
            let _ = tx.send(Err(status)).await;
        }
    });
    Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
}

type LogTx = mpsc::Sender<Result<pb::LogChunk, Status>>;

/// Streams one action's log: the stored blob once the attempt ended, the live
/// lines while it runs, and (with `follow`) waits for it to start.
async fn follow_log(ops: Ops, at: ActionAt, follow: bool, tx: LogTx) -> Result<(), Status> {
    let ctx = ops.ctx().clone();
    let mut applied = ops.applied();
    loop {
        let state = ops.local_log_state(&at);
        let epoch = state.epoch;
        if epoch == 0 {
            if !follow || views::is_final(state.status) {
                return Ok(());
            }
            // Waits for the action to start, unless the reader went away.
            tokio::select! {
                changed = applied.changed() => {
                    changed.map_err(|_| Status::unavailable("coordinator stopping"))?;
                }
                _ = tx.closed() => return Ok(()),
            }
            continue;
        }
        if state.status.is_final()
            && let Some((digest, holders)) = state.log
        {
            match crate::peer::fetch(ctx.ca.ca_pem(), &ctx.identity.current(), &holders, &digest)
                .await
            {
                Ok(mut stream) => {
                    while let Some(chunk) = stream.message().await? {
                        if tx
                            .send(Ok(pb::LogChunk {
                                data: chunk.data.to_vec(),
                            }))
                            .await
                            .is_err()
                        {
                            return Ok(());
                        }
                    }
                    return Ok(());
                }
                Err(e) => {
                    if let Some(data) = ctx.logs.complete(epoch) {
                        let _ = tx.send(Ok(pb::LogChunk { data })).await;
                        return Ok(());
                    }
                    return Err(OpError::Unavailable(format!(
                        "the log {digest} is kept by agents that cannot be reached now: {e}"
                    ))
                    .into());
                }
            }
        }
        let (head, closed, mut rx) = ctx.logs.subscribe(epoch);
        if !head.is_empty() && tx.send(Ok(pb::LogChunk { data: head })).await.is_err() {
            return Ok(());
        }
        if !follow || closed {
            return Ok(());
        }
        loop {
            match rx.recv().await {
                Ok(data) => {
                    if tx.send(Ok(pb::LogChunk { data })).await.is_err() {
                        return Ok(());
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    let note = format!("[ferry: {n} log chunks skipped: reader too slow]\n");
                    let _ = tx
                        .send(Ok(pb::LogChunk {
                            data: note.into_bytes(),
                        }))
                        .await;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    if ctx.logs.is_closed(epoch) == Some(true) {
                        return Ok(());
                    }
                    // This member stopped leading mid-log (`LogHub::forget_open`).
                    return Err(Status::unavailable(
                        "the coordinator that held this live log stopped leading; follow it again",
                    ));
                }
            }
        }
    }
}

pub async fn stop_execution(
    ops: &Ops,
    req: Request<pb::StopExecutionRequest>,
) -> Result<Response<pb::StopExecutionResponse>, Status> {
    let who = caller(&req)?;
    let req = req.into_inner();
    let abandon = if req.abandon { "abandon" } else { "finish" };
    let request = RequestId::new(
        &req.request_id,
        "StopExecution",
        &[&req.pipeline, &req.execution_id, &req.reason, abandon],
    )?;
    ops.stop_execution(
        &who,
        &req.pipeline,
        &req.execution_id,
        &req.reason,
        req.abandon,
        request.as_ref(),
    )
    .await?;
    Ok(Response::new(pb::StopExecutionResponse {}))
}

pub async fn retry_stage(
    ops: &Ops,
    req: Request<pb::RetryStageRequest>,
) -> Result<Response<pb::RetryStageResponse>, Status> {
    let who = caller(&req)?;
    let req = req.into_inner();
    let all = if req.all { "all" } else { "failed" };
    let request = RequestId::new(
        &req.request_id,
        "RetryStage",
        &[&req.pipeline, &req.execution_id, &req.stage, all],
    )?;
    ops.retry_stage(
        &who,
        &req.pipeline,
        &req.execution_id,
        &req.stage,
        req.all,
        request.as_ref(),
    )
    .await?;
    Ok(Response::new(pb::RetryStageResponse {}))
}
