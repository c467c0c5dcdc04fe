//! Agents: the list with who is connected (leader-only), drain and removal,
//! and what the agent session and the lease loop record: registration,
//! attempt results, lost agents, which attempts are current.

use std::collections::BTreeMap;
use std::time::Instant;

use ferry_certs::Identity;
use ferry_pipeline::execution::ArtifactRef;
use ferry_pipeline::mask::Masker;

use super::{OpError, OpResult, Ops};
use crate::views::now_ms;
use ferry_state::{AgentRecord, Command, Output};

/// An agent's record and what only the leader knows of it.
#[derive(Debug, Clone)]
pub struct AgentInfo {
    pub record: AgentRecord,
    /// Attempts it runs now.
    pub running: usize,
    /// It has a session with this member (the leader).
    pub connected: bool,
    /// When the leader last heard from it (unix ms), if it did this term.
    pub last_seen: Option<i64>,
}

/// What an agent says when its session opens (bounded by the session).
/// Not its labels: those are bound at enrollment.
#[derive(Debug, Clone)]
pub struct Registration {
    pub capacity: u32,
    pub version: String,
    pub address: String,
}

/// An agent's result for one attempt.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    pub epoch: u64,
    pub success: bool,
    pub exit_code: Option<i32>,
    pub message: String,
    pub outputs: BTreeMap<String, ArtifactRef>,
    pub log: Option<ArtifactRef>,
    /// The deploy report, encoded as the agent sent it.
    pub deployment: Option<Vec<u8>>,
    /// Output variables the attempt wrote.
    pub variables: BTreeMap<String, String>,
    /// What its test reports said (bounded when it was read off the wire).
    pub tests: Option<ferry_pipeline::reports::TestSummary>,
    /// Cache entries it saved or now holds (bounded off the wire; checked
    /// against the attempt's action in `apply`).
    pub caches: Vec<ferry_state::caches::CacheReport>,
}

impl Ops {
    /// Leader-only, linearizable: one page of the agents by name with their
    /// session state, and the next page's token. The
    /// caller forwards to the leader when [`Ops::leader`] is not `Here`.
    pub async fn list_agents(
        &self,
        page: &super::page::PageRequest,
    ) -> OpResult<(Vec<AgentInfo>, String)> {
        let hub = &self.ctx().agents;
        self.read(|s| {
            let running = s.running_counts();
            let (agents, next) = page.apply(s.agents.values(), |a| a.name.clone())?;
            let agents = agents
                .into_iter()
                .map(|a| AgentInfo {
                    record: a.clone(),
                    running: running.get(a.name.as_str()).copied().unwrap_or(0),
                    connected: hub.get(&a.name).is_some(),
                    last_seen: hub
                        .last_seen(&a.name)
                        .map(|t| now_ms() - t.elapsed().as_millis() as i64),
                })
                .collect();
            Ok((agents, next))
        })
        .await?
    }

    /// Write: drains an agent (or undoes it): it finishes what it runs and
    /// takes no new work.
    pub async fn drain_agent(&self, who: &Identity, name: &str, draining: bool) -> OpResult<()> {
        self.write(Command::SetDraining {
            agent: name.to_string(),
            draining,
            by: super::access::acting(who),
        })
        .await?;
        tracing::info!(agent = %name, draining, "agent drain changed");
        Ok(())
    }

    /// Write: removes an agent; its certificate is refused from now on and
    /// its session here is closed.
    pub async fn remove_agent(&self, who: &Identity, name: &str) -> OpResult<()> {
        self.write(Command::RemoveAgent {
            agent: name.to_string(),
            by: super::access::acting(who),
            at: now_ms(),
        })
        .await?;
        tracing::info!(agent = %name, "agent removed; its certificate is refused from now on");
        self.ctx().agents.disconnect_all(name);
        Ok(())
    }

    /// Write (the agent session, on the leader): `name` connected. Returns
    /// the labels it is bound to (a registration never changes them).
    pub async fn register_agent(&self, name: &str, r: Registration) -> OpResult<Vec<String>> {
        self.write(Command::RegisterAgent {
            name: name.to_string(),
            labels: None,
            capacity: r.capacity.max(1),
            version: r.version,
            address: r.address,
            at: now_ms(),
        })
        .await?;
        self.local_read(|s| s.agents.get(name).map(|a| a.labels.clone()))
            .ok_or_else(|| no_agent(name))
    }

