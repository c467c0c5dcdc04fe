//! The member-to-member API: Raft messages, proposals forwarded by followers,
//! and each member's own status. Only coordinator certificates reach it (the
//! authz layer), and a Raft message must come from the member its certificate
//! names.

use ferry_proto as pb;
use protobuf::Message as _;
use tonic::{Request, Response, Status, Streaming};

use super::caller;
use crate::ops::{OpError, Ops};
use ferry_state::Command;

pub struct PeerService(pub Ops);

#[tonic::async_trait]
impl pb::internal::raft_peer_server::RaftPeer for PeerService {
    async fn stream(
        &self,
        req: Request<Streaming<pb::internal::RaftMessage>>,
    ) -> Result<Response<pb::internal::RaftAck>, Status> {
        let who = caller(&req)?;
        let from = who
            .coordinator_id()
            .ok_or_else(|| Status::permission_denied("not a coordinator"))?;
        // A member of another cluster sharing this CA (the one a backup was
        // restored from, or the one a survivor was forced out of) is refused.
        let theirs = req
            .metadata()
            .get(crate::raft::transport::CLUSTER_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let ours = self.0.local_read(|s| s.cluster_id.clone());
        if !theirs.is_empty() && !ours.is_empty() && theirs != ours {
            tracing::warn!(member = from, theirs = %theirs, ours = %ours, "Raft messages from a member of another cluster refused");
            return Err(Status::permission_denied(format!(
                "member {from} belongs to cluster {theirs}, this is cluster {ours} \
                 (restored from a backup or forced into a new cluster): wipe its data dir \
                 and add it with `ferry cluster add`"
            )));
        }
        let mut inbound = req.into_inner();
        while let Some(m) = inbound.message().await? {
            let msg = raft::eraftpb::Message::parse_from_bytes(&m.message)
                .map_err(|e| Status::invalid_argument(format!("bad raft message: {e}")))?;
            if msg.from != from {
                return Err(Status::permission_denied(format!(
                    "member {from} sent a message claiming to be from {}",
                    msg.from
                )));
            }
            self.0
                .step(msg)
                .map_err(|_| Status::unavailable("Raft node stopped"))?;
        }
        Ok(Response::new(pb::internal::RaftAck {}))
    }

    async fn propose(
        &self,
        req: Request<pb::internal::ForwardRequest>,
    ) -> Result<Response<pb::internal::ForwardResponse>, Status> {
        let cmd = Command::decode(&req.into_inner().command)
            .map_err(|e| Status::invalid_argument(format!("bad command: {e}")))?;
        let (result, index) = self
            .0
            .propose_forwarded(cmd)
            .await
            .map_err(|e| Status::from(OpError::from(e)))?;
        // The refusal in the form v0.1 members read, its reason beside it.
        let (result, reason) = match result {
            Ok(o) => (Ok(o), String::new()),
            Err(crate::raft::ProposeError::Rejected(r)) => {
                (Err(r.to_v1()), r.reason().as_str().to_string())
            }
            Err(e) => return Err(OpError::from(e).into()),
        };
        let bytes = serde_json::to_vec(&result).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(pb::internal::ForwardResponse {
            result: bytes,
            index,
            reason,
        }))
    }

    async fn member_status(
        &self,
        _req: Request<pb::internal::MemberStatusRequest>,
    ) -> Result<Response<pb::internal::MemberStatusResponse>, Status> {
        Ok(Response::new(super::cluster::member_status(
            self.0.own_status(),
        )))
    }
}
