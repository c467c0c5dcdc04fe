//! `grpc.health.v1` for standard probes (grpc_health_probe, load
//! balancers, `ferry cluster health`). A member reports SERVING while it
//! knows a leader and its replicated state is bootstrapped, NOT_SERVING
//! otherwise (an election, cut off from the others, or a new cluster not yet
//! bootstrapped). The overall status ("") and each public service's follow
//! the same rule. The check needs no client certificate.

use std::time::Duration;

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::ops::Ops;

/// The services whose status is reported besides the overall one: every
/// public service, and the agents' session.
fn services() -> impl Iterator<Item = &'static str> {
    crate::authz::PUBLIC_SERVICES
        .into_iter()
        .chain(["ferry.internal.v1.AgentSession"])
}

/// Whether this member can serve now.
fn status(ops: &Ops) -> ServingStatus {
    let raft = ops.raft_status();
    if raft.leader_id != 0 && !raft.removed && ops.local_read(|s| s.bootstrapped) {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}

/// Keeps `reporter` current for as long as the member runs.
pub async fn report(ops: Ops, reporter: HealthReporter) {
    let mut raft = ops.status_watch();
    let mut applied = ops.applied();
    let mut said = None;
    loop {
        let now = status(&ops);
        if said != Some(now) {
            for name in std::iter::once("").chain(services()) {
                reporter.set_service_status(name, now).await;
            }
            tracing::debug!(status = ?now, "health");
            said = Some(now);
        }
        tokio::select! {
            r = raft.changed() => if r.is_err() { return },
            r = applied.changed() => if r.is_err() { return },
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