    /// Write: an admin changes the labels agent `name` is bound to — all of
    /// them (`set`), or by adding and removing some (`apply` checks the
    /// role again, and the labels).
    pub async fn set_agent_labels(
        &self,
        who: &Identity,
        name: &str,
        set: Option<Vec<String>>,
        (add, remove): (Vec<String>, Vec<String>),
    ) -> OpResult<()> {
        for (flag, given) in [
            ("--set", set.as_deref().unwrap_or_default()),
            ("--add", &add),
            ("--remove", &remove),
        ] {
            ferry_state::check_labels(given)
                .map_err(|e| OpError::Invalid(format!("{flag}: {e}")))?;
        }
        if set.is_none() && add.is_empty() && remove.is_empty() {
            return Err(OpError::Invalid(
                "say what to change: --set LABELS, or --add and/or --remove".into(),
            ));
        }
        self.write(Command::SetAgentLabels {
            agent: name.to_string(),
            set,
            add,
            remove,
            by: super::access::acting(who),
            at: now_ms(),
        })
        .await?;
        tracing::info!(agent = %name, by = %who.name, "agent labels changed");
        Ok(())
    }

    /// Write (the agent session): an attempt's result. `Ok((accepted,
    /// reason))` once committed; a stale attempt is refused by `apply`.
    pub async fn finish_attempt(
        &self,
        agent: &str,
        mut r: AttemptResult,
    ) -> OpResult<(bool, String)> {
        // Output variables are bounded before they reach the log.
        if let Err(problem) = ferry_pipeline::vars::check_outputs(&r.variables) {
            r.success = false;
            r.message = format!("the action's output variables were refused: {problem}");
            r.variables.clear();
        }
        // And hold none of the action's secrets (the agent masks them; an
        // older or misbehaving one may not have).
        if !r.variables.is_empty() {
            let secrets = self.local_attempt_secrets(r.epoch);
            mask_secrets(&mut r.variables, &secrets);
        }
        // What 0.1 members could not decode waits for the cluster version.
        let at_least_0_2 =
            self.local_read(|s| s.cluster_version()) >= ferry_state::version::Version::V0_2;
        let out = self
            .write(Command::FinishAttempt {
                epoch: r.epoch,
                agent: agent.to_string(),
                success: r.success,
                exit_code: r.exit_code,
                message: r.message,
                outputs: r.outputs,
                log: r.log,
                deployment: r.deployment,
                variables: r.variables,
                tests: r.tests.filter(|_| at_least_0_2),
                caches: if at_least_0_2 { r.caches } else { Vec::new() },
                at: now_ms(),
            })
            .await?;
        Ok(match out {
            Output::Attempt { accepted, reason } => (accepted, reason),
            _ => (true, String::new()),
        })
    }

    /// Local read (the agent session, on the leader): the opened values of
    /// the secrets attempt `epoch`'s action names (none when this member
    /// has no secrets key). Dropped, zeroed, by the caller.
    fn local_attempt_secrets(&self, epoch: u64) -> Vec<zeroize::Zeroizing<Vec<u8>>> {
        let Some(key) = self.ctx().secrets.as_ref() else {
            return Vec::new();
        };
        self.local_read(|s| {
            s.attempt_action(epoch)
                .into_iter()
                .flat_map(|(_, _, a)| a.secrets.values())
                .filter_map(|name| {
                    let r = s.secrets.get(name)?;
                    key.open(name, &r.nonce, &r.ciphertext).ok()
                })
                .map(zeroize::Zeroizing::new)
                .collect()
        })
    }

    /// Local read (the agent session, on the leader): whether attempt
    /// `epoch` is still `agent`'s current one (`apply` fences again).
    pub fn local_is_current(&self, agent: &str, epoch: u64) -> bool {
        self.local_read(|s| s.is_current(agent, epoch))
    }

