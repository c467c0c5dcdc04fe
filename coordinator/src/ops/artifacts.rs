//! Artifacts and stored logs: listing an execution's, where a blob is held,
//! the leader's replication and retention of blobs, and an agent's claim
//! that it holds a replica.

use std::collections::{BTreeSet, HashMap};

use super::executions::execution_of;
use super::{OpError, OpResult, Ops};
use crate::views::{holder_addresses, holders};
use ferry_state::Command;

/// One artifact (or stored log, named `log`) of an execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactInfo {
    pub name: String,
    /// `STAGE/ACTION` that produced it.
    pub action: String,
    pub digest: String,
    pub size: u64,
    /// Agents holding a copy.
    pub holders: Vec<String>,
    pub attempt: u32,
}

/// A replica the replicator asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaJob {
    pub digest: String,
    pub size: u64,
    /// Peer addresses of the agents holding it now.
    pub holders: Vec<String>,
    /// The agent asked to pull a copy.
    pub target: String,
}

/// Blobs retention dropped from the state, by agent holding them.
pub type Forgotten = HashMap<String, Vec<String>>;

impl Ops {
    /// Linearizable: one page of the artifacts and stored logs of an
    /// execution, in action order, and the next page's token (its key is the
    /// position: an execution's list only grows at the end).
    pub async fn list_artifacts(
        &self,
        pipeline: &str,
        execution: &str,
        page: &super::page::PageRequest,
    ) -> OpResult<(Vec<ArtifactInfo>, String)> {
        self.read(|s| {
            let exec = execution_of(s, pipeline, execution)?;
            let spec = s.pipeline_of(exec);
            let mut out = Vec::new();
            for (si, runs) in exec.state.actions.iter().enumerate() {
                for (ai, run) in runs.iter().enumerate() {
                    let path = spec
                        .and_then(|p| p.stages.get(si))
                        .and_then(|st| {
                            st.actions
                                .get(ai)
                                .map(|a| format!("{}/{}", st.name, a.name))
                        })
                        .unwrap_or_default();
                    let entry =
                        |name: &str, art: &ferry_pipeline::execution::ArtifactRef| ArtifactInfo {
                            name: name.to_string(),
                            action: path.clone(),
                            digest: art.digest.clone(),
                            size: art.size,
                            holders: holders(s, &art.digest),
                            attempt: run.attempt,
                        };
                    out.extend(run.outputs.iter().map(|(n, a)| entry(n, a)));
                    out.extend(run.log.iter().map(|a| entry("log", a)));
                }
            }
            let (entries, next) =
                page.apply(out.into_iter().enumerate(), |(i, _)| i.to_string())?;
            Ok((entries.into_iter().map(|(_, a)| a).collect(), next))
        })
        .await?
    }

    /// Linearizable: the peer addresses of the agents holding `digest`.
    pub async fn artifact_holders(&self, digest: &str) -> OpResult<Vec<String>> {
        self.read(|s| {
            s.artifacts
                .contains_key(digest)
                .then(|| holder_addresses(s, digest))
                .ok_or_else(|| OpError::NotFound(format!("no artifact {digest} is recorded")))
        })
        .await?
    }

    /// Leader loop (replicator), local read: blobs with fewer than `want`
    /// live holders (counting the `pending` requests) and, for each, one
    /// connected agent with a need to know that should pull a copy.
    pub fn local_replica_jobs(
        &self,
        want: usize,
        connected: &[String],
        pending: &BTreeSet<(String, String)>,
    ) -> Vec<ReplicaJob> {
        self.local_read(|s| {
            let short: BTreeSet<&str> = s
                .artifacts
                .iter()
                .filter(|(digest, rec)| {
                    let live = rec
                        .holders
                        .iter()
                        .filter(|h| s.agents.contains_key(*h))
                        .count();
                    let asked = pending.iter().filter(|(d, _)| d == *digest).count();
                    live > 0 && live + asked < want
                })
                .map(|(digest, _)| digest.as_str())
                .collect();
            // Need-to-know: only agents that could run the producing pipeline's work.
            let candidates = s.replica_candidates(&short);
            let mut jobs = Vec::new();
            for digest in short {
                let (Some(rec), Some(allowed)) = (s.artifacts.get(digest), candidates.get(digest))
                else {
                    continue;
                };
                if let Some(target) = connected
                    .iter()
                    .filter(|a| allowed.contains(*a) && !rec.holders.contains(*a))
                    .find(|a| !pending.contains(&(digest.to_string(), (*a).clone())))
                {
                    jobs.push(ReplicaJob {
                        digest: digest.to_string(),
                        size: rec.size,
                        holders: holder_addresses(s, digest),
                        target: target.clone(),
                    });
                }
            }
            jobs
        })
    }

    /// Leader loop (retention), local read then write: drops blobs no kept
    /// execution refers to; returns them by the agents that hold them.
    pub async fn forget_unreferenced(&self, keep: usize) -> OpResult<(usize, Forgotten)> {
        let (digests, holders) = self.local_read(|s| {
            let digests = s.unreferenced_artifacts(keep);
            let mut holders: Forgotten = HashMap::new();
            for d in &digests {
                for h in s
                    .artifacts
                    .get(d)
                    .map(|a| a.holders.clone())
                    .unwrap_or_default()
                {
                    holders.entry(h).or_default().push(d.clone());
                }
            }
            (digests, holders)
        });
        if digests.is_empty() {
            return Ok((0, holders));
        }
        let n = digests.len();
        self.write(Command::ForgetArtifacts { digests }).await?;
        Ok((n, holders))
    }

    /// Write (from the agent session): `agent` holds a replica of `digest`.
    pub async fn record_held(&self, agent: &str, digest: &str, size: u64) -> OpResult<()> {
        self.write(Command::ArtifactHeld {
            digest: digest.to_string(),
            size,
            agent: agent.to_string(),
        })
        .await
        .map(drop)
    }
}
