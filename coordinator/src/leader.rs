//! Leader-only background work besides scheduling: the source poller (start
//! an execution when a branch head moves) and timers (approval deadlines).
//! Deadlines live in replicated state, so whichever member leads evaluates
//! the same ones; applying an expiry twice is a no-op.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::service::SharedCtx;
use crate::service::operator::OperatorService;
use crate::state::Command;
use crate::views::now_ms;

/// Expires approvals whose deadline passed.
pub async fn timers(ctx: SharedCtx) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if !ctx.raft.status().is_leader {
            continue;
        }
        let now = now_ms();
        for (execution, stage, action) in ctx.raft.read(|s| s.expired_approvals(now)) {
            tracing::info!(%execution, stage, action, "approval timed out");
            if let Err(e) = ctx
                .raft
                .propose(Command::ExpireApproval {
                    execution,
                    stage,
                    action,
                    at: now,
                })
                .await
            {
                tracing::warn!(error = %e, "could not record an approval timeout");
            }
        }
    }
}

/// Polls pipelines that have a `poll_interval` and starts an execution for each new head.
pub async fn poller(ctx: SharedCtx) {
    let mut last_poll: HashMap<String, Instant> = HashMap::new();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if !ctx.raft.status().is_leader {
            last_poll.clear();
            continue;
        }
        let due: Vec<(String, String, String, Option<String>)> = ctx.raft.read(|s| {
            s.pipelines
                .values()
                .filter_map(|p| {
                    let spec = &p.latest()?.spec;
                    let every = Duration::from_millis(spec.source.poll_interval_ms?);
                    let due = last_poll.get(&p.name).is_none_or(|t| t.elapsed() >= every);
                    due.then(|| {
                        (
                            p.name.clone(),
                            spec.source.git.clone(),
                            spec.source.branch.clone(),
                            p.last_seen_revision.clone(),
                        )
                    })
                })
                .collect()
        });
        for (name, url, branch, seen) in due {
            last_poll.insert(name.clone(), Instant::now());
            let head = match ctx.git.branch_head(&url, &branch).await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(pipeline = %name, error = %e, "source poll failed");
                    continue;
                }
            };
            if seen.as_deref() == Some(head.as_str()) {
                continue;
            }
            // Record the head first so a failover does not start it twice.
            let seen_cmd = Command::SourceSeen {
                pipeline: name.clone(),
                revision: head.clone(),
                at: now_ms(),
            };
            if let Err(e) = ctx.raft.propose(seen_cmd).await {
                tracing::warn!(pipeline = %name, error = %e, "could not record the new source revision");
                continue;
            }
            match OperatorService::start(
                &ctx,
                &name,
                head.clone(),
                format!("new commit on {branch}"),
                None,
            )
            .await
            {
                Ok(id) => {
                    tracing::info!(pipeline = %name, execution = %id, revision = %head, "execution started by poller")
                }
                Err(e) => {
                    tracing::warn!(pipeline = %name, error = %e.message(), "could not start an execution")
                }
            }
        }
    }
}

/// Declares agents lost when the leader has not heard from them within their
/// lease. A new leader first gives every agent a full lease from its election
/// to reconnect (as Nomad does after failover).
pub async fn leases(ctx: SharedCtx) {
    let mut leading_since: Option<Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if !ctx.raft.status().is_leader {
            if leading_since.take().is_some() {
                ctx.agents.reset_seen();
            }
            continue;
        }
        let since = *leading_since.get_or_insert_with(|| {
            ctx.agents.reset_seen();
            Instant::now()
        });
        let lease = ctx.agent_lease;
        // One pass over the attempts, not one per agent.
        let busy: Vec<String> = ctx.raft.read(|s| {
            s.running_counts()
                .into_keys()
                .filter(|a| s.agents.contains_key(*a))
                .map(String::from)
                .collect()
        });
        for agent in busy {
            let last = ctx.agents.heard_at(&agent).map_or(since, |t| t.max(since));
            if last.elapsed() < lease {
                continue;
            }
            tracing::warn!(%agent, lease = ?lease, "agent missed its lease; its attempts are lost and re-queued");
            if let Err(e) = ctx
                .raft
                .propose(Command::AgentLost {
                    agent: agent.clone(),
                    at: now_ms(),
                })
                .await
            {
                tracing::warn!(%agent, error = %e, "could not record a lost agent");
            }
        }
    }
}

/// Asks connected agents to pull copies of artifacts and logs that have fewer
/// holders than `artifact_replicas`, so losing one agent loses no blob. Only
/// agents that could run the producing pipeline's actions are asked
/// (`ClusterState::replica_candidates`).
pub async fn replicator(ctx: SharedCtx) {
    let mut asked: HashMap<(String, String), Instant> = HashMap::new();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if !ctx.raft.status().is_leader {
            asked.clear();
            continue;
        }
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

/// Retention: blobs no kept execution refers to are dropped from the state
/// and their holders told to delete them.
pub async fn retention(ctx: SharedCtx) {
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        if !ctx.raft.status().is_leader {
            continue;
        }
        let old = ctx
            .raft
            .read(|s| s.prunable_executions(ctx.execution_retention));
        if !old.is_empty() {
            let n = old.len();
            match ctx
                .raft
                .propose(Command::PruneExecutions { ids: old })
                .await
            {
                Ok(_) => tracing::info!(executions = n, "retention forgot old executions"),
                Err(e) => tracing::warn!(error = %e, "execution retention not recorded"),
            }
        }
        let (digests, holders) = ctx.raft.read(|s| {
            let digests = s.unreferenced_artifacts(ctx.artifact_retention);
            let mut holders: HashMap<String, Vec<String>> = HashMap::new();
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
            continue;
        }
        if let Err(e) = ctx
            .raft
            .propose(Command::ForgetArtifacts {
                digests: digests.clone(),
            })
            .await
        {
            tracing::warn!(error = %e, "retention not recorded");
            continue;
        }
        tracing::info!(
            blobs = digests.len(),
            "retention dropped unreferenced artifacts and logs"
        );
        for (agent, digests) in holders {
            let msg = ferry_proto::CoordinatorMessage {
                kind: Some(ferry_proto::coordinator_message::Kind::Forget(
                    ferry_proto::Forget { digests },
                )),
            };
            // An agent that is away keeps its copies until a later sweep of its own store.
            let _ = ctx.agents.send(&agent, msg).await;
        }
    }
}
