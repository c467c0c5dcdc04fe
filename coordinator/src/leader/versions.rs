//! The cluster version (`ferry_state::version`): while this member leads,
//! it asks every member which version it runs and raises the replicated
//! cluster version to the lowest once all of them run it, so that commands
//! of that version may be proposed.

use std::time::Duration;

use crate::ops::Ops;

/// How often the members are asked.
const EVERY: Duration = Duration::from_secs(10);

pub async fn versions(ops: Ops) {
    loop {
        if let Err(e) = ops.raise_cluster_version().await {
            tracing::warn!(error = %e, "could not raise the cluster version");
        }
        tokio::time::sleep(EVERY).await;
    }
}
