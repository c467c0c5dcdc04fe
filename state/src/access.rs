//! Who may change the state, decided again inside `apply`: each command's
//! authority ([`Command::authority`]), the role check for a person's command
//! against the state it lands on, and the commands that change access itself
//! — bootstrap and membership, role bindings, join tokens, revoked
//! certificates. The gRPC layer (`authz.rs`) checks the same roles first for
//! a fast error; this check is the one a lagging member cannot get wrong.
//! Pure functions of the state and the command; never reads a clock.

use crate::reason::Reason;
use std::collections::BTreeMap;

use super::apply::{Applied, Output, Rejection};
use super::command::{By, Principal};
use super::{ClusterState, Command, JoinToken, RevokedCert, Role};

/// What a person's command needs, as its RPC needs it in
/// `authz::permission_for`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// `operator` or `admin`: pipelines, environments, runs, rollbacks.
    Operate,
    /// `admin`: tokens, role bindings, secrets, agents, revocation.
    Admin,
    /// Any role: a console login for oneself.
    View,
}

impl Need {
    /// The roles that grant it.
    pub fn roles(self) -> &'static [Role] {
        match self {
            Need::Operate => &[Role::Admin, Role::Operator],
            Need::Admin => &[Role::Admin],
            Need::View => &Role::ALL,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Need::Operate => "role operator or admin",
            Need::Admin => "role admin",
            Need::View => "a role",
        }
    }
}

/// Who a command acts for, and so what `apply` checks before it changes anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authority<'a> {
    /// Proposed by the cluster itself — the leader's scheduler, source
    /// poller, approval timers, agent leases and retention, or the first
    /// start: no person, so no role to check.
    System,
    /// Sent by an agent over its session; the command's own function checks
    /// it against the agent's record (its current epoch, its enrollment, the
    /// certificate it is bound to).
    Agent,
    /// An enrollment, checked against its join token ([`ClusterState::may_enroll`]).
    Token,
    /// An approval decision, checked against the action decided
    /// ([`ClusterState::may_decide`]).
    Approver,
    /// A person's command: `by` needs `need`, to do `what`.
    Person {
        by: &'a By,
        need: Need,
        what: &'static str,
    },
}

impl Command {
    /// Who this command acts for. Every command is listed, so a new one must
    /// say whose it is.
    pub fn authority(&self) -> Authority<'_> {
        use Authority::{Agent, Approver, System, Token};
        let person = |by, need, what| Authority::Person { by, need, what };
        match self {
            Command::ApplyPipeline { by, .. } => person(by, Need::Operate, "apply pipelines"),
            Command::ApplyEnvironment { by, .. } => person(by, Need::Operate, "apply environments"),
            Command::StartExecution {
                started_by: Some(by),
                ..
            } => person(by, Need::Operate, "start runs"),
            Command::Redeploy {
                started_by: Some(by),
                ..
            } => person(by, Need::Operate, "roll back environments"),
            Command::StopExecution { by, .. } => person(by, Need::Operate, "stop executions"),
            Command::RetryStage { by, .. } => person(by, Need::Operate, "retry stages"),
            Command::SetTransition { by, .. } => person(by, Need::Operate, "change transitions"),
            Command::CreateToken { by, .. } => person(by, Need::Admin, "create join tokens"),
            Command::Grant { by, .. } => person(by, Need::Admin, "grant roles"),
            Command::Revoke { by, .. } => person(by, Need::Admin, "revoke roles"),
            Command::SetSecret { by, .. } => person(by, Need::Admin, "set secrets"),
            Command::RemoveSecret { by, .. } => person(by, Need::Admin, "remove secrets"),
            Command::SetDraining { by, .. } => person(by, Need::Admin, "drain agents"),
            Command::SetAgentLabels { by, .. } => person(by, Need::Admin, "change agents' labels"),
            Command::RemoveAgent { by, .. } => person(by, Need::Admin, "remove agents"),
            Command::RevokeCertificate { by, .. } => person(by, Need::Admin, "revoke certificates"),
            Command::SetNotifyTarget { by, .. } | Command::RemoveNotifyTarget { by, .. } => {
                person(by, Need::Admin, "manage notification targets")
            }
            Command::CreateLoginLink { by, .. } => person(by, Need::View, "open the console"),
            Command::RevokeSession { by, .. } => person(by, Need::Admin, "revoke console sessions"),
            // The link's and the session's secrets are the credentials.
            Command::OpenSession { .. } | Command::EndSession { .. } => Token,
            Command::Decide { .. } => Approver,
            Command::Enroll { .. } => Token,
            Command::RemoveCaches { by, .. } => person(by, Need::Operate, "remove caches"),
            // Its command's authority, checked when `apply` applies that.
            Command::Requested { command, .. } => command.authority(),
            Command::FinishAttempt { .. }
            | Command::CachesDropped { .. }
            | Command::ArtifactHeld { .. }
            | Command::RegisterAgent { .. }
            | Command::RenewAgentCertificate { .. } => Agent,
            // The source poller starts runs with no one's name on them.
            Command::StartExecution {
                started_by: None, ..
            }
            | Command::Redeploy {
                started_by: None, ..
            }
            | Command::Bootstrap { .. }
            | Command::Assign { .. }
            | Command::ExpireApproval { .. }
            | Command::AgentLost { .. }
            | Command::PruneExecutions { .. }
            | Command::ForgetArtifacts { .. }
            | Command::SourceSeen { .. }
            | Command::ArmSchedule { .. }
            | Command::NotifyAttempted { .. }
            | Command::SetClusterVersion { .. } => System,
        }
    }
}

