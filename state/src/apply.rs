//! Applying one command to the state: a dispatcher, as in Nomad's FSM. It
//! checks who asked (`access.rs`) and hands the command to the one function
//! of its group that applies it — `access.rs`, `agents.rs`,
//! `definitions.rs`, `executions.rs`, `artifacts.rs`, `deployments.rs`.
//! Each of those checks everything before it changes anything, so a
//! rejection leaves the state untouched; it travels back to the proposer as
//! a typed error, and the log entry itself is still "applied" (a no-op), as
//! every member rejects it the same way.

use thiserror::Error;

use super::agents::Registration;
use super::executions::{AttemptResult, Verdict};
use super::reason::Reason;
use super::{ClusterState, Command, RevokedCert};

/// What a successful command produced, for the proposer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Output {
    None,
    PipelineVersion {
        name: String,
        version: u64,
        unchanged: bool,
    },
    Execution {
        id: String,
    },
    Assigned {
        epoch: u64,
        attempt: u32,
    },
    Attempt {
        accepted: bool,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Error, serde::Serialize, serde::Deserialize)]
pub enum Rejection {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// The caller named in the command lacks a permission the state requires
    /// (checked in `apply`, so a lagging member cannot let it through), and
    /// the stable reason why.
    #[error("{1}")]
    PermissionDenied(Reason, String),
    #[error("join token is invalid, expired or used up; ask an admin for a new one")]
    BadToken,
    /// [`Rejection::FailedPrecondition`] with a stable reason of its own.
    #[error("{1}")]
    Conflict(Reason, String),
}

impl Rejection {
    /// A permission denied for `reason`.
    pub fn denied(reason: Reason, message: impl Into<String>) -> Rejection {
        Rejection::PermissionDenied(reason, message.into())
    }

    /// Its stable reason (the API's `ErrorInfo.reason`).
    pub fn reason(&self) -> Reason {
        match self {
            Rejection::NotFound(_) => Reason::NotFound,
            Rejection::AlreadyExists(_) => Reason::AlreadyExists,
            Rejection::FailedPrecondition(_) => Reason::FailedPrecondition,
            Rejection::PermissionDenied(reason, _) => *reason,
            Rejection::BadToken => Reason::BadToken,
            Rejection::Conflict(reason, _) => *reason,
        }
    }

    /// The form v0.1 members read in a forwarded proposal's answer: the
    /// reason is left out (it travels beside it, `ForwardResponse.reason`).
    pub fn to_v1(&self) -> RejectionV1 {
        match self {
            Rejection::NotFound(m) => RejectionV1::NotFound(m.clone()),
            Rejection::AlreadyExists(m) => RejectionV1::AlreadyExists(m.clone()),
            Rejection::FailedPrecondition(m) => RejectionV1::FailedPrecondition(m.clone()),
            Rejection::PermissionDenied(_, m) => RejectionV1::PermissionDenied(m.clone()),
            Rejection::BadToken => RejectionV1::BadToken,
            Rejection::Conflict(_, m) => RejectionV1::FailedPrecondition(m.clone()),
        }
    }

    /// Back from the v0.1 form and the reason sent beside it.
    pub fn from_v1(v1: RejectionV1, reason: Reason) -> Rejection {
        match v1 {
            RejectionV1::NotFound(m) => Rejection::NotFound(m),
            RejectionV1::AlreadyExists(m) => Rejection::AlreadyExists(m),
            RejectionV1::FailedPrecondition(m) if reason != Reason::Unspecified => {
                Rejection::Conflict(reason, m)
            }
            RejectionV1::FailedPrecondition(m) => Rejection::FailedPrecondition(m),
            RejectionV1::PermissionDenied(m) => Rejection::PermissionDenied(reason, m),
            RejectionV1::BadToken => Rejection::BadToken,
        }
    }
}

/// [`Rejection`] as its JSON was before refusals had reasons: what a
/// forwarded proposal's answer holds, so that members of v0.1 still read it
/// during a rolling upgrade. Never change its shape.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RejectionV1 {
    NotFound(String),
    AlreadyExists(String),
    FailedPrecondition(String),
    PermissionDenied(String),
    BadToken,
}

pub(super) type Applied = Result<Output, Rejection>;

impl ClusterState {
    /// Applies one committed command: the state's only way to change. The
    /// events it causes are recorded with it (`events.rs`).
    pub fn apply(&mut self, cmd: Command) -> Applied {
        if let Command::Requested {
            caller,
            request_id,
            fingerprint,
            at,
            command,
        } = cmd
        {
            let request = super::requests::Request {
                caller,
                id: request_id,
                fingerprint,
                at,
            };
            return self.apply_requested(request, *command);
        }
        self.authorize(&cmd)?;
        let before = self.observe(&cmd);
        let out = self.dispatch(cmd)?;
        if let Some(before) = before {
            self.emit(before);
        }
        Ok(out)
    }

