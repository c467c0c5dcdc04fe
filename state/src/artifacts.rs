//! Artifacts and logs held by agents, in the replicated state: replica
//! claims, retention forgetting blobs, and the queries behind both — which
//! blobs nothing keeps, and which agents may be given a copy. Replication
//! follows need-to-know: a blob goes only to agents that could be assigned
//! work of the pipeline that produced it (and so would fetch its artifacts
//! anyway), never to every agent of the cluster.

use std::collections::{BTreeMap, BTreeSet};

use ferry_pipeline::ActionKind;

use super::ClusterState;
use super::apply::{Applied, Output, Rejection};

impl ClusterState {
    /// `agent` now holds a verified copy of blob `digest`: a replica of
    /// something the cluster knows, of the size it knows.
    pub(super) fn artifact_held(&mut self, digest: &str, size: u64, agent: String) -> Applied {
        if !self.agents.contains_key(&agent) {
            return Err(Rejection::NotFound(format!("agent `{agent}`")));
        }
        let Some(rec) = self.artifacts.get_mut(digest) else {
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

    /// Retention dropped these blobs.
    pub(super) fn forget_artifacts(&mut self, digests: Vec<String>) -> Applied {
        for d in digests {
            self.artifacts.remove(&d);
        }
        Ok(Output::None)
    }

    /// Blobs that retention may drop: referenced by no execution that is still
    /// running or among the newest `keep` of its pipeline (as an output, a
    /// log, or an upstream's output it started with).
    pub fn unreferenced_artifacts(&self, keep: usize) -> Vec<String> {
        let mut live: BTreeSet<&str> = self.deployed_artifacts().into_iter().collect();
        for p in self.pipelines.values() {
            let newest = p.executions.iter().rev().take(keep);
            for id in newest.chain(p.executions.iter().filter(|id| self.active.contains(*id))) {
                let Some(e) = self.executions.get(id) else {
                    continue;
                };
                for run in e.state.actions.iter().flatten() {
                    live.extend(run.outputs.values().map(|a| a.digest.as_str()));
                    live.extend(run.log.iter().map(|a| a.digest.as_str()));
                }
                // What an upstream gave it stays while it is kept.
                live.extend(e.state.upstream_outputs.values().map(|a| a.digest.as_str()));
            }
        }
        self.artifacts
            .keys()
            .filter(|d| !live.contains(d.as_str()))
            .cloned()
            .collect()
    }

    /// For each of `digests` that an execution in the state produced (an
    /// output or a log), the agents that may hold a copy: those whose labels
    /// cover the `runs_on` of some action an agent runs in that execution's
    /// pipeline version. A digest no execution names gets no candidates.
    pub fn replica_candidates(
        &self,
        digests: &BTreeSet<&str>,
    ) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        if digests.is_empty() {
            return out;
        }
        for exec in self.executions.values() {
            let produced: Vec<&str> = exec
                .state
                .actions
                .iter()
                .flatten()
                .flat_map(|run| {
                    run.outputs
                        .values()
                        .map(|a| a.digest.as_str())
                        .chain(run.log.iter().map(|a| a.digest.as_str()))
                })
                .filter(|d| digests.contains(d))
                .collect();
            if produced.is_empty() {
                continue;
            }
            let Some(pipeline) = self.pipeline_of(exec) else {
                continue;
            };
            let needs: Vec<&Vec<String>> = pipeline
                .stages
                .iter()
                .flat_map(|s| &s.actions)
                .filter(|a| a.kind != ActionKind::Approval)
                .map(|a| &a.runs_on)
                .collect();
            let eligible: BTreeSet<String> = self
                .agents
                .values()
                .filter(|agent| {
                    needs
                        .iter()
                        .any(|labels| labels.iter().all(|l| agent.labels.contains(l)))
                })
                .map(|agent| agent.name.clone())
                .collect();
            for digest in produced {
                out.entry(digest.to_string())
                    .or_default()
                    .extend(eligible.iter().cloned());
            }
        }
        out
    }
}
