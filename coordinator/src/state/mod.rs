//! The replicated state machine: everything the cluster knows, changed only by
//! applying committed [`Command`]s. `apply` is deterministic — no clock, no
//! randomness, no I/O — so every member that applies the same log holds the
//! same state. Snapshots are this struct serialized as JSON.

mod apply;
mod approval;
mod artifacts;
mod command;
mod deploy;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use ferry_pipeline::Pipeline;
use ferry_pipeline::execution::{ActionStatus, ExecutionState, ExecutionStatus};
use serde::{Deserialize, Serialize};

pub use apply::{LOST_RETRIES, Output, Rejection};
pub use command::Command;
pub use deploy::DeploymentRecord;

/// What an identity may do; bound to operator names in cluster state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    Admin,
    Operator,
    Approver,
    Viewer,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Approver, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One applied version of a pipeline definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineVersion {
    pub version: u64,
    pub spec: Pipeline,
    pub yaml: String,
    pub applied_by: String,
    pub applied_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineRecord {
    pub name: String,
    pub versions: Vec<PipelineVersion>,
    /// Execution ids, oldest first.
    pub executions: Vec<String>,
    /// Last branch head the poller saw (or a run started with).
    pub last_seen_revision: Option<String>,
    /// When the poller last checked (unix ms), carried in `SourceSeen`.
    pub last_polled_at: Option<i64>,
}

impl PipelineRecord {
    pub fn latest(&self) -> Option<&PipelineVersion> {
        self.versions.last()
    }

    pub fn version(&self, v: u64) -> Option<&PipelineVersion> {
        self.versions.iter().find(|pv| pv.version == v)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    pub id: String,
    pub pipeline: String,
    pub version: u64,
    pub revision: String,
    pub trigger: String,
    /// The operator who started it (by hand or as a rollback); the four-eyes
    /// rule keeps them from approving it.
    #[serde(default)]
    pub started_by: Option<String>,
    pub started_at: i64,
    pub state: ExecutionState,
    /// Set for `ferry rollback` executions: the earlier execution whose
    /// artifact is deployed again (names the release on the hosts).
    #[serde(default)]
    pub release_of: Option<String>,
}

/// Where an attempt (identified by its fencing epoch) belongs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptLoc {
    pub execution: String,
    pub stage: usize,
    pub action: usize,
    pub agent: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub name: String,
    pub labels: Vec<String>,
    pub capacity: u32,
    pub version: String,
    /// host:port of its artifact peer server.
    pub address: String,
    pub enrolled_at: i64,
    pub registered_at: Option<i64>,
    /// Finishes what it runs, takes no new work.
    #[serde(default)]
    pub draining: bool,
    /// The certificate it enrolled with: the only one its name is accepted
    /// with (another certificate for the same name, say from before a removal
    /// and re-enrollment, is refused).
    #[serde(default)]
    pub cert: Option<CertBinding>,
    /// The certificate `cert` renewed, still accepted until it expires: the
    /// agent may not have saved the renewal (a crash, a lost answer), and a
    /// second renewal presenting it replaces `cert` again.
    #[serde(default)]
    pub previous_cert: Option<CertBinding>,
    /// Hex of its X25519 wrapping public key: the secrets of its assignments
    /// are sealed to it. None for agents enrolled before wrapping keys, which
    /// hold the cluster's secrets key instead.
    #[serde(default)]
    pub wrapping_key: Option<String>,
}

impl AgentRecord {
    /// The certificates this agent's name is accepted with.
    pub fn bound_certs(&self) -> impl Iterator<Item = &CertBinding> {
        self.cert.iter().chain(self.previous_cert.iter())
    }
}

/// One certificate, by fingerprint, and when it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertBinding {
    /// Hex sha256 of the certificate's DER.
    pub fingerprint: String,
    /// Its notAfter (unix ms).
    pub not_after: i64,
}

/// A certificate refused from now until it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedCert {
    /// The identity it names (for listings).
    pub identity: String,
    /// Its notAfter (unix ms): the entry is dropped after it.
    pub not_after: i64,
    pub by: String,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinToken {
    pub expires_at: i64,
    pub uses_left: u32,
    pub created_by: String,
    pub created_at: i64,
}

