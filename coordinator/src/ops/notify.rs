//! Notifications and events: cluster-wide notification targets (`ferry
//! notify`), the outbox's status, the events `ferry events` streams, and the
//! leader notifier's reads and reports. Which events exist and which
//! deliveries they make is decided in `apply` (`state/events.rs`).

use ferry_certs::Identity;
use ferry_pipeline::notify::NotificationTarget;

use super::{OpError, OpResult, Ops};
use crate::views::now_ms;
use ferry_state::{Command, Delivery, DeliveryResult, Event};

/// Events answered per read (a stream reads again for more).
pub const EVENTS_PER_READ: usize = 500;

/// What `ferry notify status` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyStatus {
    pub targets: Vec<NotificationTarget>,
    /// Deliveries still being tried and those given up on, oldest first.
    pub deliveries: Vec<Delivery>,
}

impl Ops {
    /// Write: adds or replaces a cluster-wide notification target (admin).
    pub async fn set_notify_target(
        &self,
        who: &Identity,
        target: NotificationTarget,
    ) -> OpResult<()> {
        target.check().map_err(OpError::Invalid)?;
        let name = target.name.clone();
        self.write(Command::SetNotifyTarget {
            target,
            by: super::access::acting(who),
            at: now_ms(),
        })
        .await?;
        tracing::info!(target = %name, by = %who.name, "notification target set");
        Ok(())
    }

    /// Write: removes a cluster-wide notification target (admin).
    pub async fn remove_notify_target(&self, who: &Identity, name: &str) -> OpResult<()> {
        self.write(Command::RemoveNotifyTarget {
            name: name.to_string(),
            by: super::access::acting(who),
        })
        .await?;
        tracing::info!(target = %name, by = %who.name, "notification target removed");
        Ok(())
    }

    /// Linearizable: the cluster-wide targets and every delivery not yet
    /// delivered (waiting or given up).
    pub async fn notify_status(&self) -> OpResult<NotifyStatus> {
        self.read(|s| NotifyStatus {
            targets: s.notify_targets.values().cloned().collect(),
            deliveries: s.outbox.deliveries.values().cloned().collect(),
        })
        .await
    }

    /// Linearizable: events after id `after` (of `pipeline` if not empty),
    /// and whether some after it were already forgotten.
    pub async fn events_after(&self, after: u64, pipeline: &str) -> OpResult<(Vec<Event>, bool)> {
        self.read(|s| {
            if !pipeline.is_empty() && !s.pipelines.contains_key(pipeline) {
                return Err(OpError::NotFound(format!(
                    "pipeline `{pipeline}` not found"
                )));
            }
            Ok(s.events_after(after, pipeline, EVENTS_PER_READ))
        })
        .await?
    }

    /// Local read, for the follow-up reads of an event stream that began
    /// with [`Ops::events_after`].
    pub fn local_events_after(&self, after: u64, pipeline: &str) -> Vec<Event> {
        self.local_read(|s| s.events_after(after, pipeline, EVENTS_PER_READ).0)
    }

    /// Local read (the notifier, on the leader): deliveries due now.
    pub fn local_due_deliveries(&self, limit: usize) -> Vec<Delivery> {
        let now = now_ms();
        self.local_read(|s| s.due_deliveries(now, limit))
    }

    /// Local read (the notifier, on the leader): how many deliveries were
    /// ever queued — it changes when an applied command queues new ones.
    pub fn local_queued_deliveries(&self) -> u64 {
        self.local_read(|s| s.outbox.next_id)
    }

    /// Write (the notifier): the outcome of attempts.
    pub async fn notify_attempted(&self, results: Vec<DeliveryResult>) -> OpResult<()> {
        self.write(Command::NotifyAttempted {
            results,
            at: now_ms(),
        })
        .await
        .map(drop)
    }
}
