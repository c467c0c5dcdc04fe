//! gRPC adapter: cluster-wide notification targets, the outbox's status and
//! the event stream (`ferry notify`, `ferry events`).

use std::time::Duration;

use ferry_pipeline::notify::{NotificationTarget, NotifyFormat};
use ferry_proto as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::api::Stream_;
use super::caller;
use crate::ops::Ops;
use crate::ops::notify::NotifyStatus;
use crate::views;
use ferry_state::{Delivery, Event, TargetScope};

fn target_view(t: NotificationTarget) -> pb::NotificationTarget {
    pb::NotificationTarget {
        name: t.name,
        url: t.url,
        url_secret: t.url_secret.unwrap_or_default(),
        secret: t.secret.unwrap_or_default(),
        format: t.format.as_str().to_string(),
        events: t.events,
    }
}

/// A target from a request; `check` (in ops and again in `apply`) validates it.
fn target_of(t: pb::NotificationTarget) -> Result<NotificationTarget, Status> {
    let format = match t.format.as_str() {
        "" => NotifyFormat::default(),
        other => NotifyFormat::parse(other).ok_or_else(|| {
            Status::invalid_argument(format!("unknown format `{other}`: json or slack"))
        })?,
    };
    Ok(NotificationTarget {
        name: t.name,
        url: t.url,
        url_secret: Some(t.url_secret).filter(|s| !s.is_empty()),
        secret: Some(t.secret).filter(|s| !s.is_empty()),
        format,
        events: t.events,
    })
}

/// An event on the wire.
pub fn event_view(e: Event) -> pb::Event {
    pb::Event {
        id: e.id,
        kind: pb::EventKind::from(e.kind).into(),
        at: views::timestamp(Some(e.at)),
        pipeline: e.pipeline,
        execution: e.execution,
        revision: e.revision,
        action: e.action.unwrap_or_default(),
        environment: e.environment.unwrap_or_default(),
        by: e.by.unwrap_or_default(),
        message: e.message,
        command: e.command.unwrap_or_default(),
        url: e.url.unwrap_or_default(),
        gap: false,
    }
}

fn delivery_view(d: Delivery) -> pb::DeliveryView {
    pb::DeliveryView {
        id: d.id,
        target: d.target.name.clone(),
        scope: match d.scope {
            TargetScope::Pipeline => "pipeline",
            TargetScope::Cluster => "cluster",
        }
        .to_string(),
        attempts: d.attempts,
        next_attempt_at: views::timestamp(d.gave_up_at.is_none().then_some(d.next_at)),
        last_error: d.last_error.unwrap_or_default(),
        gave_up_at: views::timestamp(d.gave_up_at),
        event: Some(event_view(d.event)),
    }
}

fn status_view(s: NotifyStatus) -> pb::NotifyStatusResponse {
    pb::NotifyStatusResponse {
        targets: s.targets.into_iter().map(target_view).collect(),
        deliveries: s.deliveries.into_iter().map(delivery_view).collect(),
    }
}

pub async fn set_target(
    ops: &Ops,
    req: Request<pb::NotificationTarget>,
) -> Result<Response<pb::NotifyStatusResponse>, Status> {
    let who = caller(&req)?;
    let target = target_of(req.into_inner())?;
    ops.set_notify_target(&who, target).await?;
    Ok(Response::new(status_view(ops.notify_status().await?)))
}

pub async fn remove_target(
    ops: &Ops,
    req: Request<pb::RemoveTargetRequest>,
) -> Result<Response<pb::NotifyStatusResponse>, Status> {
    let who = caller(&req)?;
    ops.remove_notify_target(&who, &req.into_inner().name)
        .await?;
    Ok(Response::new(status_view(ops.notify_status().await?)))
}

pub async fn notify_status(
    ops: &Ops,
    _req: Request<pb::NotifyStatusRequest>,
) -> Result<Response<pb::NotifyStatusResponse>, Status> {
    Ok(Response::new(status_view(ops.notify_status().await?)))
}

/// Events after `after`, then (following) each new one as this member
/// applies it.
pub async fn watch_events(
    ops: &Ops,
    req: Request<pb::WatchEventsRequest>,
) -> Result<Response<Stream_<pb::Event>>, Status> {
    let req = req.into_inner();
    let (first, gap) = ops.events_after(req.after, &req.pipeline).await?;
    let ops = ops.clone();
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut applied = ops.applied();
        let mut last = req.after;
        let mut batch = first;
        let mut gap = gap;
        loop {
            let more = batch.len() >= crate::ops::notify::EVENTS_PER_READ;
            for e in batch {
                last = e.id;
                let mut view = event_view(e);
                view.gap = std::mem::take(&mut gap);
                if tx.send(Ok(view)).await.is_err() {
                    return;
                }
            }
            if !more && !req.follow {
                return;
            }
            if !more {
                tokio::select! {
                    changed = applied.changed() => if changed.is_err() { return },
                    _ = tokio::time::sleep(Duration::from_secs(15)) => {}
                    _ = tx.closed() => return,
                }
            }
            batch = ops.local_events_after(last, &req.pipeline);
        }
    });
    Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
}
