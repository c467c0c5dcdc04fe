//! Applying one command to the state. Rejections leave the state untouched and
//! travel back to the proposer as typed errors; the log entry itself is still
//! "applied" (a no-op), as every member rejects it the same way.

use ferry_pipeline::execution::{ActionStatus, Decision, ExecutionState, ExecutionStatus, Outcome};
use thiserror::Error;

use super::{
    AgentRecord, ArtifactRecord, AttemptLoc, ClusterState, Command, Execution, JoinToken,
    PipelineRecord, PipelineVersion,
};

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
    /// (checked in `apply`, so a lagging member cannot let it through).
    #[error("{0}")]
    PermissionDenied(String),
    #[error(
        "join token is invalid, expired or used up; ask an admin for a new one (`ferry token create`)"
    )]
    BadToken,
}

pub(super) type Applied = Result<Output, Rejection>;

/// Versions of a pipeline kept beyond those its kept executions and
/// deployments still run (each holds the whole YAML).
pub const PIPELINE_VERSIONS_KEPT: usize = 50;

/// Attempts lost with their agent that an action may re-run (at least; `retries` raises it).
pub const LOST_RETRIES: u32 = 2;

impl ClusterState {
    pub fn apply(&mut self, cmd: Command) -> Applied {
        match cmd {
            Command::Bootstrap {
                trust_domain,
                admin,
                members,
                ..
            } => {
                if self.bootstrapped {
                    return Ok(Output::None);
                }
                self.bootstrapped = true;
                for (id, addr) in members {
                    self.members.entry(id).or_insert(addr);
                }
                self.trust_domain = trust_domain;
                if let Some(admin) = admin {
                    self.roles.insert((admin, super::Role::Admin));
                }
                Ok(Output::None)
            }
            Command::ApplyPipeline { spec, yaml, by, at } => {
                self.apply_pipeline(spec, yaml, by, at)
            }
            Command::StartExecution {
                id,
                pipeline,
                revision,
                trigger,
                started_by,
                at,
            } => self.start_execution(id, pipeline, revision, (trigger, started_by), at),
            Command::Assign {
                execution,
                stage,
                action,
                agent,
                at,
            } => self.assign(execution, stage, action, agent, at),
            Command::FinishAttempt {
                epoch,
                agent,
                success,
                exit_code,
                message,
                outputs,
                log,
                deployment,
                at,
            } => self.finish_attempt(
                epoch,
                agent,
                success,
                exit_code,
                message,
                (outputs, log, deployment),
                at,
            ),
            Command::Redeploy {
                id,
                from,
                trigger,
                started_by,
                at,
            } => self.redeploy(id, from, (trigger, started_by), at),
            Command::AgentLost { agent, at } => {
                self.lose_agent(&agent, &format!("agent `{agent}` stopped answering"), at);
                Ok(Output::None)
            }
            Command::SetDraining { agent, draining } => {
                let Some(a) = self.agents.get_mut(&agent) else {
                    return Err(Rejection::NotFound(format!("agent `{agent}`")));
                };
                a.draining = draining;
                Ok(Output::None)
            }
            Command::RemoveAgent { agent, by, at } => {
                let Some(record) = self.agents.get(&agent) else {
                    return Err(Rejection::NotFound(format!("agent `{agent}`")));
                };
                for cert in record.bound_certs().cloned().collect::<Vec<_>>() {
                    self.revoke(
                        cert.fingerprint,
                        super::RevokedCert {
                            identity: format!("agent/{agent}"),
                            not_after: cert.not_after,
                            by: by.clone(),
                            at,
                        },
                    );
                }
                self.lose_agent(&agent, &format!("agent `{agent}` was removed"), at);
                self.agents.remove(&agent);
                for rec in self.artifacts.values_mut() {
                    rec.holders.remove(&agent);
                }
                Ok(Output::None)
            }
            Command::ApplyEnvironment { spec, yaml, by, at } => {
                let name = spec.name.clone();
                if let Some(old) = self.environments.get(&name)
                    && old.spec == spec
                {
                    return Ok(Output::PipelineVersion {
                        name,
                        version: old.version,
                        unchanged: true,
                    });
                }
                let version = self.environments.get(&name).map_or(1, |e| e.version + 1);
                self.environments.insert(
                    name.clone(),
                    super::EnvironmentRecord {
                        version,
                        spec,
                        yaml,
                        applied_by: by,
                        applied_at: at,
                    },
                );
                Ok(Output::PipelineVersion {
                    name,
                    version,
                    unchanged: false,
                })
            }
            Command::SetSecret {
                name,
                nonce,
                ciphertext,
                by,
                at,
            } => {
                self.secrets.insert(
                    name,
                    super::SecretRecord {
                        nonce,
                        ciphertext,
                        updated_by: by,
                        updated_at: at,
                    },
                );
                Ok(Output::None)
            }
            Command::RemoveSecret { name } => match self.secrets.remove(&name) {
                Some(_) => Ok(Output::None),
                None => Err(Rejection::NotFound(format!("secret `{name}`"))),
            },
            Command::PruneExecutions { ids } => {
                let ids: std::collections::BTreeSet<String> = ids
                    .into_iter()
                    .filter(|id| !self.active.contains(id))
                    .collect();
                for id in &ids {
                    if let Some(e) = self.executions.remove(id)
                        && let Some(p) = self.pipelines.get_mut(&e.pipeline)
                    {
                        p.executions.retain(|x| x != id);
                    }
                }
                self.attempts.retain(|_, loc| !ids.contains(&loc.execution));
                Ok(Output::None)
            }
            Command::ForgetArtifacts { digests } => {
                for d in digests {
                    self.artifacts.remove(&d);
                }
                Ok(Output::None)
            }
            Command::ArtifactHeld {
                digest,
                size,
                agent,
            } => {
                if !self.agents.contains_key(&agent) {
                    return Err(Rejection::NotFound(format!("agent `{agent}`")));
                }
                // A replica of something the cluster knows, of the size it knows.
                let Some(rec) = self.artifacts.get_mut(&digest) else {
                    return Err(Rejection::NotFound(format!("artifact {digest}")));
                };
                if rec.size != size {
                    return Err(Rejection::FailedPrecondition(format!(
                        "artifact {digest} is {} bytes, not {size}",
                        rec.size
                    )));
                }
                rec.holders.insert(agent);
                Ok(Output::None)
            }
            Command::Decide {
                execution,
                stage,
                action,
                by,
                approve,
                comment,
                at,
            } => {
                // Authorization again, against the state this decision lands on.
                let Some(exec) = self.executions.get(&execution) else {
                    return Err(Rejection::NotFound(format!("execution {execution}")));
                };
                self.may_decide(&by, exec, stage, action)?;
                let (exec, pipeline) = self.exec_and_pipeline(&execution)?;
                let Some(run) = exec.state.action_mut(stage, action) else {
                    return Err(Rejection::NotFound("action".into()));
                };
                if run.status() != ActionStatus::WaitingForApproval {
                    return Err(Rejection::FailedPrecondition(format!(
                        "action is {}, not WaitingForApproval",
                        run.status()
                    )));
                }
                run.approvals.push(Decision {
                    by: by.clone(),
                    approve,
                    comment: comment.clone(),
                    at,
                });
                // Who decided and why is in `approvals`; the message only flags a rejection.
                let message = if approve {
                    String::new()
                } else {
                    "rejected".to_string()
                };
                exec.state
                    .finish_action(pipeline, (stage, action), approve, message, at);
                self.settle(&execution);
                Ok(Output::None)
            }
            Command::ExpireApproval {
                execution,
                stage,
                action,
                at,
            } => {
                let (exec, pipeline) = self.exec_and_pipeline(&execution)?;
                let Some(run) = exec.state.action(stage, action) else {
                    return Err(Rejection::NotFound("action".into()));
                };
                if run.status() != ActionStatus::WaitingForApproval
                    || run.deadline.is_none_or(|d| d > at)
                {
                    return Ok(Output::None);
                }
                exec.state.finish_action(
                    pipeline,
                    (stage, action),
                    false,
                    "approval timed out".into(),
                    at,
                );
                self.settle(&execution);
                Ok(Output::None)
            }
            Command::CreateToken {
                hash,
                expires_at,
                uses,
                by,
                at,
            } => {
                if self.tokens.contains_key(&hash) {
                    return Err(Rejection::AlreadyExists("token".into()));
                }
                // Forget tokens that can no longer be used.
                self.tokens
                    .retain(|_, t| t.expires_at > at && t.uses_left > 0);
                self.tokens.insert(
                    hash,
                    JoinToken {
                        expires_at,
                        uses_left: uses,
                        created_by: by,
                        created_at: at,
                    },
                );
                Ok(Output::None)
            }
            Command::RenewAgentCertificate {
                agent,
                presented,
                cert,
                at: _,
            } => {
                if self.is_revoked(&presented.fingerprint) {
                    return Err(Rejection::PermissionDenied(format!(
                        "the certificate agent `{agent}` renews with was revoked"
                    )));
                }
                let Some(record) = self.agents.get_mut(&agent) else {
                    return Err(Rejection::NotFound(format!("agent `{agent}`")));
                };
                // Records from before certificates were bound accept any
                // certificate of the name; the renewal binds them.
                let bound = record.cert.is_none()
                    || record
                        .bound_certs()
                        .any(|c| c.fingerprint == presented.fingerprint);
                if !bound {
                    return Err(Rejection::PermissionDenied(format!(
                        "the certificate presented is not one agent `{agent}` is enrolled with"
                    )));
                }
                record.previous_cert = Some(presented);
                record.cert = Some(cert);
                Ok(Output::None)
            }
            Command::RevokeCertificate {
                fingerprint,
                identity,
                not_after,
                by,
                at,
            } => {
                self.revoke(
                    fingerprint,
                    super::RevokedCert {
                        identity,
                        not_after,
                        by,
                        at,
                    },
                );
                Ok(Output::None)
            }
            Command::Enroll {
                token_hash,
                agent,
                cert,
                wrapping_key,
                at,
            } => {
                if let Some(c) = &cert
                    && self.is_revoked(&c.fingerprint)
                {
                    return Err(Rejection::PermissionDenied(
                        "this certificate was revoked".into(),
                    ));
                }
                self.may_enroll(&token_hash, &agent, at)?;
                if let Some(t) = self.tokens.get_mut(&token_hash) {
                    t.uses_left -= 1;
                }
                self.agents.insert(
                    agent.clone(),
                    AgentRecord {
                        name: agent,
                        labels: Vec::new(),
                        capacity: 0,
                        version: String::new(),
                        address: String::new(),
                        enrolled_at: at,
                        registered_at: None,
                        draining: false,
                        cert,
                        previous_cert: None,
                        wrapping_key,
                    },
                );
                Ok(Output::None)
            }
            Command::RegisterAgent {
                name,
                labels,
                capacity,
                version,
                address,
                at,
            } => {
                let Some(agent) = self.agents.get_mut(&name) else {
                    return Err(Rejection::NotFound(format!("agent `{name}`")));
                };
                agent.labels = labels;
                agent.capacity = capacity;
                agent.version = version;
                agent.address = address;
                agent.registered_at = Some(at);
                Ok(Output::None)
            }
            Command::Grant { subject, role } => {
                self.roles.insert((subject, role));
                Ok(Output::None)
            }
            Command::Revoke { subject, role } => {
                if !self.roles.remove(&(subject.clone(), role)) {
                    return Err(Rejection::NotFound(format!(
                        "role binding {subject}={role}"
                    )));
                }
                Ok(Output::None)
            }
            Command::SourceSeen {
                pipeline,
                revision,
                at,
            } => {
                let Some(p) = self.pipelines.get_mut(&pipeline) else {
                    return Err(Rejection::NotFound(format!("pipeline `{pipeline}`")));
                };
                p.last_seen_revision = Some(revision);
                p.last_polled_at = Some(at);
                Ok(Output::None)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_attempt(
        &mut self,
        epoch: u64,
        agent: String,
        success: bool,
        exit_code: Option<i32>,
        message: String,
        (outputs, log, deployment): (
            std::collections::BTreeMap<String, ferry_pipeline::execution::ArtifactRef>,
            Option<ferry_pipeline::execution::ArtifactRef>,
            Option<Vec<u8>>,
        ),
        at: i64,
    ) -> Applied {
        let loc = match self.attempts.get(&epoch) {
            Some(loc) if loc.agent == agent => loc.clone(),
            _ => {
                return Ok(Output::Attempt {
                    accepted: false,
                    reason: format!("attempt epoch {epoch} is not assigned to {agent}"),
                });
            }
        };
        // The log is kept whatever happens to the attempt.
        for art in outputs.values().chain(log.iter()) {
            let rec = self
                .artifacts
                .entry(art.digest.clone())
                .or_insert_with(|| ArtifactRecord {
                    size: art.size,
                    ..Default::default()
                });
            rec.holders.insert(agent.clone());
        }
        let (exec, pipeline) = self.exec_and_pipeline(&loc.execution)?;
        let retries = pipeline
            .stages
            .get(loc.stage)
            .and_then(|s| s.actions.get(loc.action))
            .map_or(0, |a| a.retries);
        let Some(run) = exec.state.action_mut(loc.stage, loc.action) else {
            return Err(Rejection::NotFound("action".into()));
        };
        if run.epoch != epoch || run.agent.is_none() || run.status() != ActionStatus::InProgress {
            return Ok(Output::Attempt {
                accepted: false,
                reason: format!("stale attempt: epoch {epoch} is no longer current"),
            });
        }
        let outcome = if success {
            Outcome::Succeeded
        } else {
            Outcome::Failed
        };
        run.close_attempt(epoch, outcome, exit_code, &message, at);
        let started_at = run
            .history
            .iter()
            .rev()
            .find(|h| h.epoch == epoch)
            .map_or(at, |h| h.started_at);
        run.exit_code = exit_code;
        run.log = log;
        if !success && run.count(Outcome::Failed) <= retries {
            let n = run.count(Outcome::Failed);
            run.requeue(format!(
                "retrying after a failure ({n} of {retries} retries): {message}"
            ));
        } else {
            run.outputs = outputs;
            exec.state
                .finish_action(pipeline, (loc.stage, loc.action), success, message, at);
        }
        if let Some(report) = deployment {
            self.record_deployment(
                (&loc.execution, loc.stage, loc.action),
                &agent,
                started_at,
                report,
                at,
            );
        }
        self.settle(&loc.execution);
        Ok(Output::Attempt {
            accepted: true,
            reason: String::new(),
        })
    }

    /// Marks every attempt running on `agent` lost and re-queues each action
    /// that has retries for lost agents left (else fails it).
    fn lose_agent(&mut self, agent: &str, why: &str, at: i64) {
        let running: Vec<(u64, AttemptLoc)> = self
            .running_on(agent)
            .into_iter()
            .map(|(e, l)| (e, l.clone()))
            .collect();
        for (epoch, loc) in running {
            let Ok((exec, pipeline)) = self.exec_and_pipeline(&loc.execution) else {
                continue;
            };
            let limit = pipeline
                .stages
                .get(loc.stage)
                .and_then(|s| s.actions.get(loc.action))
                .map_or(LOST_RETRIES, |a| a.retries.max(LOST_RETRIES));
            let Some(run) = exec.state.action_mut(loc.stage, loc.action) else {
                continue;
            };
            run.close_attempt(epoch, Outcome::Lost, None, why, at);
            if run.count(Outcome::Lost) <= limit {
                run.requeue(format!("re-queued: {why}"));
            } else {
                let message = format!(
                    "{why}; no retries left after {} lost attempts",
                    run.count(Outcome::Lost)
                );
                exec.state
                    .finish_action(pipeline, (loc.stage, loc.action), false, message, at);
            }
            self.settle(&loc.execution);
        }
    }

    /// Whether join token `token_hash` may enroll agent `name` at `at`: the
    /// token is live with a use left and the name is free. `apply` decides
    /// with it; the enrollment handler asks it first so a refusal costs no entry.
    pub fn may_enroll(&self, token_hash: &str, name: &str, at: i64) -> Result<(), Rejection> {
        match self.tokens.get(token_hash) {
            Some(t) if t.expires_at > at && t.uses_left > 0 => {}
            _ => return Err(Rejection::BadToken),
        }
        if self.agents.contains_key(name) {
            return Err(Rejection::AlreadyExists(format!(
                "agent `{name}` (pick another --name, or remove the old agent first)"
            )));
        }
        Ok(())
    }

    /// Adds `fingerprint` to the revocation list and drops entries whose
    /// certificates have expired by `entry.at` (they are refused as expired).
    fn revoke(&mut self, fingerprint: String, entry: super::RevokedCert) {
        let now = entry.at;
        self.revoked.retain(|_, r| r.not_after > now);
        if entry.not_after > now {
            self.revoked.insert(fingerprint, entry);
        }
        self.revocations += 1;
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

    fn apply_pipeline(
        &mut self,
        spec: ferry_pipeline::Pipeline,
        yaml: String,
        by: String,
        at: i64,
    ) -> Applied {
        self.may_apply_pipeline(&by, &spec)?;
        let name = spec.name.clone();
        let record = self
            .pipelines
            .entry(name.clone())
            .or_insert_with(|| PipelineRecord {
                name: name.clone(),
                versions: Vec::new(),
                executions: Vec::new(),
                last_seen_revision: None,
                last_polled_at: None,
            });
        if let Some(latest) = record.latest()
            && latest.spec == spec
        {
            return Ok(Output::PipelineVersion {
                name,
                version: latest.version,
                unchanged: true,
            });
        }
        let version = record.latest().map_or(1, |v| v.version + 1);
        record.versions.push(PipelineVersion {
            version,
            spec,
            yaml,
            applied_by: by,
            applied_at: at,
        });
        self.prune_pipeline_versions(&name);
        Ok(Output::PipelineVersion {
            name,
            version,
            unchanged: false,
        })
    }

    /// Forgets versions of pipeline `name` beyond the newest
    /// [`PIPELINE_VERSIONS_KEPT`] that no kept execution or deployment runs.
    fn prune_pipeline_versions(&mut self, name: &str) {
        let Some(record) = self.pipelines.get(name) else {
            return;
        };
        let excess = record.versions.len().saturating_sub(PIPELINE_VERSIONS_KEPT);
        if excess == 0 {
            return;
        }
        let mut used: std::collections::BTreeSet<u64> = record
            .executions
            .iter()
            .filter_map(|id| self.executions.get(id))
            .map(|e| e.version)
            .collect();
        used.extend(
            self.deployments
                .values()
                .filter(|d| d.pipeline == name)
                .map(|d| d.version),
        );
        let oldest_kept = record.versions[excess].version;
        if let Some(record) = self.pipelines.get_mut(name) {
            record
                .versions
                .retain(|v| v.version >= oldest_kept || used.contains(&v.version));
        }
    }

    fn start_execution(
        &mut self,
        id: String,
        pipeline: String,
        revision: String,
        (trigger, started_by): (String, Option<String>),
        at: i64,
    ) -> Applied {
        if self.executions.contains_key(&id) {
            return Err(Rejection::AlreadyExists(format!("execution {id}")));
        }
        let Some(record) = self.pipelines.get_mut(&pipeline) else {
            return Err(Rejection::NotFound(format!("pipeline `{pipeline}`")));
        };
        let Some(latest) = record.latest() else {
            return Err(Rejection::NotFound(format!(
                "pipeline `{pipeline}` has no version"
            )));
        };
        let mut state = ExecutionState::new(&latest.spec);
        state.advance(&latest.spec, at);
        let version = latest.version;
        record.executions.push(id.clone());
        if record.last_seen_revision.is_none() {
            record.last_seen_revision = Some(revision.clone());
        }
        self.executions.insert(
            id.clone(),
            Execution {
                id: id.clone(),
                pipeline,
                version,
                revision,
                trigger,
                started_by,
                started_at: at,
                state,
                release_of: None,
            },
        );
        self.active.insert(id.clone());
        self.settle(&id);
        Ok(Output::Execution { id })
    }

    fn assign(
        &mut self,
        execution: String,
        stage: usize,
        action: usize,
        agent: String,
        at: i64,
    ) -> Applied {
        match self.agents.get(&agent) {
            None => return Err(Rejection::NotFound(format!("agent `{agent}`"))),
            Some(a) if a.draining => {
                return Err(Rejection::FailedPrecondition(format!(
                    "agent `{agent}` is draining"
                )));
            }
            Some(_) => {}
        }
        let Some(exec) = self.executions.get_mut(&execution) else {
            return Err(Rejection::NotFound(format!("execution {execution}")));
        };
        let Some(run) = exec.state.action_mut(stage, action) else {
            return Err(Rejection::NotFound("action".into()));
        };
        if !run.is_queued() {
            return Err(Rejection::FailedPrecondition(
                "action is not waiting for an agent".into(),
            ));
        }
        self.epoch += 1;
        run.epoch = self.epoch;
        run.attempt += 1;
        run.agent = Some(agent.clone());
        run.started_at = Some(at);
        run.message = String::new();
        run.history.push(ferry_pipeline::execution::AttemptRecord {
            attempt: run.attempt,
            epoch: self.epoch,
            agent: agent.clone(),
            outcome: Outcome::Running,
            exit_code: None,
            started_at: at,
            finished_at: None,
            message: String::new(),
        });
        let attempt = run.attempt;
        self.attempts.insert(
            self.epoch,
            AttemptLoc {
                execution,
                stage,
                action,
                agent,
            },
        );
        Ok(Output::Assigned {
            epoch: self.epoch,
            attempt,
        })
    }

    /// An execution and the pipeline version it runs, borrowed side by side
    /// (no copy of the pipeline on the hot path of every result).
    fn exec_and_pipeline(
        &mut self,
        id: &str,
    ) -> Result<(&mut Execution, &ferry_pipeline::Pipeline), Rejection> {
        let pipelines = &self.pipelines;
        let Some(exec) = self.executions.get_mut(id) else {
            return Err(Rejection::NotFound(format!("execution {id}")));
        };
        let Some(pipeline) = pipelines
            .get(&exec.pipeline)
            .and_then(|p| p.version(exec.version))
            .map(|v| &v.spec)
        else {
            return Err(Rejection::NotFound(format!(
                "pipeline {} version {}",
                exec.pipeline, exec.version
            )));
        };
        Ok((exec, pipeline))
    }

    /// Drops a finished execution from the active set and its attempts from the index.
    pub(super) fn settle(&mut self, id: &str) {
        let finished = self
            .executions
            .get(id)
            .is_some_and(|e| e.state.status != ExecutionStatus::InProgress);
        if finished {
            let still_running = self.executions.get(id).is_some_and(|e| {
                e.state
                    .actions
                    .iter()
                    .flatten()
                    .any(|r| r.status() == ActionStatus::InProgress && r.agent.is_some())
            });
            // Keep attempt records while a sibling still runs so its result is accepted.
            if !still_running {
                self.active.remove(id);
                self.attempts.retain(|_, loc| loc.execution != id);
            }
        }
    }
}
