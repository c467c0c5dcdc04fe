//! Outbound calls: fetching blobs (final logs) from the agents that hold
//! them, over mTLS with the coordinator's own certificate (bytes are streamed,
//! never stored here), and asking a member for its own status.

use ferry_certs::CertifiedKey;
use ferry_proto as pb;

/// Opens a fetch stream for `digest` from the first reachable holder.
pub async fn fetch(
    ca_pem: &str,
    identity: &CertifiedKey,
    holders: &[String],
    digest: &str,
) -> Result<tonic::Streaming<pb::Chunk>, String> {
    let mut errors = Vec::new();
    for addr in holders {
        let endpoint = match ferry_certs::tls::endpoint(
            addr,
            ca_pem,
            Some(identity),
            ferry_certs::tls::Expected::Agent,
        ) {
            Ok(e) => e.connect_timeout(std::time::Duration::from_secs(5)),
            Err(e) => {
                errors.push(format!("{addr}: {e}"));
                continue;
            }
        };
        match endpoint.connect().await {
            Ok(ch) => {
                let mut client = pb::internal::artifact_peer_client::ArtifactPeerClient::new(ch);
                match client
                    .fetch(pb::internal::FetchRequest {
                        digest: digest.to_string(),
                        offset: 0,
                    })
                    .await
                {
                    Ok(stream) => return Ok(stream.into_inner()),
                    Err(e) => errors.push(format!("{addr}: {}", e.message())),
                }
            }
            Err(e) => errors.push(format!("{addr}: {e}")),
        }
    }
    Err(if errors.is_empty() {
        "no agent holds it".into()
    } else {
        errors.join("; ")
    })
}

/// A member's role as it sent it; None for UNSPECIFIED (or a number this
/// version does not know, which prost reads as UNSPECIFIED).
fn raft_role(role: pb::MemberRole) -> Option<raft::StateRole> {
    match role {
        pb::MemberRole::Leader => Some(raft::StateRole::Leader),
        pb::MemberRole::Follower => Some(raft::StateRole::Follower),
        pb::MemberRole::Candidate => Some(raft::StateRole::Candidate),
        pb::MemberRole::PreCandidate => Some(raft::StateRole::PreCandidate),
        pb::MemberRole::Unspecified => None,
    }
}

/// A member's own status, asked over `channel` (to that member) within
/// `limit`; the reason when it does not answer.
pub async fn member_status(
    channel: tonic::transport::Channel,
    limit: std::time::Duration,
) -> Result<crate::ops::cluster::MemberStatus, String> {
    let mut client = pb::internal::raft_peer_client::RaftPeerClient::new(channel);
    let ask = client.member_status(pb::internal::MemberStatusRequest {});
    match tokio::time::timeout(limit, ask).await {
        Ok(Ok(r)) => {
            let r = r.into_inner();
            Ok(crate::ops::cluster::MemberStatus {
                id: r.id,
                term: r.term,
                leader_id: r.leader_id,
                commit_index: r.commit_index,
                applied_index: r.applied_index,
                role: raft_role(r.role()),
                state_digest: r.state_digest,
                version: r.version,
            })
        }
        Ok(Err(e)) => Err(e.message().to_string()),
        Err(_) => Err(format!("no answer within {} s", limit.as_secs())),
    }
}
