//! Leader work: pipeline schedules. Arms each pipeline's schedule from its
//! latest version (the next fire time goes into the replicated state) and
//! starts one execution per due slot, moving the slot on in the same
//! command — so a failover neither skips a slot nor fires it twice. A slot
//! missed while no leader was up fires once, late; the next one is then
//! the first after now.

use std::time::Duration;

use crate::ops::Ops;
use crate::views::now_ms;

/// How often due slots are looked for.
const TICK: Duration = Duration::from_millis(250);

pub async fn schedules(ops: Ops) {
    loop {
        tokio::time::sleep(TICK).await;
        let now = now_ms();
        ops.arm_schedules(now).await;
        ops.fire_schedules(now).await;
    }
}