impl ClusterState {
    /// Whether the person behind `cmd` (if any) still holds the role it
    /// needs in this state. The first thing `apply` does: a refusal changes
    /// nothing. Agents', tokens' and decisions' checks are the commands' own.
    pub fn authorize(&self, cmd: &Command) -> Result<(), Rejection> {
        match cmd.authority() {
            Authority::Person { by, need, what } => self.require(by, need, what),
            Authority::System | Authority::Agent | Authority::Token | Authority::Approver => Ok(()),
        }
    }

    fn require(&self, by: &By, need: Need, what: &str) -> Result<(), Rejection> {
        let name = match by {
            // Checked by the gRPC layer when it was logged; replayed as applied then.
            By::Legacy(_) => return Ok(()),
            By::Checked(Principal::Member(_)) => return Ok(()),
            By::Checked(Principal::Operator(name)) => name,
        };
        if self.roles_of(name).iter().any(|r| need.roles().contains(r)) {
            return Ok(());
        }
        Err(Rejection::denied(
            Reason::MissingRole,
            format!(
                "operator `{name}` may not {what}: that needs {}, which `{name}` does not hold \
             in the cluster state this command was applied to (was it revoked meanwhile?); \
             nothing was changed",
                need.describe()
            ),
        ))
    }

    pub fn roles_of(&self, subject: &str) -> Vec<Role> {
        self.roles
            .iter()
            .filter(|(s, _)| s == subject)
            .map(|(_, r)| *r)
            .collect()
    }

    /// Whether a certificate with this fingerprint is refused.
    pub fn is_revoked(&self, fingerprint: &str) -> bool {
        self.revoked.contains_key(fingerprint)
    }

    /// First start: the trust domain, the founding members and the first admin.
    pub(super) fn bootstrap(
        &mut self,
        trust_domain: String,
        admin: Option<String>,
        members: BTreeMap<u64, String>,
        cluster_id: String,
    ) -> Applied {
        if self.bootstrapped {
            return Ok(Output::None);
        }
        self.bootstrapped = true;
        self.cluster_id = cluster_id;
        for (id, addr) in members {
            self.members.entry(id).or_insert(addr);
        }
        self.trust_domain = trust_domain;
        if let Some(admin) = admin {
            self.roles.insert((admin, Role::Admin));
        }
        Ok(Output::None)
    }

