//! gRPC adapter: cluster status, membership and leader transfer. Membership
//! changes and transfers are forwarded to the leader when this member does
//! not lead.

use ferry_proto as pb;
use tonic::{Request, Response, Status};

use super::leader_channel;
use crate::ops::Ops;
use crate::ops::cluster::{ClusterStatus, MemberStatus};
use crate::views;

/// A member's own status on the wire.
pub fn member_status(s: MemberStatus) -> pb::internal::MemberStatusResponse {
    pb::internal::MemberStatusResponse {
        id: s.id,
        term: s.term,
        leader_id: s.leader_id,
        commit_index: s.commit_index,
        applied_index: s.applied_index,
        role: member_role(s.role).into(),
        state_digest: s.state_digest,
        version: s.version,
    }
}

/// A member's role on the wire; unset when unknown.
fn member_role(role: Option<raft::StateRole>) -> pb::MemberRole {
    role.map_or(pb::MemberRole::Unspecified, views::member_role)
}

fn status_view(c: ClusterStatus) -> pb::ClusterStatusResponse {
    pb::ClusterStatusResponse {
        leader_id: c.own.leader_id,
        term: c.own.term,
        commit_index: c.own.commit_index,
        answered_by: c.own.id,
        cluster_version: c.cluster_version.to_string(),
        members: c
            .members
            .into_iter()
            .map(|m| pb::MemberView {
                id: m.id,
                address: m.address,
                // Unset when it did not answer (`reachable` says so).
                role: member_role(m.answer.as_ref().and_then(|a| a.role)).into(),
                applied_index: m.answer.as_ref().map_or(0, |a| a.applied_index),
                reachable: m.answer.is_some(),
                match_index: m.match_index,
                version: m
                    .answer
                    .as_ref()
                    .map(|a| a.version.clone())
                    .unwrap_or_default(),
                state_digest: m.answer.map(|a| a.state_digest).unwrap_or_default(),
            })
            .collect(),
    }
}

async fn current(ops: &Ops) -> Response<pb::ClusterStatusResponse> {
    Response::new(status_view(ops.cluster_status().await))
}

/// Most bytes of a backup sent in one message.
const BACKUP_CHUNK: usize = 1024 * 1024;

pub async fn backup(
    ops: &Ops,
    _req: Request<pb::BackupRequest>,
) -> Result<Response<super::api::Stream_<pb::Chunk>>, Status> {
    let bytes = ops.backup().await?;
    tracing::info!(bytes = bytes.len(), "backup taken");
    let all = bytes::Bytes::from(bytes);
    let chunks: Vec<Result<pb::Chunk, Status>> = (0..all.len())
        .step_by(BACKUP_CHUNK)
        .map(|at| {
            Ok(pb::Chunk {
                data: all.slice(at..(at + BACKUP_CHUNK).min(all.len())),
            })
        })
        .collect();
    Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
}

pub async fn cluster_status(
    ops: &Ops,
    _req: Request<pb::ClusterStatusRequest>,
) -> Result<Response<pb::ClusterStatusResponse>, Status> {
    Ok(current(ops).await)
}

pub async fn add_member(
    ops: &Ops,
    req: Request<pb::MemberRequest>,
) -> Result<Response<pb::ClusterStatusResponse>, Status> {
    let req = req.into_inner();
    if let Some(mut leader) = leader_channel(ops)?.map(pb::cluster_client::ClusterClient::new) {
        return leader.add_member(req).await;
    }
    ops.add_member(req.id, &req.address).await?;
    Ok(current(ops).await)
}

pub async fn remove_member(
    ops: &Ops,
    req: Request<pb::MemberRequest>,
) -> Result<Response<pb::ClusterStatusResponse>, Status> {
    let req = req.into_inner();
    if let Some(mut leader) = leader_channel(ops)?.map(pb::cluster_client::ClusterClient::new) {
        return leader.remove_member(req).await;
    }
    if !ops.remove_member(req.id).await? {
        // It removes itself: leadership moved first; the new leader removes it.
        let Some(mut leader) = leader_channel(ops)?.map(pb::cluster_client::ClusterClient::new)
        else {
            return Err(Status::unavailable(
                "leadership did not move; retry shortly",
            ));
        };
        return leader.remove_member(req).await;
    }
    Ok(current(ops).await)
}

pub async fn transfer_leader(
    ops: &Ops,
    req: Request<pb::MemberRequest>,
) -> Result<Response<pb::ClusterStatusResponse>, Status> {
    let req = req.into_inner();
    if let Some(mut leader) = leader_channel(ops)?.map(pb::cluster_client::ClusterClient::new) {
        return leader.transfer_leader(req).await;
    }
    ops.transfer_leader(req.id).await?;
    Ok(current(ops).await)
}
