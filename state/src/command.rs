//! Commands: the only way cluster state changes. Each carries every input its
//! application needs — ids and timestamps chosen by the proposer — and, when
//! a person caused it, who that was ([`By`]), so that applying it (checks
//! included) is a pure function of the state and the command. Encoding a
//! command never yields empty bytes: a failure is an error.

use std::collections::BTreeMap;

use ferry_pipeline::Pipeline;
use ferry_pipeline::execution::ArtifactRef;
use serde::{Deserialize, Serialize};

use super::Role;

/// Who asked for a command a person causes: the identity the gRPC layer
/// authenticated. `apply` checks again that they hold the role the command
/// needs, in the state the command lands on (`state/access.rs`).
///
/// Entries logged before `apply` checked roles carry a bare name (or, for
/// commands that had no caller field, nothing): they decode as
/// [`By::Legacy`], which the gRPC layer checked when they were proposed and
/// which `apply` replays exactly as it applied them then, without a role
/// check. Every command proposed now carries [`By::Checked`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum By {
    /// Logged since `apply` checks roles: `{"Operator": NAME}` or `{"Member": ID}`.
    Checked(Principal),
    /// A bare name (empty when the command had no caller field then).
    Legacy(String),
}

/// An identity that may cause commands through the operator API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Principal {
    /// An operator, by the name in their certificate; needs a role.
    Operator(String),
    /// A coordinator of this cluster (by member id). Members hold the CA key,
    /// so `authz` lets them do whatever an operator may, and so does `apply`.
    Member(String),
}

impl By {
    /// An operator, checked by `apply`.
    pub fn operator(name: impl Into<String>) -> By {
        By::Checked(Principal::Operator(name.into()))
    }

    /// A member of the cluster, by id.
    pub fn member(id: impl Into<String>) -> By {
        By::Checked(Principal::Member(id.into()))
    }

    /// The name recorded with what the command changes (`applied_by`, ...).
    pub fn name(&self) -> &str {
        match self {
            By::Checked(Principal::Operator(n) | Principal::Member(n)) | By::Legacy(n) => n,
        }
    }
}

/// What an entry logged before a command had a caller field reads as.
impl Default for By {
    fn default() -> By {
        By::Legacy(String::new())
    }
}

