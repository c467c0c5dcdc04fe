//! Leader work: keeps `artifact_replicas` copies of every artifact and log
//! on distinct agents, asking only agents with a need to know.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::service::SharedCtx;

/// Asks connected agents to pull copies of artifacts and logs that have fewer
/// holders than `artifact_replicas`, so losing one agent loses no blob. Only
/// agents that could run the producing pipeline's actions are asked
/// (`ClusterState::replica_candidates`).
pub async fn replicator(ctx: SharedCtx) {
    let mut asked: HashMap<(String, String), Instant> = HashMap::new();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        asked.retain(|_, t| t.elapsed() < Duration::from_secs(30));
        let connected = ctx.agents.connected();
        let want = ctx.artifact_replicas;
        let jobs: Vec<(String, u64, Vec<String>, String)> = ctx.raft.read(|s| {
            let short: BTreeSet<&str> = s
                .artifacts
                .iter()
                .filter(|(digest, rec)| {
                    let live = rec
                        .holders
                        .iter()
                        .filter(|h| s.agents.contains_key(*h))
                        .count();
                    let pending = asked.keys().filter(|(d, _)| d == *digest).count();
                    live > 0 && live + pending < want
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
                let addrs = crate::views::holder_addresses(s, digest);
                if let Some(target) = connected
                    .iter()
                    .filter(|a| allowed.contains(*a) && !rec.holders.contains(*a))
                    .find(|a| !asked.contains_key(&(digest.to_string(), (*a).clone())))
                {
                    jobs.push((digest.to_string(), rec.size, addrs, target.clone()));
                }
            }
            jobs
        });
        for (digest, size, holders, target) in jobs {
            let msg = ferry_proto::CoordinatorMessage {
                kind: Some(ferry_proto::coordinator_message::Kind::Replicate(
                    ferry_proto::Replicate {
                        digest: digest.clone(),
                        size,
                        holders,
                    },
                )),
            };
            ctx.agents.ask_replica(&target, &digest);
            if ctx.agents.send(&target, msg).await {
                tracing::debug!(%digest, agent = %target, "replica requested");
                asked.insert((digest, target), Instant::now());
            }
        }
    }
}
