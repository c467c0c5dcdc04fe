//! Which calls the CLI may send again, and when: every method of the public
//! API the CLI calls, classified ([`METHODS`], checked against the `.proto`
//! files by a test), and the answers that prove a request was not applied.

use tonic::Code;

/// v0.1 members (one version back) answer "no leader" and "not the leader"
/// without the mark, in these words; the coordinator keeps them unchanged
/// for that reason. Frozen: never edit them here or there.
pub(crate) const V01_NO_LEADER: &str = "no leader is elected right now; retry shortly";
/// Followed by the leader's member id.
pub(crate) const V01_NOT_LEADER: &str = "this coordinator is not the leader; the leader is member ";

/// What a method does to the cluster, which decides when it may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Changes nothing: sent again after any UNAVAILABLE answer or broken connection.
    Read,
    /// Changes state: sent again only when provably not applied. `check` is
    /// how an operator sees whether it took effect after an ambiguous failure.
    Write { check: &'static str },
    /// A write whose repetition has the effect of one (a role granted, a
    /// secret set to a value): sent again as a read is.
    Idempotent,
    /// A write the coordinator answers with a linearizable read or a call on
    /// the leader made after the write, whose "not applied" mark may come
    /// from that read although the write was applied: sent again only when
    /// the connection could not be opened.
    WriteThenRead { check: &'static str },
}

/// Every method of the public services the CLI's [`crate::client::Api`]
/// calls, by gRPC path. A unit test checks it against the `.proto` files,
/// so a new method fails the build's tests until it is classified here.
pub const METHODS: &[(&str, Kind)] = &[
    // Pipelines
    (
        "/ferry.v1.Pipelines/ApplyPipeline",
        Kind::Write {
            check: "ferry pipeline show NAME",
        },
    ),
    ("/ferry.v1.Pipelines/ListPipelines", Kind::Read),
    ("/ferry.v1.Pipelines/GetPipeline", Kind::Read),
    (
        "/ferry.v1.Pipelines/SetTransition",
        Kind::Write {
            check: "ferry pipeline show NAME",
        },
    ),
    // Executions
    (
        "/ferry.v1.Executions/StartExecution",
        Kind::Write {
            check: "ferry executions PIPELINE",
        },
    ),
    ("/ferry.v1.Executions/GetExecution", Kind::Read),
    ("/ferry.v1.Executions/WatchExecution", Kind::Read),
    ("/ferry.v1.Executions/ListExecutions", Kind::Read),
    ("/ferry.v1.Executions/StreamLogs", Kind::Read),
    (
        "/ferry.v1.Executions/StopExecution",
        Kind::Write {
            check: "ferry status PIPELINE --execution ID",
        },
    ),
    (
        "/ferry.v1.Executions/RetryStage",
        Kind::Write {
            check: "ferry status PIPELINE --execution ID",
        },
    ),
    // Approvals
    (
        "/ferry.v1.Approvals/Decide",
        Kind::Write {
            check: "ferry status PIPELINE --execution ID",
        },
    ),
    // Agents: the three writes answer with the agent list, read after the write.
    ("/ferry.v1.Agents/ListAgents", Kind::Read),
    (
        "/ferry.v1.Agents/DrainAgent",
        Kind::WriteThenRead {
            check: "ferry agents list",
        },
    ),
    (
        "/ferry.v1.Agents/RemoveAgent",
        Kind::WriteThenRead {
            check: "ferry agents list",
        },
    ),
    (
        "/ferry.v1.Agents/SetAgentLabels",
        Kind::WriteThenRead {
            check: "ferry agents list",
        },
    ),
    // Artifacts
    ("/ferry.v1.Artifacts/ListArtifacts", Kind::Read),
    ("/ferry.v1.Artifacts/GetArtifact", Kind::Read),
    ("/ferry.v1.Artifacts/ListCaches", Kind::Read),
    (
        "/ferry.v1.Artifacts/RemoveCaches",
        Kind::Write {
            check: "ferry cache list",
        },
    ),
    // Cluster
    ("/ferry.v1.Cluster/ClusterStatus", Kind::Read),
    (
        "/ferry.v1.Cluster/AddMember",
        Kind::Write {
            check: "ferry cluster status",
        },
    ),
    (
        "/ferry.v1.Cluster/RemoveMember",
        Kind::Write {
            check: "ferry cluster status",
        },
    ),
    (
        "/ferry.v1.Cluster/TransferLeader",
        Kind::Write {
            check: "ferry cluster status",
        },
    ),
    ("/ferry.v1.Cluster/Backup", Kind::Read),
    // Deployments
    ("/ferry.v1.Deployments/ListDeployments", Kind::Read),
    ("/ferry.v1.Deployments/GetDeployment", Kind::Read),
    (
        "/ferry.v1.Deployments/Rollback",
        Kind::Write {
            check: "ferry deployments list ENVIRONMENT",
        },
    ),
    // Environments
    (
        "/ferry.v1.Environments/ApplyEnvironment",
        Kind::Write {
            check: "ferry env show NAME",
        },
    ),
    ("/ferry.v1.Environments/ListEnvironments", Kind::Read),
    ("/ferry.v1.Environments/GetEnvironment", Kind::Read),
    // Secrets
    (
        "/ferry.v1.Secrets/SetSecret",
        // The same name set to the same value twice holds that value.
        Kind::Idempotent,
    ),
    ("/ferry.v1.Secrets/ListSecrets", Kind::Read),
    (
        "/ferry.v1.Secrets/RemoveSecret",
        Kind::Write {
            check: "ferry secret list",
        },
    ),
    // Notifications: the two writes answer with the status, read after the write.
    (
        "/ferry.v1.Notifications/SetTarget",
        Kind::WriteThenRead {
            check: "ferry notify status",
        },
    ),
    (
        "/ferry.v1.Notifications/RemoveTarget",
        Kind::WriteThenRead {
            check: "ferry notify status",
        },
    ),
    ("/ferry.v1.Notifications/NotifyStatus", Kind::Read),
    ("/ferry.v1.Notifications/WatchEvents", Kind::Read),
    // Access
    (
        "/ferry.v1.Access/RevokeCertificate",
        Kind::Write {
            check: "ferry certs revoke again: revoking a certificate twice changes nothing",
        },
    ),
    (
        "/ferry.v1.Access/RenewCertificate",
        Kind::Write {
            check: "ferry certs renew again: a certificate issued but never received is unused",
        },
    ),
    (
        "/ferry.v1.Access/CreateToken",
        Kind::Write {
            check: "ferry token create again: a token that was never received cannot be used",
        },
    ),
    (
        "/ferry.v1.Access/GrantRole",
        // A binding granted twice is granted once.
        Kind::Idempotent,
    ),
    (
        "/ferry.v1.Access/RevokeRole",
        Kind::Write {
            check: "ferry rbac list",
        },
    ),
    ("/ferry.v1.Access/ListRoleBindings", Kind::Read),
    ("/ferry.v1.Access/WhoAmI", Kind::Read),
    (
        "/ferry.v1.Access/CreateLoginLink",
        Kind::Write {
            check: "ferry ui again: a link that was never received cannot be used",
        },
    ),
];

/// The kind of the method at `path`; one not in [`METHODS`] counts as a write.
pub fn kind_of(path: &str) -> Kind {
    METHODS
        .iter()
        .find(|(p, _)| *p == path)
        .map_or(Kind::Write { check: "" }, |(_, k)| *k)
}

/// Whether an answer with `code`, `message` and the not-applied `mark` may
/// be sent again to another member, for a method of `kind`.
pub fn may_resend_answer(kind: Kind, code: Code, message: &str, marked: bool) -> bool {
    if code != Code::Unavailable {
        return false;
    }
    match kind {
        Kind::Read | Kind::Idempotent => true,
        Kind::Write { .. } => marked || answered_not_applied(message),
        Kind::WriteThenRead { .. } => false,
    }
}

/// The unmarked texts of v0.1 members that mean nothing was proposed.
pub fn answered_not_applied(message: &str) -> bool {
    message == V01_NO_LEADER
        || message.strip_prefix(V01_NOT_LEADER).is_some_and(|id| {
            !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit())
        })
}
