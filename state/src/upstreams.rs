//! Pipelines that feed pipelines, in the replicated state: at apply, a
//! pipeline's upstreams must exist and form no cycle (and a pipeline that
//! names no repository builds its first upstream's); when an execution
//! succeeds, each pipeline it feeds starts, once every upstream of that
//! pipeline has a succeeded execution of the same revision (fan-in), with
//! the revision and the upstreams' outputs as `UPSTREAM.OUTPUT`. Everything
//! here is decided inside `apply`, so every member starts the same
//! executions under the same ids.

use std::collections::BTreeMap;

use ferry_pipeline::Pipeline;
use ferry_pipeline::condition::SourceRef;
use ferry_pipeline::execution::{ExecutionState, ExecutionStatus};

use super::apply::Rejection;
use super::{ClusterState, Execution};

impl ClusterState {
    /// Checks `spec`'s upstreams against the other pipelines and fills in
    /// the repository of its first upstream when it names none.
    pub(super) fn check_upstreams(&self, spec: &mut Pipeline) -> Result<(), Rejection> {
        if spec.source.upstreams.is_empty() {
            return Ok(());
        }
        for u in &spec.source.upstreams {
            if self
                .pipelines
                .get(&u.pipeline)
                .is_none_or(|p| p.latest().is_none())
            {
                return Err(Rejection::FailedPrecondition(format!(
                    "upstream pipeline `{}` does not exist: apply it first",
                    u.pipeline
                )));
            }
        }
        let mut edges: BTreeMap<String, Vec<String>> = self
            .pipelines
            .values()
            .filter_map(|p| {
                let latest = p.latest()?;
                let ups = latest.spec.source.upstreams.iter();
                Some((p.name.clone(), ups.map(|u| u.pipeline.clone()).collect()))
            })
            .collect();
        edges.insert(
            spec.name.clone(),
            spec.source
                .upstreams
                .iter()
                .map(|u| u.pipeline.clone())
                .collect(),
        );
        if let Some(cycle) = ferry_pipeline::upstream::cycle_through(&spec.name, &edges) {
            return Err(Rejection::FailedPrecondition(format!(
                "pipeline sources form a cycle: {cycle}"
            )));
        }
        if spec.source.git.is_empty()
            && let Some(first) = spec.source.upstreams.first()
            && let Some(up) = self.pipelines.get(&first.pipeline).and_then(|p| p.latest())
        {
            spec.source.git = up.spec.source.git.clone();
        }
        Ok(())
    }

    /// Each execution of `ids` that succeeded and has not fed its
    /// downstream pipelines yet starts those whose upstreams are all done
    /// for its revision.
    pub(super) fn feed_downstreams(&mut self, ids: &[String], at: i64) {
        for id in ids {
            let Some(exec) = self.executions.get(id) else {
                continue;
            };
            if exec.state.status != ExecutionStatus::Succeeded || exec.fed.is_some() {
                continue;
            }
            let (pipeline, revision) = (exec.pipeline.clone(), exec.revision.clone());
            let branch = branch_of(exec);
            let downstreams: Vec<String> = self
                .pipelines
                .values()
                .filter(|p| {
                    p.latest().is_some_and(|v| {
                        v.spec
                            .source
                            .upstreams
                            .iter()
                            .any(|u| u.pipeline == pipeline && u.takes(branch.as_deref()))
                    })
                })
                .map(|p| p.name.clone())
                .collect();
            // Executions of a pipeline that feeds none stay as they were
            // (and as members that know no upstreams keep them).
            if downstreams.is_empty() {
                continue;
            }
            let mut started = Vec::new();
            for downstream in downstreams {
                if let Some(new) = self.start_downstream(&downstream, id, &revision, at) {
                    started.push(new);
                }
            }
            if let Some(exec) = self.executions.get_mut(id) {
                exec.fed = Some(started);
            }
        }
    }

    /// Starts `downstream` from upstream execution `trigger` when each of
    /// its upstreams has a succeeded execution of `revision` (the newest
    /// one of each; `trigger` for its own pipeline). Its id is made from
    /// the trigger's, so every member makes the same.
    fn start_downstream(
        &mut self,
        downstream: &str,
        trigger: &str,
        revision: &str,
        at: i64,
    ) -> Option<String> {
        let spec = self.pipelines.get(downstream)?.latest()?.spec.clone();
        let mut upstream = Vec::new();
        let mut outputs = BTreeMap::new();
        for u in &spec.source.upstreams {
            let record = self.pipelines.get(&u.pipeline)?;
            let found = record.executions.iter().rev().find_map(|eid| {
                let e = self.executions.get(eid)?;
                (e.revision == revision
                    && e.state.status == ExecutionStatus::Succeeded
                    && u.takes(branch_of(e).as_deref()))
                .then_some(e)
            })?;
            upstream.push(format!("{}/{}", found.pipeline, found.id));
            for (name, art) in found.state.produced() {
                // Only its own outputs: an upstream's upstreams stay theirs.
                if !name.contains('.') {
                    outputs.insert(format!("{}.{name}", u.pipeline), art.clone());
                }
            }
        }
        let id = format!("{trigger}-{downstream}");
        if self.executions.contains_key(&id) {
            return None;
        }
        let mut state = ExecutionState::new(&spec);
        state.upstream_outputs = outputs;
        state.source = self
            .executions
            .get(trigger)
            .and_then(|e| e.state.source.clone());
        let version = self.pipelines.get(downstream)?.latest()?.version;
        self.open_execution(
            Execution {
                id: id.clone(),
                pipeline: downstream.to_string(),
                version,
                revision: revision.to_string(),
                trigger: format!("upstream {}", upstream.join(", ")),
                started_by: None,
                started_at: at,
                state,
                release_of: None,
                rollbacks: None,
                upstream,
                fed: None,
            },
            at,
        );
        Some(id)
    }
}

/// The branch an execution started from, if it did from one.
fn branch_of(exec: &Execution) -> Option<String> {
    match &exec.state.source {
        Some(SourceRef::Branch(b)) => Some(b.clone()),
        _ => None,
    }
}
