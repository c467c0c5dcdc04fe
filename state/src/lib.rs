//! The replicated state machine: everything the cluster knows, changed only by
//! applying committed [`Command`]s. `apply` is deterministic — no clock, no
//! randomness, no I/O — so every member that applies the same log holds the
//! same state. Snapshots are this struct serialized as JSON (`codec.rs`).
//! This file holds the records; `apply.rs` dispatches each command to the
//! module of its group, which also answers the queries about that group.

mod access;
mod agents;
mod apply;
mod approval;
mod artifacts;
pub mod backup;
pub mod caches;
mod codec;
mod command;
mod console;
mod definitions;
mod deployments;
mod events;
mod executions;
mod reason;
pub mod report;
pub mod requests;
mod steering;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;
mod triggers;
mod upstreams;
pub mod version;

use std::collections::{BTreeMap, BTreeSet};

use ferry_pipeline::Pipeline;
use ferry_pipeline::execution::ExecutionState;
use serde::{Deserialize, Serialize};

pub use access::{Authority, Need};
pub use agents::{LOST_RETRIES, MAX_LABEL_BYTES, MAX_LABELS, check_labels};
pub use apply::{Output, Rejection, RejectionV1};
pub use codec::StateCodecError;
pub use command::{By, Command, EncodeError, Principal};
pub use console::{ConsoleSession, LoginLink};
pub use deployments::DeploymentRecord;
pub use events::{Delivery, DeliveryResult, Event, TargetScope};
pub use reason::Reason;
pub use triggers::{DeliverySeen, DueSlot, Once, ScheduleState};

/// Keeps the `max` records of `records` with the latest `time` (ties: the
/// greatest keys), dropping the others: bounded maps of the state
/// (webhook deliveries, console links and sessions).
pub(crate) fn keep_latest<T>(
    records: &mut BTreeMap<String, T>,
    max: usize,
    time: impl Fn(&T) -> i64,
) {
    keep_latest_of(records, max, time, |_| true);
}

/// [`keep_latest`] among the records `of` selects only (the others stay).
pub(crate) fn keep_latest_of<T>(
    records: &mut BTreeMap<String, T>,
    max: usize,
    time: impl Fn(&T) -> i64,
    of: impl Fn(&T) -> bool,
) {
    while records.values().filter(|v| of(v)).count() > max {
        let first = records
            .iter()
            .filter(|(_, v)| of(v))
            .min_by_key(|(k, v)| (time(v), k.as_str()))
            .map(|(k, _)| k.clone());
        match first {
            Some(k) => records.remove(&k),
            None => break,
        };
    }
}

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
    /// Disabled transitions, by the name of the stage they lead into.
    #[serde(default)]
    pub disabled_transitions: BTreeMap<String, TransitionLock>,
    /// Webhook deliveries that started an execution, by delivery id.
    #[serde(default)]
    pub deliveries: BTreeMap<String, DeliverySeen>,
    /// Its armed schedule (the leader arms it from the latest version).
    #[serde(default)]
    pub schedule: Option<ScheduleState>,
}

/// Who disabled the transition into a stage, why and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionLock {
    pub by: String,
    pub reason: String,
    pub at: i64,
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
    /// The executions its failed stage's `on_failure: rollback` started,
    /// one per environment (set once: it is not rolled back twice).
    #[serde(default)]
    pub rollbacks: Option<Vec<String>>,
    /// The upstream executions (`PIPELINE/EXECUTION`) whose success started
    /// it; empty (and left out of the stored form) for any other start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstream: Vec<String>,
    /// Once it succeeded: the downstream executions it started (set once,
    /// so a pipeline is not fed twice by one execution).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fed: Option<Vec<String>>,
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
    /// What pipelines select it by (`runs_on`): bound at enrollment (from
    /// the join token or the agent's ask), changed only by an admin
    /// (`SetAgentLabels`); a registration never changes them. Records from
    /// before labels were bound keep the labels their last registration
    /// set, bound from then on.
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
    /// hold a copy of the cluster's secrets key: they get no secrets any
    /// more, and are listed as holding the key until re-enrolled.
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
    /// The agent labels it grants; empty: an agent's ask is recorded.
    #[serde(default)]
    pub labels: Vec<String>,
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
    /// Names this cluster among others sharing its CA: set at bootstrap, and
    /// anew when a cluster is restored from a backup, so that members of the
    /// old one are refused (`service/peer.rs`). Empty for a cluster formed
    /// before cluster ids.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_id: String,
    /// The version every member runs at least (`version.rs`); None until the
    /// leader first sees them all, which means [`version::Version::FIRST`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_version: Option<version::Version>,
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
    /// Build cache entries by pipeline, scope and key (`caches.rs`); left
    /// out of the stored form while there are none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub caches: BTreeMap<String, caches::PipelineCaches>,
    /// Requests with a request id, by caller and id, for a day
    /// (`requests.rs`); left out of the stored form while there are none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, requests::RequestRecord>,
    /// Cache blobs each agent is to delete (entries `ferry cache rm`
    /// removed); the leader tells it until it says it dropped them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cache_forget: BTreeMap<String, BTreeSet<String>>,
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
    /// Recent events, for `ferry events`.
    #[serde(default)]
    pub events: events::Events,
    /// Notifications waiting to be delivered (and those given up on).
    #[serde(default)]
    pub outbox: events::Outbox,
    /// Cluster-wide notification targets by name (`ferry notify set`).
    #[serde(default)]
    pub notify_targets: BTreeMap<String, ferry_pipeline::notify::NotificationTarget>,
    /// Console login links not used yet, by sha256 of their secret.
    #[serde(default)]
    pub login_links: BTreeMap<String, console::LoginLink>,
    /// Console sessions, by sha256 of their secret.
    #[serde(default)]
    pub console_sessions: BTreeMap<String, console::ConsoleSession>,
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
