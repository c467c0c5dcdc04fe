//! Leader work: agent leases. An agent the leader has not heard from within
//! its lease loses its running attempts, which are re-queued.

use std::time::{Duration, Instant};

use crate::service::SharedCtx;
use crate::state::Command;
use crate::views::now_ms;

/// Declares agents lost when the leader has not heard from them within their
/// lease. A new leader first gives every agent a full lease from its election
/// to reconnect (as Nomad does after failover).
pub async fn leases(ctx: SharedCtx) {
    // What an earlier term heard says nothing about now: every agent gets a
    // full lease from this election on.
    ctx.agents.reset_seen();
    let since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
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
