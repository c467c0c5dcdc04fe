//! Leader work: expires approvals whose deadline passed. Deadlines live in
//! replicated state, so whichever member leads evaluates the same ones;
//! applying an expiry twice is a no-op.

use std::time::Duration;

use crate::ops::Ops;

/// Expires approvals whose deadline passed.
pub async fn timers(ops: Ops) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        ops.expire_approvals().await;
    }
}
