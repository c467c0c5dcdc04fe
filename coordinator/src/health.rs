//! `grpc.health.v1` for standard probes (grpc_health_probe, load
//! balancers, `ferry cluster health`). A member reports SERVING while it
//! knows a leader and its replicated state is bootstrapped, NOT_SERVING
//! otherwise (an election, cut off from the others, or a new cluster not yet
//! bootstrapped). The overall status ("") and each public service's follow
//! the same rule. The check needs no client certificate.

use std::time::Duration;

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::service::SharedCtx;

/// The services whose status is reported besides the overall one: every
/// public service, and the agents' session.
fn services() -> impl Iterator<Item = &'static str> {
    crate::authz::PUBLIC_SERVICES
        .into_iter()
        .chain(["ferry.internal.v1.AgentSession"])
}

/// Whether this member can serve now.
fn status(ctx: &SharedCtx) -> ServingStatus {
    let raft = ctx.raft.status();
    if raft.leader_id != 0 && !raft.removed && ctx.raft.read(|s| s.bootstrapped) {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}

/// Keeps `reporter` current for as long as the member runs.
pub async fn report(ctx: SharedCtx, reporter: HealthReporter) {
    let mut raft = ctx.raft.status_watch();
    let mut applied = ctx.raft.applied();
    let mut said = None;
    loop {
        let now = status(&ctx);
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
