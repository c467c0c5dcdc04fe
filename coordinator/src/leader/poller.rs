//! Leader work: polls the sources of pipelines that set `poll_interval` and
//! starts an execution for each new branch head the source's triggers take.
//! The head is recorded by the command that starts the execution
//! (`Once::Head`), so a failover neither starts it twice nor loses it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::ops::Ops;

/// Polls pipelines that have a `poll_interval` and starts an execution for each new head.
pub async fn poller(ops: Ops) {
    let ctx = ops.ctx().clone();
    let mut last_poll: HashMap<String, Instant> = HashMap::new();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let due = ops.local_polled_sources().into_iter().filter(|p| {
            last_poll
                .get(&p.pipeline)
                .is_none_or(|t| t.elapsed() >= p.every)
        });
        for p in due.collect::<Vec<_>>() {
            let (name, url, branch, seen) = (p.pipeline, p.url, p.branch, p.seen);
            last_poll.insert(name.clone(), Instant::now());
            let head = ctx.git.branch_head(&url, &branch).await;
            ctx.metrics.observe_poll(head.is_ok());
            let head = match head {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(pipeline = %name, error = %e, "source poll failed");
                    continue;
                }
            };
            if seen.as_deref() == Some(head.as_str()) {
                continue;
            }
            match ops
                .polled_head(&name, (&url, &branch), seen.as_deref(), &head)
                .await
            {
                Ok(Some(id)) => {
                    tracing::info!(pipeline = %name, execution = %id, revision = %head, "execution started by poller")
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(pipeline = %name, error = %e, "could not start an execution")
                }
            }
        }
    }
}
