//! Leader work: keeps `artifact_replicas` copies of every artifact and log
//! on distinct agents, asking only agents with a need to know.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::ops::Ops;

/// Asks connected agents to pull copies of artifacts and logs that have fewer
/// holders than `artifact_replicas`, so losing one agent loses no blob. Only
/// agents that could run the producing pipeline's actions are asked
/// (`ClusterState::replica_candidates`).
pub async fn replicator(ops: Ops) {
    let ctx = ops.ctx().clone();
    let mut asked: HashMap<(String, String), Instant> = HashMap::new();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        asked.retain(|_, t| t.elapsed() < Duration::from_secs(30));
        let connected = ctx.agents.connected();
        let pending: BTreeSet<(String, String)> = asked.keys().cloned().collect();
        for job in ops.local_replica_jobs(ctx.artifact_replicas, &connected, &pending) {
            let msg = ferry_proto::internal::CoordinatorMessage {
                kind: Some(ferry_proto::internal::coordinator_message::Kind::Replicate(
                    ferry_proto::internal::Replicate {
                        digest: job.digest.clone(),
                        size: job.size,
                        holders: job.holders,
                    },
                )),
            };
            ctx.agents.ask_replica(&job.target, &job.digest);
            if ctx.agents.send(&job.target, msg).await {
                tracing::debug!(digest = %job.digest, agent = %job.target, "replica requested");
                asked.insert((job.digest, job.target), Instant::now());
            }
        }
    }
}
