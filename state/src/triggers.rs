//! Triggers in the replicated state: what starts an execution at most once.
//! A git host's delivery id, a schedule slot and a polled branch head are
//! recorded by the very command that starts the execution ([`Once`]), so a
//! redelivery, a retried proposal or a leader failover between "seen" and
//! "started" can neither start it twice nor lose it. Schedules keep their
//! next fire time here; the leader computes it (`apply` has no clock and no
//! calendar) and carries it in the commands.

use serde::{Deserialize, Serialize};

use super::apply::{Applied, Output, Rejection};
use super::{ClusterState, PipelineRecord};

/// Webhook deliveries remembered per pipeline (the oldest are forgotten;
/// git hosts redeliver within hours, not after a thousand newer pushes).
pub const DELIVERIES_KEPT: usize = 1000;

/// What an execution was started by, once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Once {
    /// A git host's delivery id (unique per pipeline).
    Delivery(String),
    /// Schedule slot `slot` (unix ms) fires; `next` is the slot after it.
    Slot { slot: i64, next: Option<i64> },
    /// A branch head the poller saw, new since the last one it recorded.
    Head(String),
}

/// A webhook delivery that started an execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliverySeen {
    pub execution: String,
    pub at: i64,
}

/// A pipeline's armed schedule: the expression it was armed with and the
/// next time it fires (None: never again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleState {
    pub cron: String,
    pub timezone: String,
    pub next: Option<i64>,
}

impl PipelineRecord {
    /// The execution a delivery started, if it was seen.
    pub fn delivery(&self, id: &str) -> Option<&DeliverySeen> {
        self.deliveries.get(id)
    }

    /// Refuses what already happened: a delivery seen, a slot already fired
    /// (or one the schedule no longer has), a head already recorded.
    pub(super) fn check_once(&self, once: &Once) -> Result<(), Rejection> {
        match once {
            Once::Delivery(id) => match self.deliveries.get(id) {
                Some(seen) => Err(Rejection::AlreadyExists(format!(
                    "delivery {id} (it started execution {})",
                    seen.execution
                ))),
                None => Ok(()),
            },
            Once::Slot { slot, .. } => match &self.schedule {
                Some(s) if s.next == Some(*slot) => Ok(()),
                _ => Err(Rejection::FailedPrecondition(format!(
                    "schedule slot {slot} of pipeline `{}` already fired or is no longer due",
                    self.name
                ))),
            },
            Once::Head(head) => {
                if self.last_seen_revision.as_deref() == Some(head.as_str()) {
                    Err(Rejection::AlreadyExists(format!(
                        "branch head {head} of pipeline `{}`",
                        self.name
                    )))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Records `once` as having started `execution` (checked before).
    pub(super) fn record_once(&mut self, once: Once, execution: &str, at: i64) {
        match once {
            Once::Delivery(id) => {
                self.deliveries.insert(
                    id,
                    DeliverySeen {
                        execution: execution.to_string(),
                        at,
                    },
                );
                super::keep_latest(&mut self.deliveries, DELIVERIES_KEPT, |d| d.at);
            }
            Once::Slot { next, .. } => {
                if let Some(s) = self.schedule.as_mut() {
                    s.next = next;
                }
            }
            Once::Head(head) => {
                self.last_seen_revision = Some(head);
                self.last_polled_at = Some(at);
            }
        }
    }
}

impl ClusterState {
    /// The leader arms (or disarms) a pipeline's schedule.
    pub(super) fn arm_schedule(
        &mut self,
        pipeline: &str,
        schedule: Option<ScheduleState>,
    ) -> Applied {
        let Some(record) = self.pipelines.get_mut(pipeline) else {
            return Err(Rejection::NotFound(format!("pipeline `{pipeline}`")));
        };
        record.schedule = schedule;
        Ok(Output::None)
    }

    /// Armed schedules whose spec differs from the latest version's (or that
    /// are missing): (pipeline, the latest version's schedule).
    pub fn schedules_to_arm(&self) -> Vec<(String, Option<ferry_pipeline::schedule::Schedule>)> {
        self.pipelines
            .values()
            .filter_map(|p| {
                let wanted = p.latest().and_then(|v| v.spec.schedule.clone());
                let armed = p.schedule.as_ref().map(|s| (&s.cron, &s.timezone));
                let same = match (&wanted, armed) {
                    (Some(w), Some((cron, tz))) => &w.cron == cron && &w.timezone == tz,
                    (None, None) => true,
                    _ => false,
                };
                (!same).then(|| (p.name.clone(), wanted))
            })
            .collect()
    }

    /// Schedules due at `now`: (pipeline, the slot, its branch, its repository).
    pub fn due_schedules(&self, now: i64) -> Vec<DueSlot> {
        self.pipelines
            .values()
            .filter_map(|p| {
                let s = p.schedule.as_ref()?;
                let slot = s.next.filter(|n| *n <= now)?;
                let spec = &p.latest()?.spec;
                Some(DueSlot {
                    pipeline: p.name.clone(),
                    slot,
                    schedule: spec.schedule.clone()?,
                    url: spec.source.git.clone(),
                    branch: spec.source.branch.clone(),
                })
            })
            .collect()
    }
}

/// A schedule slot that is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueSlot {
    pub pipeline: String,
    pub slot: i64,
    pub schedule: ferry_pipeline::schedule::Schedule,
    pub url: String,
    pub branch: String,
}
