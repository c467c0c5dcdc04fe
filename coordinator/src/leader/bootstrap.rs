//! Leader work, once: the first start of a cluster. The founding member that
//! leads first records the trust domain, the founding members and the first
//! admin; applying it twice is a no-op, so a failover mid-way is harmless.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::service::SharedCtx;
use crate::state::{Command, Role};
use crate::views::now_ms;

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
pub async fn bootstrap(ctx: &SharedCtx, founding: &Founding) {
    loop {
        if ctx.raft.read(|s| s.bootstrapped) {
            if let Some(a) = &founding.admin
                && ctx
                    .raft
                    .read(|s| !s.roles.contains(&(a.clone(), Role::Admin)))
            {
                tracing::warn!(admin = %a, "--bootstrap-admin ignored: the cluster was bootstrapped before");
            }
            return;
        }
        let cmd = Command::Bootstrap {
            trust_domain: ctx.ca.trust_domain().to_string(),
            admin: founding.admin.clone(),
            members: founding.members.clone(),
            at: now_ms(),
        };
        match ctx.raft.propose(cmd).await {
            Ok(_) => {
                tracing::info!(admin = ?founding.admin, "cluster bootstrapped");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "bootstrap not recorded yet; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
