//! Leader work: pipeline schedules. Arms each pipeline's schedule from its
//! latest version (the next fire time goes into the replicated state) and
//! starts one execution per due slot, moving the slot on in the same
//! command — so a failover neither skips a slot nor fires it twice. A slot
//! missed while no leader was up fires once, late; the next one is then
//! the first after now.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::ops::Ops;
use crate::views::now_ms;

/// How often due slots are looked for.
const TICK: Duration = Duration::from_millis(250);
/// How long a pipeline whose scheduled run could not start rests before
/// the next try (its slot stays due meanwhile).
const REST: Duration = Duration::from_secs(10);

pub async fn schedules(ops: Ops) {
    let mut resting: HashMap<String, Instant> = HashMap::new();
    loop {
        tokio::time::sleep(TICK).await;
        let now = now_ms();
        ops.arm_schedules(now).await;
        resting.retain(|_, since| since.elapsed() < REST);
        let skip: HashSet<String> = resting.keys().cloned().collect();
        for failed in ops.fire_schedules(now, &skip).await {
            resting.insert(failed, Instant::now());
        }
    }
}