    /// A committed membership change (from a Raft conf-change entry).
    pub fn apply_membership(&mut self, id: u64, address: Option<String>) {
        match address {
            Some(a) => {
                self.members.insert(id, a);
            }
            None => {
                self.members.remove(&id);
            }
        }
    }

    pub(super) fn grant(&mut self, subject: String, role: Role) -> Applied {
        self.roles.insert((subject, role));
        Ok(Output::None)
    }

    pub(super) fn revoke_role(&mut self, subject: String, role: Role) -> Applied {
        if !self.roles.remove(&(subject.clone(), role)) {
            return Err(Rejection::NotFound(format!(
                "role binding {subject}={role}"
            )));
        }
        Ok(Output::None)
    }

    pub(super) fn create_token(
        &mut self,
        hash: String,
        (expires_at, uses, labels): (i64, u32, Vec<String>),
        by: By,
        at: i64,
    ) -> Applied {
        if self.tokens.contains_key(&hash) {
            return Err(Rejection::AlreadyExists("token".into()));
        }
        super::agents::check_labels(&labels).map_err(Rejection::FailedPrecondition)?;
        // Forget tokens that can no longer be used.
        self.tokens
            .retain(|_, t| t.expires_at > at && t.uses_left > 0);
        self.tokens.insert(
            hash,
            JoinToken {
                expires_at,
                uses_left: uses,
                created_by: by.name().to_string(),
                created_at: at,
                labels,
            },
        );
        Ok(Output::None)
    }

    /// Whether join token `token_hash` may enroll agent `name` asking for
    /// `labels` at `at`: the token is live with a use left, the name is
    /// free, and the token grants every label asked for. Returns the labels
    /// the agent is bound to: those asked for, or, when none are and the
    /// token grants some, the token's. `apply` decides with it; the
    /// enrollment handler asks it first so a refusal costs no entry.
    pub fn may_enroll(
        &self,
        token_hash: &str,
        name: &str,
        labels: &[String],
        at: i64,
    ) -> Result<Vec<String>, Rejection> {
        let token = match self.tokens.get(token_hash) {
            Some(t) if t.expires_at > at && t.uses_left > 0 => t,
            _ => return Err(Rejection::BadToken),
        };
        if self.agents.contains_key(name) {
            return Err(Rejection::AlreadyExists(format!(
                "agent `{name}` (pick another --name, or remove the old agent first)"
            )));
        }
        super::agents::check_labels(labels).map_err(Rejection::FailedPrecondition)?;
        if token.labels.is_empty() {
            return Ok(super::agents::normalized(labels));
        }
        let refused: Vec<&str> = labels
            .iter()
            .filter(|l| !token.labels.contains(l))
            .map(String::as_str)
            .collect();
        if !refused.is_empty() {
            return Err(Rejection::denied(
                Reason::BadToken,
                format!(
                    "this join token does not grant the label(s) {} (it grants: {}); start the \
                 agent with --labels among those, or ask an admin for a token that grants them \
                 (`ferry token create --labels ...`)",
                    refused.join(", "),
                    token.labels.join(", ")
                ),
            ));
        }
        Ok(super::agents::normalized(if labels.is_empty() {
            &token.labels
        } else {
            labels
        }))
    }

    pub(super) fn revoke_certificate(
        &mut self,
        fingerprint: String,
        entry: RevokedCert,
    ) -> Applied {
        self.revoke(fingerprint, entry);
        Ok(Output::None)
    }

    /// Adds `fingerprint` to the revocation list and drops entries whose
    /// certificates have expired by `entry.at` (they are refused as expired).
    pub(super) fn revoke(&mut self, fingerprint: String, entry: RevokedCert) {
        let now = entry.at;
        self.revoked.retain(|_, r| r.not_after > now);
        if entry.not_after > now {
            self.revoked.insert(fingerprint, entry);
        }
        self.revocations += 1;
    }
}
