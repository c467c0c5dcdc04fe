//! Leader work: retention. Executions past `--execution-retention` are
//! forgotten, and blobs no kept execution refers to are dropped from the
//! state and deleted from the agents that hold them. Cache blobs whose
//! entries `ferry cache rm` removed are deleted from their holders too:
//! each is told again every round until it says it dropped them.

use std::time::Duration;

use crate::ops::Ops;

/// Retention: blobs no kept execution refers to are dropped from the state
/// and their holders told to delete them.
pub async fn retention(ops: Ops) {
    let ctx = ops.ctx().clone();
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        match ops.prune_executions(ctx.execution_retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(executions = n, "retention forgot old executions"),
            Err(e) => tracing::warn!(error = %e, "execution retention not recorded"),
        }
        forget_caches(&ops).await;
        let holders = match ops.forget_unreferenced(ctx.artifact_retention).await {
            Ok((0, _)) => continue,
            Ok((n, holders)) => {
                tracing::info!(
                    blobs = n,
                    "retention dropped unreferenced artifacts and logs"
                );
                holders
            }
            Err(e) => {
                tracing::warn!(error = %e, "retention not recorded");
                continue;
            }
        };
        for (agent, digests) in holders {
            let msg = ferry_proto::internal::CoordinatorMessage {
                kind: Some(ferry_proto::internal::coordinator_message::Kind::Forget(
                    ferry_proto::internal::Forget { digests },
                )),
            };
            // An agent that is away keeps its copies until a later sweep of its own store.
            let _ = ctx.agents.send(&agent, msg).await;
        }
    }
}

/// Tells each connected agent the cache blobs it is still to delete.
async fn forget_caches(ops: &Ops) {
    for (agent, digests) in ops.local_cache_forget() {
        let msg = ferry_proto::internal::CoordinatorMessage {
            kind: Some(
                ferry_proto::internal::coordinator_message::Kind::ForgetCaches(
                    ferry_proto::internal::ForgetCaches {
                        digests: digests.into_iter().collect(),
                    },
                ),
            ),
        };
        // An agent that is away is told once it is back.
        let _ = ops.ctx().agents.send(&agent, msg).await;
    }
}
