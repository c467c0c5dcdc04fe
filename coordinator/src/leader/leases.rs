//! Leader work: agent leases. An agent the leader has not heard from within
//! its lease loses its running attempts, which are re-queued.

use std::time::{Duration, Instant};

use crate::ops::Ops;

/// Declares agents lost when the leader has not heard from them within their
/// lease. A new leader first gives every agent a full lease from its election
/// to reconnect (as Nomad does after failover).
pub async fn leases(ops: Ops) {
    // What an earlier term heard says nothing about now: every agent gets a
    // full lease from this election on.
    ops.ctx().agents.reset_seen();
    let since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        ops.expire_leases(since, ops.ctx().agent_lease).await;
    }
}