    /// Hands `cmd` to the one function that applies it.
    fn dispatch(&mut self, cmd: Command) -> Applied {
        match cmd {
            Command::SetClusterVersion { version } => self.set_cluster_version(version),
            Command::Bootstrap {
                trust_domain,
                admin,
                members,
                at: _,
                cluster_id,
            } => self.bootstrap(trust_domain, admin, members, cluster_id),
            // Access: role bindings, join tokens, revoked certificates.
            Command::Grant { subject, role, .. } => self.grant(subject, role),
            Command::Revoke { subject, role, .. } => self.revoke_role(subject, role),
            Command::CreateToken {
                hash,
                expires_at,
                uses,
                by,
                at,
                labels,
            } => self.create_token(hash, (expires_at, uses, labels), by, at),
            Command::RevokeCertificate {
                fingerprint,
                identity,
                not_after,
                by,
                at,
            } => self.revoke_certificate(
                fingerprint,
                RevokedCert {
                    identity,
                    not_after,
                    by: by.name().to_string(),
                    at,
                },
            ),
            // Agents.
            Command::Enroll {
                token_hash,
                agent,
                cert,
                wrapping_key,
                at,
                labels,
            } => self.enroll(&token_hash, agent, (cert, wrapping_key, labels), at),
            Command::RegisterAgent {
                name,
                labels,
                capacity,
                version,
                address,
                at,
            } => self.register_agent(
                &name,
                Registration {
                    labels,
                    capacity,
                    version,
                    address,
                },
                at,
            ),
            Command::RenewAgentCertificate {
                agent,
                presented,
                cert,
                at: _,
            } => self.renew_agent_certificate(&agent, presented, cert),
            Command::SetDraining {
                agent, draining, ..
            } => self.set_draining(&agent, draining),
            Command::SetAgentLabels {
                agent,
                set,
                add,
                remove,
                ..
            } => self.set_agent_labels(&agent, set, (add, remove)),
            Command::RemoveAgent { agent, by, at } => self.remove_agent(&agent, &by, at),
            Command::AgentLost { agent, at } => self.agent_lost(&agent, at),
            // Definitions: pipelines, environments, secrets.
            Command::ApplyPipeline { spec, yaml, by, at } => {
                self.apply_pipeline(spec, yaml, &by, at)
            }
            Command::SourceSeen {
                pipeline,
                revision,
                at,
            } => self.source_seen(&pipeline, revision, at),
            Command::ArmSchedule { pipeline, schedule } => self.arm_schedule(&pipeline, schedule),
            Command::ApplyEnvironment { spec, yaml, by, at } => {
                self.apply_environment(spec, yaml, &by, at)
            }
            Command::SetSecret {
                name,
                nonce,
                ciphertext,
                by,
                at,
            } => self.set_secret(name, (nonce, ciphertext), &by, at),
            Command::RemoveSecret { name, .. } => self.remove_secret(&name),
            // Executions.
            Command::StartExecution {
                id,
                pipeline,
                revision,
                trigger,
                started_by,
                variables,
                source,
                once,
                at,
            } => {
                let started_by = started_by.map(|b| b.name().to_string());
                self.start_execution(
                    id,
                    pipeline,
                    (revision, source),
                    (trigger, started_by, once),
                    variables,
                    at,
                )
            }
            Command::Assign {
                execution,
                stage,
                action,
                agent,
                at,
            } => self.assign(execution, (stage, action), agent, at),
            Command::FinishAttempt {
                epoch,
                agent,
                success,
                exit_code,
                message,
                outputs,
                log,
                deployment,
                variables,
                tests,
                caches,
                at,
            } => self.finish_attempt(
                epoch,
                agent,
                AttemptResult {
                    success,
                    exit_code,
                    message,
                    outputs,
                    log,
                    deployment,
                    variables,
                    tests,
                    caches,
                },
                at,
            ),
            Command::Decide {
                execution,
                stage,
                action,
                by,
                approve,
                comment,
                at,
            } => self.decide(
                &execution,
                (stage, action),
                Verdict {
                    by,
                    approve,
                    comment,
                },
                at,
            ),
            Command::StopExecution {
                execution,
                reason,
                abandon,
                by,
                at,
            } => self.stop_execution(&execution, reason, abandon, &by, at),
            Command::RetryStage {
                execution,
                stage,
                all,
                at,
                ..
            } => self.retry_stage(&execution, &stage, all, at),
            Command::SetTransition {
                pipeline,
                stage,
                enabled,
                reason,
                by,
                at,
            } => self.set_transition(&pipeline, &stage, enabled, reason, &by, at),
            Command::ExpireApproval {
                execution,
                stage,
                action,
                at,
            } => self.expire_approval(&execution, (stage, action), at),
            Command::PruneExecutions { ids } => self.prune_executions(ids),
            // Artifacts.
            Command::ArtifactHeld {
                digest,
                size,
                agent,
            } => self.artifact_held(&digest, size, agent),
            Command::ForgetArtifacts { digests } => self.forget_artifacts(digests),
            Command::CachesDropped { agent, digests } => self.caches_dropped(&agent, &digests),
            Command::RemoveCaches {
                pipeline,
                scope,
                key_prefix,
                ..
            } => self.remove_caches(&pipeline, &scope, &key_prefix),
            // Unwrapped by `apply` before it gets here.
            Command::Requested { .. } => Err(Rejection::FailedPrecondition(
                "a request id wraps one command, not another request".into(),
            )),
            // Console logins.
            Command::CreateLoginLink {
                hash,
                expires_at,
                by,
                at: _,
                cert,
            } => self.create_login_link(
                hash,
                super::console::LoginLink {
                    operator: by.name().to_string(),
                    expires_at,
                    cert,
                },
            ),
            Command::OpenSession {
                link,
                session,
                expires_at,
                at,
            } => self.open_session(&link, session, expires_at, at),
            Command::EndSession { session } | Command::RevokeSession { session, .. } => {
                self.end_session(&session)
            }
            // Notifications.
            Command::SetNotifyTarget { target, .. } => self.set_notify_target(target),
            Command::RemoveNotifyTarget { name, .. } => self.remove_notify_target(&name),
            Command::NotifyAttempted { results, at } => self.notify_attempted(results, at),
            // Deployments.
            Command::Redeploy {
                id,
                from,
                trigger,
                started_by,
                at,
            } => {
                let started_by = started_by.map(|b| b.name().to_string());
                self.redeploy(id, from, (trigger, started_by), at)
            }
        }
    }
}
