//! Leader work: expires approvals whose deadline passed. Deadlines live in
//! replicated state, so whichever member leads evaluates the same ones;
//! applying an expiry twice is a no-op.

use std::time::Duration;

use crate::service::SharedCtx;
use crate::state::Command;
use crate::views::now_ms;

/// Expires approvals whose deadline passed.
pub async fn timers(ctx: SharedCtx) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
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
