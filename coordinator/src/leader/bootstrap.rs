//! Leader work, once: the first start of a cluster. The founding member that
//! leads first records the trust domain, the founding members and the first
//! admin; applying it twice is a no-op, so a failover mid-way is harmless.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::ops::Ops;

/// What a founding member bootstraps the cluster with.
#[derive(Debug, Clone)]
pub struct Founding {
    /// Operator bound to the admin role (`--bootstrap-admin`).
    pub admin: Option<String>,
    /// The founding members and their gRPC addresses.
    pub members: BTreeMap<u64, String>,
}

/// Proposes the bootstrap until it is in the state (retrying while this
/// member leads; the supervisor cancels it when it stops).
pub async fn bootstrap(ops: &Ops, founding: &Founding) {
    loop {
        match ops
            .bootstrap(founding.admin.clone(), founding.members.clone())
            .await
        {
            Ok(false) => return,
            Ok(true) => {
                tracing::info!(admin = ?founding.admin, "cluster bootstrapped");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "bootstrap not recorded yet; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
