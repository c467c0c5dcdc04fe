//! Leader work: polls the sources of pipelines that set `poll_interval` and
//! starts an execution for each new branch head. The head is recorded in
//! replicated state before the execution starts, so a failover does not
//! start it twice.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::service::SharedCtx;
use crate::service::operator::OperatorService;
use crate::state::Command;
use crate::views::now_ms;

/// Polls pipelines that have a `poll_interval` and starts an execution for each new head.
pub async fn poller(ctx: SharedCtx) {
    let mut last_poll: HashMap<String, Instant> = HashMap::new();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
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
