//! The cluster: status (this member's view, each other member asked
//! directly), membership changes and leader transfer. Membership changes
//! and transfers run on the leader only: the adapter forwards them when
//! [`Ops::leader`] is not `Here`.

use std::time::Duration;

use super::{OpError, OpResult, Ops};
use crate::raft::MembershipChange;
use ferry_state::Command;
use ferry_state::version::Version;

/// One member's own account of itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberStatus {
    pub id: u64,
    pub term: u64,
    pub leader_id: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    /// Its Raft role; None when it named one this version does not know.
    pub role: Option<raft::StateRole>,
    /// Digest of its applied state (or why there is none).
    pub state_digest: String,
    /// The version it runs ("" from a member too old to say).
    pub version: String,
}

/// A member as this member sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub id: u64,
    pub address: String,
    /// Its own answer; None when it did not answer.
    pub answer: Option<MemberStatus>,
    /// How far the leader knows it has the log (on the leader).
    pub match_index: u64,
}

/// The cluster as this member sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    pub own: MemberStatus,
    pub members: Vec<MemberView>,
    /// The version every member runs at least, as the state records it.
    pub cluster_version: Version,
}

impl Ops {
    /// Local: this member's own status (no read index; answers without a
    /// leader).
    pub fn own_status(&self) -> MemberStatus {
        let s = self.raft_status();
        MemberStatus {
            id: s.id,
            term: s.term,
            leader_id: s.leader_id,
            commit_index: s.commit,
            applied_index: s.applied,
            role: Some(s.role),
            // A state that does not serialize also stops the member (snapshots).
            state_digest: self
                .local_read(|st| st.digest())
                .unwrap_or_else(|e| format!("unavailable: {e}")),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    /// Local read: the cluster as this member sees it, each other member
    /// asked directly. Deliberately not linearizable: it must answer on a
    /// member cut off from the leader.
    pub async fn cluster_status(&self) -> ClusterStatus {
        let own = self.own_status();
        let status = self.raft_status();
        let members = self.local_read(|s| s.members.clone());
        let mut views = Vec::new();
        for (id, address) in members {
            let answer = if id == own.id {
                Some(own.clone())
            } else {
                self.member_status(id, &address, Duration::from_secs(1))
                    .await
                    .ok()
            };
            views.push(MemberView {
                id,
                address,
                answer,
                match_index: status.matched.get(&id).copied().unwrap_or(0),
            });
        }
        ClusterStatus {
            own,
            members: views,
            cluster_version: self.local_read(|s| s.cluster_version()),
        }
    }

    /// Member `id`'s own status, asked at `address` (which must answer as
    /// that member) within `limit`; the reason when it does not.
    async fn member_status(
        &self,
        id: u64,
        address: &str,
        limit: Duration,
    ) -> Result<MemberStatus, String> {
        let ch = self
            .0
            .raft
            .tls()
            .channel(id, address)
            .map_err(|e| e.to_string())?;
        crate::peer::member_status(ch, limit).await
    }

    /// Leader-only: adds member `id` at `address` as a learner (once it
    /// answers as that member), then promotes it to voter when it caught up.
    pub async fn add_member(&self, id: u64, address: &str) -> OpResult<()> {
        if id == 0 {
            return Err(OpError::Invalid("a member needs --id (non-zero)".into()));
        }
        validate_member_address(address).map_err(OpError::Invalid)?;
        let learner = self.raft_status().learners.contains(&id);
        if !learner {
            if self.read(|s| s.members.contains_key(&id)).await? {
                return Err(OpError::AlreadyExists(format!(
                    "member {id} is already in the cluster"
                )));
            }
            // A voter that cannot answer would cost the cluster its quorum:
            // the new member must be up and prove it is that member first.
            self.answers_as_member(id, address).await?;
            self.0
                .raft
                .change_membership(id, MembershipChange::AddLearner(address.to_string()))
                .await?;
            tracing::info!(member = id, %address, "member added as a learner");
        }
        // It votes only once it holds the log the cluster has committed.
        let target = self.raft_status().commit;
        let caught_up = self
            .wait_for_status(Duration::from_secs(60), |s| {
                s.matched.get(&id).is_some_and(|m| *m >= target)
            })
            .await;
        if !caught_up {
            return Err(OpError::DeadlineExceeded(format!(
                "member {id} was added as a learner but has not caught up with the log \
                 within 60 s; it does not vote yet. Check that it runs, then run \
                 `ferry cluster add` again to promote it"
            )));
        }
        self.0
            .raft
            .change_membership(id, MembershipChange::Promote)
            .await?;
        tracing::info!(member = id, %address, "member promoted to voter");
        Ok(())
    }

    /// Leader-only: removes member `id`. Removing the leader itself first
    /// hands leadership over and returns false: call again at the new leader.
    pub async fn remove_member(&self, id: u64) -> OpResult<bool> {
        self.member(id).await?;
        if id == self.raft_status().id {
            // Hand leadership over first so the cluster keeps a leader.
            let to = self
                .read(|s| s.members.keys().copied().find(|m| *m != id))
                .await?;
            let Some(to) = to else {
                return Err(OpError::FailedPrecondition(
                    "cannot remove the last member".into(),
                ));
            };
            self.0.raft.transfer_leader(to)?;
            self.wait_for_status(Duration::from_secs(5), |s| !s.is_leader)
                .await;
            return Ok(false);
        }
        self.0
            .raft
            .change_membership(id, MembershipChange::Remove)
            .await?;
        tracing::info!(member = id, "member removed");
        Ok(true)
    }

    /// A backup file of the whole state (`ferry_state::backup`): a
    /// linearizable read, so it holds everything committed before the
    /// call, with the index and term this member had applied then. Sealed
    /// secrets stay sealed; the secrets key is not in it.
    pub async fn backup(&self) -> OpResult<Vec<u8>> {
        let (state, cluster_id, index, term) = self
            .read(|s| {
                let status = self.raft_status();
                (
                    s.to_snapshot(),
                    s.cluster_id.clone(),
                    status.applied,
                    status.term,
                )
            })
            .await?;
        let state = state.map_err(|e| OpError::Internal(e.to_string()))?;
        ferry_state::backup::encode(
            &state,
            &cluster_id,
            (index, term),
            env!("CARGO_PKG_VERSION"),
            crate::views::now_ms(),
        )
        .map_err(|e| OpError::Internal(e.to_string()))
    }

    /// After `--force-new-cluster`: once this member leads, removes every
    /// other member the state still lists (the lost cluster's), so that
    /// `ferry cluster status` shows the cluster of one it now is, and others
    /// join again with `ferry cluster add`. Gives up after `wait` without
    /// leadership (the log says so).
    pub async fn forget_lost_members(&self, wait: Duration) {
        if !self.wait_for_status(wait, |s| s.is_leader).await {
            tracing::error!(
                "--force-new-cluster: this member did not become leader; lost members are still listed"
            );
            return;
        }
        let me = self.raft_status().id;
        let lost: Vec<u64> =
            self.local_read(|s| s.members.keys().copied().filter(|id| *id != me).collect());
        for id in lost {
            match self
                .0
                .raft
                .change_membership(id, MembershipChange::Remove)
                .await
            {
                Ok(_) => tracing::warn!(
                    member = id,
                    "--force-new-cluster: member of the lost cluster removed"
                ),
                Err(e) => {
                    tracing::error!(member = id, error = %e, "--force-new-cluster: could not remove a member of the lost cluster")
                }
            }
        }
    }

    /// Leader-only: hands leadership to member `id` and waits until it took over.
    pub async fn transfer_leader(&self, id: u64) -> OpResult<()> {
        self.member(id).await?;
        self.0.raft.transfer_leader(id)?;
        if !self
            .wait_for_status(Duration::from_secs(5), |s| s.leader_id == id)
            .await
        {
            return Err(OpError::DeadlineExceeded(format!(
                "member {id} did not take over within 5s"
            )));
        }
        Ok(())
    }

    /// Linearizable: NotFound unless `id` is a member of the cluster.
    async fn member(&self, id: u64) -> OpResult<()> {
        if self.read(|s| s.members.contains_key(&id)).await? {
            Ok(())
        } else {
            Err(OpError::NotFound(format!(
                "member {id} is not in the cluster"
            )))
        }
    }

    /// Whether member `id` answers at `address` with its own certificate.
    async fn answers_as_member(&self, id: u64, address: &str) -> OpResult<()> {
        // A member started a moment ago may not listen yet: ask for a while.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let why = match self
                .member_status(id, address, Duration::from_secs(5))
                .await
            {
                Ok(answer) => return self.not_older_than_the_cluster(id, &answer.version),
                Err(why) => why,
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(OpError::FailedPrecondition(format!(
                    "member {id} does not answer at {address} ({why}); start it first \
                     (ferry-coordinator --join ...) and check the address"
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Ops {
    /// A member that runs a version older than the cluster's could not
    /// apply what the others propose: it is not added.
    fn not_older_than_the_cluster(&self, id: u64, version: &str) -> OpResult<()> {
        let cluster = self.local_read(|s| s.cluster_version());
        match Version::parse(version) {
            Some(v) if v >= cluster => Ok(()),
            _ => Err(OpError::FailedPrecondition(format!(
                "member {id} runs version {}, older than the cluster's {cluster}: upgrade it first",
                if version.is_empty() {
                    "(unknown)"
                } else {
                    version
                }
            ))),
        }
    }

    /// Leader: the lowest version every member answered with, when all
    /// answered (None otherwise: a member that does not answer may be old).
    pub async fn lowest_member_version(&self) -> Option<Version> {
        let status = self.cluster_status().await;
        status
            .members
            .iter()
            .map(|m| m.answer.as_ref().and_then(|a| Version::parse(&a.version)))
            .collect::<Option<Vec<Version>>>()?
            .into_iter()
            .min()
    }

    /// Leader: raises the cluster version to the lowest member's, if higher.
    pub async fn raise_cluster_version(&self) -> OpResult<Option<Version>> {
        // The lowest member runs no newer than this one: once the cluster
        // is at this build's version there is nothing to ask (asking costs
        // every member a digest of its whole state).
        if self.local_read(|s| s.cluster_version()) >= Version::this_build() {
            return Ok(None);
        }
        let Some(lowest) = self.lowest_member_version().await else {
            return Ok(None);
        };
        if lowest <= self.local_read(|s| s.cluster_version()) {
            return Ok(None);
        }
        self.write(Command::SetClusterVersion { version: lowest })
            .await?;
        tracing::info!(version = %lowest, "cluster version raised: every member runs it");
        Ok(Some(lowest))
    }
}

/// A member's gRPC address: HOST:PORT with a non-zero port and a host that is
/// an IP address or a DNS name (what its certificate can name).
fn validate_member_address(address: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "member address {:?} {why}; give HOST:PORT, e.g. 10.0.0.2:7400",
            ferry_certs::clip(address)
        ))
    };
    let Some((host, port)) = address.rsplit_once(':') else {
        return bad("has no port");
    };
    if !matches!(port.parse::<u16>(), Ok(p) if p > 0) {
        return bad("has no valid port");
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.parse::<std::net::IpAddr>().is_err()
        && rustls_pki_types::DnsName::try_from(host.to_string()).is_err()
    {
        return bad("has a host that is neither an IP address nor a DNS name");
    }
    Ok(())
}
