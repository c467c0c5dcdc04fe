//! Agents in the replicated state: enrollment (binding a name to its
//! certificate, wrapping key and labels), registration, an admin's change of
//! labels, certificate renewal, drain, removal and loss — and the queries
//! about what runs where. Each command checks everything before it changes
//! anything. An agent never chooses its own labels after enrollment: a
//! registration records its capacity, version and address only.

use crate::reason::Reason;
use std::collections::{BTreeMap, BTreeSet};

pub use ferry_pipeline::MAX_LABEL_BYTES;
use ferry_pipeline::execution::{ActionStatus, Outcome};

use super::apply::{Applied, Output, Rejection};
use super::command::By;
use super::{AgentRecord, AttemptLoc, CertBinding, ClusterState, RevokedCert};

/// Attempts lost with their agent that an action may re-run (at least; `retries` raises it).
pub const LOST_RETRIES: u32 = 2;

/// Most labels one agent (or join token) carries.
pub const MAX_LABELS: usize = 32;

/// Whether `labels` may be an agent's: at most [`MAX_LABELS`], each
/// as `runs_on` requires them (`ferry_pipeline::check_label`: non-empty,
/// at most [`MAX_LABEL_BYTES`], no whitespace or control characters).
pub fn check_labels(labels: &[String]) -> Result<(), String> {
    if labels.len() > MAX_LABELS {
        return Err(format!(
            "{} labels given; an agent carries at most {MAX_LABELS}",
            labels.len()
        ));
    }
    for l in labels {
        ferry_pipeline::check_label(l).map_err(|e| {
            let shown: String = l.chars().take(MAX_LABEL_BYTES).collect();
            format!("label {shown:?}: {e}")
        })?;
    }
    Ok(())
}

