//! Leader work: retention. Executions past `--execution-retention` are
//! forgotten, and blobs no kept execution refers to are dropped from the
//! state and deleted from the agents that hold them.

use std::collections::HashMap;
use std::time::Duration;

use crate::service::SharedCtx;
use crate::state::Command;

/// Retention: blobs no kept execution refers to are dropped from the state
/// and their holders told to delete them.
pub async fn retention(ctx: SharedCtx) {
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
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
