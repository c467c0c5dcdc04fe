//! Commands: the only way cluster state changes. Each carries every input its
//! application needs — ids and timestamps chosen by the proposer — so that
//! applying it is a pure function of the state and the command.

use std::collections::BTreeMap;

use ferry_pipeline::Pipeline;
use ferry_pipeline::execution::ArtifactRef;
use serde::{Deserialize, Serialize};

use super::Role;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// First start of a cluster: records the trust domain and the first admin.
    Bootstrap {
        trust_domain: String,
        admin: Option<String>,
        /// Founding members and their gRPC addresses.
        members: BTreeMap<u64, String>,
        at: i64,
    },
    ApplyPipeline {
        spec: Pipeline,
        yaml: String,
        by: String,
        at: i64,
    },
    StartExecution {
        id: String,
        pipeline: String,
        revision: String,
        trigger: String,
        /// The operator who started it by hand (none for the source poller).
        #[serde(default)]
        started_by: Option<String>,
        at: i64,
    },
    /// Leader's scheduler gives a queued action to an agent; apply picks the epoch.
    Assign {
        execution: String,
        stage: usize,
        action: usize,
        agent: String,
        at: i64,
    },
    /// An agent's result for the attempt with fencing epoch `epoch`.
    FinishAttempt {
        epoch: u64,
        agent: String,
        success: bool,
        exit_code: Option<i32>,
        message: String,
        outputs: BTreeMap<String, ArtifactRef>,
        log: Option<ArtifactRef>,
        /// A deploy action's report (`ferry.v1.DeploymentReport`, protobuf-encoded).
        #[serde(default)]
        deployment: Option<Vec<u8>>,
        at: i64,
    },
    /// `ferry rollback`: a new execution `id` that runs only the deploy
    /// action of deployment `from` again, with the same artifact.
    Redeploy {
        id: String,
        from: u64,
        trigger: String,
        #[serde(default)]
        started_by: Option<String>,
        at: i64,
    },
    /// An approval decision by operator `by`; `apply` checks again that `by`
    /// may decide it ([`super::ClusterState::may_decide`]).
    Decide {
        execution: String,
        stage: usize,
        action: usize,
        by: String,
        approve: bool,
        comment: String,
        at: i64,
    },
    ExpireApproval {
        execution: String,
        stage: usize,
        action: usize,
        at: i64,
    },
    CreateToken {
        hash: String,
        expires_at: i64,
        uses: u32,
        by: String,
        at: i64,
    },
    /// Consumes one use of a join token and records the agent, bound to the
    /// certificate it was issued.
    Enroll {
        token_hash: String,
        agent: String,
        #[serde(default)]
        cert: Option<super::CertBinding>,
        /// Hex of the agent's X25519 wrapping public key; None from agents
        /// older than wrapping keys (and in entries logged before them).
        #[serde(default)]
        wrapping_key: Option<String>,
        at: i64,
    },
    /// Binds agent `agent` to a renewed certificate. `presented` is the
    /// certificate it asked with, which must be one it is bound to; it stays
    /// accepted (as the previous one) until it expires.
    RenewAgentCertificate {
        agent: String,
        presented: super::CertBinding,
        cert: super::CertBinding,
        at: i64,
    },
    /// Refuses a certificate (operator, agent or coordinator) until it expires.
    RevokeCertificate {
        fingerprint: String,
        identity: String,
        not_after: i64,
        by: String,
        at: i64,
    },
    RegisterAgent {
        name: String,
        labels: Vec<String>,
        capacity: u32,
        version: String,
        address: String,
        at: i64,
    },
    /// The leader saw no heartbeat from `agent` within its lease.
    AgentLost {
        agent: String,
        at: i64,
    },
    SetDraining {
        agent: String,
        draining: bool,
    },
    /// Removes an agent and revokes the certificate it was bound to.
    RemoveAgent {
        agent: String,
        #[serde(default)]
        by: String,
        at: i64,
    },
    /// `agent` now holds a verified copy of a blob (a replica).
    ArtifactHeld {
        digest: String,
        size: u64,
        agent: String,
    },
    ApplyEnvironment {
        spec: ferry_pipeline::Environment,
        yaml: String,
        by: String,
        at: i64,
    },
    /// A sealed secret value (never plaintext in the log).
    SetSecret {
        name: String,
        nonce: Vec<u8>,
        ciphertext: Vec<u8>,
        by: String,
        at: i64,
    },
    RemoveSecret {
        name: String,
    },
    /// Retention: forget these finished executions (their records and attempts).
    PruneExecutions {
        ids: Vec<String>,
    },
    /// Retention dropped these blobs: no execution it keeps refers to them.
    ForgetArtifacts {
        digests: Vec<String>,
    },
    Grant {
        subject: String,
        role: Role,
    },
    Revoke {
        subject: String,
        role: Role,
    },
    SourceSeen {
        pipeline: String,
        revision: String,
        at: i64,
    },
}

impl Command {
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain data to JSON cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Command, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}