/// `labels` sorted, each once.
pub(super) fn normalized(labels: &[String]) -> Vec<String> {
    labels
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// What an agent says about itself when its session opens. `labels` only
/// from entries logged before labels were bound (see `Command::RegisterAgent`).
pub(super) struct Registration {
    pub labels: Option<Vec<String>>,
    pub capacity: u32,
    pub version: String,
    pub address: String,
}

impl ClusterState {
    /// Consumes one use of `token_hash` and records agent `agent`, bound to
    /// the certificate it was issued, its wrapping key and the labels the
    /// token grants it (see [`ClusterState::may_enroll`]).
    pub(super) fn enroll(
        &mut self,
        token_hash: &str,
        agent: String,
        (cert, wrapping_key, labels): (Option<CertBinding>, Option<String>, Vec<String>),
        at: i64,
    ) -> Applied {
        if let Some(c) = &cert
            && self.is_revoked(&c.fingerprint)
        {
            return Err(Rejection::denied(
                Reason::Unauthenticated,
                "this certificate was revoked",
            ));
        }
        let labels = self.may_enroll(token_hash, &agent, &labels, at)?;
        if let Some(t) = self.tokens.get_mut(token_hash) {
            t.uses_left -= 1;
        }
        self.agents.insert(
            agent.clone(),
            AgentRecord {
                name: agent,
                labels,
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

    pub(super) fn register_agent(&mut self, name: &str, r: Registration, at: i64) -> Applied {
        let Some(agent) = self.agents.get_mut(name) else {
            return Err(Rejection::NotFound(format!("agent `{name}`")));
        };
        // Only old entries carry labels: they replay as they applied then.
        if let Some(labels) = r.labels {
            agent.labels = labels;
        }
        agent.capacity = r.capacity;
        agent.version = r.version;
        agent.address = r.address;
        agent.registered_at = Some(at);
        Ok(Output::None)
    }

    /// Binds `agent` to a renewed certificate; `presented` must be one it is bound to.
    pub(super) fn renew_agent_certificate(
        &mut self,
        agent: &str,
        presented: CertBinding,
        cert: CertBinding,
    ) -> Applied {
        if self.is_revoked(&presented.fingerprint) {
            return Err(Rejection::denied(
                Reason::Unauthenticated,
                format!("the certificate agent `{agent}` renews with was revoked"),
            ));
        }
        let Some(record) = self.agents.get_mut(agent) else {
            return Err(Rejection::NotFound(format!("agent `{agent}`")));
        };
        // Records from before certificates were bound accept any
        // certificate of the name; the renewal binds them.
        let bound = record.cert.is_none()
            || record
                .bound_certs()
                .any(|c| c.fingerprint == presented.fingerprint);
        if !bound {
            return Err(Rejection::denied(
                Reason::Unauthenticated,
                format!("the certificate presented is not one agent `{agent}` is enrolled with"),
            ));
        }
        record.previous_cert = Some(presented);
        record.cert = Some(cert);
        Ok(Output::None)
    }

    /// An admin's change of `agent`'s labels: all of them (`set`), or
    /// `add` and then `remove` some. The result must pass [`check_labels`].
    pub(super) fn set_agent_labels(
        &mut self,
        agent: &str,
        set: Option<Vec<String>>,
        (add, remove): (Vec<String>, Vec<String>),
    ) -> Applied {
        let Some(record) = self.agents.get_mut(agent) else {
            return Err(Rejection::NotFound(format!("agent `{agent}`")));
        };
        for given in [set.as_deref().unwrap_or_default(), &add, &remove] {
            check_labels(given).map_err(Rejection::FailedPrecondition)?;
        }
        let mut labels: BTreeSet<String> = match set {
            Some(set) => set.into_iter().collect(),
            None => record.labels.iter().cloned().collect(),
        };
        labels.extend(add);
        for l in &remove {
            labels.remove(l);
        }
        let labels: Vec<String> = labels.into_iter().collect();
        check_labels(&labels).map_err(Rejection::FailedPrecondition)?;
        record.labels = labels;
        Ok(Output::None)
    }

    pub(super) fn set_draining(&mut self, agent: &str, draining: bool) -> Applied {
        let Some(a) = self.agents.get_mut(agent) else {
            return Err(Rejection::NotFound(format!("agent `{agent}`")));
        };
        a.draining = draining;
        Ok(Output::None)
    }

    /// Forgets `agent`: its certificates are revoked, its attempts lost and
    /// re-queued, and it holds no blob any more.
    pub(super) fn remove_agent(&mut self, agent: &str, by: &By, at: i64) -> Applied {
        let Some(record) = self.agents.get(agent) else {
            return Err(Rejection::NotFound(format!("agent `{agent}`")));
        };
        for cert in record.bound_certs().cloned().collect::<Vec<_>>() {
            self.revoke(
                cert.fingerprint,
                RevokedCert {
                    identity: format!("agent/{agent}"),
                    not_after: cert.not_after,
                    by: by.name().to_string(),
                    at,
                },
            );
        }
        self.lose_agent(agent, &format!("agent `{agent}` was removed"), at);
        self.agents.remove(agent);
        for rec in self.artifacts.values_mut() {
            rec.holders.remove(agent);
        }
        self.forget_cache_holder(agent);
        Ok(Output::None)
    }

    /// Peer addresses (host:port) of these agents, of those that have one.
    pub fn agent_addresses<'a>(&self, agents: impl IntoIterator<Item = &'a String>) -> Vec<String> {
        agents
            .into_iter()
            .filter_map(|a| self.agents.get(a))
            .filter(|a| !a.address.is_empty())
            .map(|a| a.address.clone())
            .collect()
    }

    /// The leader saw no heartbeat from `agent` within its lease.
    pub(super) fn agent_lost(&mut self, agent: &str, at: i64) -> Applied {
        self.lose_agent(agent, &format!("agent `{agent}` stopped answering"), at);
        Ok(Output::None)
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
            let gates = self.gates(&loc.execution);
            let Ok((exec, pipeline)) = self.exec_and_pipeline(&loc.execution) else {
                continue;
            };
            let name = exec.pipeline.clone();
            let limit = pipeline
                .stages
                .get(loc.stage)
                .and_then(|s| s.actions.get(loc.action))
                .map_or(LOST_RETRIES, |a| a.retries.max(LOST_RETRIES));
            // A sibling failed (or a person stopped the run) meanwhile: an
            // action re-queued in it would wait forever (found by the
            // replicas property test).
            let ended = !exec.state.accepts_work();
            let Some(run) = exec.state.action_mut(loc.stage, loc.action) else {
                continue;
            };
            run.close_attempt(epoch, Outcome::Lost, None, why, at);
            if !ended && run.count(Outcome::Lost) <= limit {
                run.requeue(format!("re-queued: {why}"));
            } else {
                let message = if ended {
                    format!("{why}; not run again: the execution had already ended or was stopped")
                } else {
                    format!(
                        "{why}; no retries left after {} lost attempts",
                        run.count(Outcome::Lost)
                    )
                };
                exec.state.finish_action(
                    pipeline,
                    (loc.stage, loc.action),
                    false,
                    message,
                    &gates,
                    at,
                );
            }
            self.progress(&name, Some(&loc.execution), at);
        }
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

    /// Whether `agent` should stop running attempt `epoch`, and why: a
    /// person abandoned its execution (`true`: even a deployment stops), or
    /// the attempt is no longer current (`false`).
    pub fn cancel_reason(&self, agent: &str, epoch: u64) -> Option<(String, bool)> {
        let abandoned = self
            .attempts
            .get(&epoch)
            .filter(|loc| loc.agent == agent)
            .and_then(|loc| self.executions.get(&loc.execution))
            .and_then(|e| e.state.stop.as_ref())
            .filter(|stop| stop.abandon);
        if let Some(stop) = abandoned {
            return Some((stop.message(), true));
        }
        if self.is_current(agent, epoch) {
            return None;
        }
        Some(("this attempt is no longer current".into(), false))
    }

    /// Whether the attempt with fencing epoch `epoch` is `agent`'s and still current.
    pub fn is_current(&self, agent: &str, epoch: u64) -> bool {
        self.attempts
            .get(&epoch)
            .is_some_and(|loc| loc.agent == agent && self.attempt_is_live(epoch, loc))
    }

    /// Current attempts per agent, in one pass (the scheduler's view of load).
    pub fn running_counts(&self) -> BTreeMap<&str, usize> {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for (epoch, loc) in &self.attempts {
            if self.attempt_is_live(*epoch, loc) {
                *counts.entry(loc.agent.as_str()).or_default() += 1;
            }
        }
        counts
    }

    /// Whether the action at `loc` is still running the attempt `epoch`.
    fn attempt_is_live(&self, epoch: u64, loc: &AttemptLoc) -> bool {
        self.executions
            .get(&loc.execution)
            .and_then(|e| e.state.action(loc.stage, loc.action))
            .is_some_and(|r| {
                r.epoch == epoch && r.agent.is_some() && r.status() == ActionStatus::InProgress
            })
    }
}