/// A command that cannot be written as JSON (nothing is proposed).
#[derive(Debug, thiserror::Error)]
#[error("the command does not serialize: {0}")]
pub struct EncodeError(#[from] serde_json::Error);

/// Every change of cluster state. What `apply` checks about who asked for
/// each is [`Command::authority`] (`state/access.rs`): a person's command
/// carries a [`By`]; commands without one are the leader's own (scheduler,
/// poller, timers, leases, retention), an agent's (checked against its
/// record) or an enrollment (checked against its token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// First start of a cluster: records the trust domain and the first admin.
    Bootstrap {
        trust_domain: String,
        admin: Option<String>,
        /// Founding members and their gRPC addresses.
        members: BTreeMap<u64, String>,
        at: i64,
        /// The new cluster's id (random, made by the proposer). Absent in
        /// entries logged before cluster ids: such a cluster has none until
        /// it is restored from a backup.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        cluster_id: String,
    },
    ApplyPipeline {
        spec: Pipeline,
        yaml: String,
        by: By,
        at: i64,
    },
    StartExecution {
        id: String,
        pipeline: String,
        revision: String,
        trigger: String,
        /// The operator who started it by hand; none for the source poller
        /// (the system, not checked).
        #[serde(default)]
        started_by: Option<By>,
        /// `ferry run --var`: values for declared pipeline variables.
        #[serde(default)]
        variables: BTreeMap<String, String>,
        /// The branch or tag it starts from (`when:` conditions match it).
        #[serde(default)]
        source: Option<ferry_pipeline::condition::SourceRef>,
        /// What started it, recorded with it so that it starts at most once
        /// (a webhook delivery, a schedule slot, a polled branch head).
        #[serde(default)]
        once: Option<super::triggers::Once>,
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
        /// A deploy action's report (`ferry.internal.v1.DeploymentReport`, protobuf-encoded).
        #[serde(default)]
        deployment: Option<Vec<u8>>,
        /// Output variables the attempt wrote (checked by the session).
        #[serde(default)]
        variables: BTreeMap<String, String>,
        /// What the attempt's test reports said (bounded by the session);
        /// only proposed to a cluster at 0.2 or later.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tests: Option<ferry_pipeline::reports::TestSummary>,
        /// Cache entries the agent saved or now holds (`caches.rs`); only
        /// proposed to a cluster at 0.2 or later.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        caches: Vec<crate::caches::CacheReport>,
        at: i64,
    },
    /// `ferry rollback`: a new execution `id` that runs only the deploy
    /// action of deployment `from` again, with the same artifact.
    Redeploy {
        id: String,
        from: u64,
        trigger: String,
        #[serde(default)]
        started_by: Option<By>,
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
    /// `ferry stop`: nothing new starts; running attempts finish, or with
    /// `abandon` are cancelled (a deployment rolls back what it changed).
    StopExecution {
        execution: String,
        reason: String,
        abandon: bool,
        by: By,
        at: i64,
    },
    /// `ferry retry`: stage `stage` of a failed or stopped execution runs
    /// again, its failed actions (or, with `all`, every one).
    RetryStage {
        execution: String,
        stage: String,
        all: bool,
        by: By,
        at: i64,
    },
    /// `ferry transition enable|disable`: opens or closes the way into a
    /// stage of a pipeline (a change freeze).
    SetTransition {
        pipeline: String,
        stage: String,
        enabled: bool,
        reason: String,
        by: By,
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
        by: By,
        at: i64,
        /// The agent labels it grants (empty: the agent's ask is recorded).
        #[serde(default)]
        labels: Vec<String>,
    },
    /// Consumes one use of a join token and records the agent, bound to the
    /// certificate it was issued.
    Enroll {
        token_hash: String,
        agent: String,
        #[serde(default)]
        cert: Option<super::CertBinding>,
        /// Hex of the agent's X25519 wrapping public key; None only in
        /// entries logged before wrapping keys were required.
        #[serde(default)]
        wrapping_key: Option<String>,
        at: i64,
        /// The labels the agent asked for; `apply` checks them against the
        /// token and binds the agent to them (empty in older entries).
        #[serde(default)]
        labels: Vec<String>,
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
        by: By,
        at: i64,
    },
    RegisterAgent {
        name: String,
        /// Only in entries logged before labels were bound at enrollment,
        /// which replay as they applied then (the agent's ask became its
        /// labels). Proposed now without: a registration never changes them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        labels: Option<Vec<String>>,
        capacity: u32,
        version: String,
        address: String,
        at: i64,
    },
    /// The leader saw no heartbeat from `agent` within its lease.
    AgentLost { agent: String, at: i64 },
    SetDraining {
        agent: String,
        draining: bool,
        #[serde(default)]
        by: By,
    },
    /// `ferry agents label`: an admin changes the labels agent `agent` is
    /// bound to — all of them (`set`), or by adding and removing some.
    SetAgentLabels {
        agent: String,
        #[serde(default)]
        set: Option<Vec<String>>,
        #[serde(default)]
        add: Vec<String>,
        #[serde(default)]
        remove: Vec<String>,
        by: By,
        at: i64,
    },
    /// Removes an agent and revokes the certificate it was bound to.
    RemoveAgent {
        agent: String,
        #[serde(default)]
        by: By,
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
        by: By,
        at: i64,
    },
    /// A sealed secret value (never plaintext in the log).
    SetSecret {
        name: String,
        nonce: Vec<u8>,
        ciphertext: Vec<u8>,
        by: By,
        at: i64,
    },
    RemoveSecret {
        name: String,
        #[serde(default)]
        by: By,
    },
    /// Retention: forget these finished executions (their records and attempts).
    PruneExecutions { ids: Vec<String> },
    /// Retention dropped these blobs: no execution it keeps refers to them.
    ForgetArtifacts { digests: Vec<String> },
    Grant {
        subject: String,
        role: Role,
        #[serde(default)]
        by: By,
    },
    Revoke {
        subject: String,
        role: Role,
        #[serde(default)]
        by: By,
    },
    SourceSeen {
        pipeline: String,
        revision: String,
        at: i64,
    },
    /// The leader (re)arms a pipeline's schedule with its next fire time, or
    /// disarms it (`None`) once the pipeline no longer has one.
    ArmSchedule {
        pipeline: String,
        schedule: Option<super::triggers::ScheduleState>,
    },
    /// `ferry notify set`: a cluster-wide notification target.
    SetNotifyTarget {
        target: ferry_pipeline::notify::NotificationTarget,
        by: By,
        at: i64,
    },
    /// `ferry notify remove`.
    RemoveNotifyTarget { name: String, by: By },
    /// `ferry ui`: a one-time console login link for the caller (`hash` is
    /// the sha256 of the link's secret).
    CreateLoginLink {
        hash: String,
        expires_at: i64,
        by: By,
        at: i64,
        /// Fingerprint of the certificate that asked: revoking it ends the
        /// link and the session it opens.
        #[serde(default)]
        cert: Option<String>,
    },
    /// A browser opened login link `link`: it is used up and session
    /// `session` (a hash too) begins for the link's operator.
    OpenSession {
        link: String,
        session: String,
        expires_at: i64,
        at: i64,
    },
    /// `Log out`: the session ends.
    EndSession { session: String },
    /// An admin ends someone's console session (by its hash).
    RevokeSession { session: String, by: By },
    /// The leader's notifier tried these deliveries.
    NotifyAttempted {
        results: Vec<super::events::DeliveryResult>,
        at: i64,
    },
    /// The leader saw every member run `version` or later (never lowers it).
    SetClusterVersion { version: crate::version::Version },
    /// `agent`'s own limits evicted these cache blobs.
    CachesDropped { agent: String, digests: Vec<String> },
    /// `ferry cache rm`: forget `pipeline`'s entries of `scope` (all
    /// scopes when empty) whose keys start with `key_prefix`.
    RemoveCaches {
        pipeline: String,
        scope: String,
        key_prefix: String,
        by: By,
    },
    /// `command`, asked for by `caller` with a request id: applied once; the
    /// same id again answers the first result (`requests.rs`).
    Requested {
        caller: String,
        request_id: String,
        /// What the request asked, so that the id reused for another
        /// request is refused rather than answered.
        fingerprint: String,
        at: i64,
        command: Box<Command>,
    },
}

impl Command {
    /// The bytes of the log entry. An error, never empty bytes (which the
    /// log would take for a new leader's empty entry and skip).
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        Ok(serde_json::to_vec(self)?)
    }

    pub fn decode(bytes: &[u8]) -> Result<Command, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}
