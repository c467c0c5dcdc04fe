//! The handle the rest of the coordinator holds: [`RaftHandle`] proposes
//! commands and membership changes to the Raft thread, forwards a
//! follower's proposals to the leader over gRPC, waits on read barriers and
//! reads the applied state and the member's [`RaftStatus`].

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ferry_proto as pb;
use raft::eraftpb::Message;
use thiserror::Error;
use tokio::sync::{oneshot, watch};

use super::driver::Msg;
use super::membership::MembershipChange;
use super::transport::{Addresses, PeerTls};
use ferry_state::{ClusterState, Command, Output, Reason, Rejection, RejectionV1};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftStatus {
    pub id: u64,
    pub leader_id: u64,
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    pub is_leader: bool,
    pub role: raft::StateRole,
    /// Leader only: highest log index known replicated on each member.
    pub matched: BTreeMap<u64, u64>,
    /// This member was removed from the cluster and must stop serving.
    pub removed: bool,
    /// Members that receive the log but do not vote (yet).
    pub learners: std::collections::BTreeSet<u64>,
}

#[derive(Debug, Error)]
pub enum ProposeError {
    #[error("no leader is reachable (last known: {leader:?}); retry shortly")]
    NotLeader { leader: Option<u64> },
    /// Proposed, but the leader stepped down before it committed: the next
    /// leader may still commit it, or not. Never proposed again (that could
    /// apply it twice) and never marked as not applied.
    #[error(
        "the leadership changed while this was being proposed; it may or may not have been applied"
    )]
    Dropped,
    #[error("the Raft node has stopped")]
    Stopped,
    #[error("forwarding to the leader failed: {0}")]
    Forward(String),
    /// The command does not serialize; nothing was proposed.
    #[error(transparent)]
    Encode(#[from] ferry_state::EncodeError),
    #[error(transparent)]
    Rejected(#[from] Rejection),
}

/// Whether a forwarded proposal's failure shows the leader never took it:
/// no connection could be opened, or the leader marked its answer as not
/// applied (`service::NOT_APPLIED`: it did not lead).
fn forward_not_proposed(status: &tonic::Status) -> bool {
    if status.metadata().get(crate::service::NOT_APPLIED).is_some() {
        return true;
    }
    let mut next: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = next {
        if e.is::<tonic::ConnectError>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// Cheap to clone; proposes commands and reads the applied state.
#[derive(Clone)]
pub struct RaftHandle {
    pub(super) tx: mpsc::Sender<Msg>,
    pub(super) state: Arc<RwLock<ClusterState>>,
    pub(super) applied: watch::Receiver<u64>,
    pub(super) status: watch::Receiver<RaftStatus>,
    pub(super) addresses: Addresses,
    pub(super) tls: PeerTls,
}

const WAIT_FOR_LEADER: Duration = Duration::from_secs(5);

impl RaftHandle {
    /// Proposes a command and waits until it is committed and applied on this
    /// member. A follower forwards it to the leader; without a leader it waits
    /// a few seconds for one.
    pub async fn propose(&self, cmd: Command) -> Result<Output, ProposeError> {
        let deadline = tokio::time::Instant::now() + WAIT_FOR_LEADER;
        loop {
            let status = self.status();
            if status.removed {
                return Err(ProposeError::Stopped);
            }
            let attempt = if status.is_leader {
                self.propose_local(cmd.clone()).await.map(|(r, _)| r)
            } else if status.leader_id != 0 {
                self.forward(status.leader_id, &cmd).await
            } else {
                Err(ProposeError::NotLeader { leader: None })
            };
            // Only an outer error is tried again: nothing was proposed.
            match attempt {
                Ok(r) => return r,
                Err(e @ ProposeError::Stopped) => return Err(e),
                Err(e) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(e);
                    }
                    let mut watch = self.status.clone();
                    tokio::select! {
                        _ = watch.changed() => {}
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
            }
        }
    }

    /// Proposes on this member, which must lead. Outer error: not proposed
    /// for want of a leader (worth retrying).
    pub async fn propose_local(
        &self,
        cmd: Command,
    ) -> Result<(Result<Output, ProposeError>, u64), ProposeError> {
        let data = match cmd.encode() {
            Ok(data) => data,
            Err(e) => return Ok((Err(e.into()), 0)),
        };
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Propose { data, reply })
            .map_err(|_| ProposeError::Stopped)?;
        let (result, index) = rx.await.map_err(|_| ProposeError::Stopped)?;
        match result {
            Err(e @ (ProposeError::NotLeader { .. } | ProposeError::Stopped)) => Err(e),
            r => Ok((r, index)),
        }
    }

    /// Forwards `cmd` to member `leader`. Outer error: provably not proposed
    /// (no connection to the leader, or it answered that it proposed nothing),
    /// worth trying again; inner: the outcome, or a failure after the leader
    /// may have taken it.
    async fn forward(
        &self,
        leader: u64,
        cmd: &Command,
    ) -> Result<Result<Output, ProposeError>, ProposeError> {
        let command = match cmd.encode() {
            Ok(data) => data,
            Err(e) => return Ok(Err(e.into())),
        };
        let addr = self.address_of(leader).ok_or(ProposeError::NotLeader {
            leader: Some(leader),
        })?;
        let channel = self
            .tls
            .channel(leader, &addr)
            .map_err(|e| ProposeError::Forward(e.to_string()))?;
        let mut client = pb::internal::raft_peer_client::RaftPeerClient::new(channel);
        let resp = match client
            .propose(pb::internal::ForwardRequest { command })
            .await
        {
            Ok(resp) => resp.into_inner(),
            Err(s) if forward_not_proposed(&s) => {
                return Err(ProposeError::NotLeader {
                    leader: Some(leader),
                });
            }
            Err(s) => return Ok(Err(ProposeError::Forward(s.message().to_string()))),
        };
        let result: Result<Output, RejectionV1> = match serde_json::from_slice(&resp.result) {
            Ok(result) => result,
            Err(e) => return Ok(Err(ProposeError::Forward(e.to_string()))),
        };
        let reason = Reason::parse(&resp.reason);
        let result = result.map_err(|r| Rejection::from_v1(r, reason));
        // Read your own writes: wait until this member applied it too.
        let mut applied = self.applied.clone();
        let wait = async {
            while *applied.borrow() < resp.index {
                if applied.changed().await.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), wait).await;
        Ok(result.map_err(ProposeError::Rejected))
    }

    /// Proposes a membership change; this member must lead.
    pub async fn change_membership(
        &self,
        id: u64,
        change: MembershipChange,
    ) -> Result<u64, ProposeError> {
        let cc = change.conf_change(id, |id| self.address_of(id));
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::ConfChange { cc, reply })
            .map_err(|_| ProposeError::Stopped)?;
        let (result, index) = rx.await.map_err(|_| ProposeError::Stopped)?;
        result.map(|_| index)
    }

    pub fn transfer_leader(&self, to: u64) -> Result<(), ProposeError> {
        self.tx
            .send(Msg::TransferLeader(to))
            .map_err(|_| ProposeError::Stopped)
    }

    /// Linearizable read barrier (Raft read index): returns once this member
    /// has applied everything committed when the call started.
    pub async fn read_barrier(&self) -> Result<(), ProposeError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::ReadIndex { reply })
            .map_err(|_| ProposeError::Stopped)?;
        match tokio::time::timeout(Duration::from_secs(3), rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ProposeError::Stopped),
            Err(_) => Err(ProposeError::NotLeader {
                leader: Some(self.status().leader_id).filter(|l| *l != 0),
            }),
        }
    }

    /// Steps a message received from a peer.
    pub fn step(&self, msg: Message) -> Result<(), ProposeError> {
        self.tx
            .send(Msg::Raft(Box::new(msg)))
            .map_err(|_| ProposeError::Stopped)
    }

    /// Runs `f` against the applied state.
    pub fn read<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        let guard = self.state.read().unwrap_or_else(|p| p.into_inner());
        f(&guard)
    }

    pub fn status(&self) -> RaftStatus {
        self.status.borrow().clone()
    }

    /// Changes whenever a command is applied.
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.applied.clone()
    }

    /// Changes whenever leadership, term or progress changes.
    pub fn status_watch(&self) -> watch::Receiver<RaftStatus> {
        self.status.clone()
    }

    /// gRPC address of a member (replicated membership first, then --peers).
    pub fn address_of(&self, id: u64) -> Option<String> {
        self.read(|s| s.members.get(&id).cloned()).or_else(|| {
            self.addresses
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&id)
                .cloned()
        })
    }

    pub fn tls(&self) -> &PeerTls {
        &self.tls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forward_is_tried_again_only_when_the_leader_proposed_nothing() {
        let marked = crate::service::not_applied(tonic::Status::unavailable("no leader"));
        assert!(forward_not_proposed(&marked));
        // The leader may have taken it: a broken connection, a dropped proposal.
        assert!(!forward_not_proposed(&tonic::Status::unavailable(
            "connection reset"
        )));
        let dropped = tonic::Status::from(crate::ops::OpError::Raft(ProposeError::Dropped));
        assert!(!forward_not_proposed(&dropped));
    }
}