    /// Local read (the agent session): of the attempts `agent` says it
    /// runs, those it should cancel, with why and whether a person stopped
    /// their execution (see `ClusterState::cancel_reason`).
    pub fn local_to_cancel(
        &self,
        agent: &str,
        epochs: impl IntoIterator<Item = u64>,
    ) -> Vec<(u64, String, bool)> {
        self.local_read(|s| {
            epochs
                .into_iter()
                .filter_map(|e| s.cancel_reason(agent, e).map(|(why, stop)| (e, why, stop)))
                .collect()
        })
    }

    /// Local read (the agent session): epochs of the attempts `agent` runs.
    pub fn local_running_on(&self, agent: &str) -> Vec<u64> {
        self.local_read(|s| s.running_on(agent).iter().map(|(e, _)| *e).collect())
    }

    /// Local read (the agent session): the agent is still in the cluster and
    /// the certificate it connected with is not revoked.
    pub fn local_still_admitted(&self, agent: &str, fingerprint: &str) -> bool {
        self.local_read(|s| s.agents.contains_key(agent) && !s.is_revoked(fingerprint))
    }

    /// Local read (the agent session): the revocation counter, and the
    /// revoked fingerprints unless the agent has them as of `sent`.
    pub fn local_revocations(&self, sent: Option<u64>) -> (u64, Option<Vec<String>>) {
        self.local_read(|s| {
            if sent == Some(s.revocations) {
                (s.revocations, None)
            } else {
                (s.revocations, Some(s.revoked.keys().cloned().collect()))
            }
        })
    }

    /// Leader loop (leases), local read then writes: every agent with
    /// running attempts not heard from within `lease` (counting from `since`)
    /// is declared lost; its attempts are re-queued.
    pub async fn expire_leases(&self, since: Instant, lease: std::time::Duration) {
        // One pass over the attempts, not one per agent.
        let busy: Vec<String> = self.local_read(|s| {
            s.running_counts()
                .into_keys()
                .filter(|a| s.agents.contains_key(*a))
                .map(String::from)
                .collect()
        });
        for agent in busy {
            let last = self
                .ctx()
                .agents
                .heard_at(&agent)
                .map_or(since, |t| t.max(since));
            if last.elapsed() < lease {
                continue;
            }
            tracing::warn!(%agent, lease = ?lease, "agent missed its lease; its attempts are lost and re-queued");
            if let Err(e) = self.agent_lost(&agent).await {
                tracing::warn!(%agent, error = %e, "could not record a lost agent");
            }
        }
    }

    /// Write: `agent` is lost; its running attempts are re-queued.
    pub async fn agent_lost(&self, agent: &str) -> OpResult<()> {
        self.write(Command::AgentLost {
            agent: agent.to_string(),
            at: now_ms(),
        })
        .await
        .map(drop)
    }
}

/// An agent that is not in the list after all.
pub fn no_agent(name: &str) -> OpError {
    OpError::NotFound(format!("agent `{name}`"))
}

/// Replaces every secret value in `vars` with `***`, as the engine masks
/// them (`ferry_pipeline::mask`: whole, without a trailing newline, and
/// each long line of a multi-line value).
fn mask_secrets(vars: &mut BTreeMap<String, String>, secrets: &[zeroize::Zeroizing<Vec<u8>>]) {
    let masker = Masker::new(secrets.iter().map(|s| s.to_vec()));
    for (name, value) in vars.iter_mut() {
        let masked = masker.mask_text(value);
        if masked != *value {
            tracing::warn!(variable = %name, "an output variable held a secret value: masked");
            *value = masked;
        }
    }
}

#[cfg(test)]
mod mask_tests {
    use super::*;

    #[test]
    fn secrets_in_output_variables_are_masked() {
        let mut vars = BTreeMap::from([
            (
                "A".to_string(),
                "token=hunter2 and hunter2-long".to_string(),
            ),
            ("B".to_string(), "plain".to_string()),
        ]);
        let secrets = vec![
            zeroize::Zeroizing::new(b"hunter2\n".to_vec()),
            zeroize::Zeroizing::new(b"hunter2-long".to_vec()),
        ];
        mask_secrets(&mut vars, &secrets);
        assert_eq!(vars["A"], "token=*** and ***");
        assert_eq!(vars["B"], "plain");
    }
}
