//! The leadership supervisor (after Nomad's `leader.go`). One task watches
//! this member's Raft status. When the member becomes leader it first
//! bootstraps a new cluster (founding members only) and starts every
//! leader-only loop — scheduling, source polling, schedules, notification
//! delivery, approval timers, agent leases, replication, retention — under
//! one cancellation token; when it
//! stops leading (stepped down, a new term, removed) it cancels them all and
//! waits until every one has ended before it may start them again.
//!
//! No loop checks `is_leader` itself, and each starts afresh in every term:
//! what it remembers (replicas asked for, last polls, agents heard from)
//! belongs to one term.
//!
//! Architecture invariant: leader-only work runs only while this member
//! leads, one set at a time, started and stopped here and nowhere else.

pub mod bootstrap;
pub mod leases;
pub mod notifier;
pub mod poller;
pub mod replicator;
pub mod retention;
pub mod schedules;
pub mod timers;
pub mod versions;

use futures::future::BoxFuture;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::ops::Ops;

/// One leader-only loop: runs until cancelled.
type LeaderWork = fn(Ops) -> BoxFuture<'static, ()>;

/// Every leader-only loop, by name.
const WORK: [(&str, LeaderWork); 9] = [
    ("scheduler", |ops| Box::pin(crate::scheduler::run(ops))),
    ("source poller", |ops| Box::pin(poller::poller(ops))),
    ("schedules", |ops| Box::pin(schedules::schedules(ops))),
    ("notifier", |ops| Box::pin(notifier::notifier(ops))),
    ("approval timers", |ops| Box::pin(timers::timers(ops))),
    ("agent leases", |ops| Box::pin(leases::leases(ops))),
    ("replicator", |ops| Box::pin(replicator::replicator(ops))),
    ("retention", |ops| Box::pin(retention::retention(ops))),
    ("cluster version", |ops| Box::pin(versions::versions(ops))),
];

/// Runs leader work whenever this member leads, until it is removed from
/// the cluster or its Raft node stops. `founding`: this member may bootstrap
/// a new cluster.
pub async fn supervise(ops: Ops, founding: Option<bootstrap::Founding>) {
    let mut status = ops.status_watch();
    loop {
        let term = match status.wait_for(|s| s.removed || s.is_leader).await {
            Ok(s) if !s.removed => s.term,
            _ => return,
        };
        let stop = CancellationToken::new();
        let mut work = JoinSet::new();
        let founding = founding.clone();
        let first = ops.clone();
        let loops = stop.clone();
        // Bootstrapping a new cluster (founding members only) runs beside
        // the loops, which find nothing to do in a state not bootstrapped.
        work.spawn(async move {
            let start = async {
                if let Some(f) = &founding {
                    bootstrap::bootstrap(&first, f).await;
                }
            };
            tokio::select! {
                () = loops.cancelled() => {}
                () = start => {}
            }
        });
        for (name, run) in WORK {
            let (ops, stop) = (ops.clone(), stop.clone());
            work.spawn(async move {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = run(ops) => tracing::error!(work = name, "leader work ended on its own"),
                }
            });
        }
        tracing::info!(term, "leading: leader work started");
        let ended = status
            .wait_for(|s| s.removed || !s.is_leader || s.term != term)
            .await
            .is_err();
        stop.cancel();
        while work.join_next().await.is_some() {}
        // Agents send their live lines to the new leader now: whoever
        // follows one here is told to follow it there.
        let open = ops.ctx().logs.forget_open();
        tracing::info!(
            term,
            open_logs = open,
            "no longer leading: leader work stopped"
        );
        if ended {
            return;
        }
    }
}
