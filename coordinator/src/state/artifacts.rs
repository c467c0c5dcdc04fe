//! Queries about artifacts and logs held by agents: which agents may be given
//! a copy. Replication follows need-to-know: a blob goes only to agents that
//! could be assigned work of the pipeline that produced it (and so would
//! fetch its artifacts anyway), never to every agent of the cluster.

use std::collections::{BTreeMap, BTreeSet};

use ferry_pipeline::ActionKind;

use super::ClusterState;

impl ClusterState {
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