/// Where copies of a content-addressed blob live.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ArtifactRecord {
    pub size: u64,
    pub holders: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClusterState {
    pub bootstrapped: bool,
    /// Raft members and the address each serves gRPC on.
    pub members: BTreeMap<u64, String>,
    pub trust_domain: String,
    pub pipelines: BTreeMap<String, PipelineRecord>,
    pub executions: BTreeMap<String, Execution>,
    /// Executions still in progress: the scheduler and timers look only here.
    pub active: BTreeSet<String>,
    pub attempts: BTreeMap<u64, AttemptLoc>,
    /// Last fencing epoch handed out.
    pub epoch: u64,
    pub agents: BTreeMap<String, AgentRecord>,
    /// Join tokens by sha256 of the secret.
    pub tokens: BTreeMap<String, JoinToken>,
    pub roles: BTreeSet<(String, Role)>,
    pub artifacts: BTreeMap<String, ArtifactRecord>,
    /// Secrets, sealed (`ferry_certs::SecretBox`); only names and who set them are ever shown.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretRecord>,
    /// Deployment environments by name (latest version).
    #[serde(default)]
    pub environments: BTreeMap<String, EnvironmentRecord>,
    /// Deployment history by id, oldest first.
    #[serde(default)]
    pub deployments: BTreeMap<u64, DeploymentRecord>,
    /// Revoked certificates by fingerprint, until they expire.
    #[serde(default)]
    pub revoked: BTreeMap<String, RevokedCert>,
    /// Bumped by every revocation, so sessions know when to tell agents.
    #[serde(default)]
    pub revocations: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentRecord {
    pub version: u64,
    pub spec: ferry_pipeline::Environment,
    pub yaml: String,
    pub applied_by: String,
    pub applied_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRecord {
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub updated_by: String,
    pub updated_at: i64,
}

impl ClusterState {
    /// Whether a certificate with this fingerprint is refused.
    pub fn is_revoked(&self, fingerprint: &str) -> bool {
        self.revoked.contains_key(fingerprint)
    }

    pub fn roles_of(&self, subject: &str) -> Vec<Role> {
        self.roles
            .iter()
            .filter(|(s, _)| s == subject)
            .map(|(_, r)| *r)
            .collect()
    }

    pub fn pipeline_of(&self, exec: &Execution) -> Option<&Pipeline> {
        self.pipelines
            .get(&exec.pipeline)
            .and_then(|p| p.version(exec.version))
            .map(|v| &v.spec)
    }

    /// Build/test actions waiting for an agent, oldest execution first.
    pub fn queued(&self) -> Vec<(String, usize, usize)> {
        let mut out: Vec<(i64, String, usize, usize)> = Vec::new();
        for id in &self.active {
            let Some(exec) = self.executions.get(id) else {
                continue;
            };
            for (si, stage) in exec.state.actions.iter().enumerate() {
                for (ai, run) in stage.iter().enumerate() {
                    if run.is_queued() {
                        out.push((exec.started_at, id.clone(), si, ai));
                    }
                }
            }
        }
        out.sort();
        out.into_iter().map(|(_, id, s, a)| (id, s, a)).collect()
    }

    /// Attempts currently assigned to `agent` and not finished: (epoch, loc).
    pub fn running_on(&self, agent: &str) -> Vec<(u64, &AttemptLoc)> {
        self.attempts
            .iter()
            .filter(|(_, loc)| loc.agent == agent)
            .filter(|(epoch, loc)| {
                self.executions
                    .get(&loc.execution)
                    .and_then(|e| e.state.action(loc.stage, loc.action))
                    .is_some_and(|r| r.status() == ActionStatus::InProgress && r.epoch == **epoch)
            })
            .map(|(e, l)| (*e, l))
            .collect()
    }

    /// Whether the attempt with fencing epoch `epoch` is `agent`'s and still current.
    pub fn is_current(&self, agent: &str, epoch: u64) -> bool {
        self.attempts.get(&epoch).is_some_and(|loc| {
            loc.agent == agent
                && self
                    .executions
                    .get(&loc.execution)
                    .and_then(|e| e.state.action(loc.stage, loc.action))
                    .is_some_and(|r| {
                        r.epoch == epoch
                            && r.agent.is_some()
                            && r.status() == ActionStatus::InProgress
                    })
        })
    }

    /// Current attempts per agent, in one pass (the scheduler's view of load).
    pub fn running_counts(&self) -> BTreeMap<&str, usize> {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for (epoch, loc) in &self.attempts {
            let current = self
                .executions
                .get(&loc.execution)
                .and_then(|e| e.state.action(loc.stage, loc.action))
                .is_some_and(|r| {
                    r.epoch == *epoch && r.agent.is_some() && r.status() == ActionStatus::InProgress
                });
            if current {
                *counts.entry(loc.agent.as_str()).or_default() += 1;
            }
        }
        counts
    }

    /// Approvals whose deadline has passed at `now`.
    pub fn expired_approvals(&self, now: i64) -> Vec<(String, usize, usize)> {
        let mut out = Vec::new();
        for id in &self.active {
            let Some(exec) = self.executions.get(id) else {
                continue;
            };
            if exec.state.status != ExecutionStatus::InProgress {
                continue;
            }
            for (si, stage) in exec.state.actions.iter().enumerate() {
                for (ai, run) in stage.iter().enumerate() {
                    if run.status() == ActionStatus::WaitingForApproval
                        && run.deadline.is_some_and(|d| d <= now)
                    {
                        out.push((id.clone(), si, ai));
                    }
                }
            }
        }
        out
    }

    /// Finished executions beyond the newest `keep` of each pipeline (oldest first).
    pub fn prunable_executions(&self, keep: usize) -> Vec<String> {
        let mut out = Vec::new();
        for p in self.pipelines.values() {
            let excess = p.executions.len().saturating_sub(keep);
            out.extend(
                p.executions
                    .iter()
                    .take(excess)
                    .filter(|id| !self.active.contains(*id))
                    .cloned(),
            );
        }
        out
    }

    /// Blobs that retention may drop: referenced by no execution that is still
    /// running or among the newest `keep` of its pipeline.
    pub fn unreferenced_artifacts(&self, keep: usize) -> Vec<String> {
        let mut live: BTreeSet<&str> = self.deployed_artifacts().into_iter().collect();
        for p in self.pipelines.values() {
            let newest = p.executions.iter().rev().take(keep);
            for id in newest.chain(p.executions.iter().filter(|id| self.active.contains(*id))) {
                let Some(e) = self.executions.get(id) else {
                    continue;
                };
                for run in e.state.actions.iter().flatten() {
                    live.extend(run.outputs.values().map(|a| a.digest.as_str()));
                    live.extend(run.log.iter().map(|a| a.digest.as_str()));
                }
            }
        }
        self.artifacts
            .keys()
            .filter(|d| !live.contains(d.as_str()))
            .cloned()
            .collect()
    }

    /// A stable digest of the whole state, to compare members.
    pub fn digest(&self) -> String {
        use sha2::Digest;
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(sha2::Sha256::digest(bytes))
    }
}
