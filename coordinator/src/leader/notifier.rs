//! Leader work: delivers the notification outbox. Due deliveries are sent
//! each in its own task with a time limit, at most [`IN_FLIGHT`] at once, so
//! a receiver that hangs or answers slowly holds one task, never this loop;
//! outcomes are proposed in batches. A delivery leaves the replicated
//! outbox only once it is reported delivered, so a leader that dies
//! mid-delivery leaves it to the next one, which sends it again with the
//! same event id (at least once). Failures are tried again with
//! exponential backoff, up to `--notify-attempts` attempts in all.
//!
//! Each request is a POST of the event as JSON (or a Slack message) with
//! `X-Ferry-Event` (its kind), `X-Ferry-Event-Id`, `X-Ferry-Delivery` and,
//! when the target names a secret, `X-Ferry-Signature-256: sha256=<hex>`,
//! the HMAC-SHA256 of the body under that secret.

use std::collections::HashSet;
use std::time::Duration;

use ferry_pipeline::notify::NotifyFormat;
use tokio::sync::mpsc;

use crate::http::client::{Sender, signature};
use crate::ops::Ops;
use crate::state::{Delivery, DeliveryResult, Event};
use crate::views::now_ms;

/// Deliveries being sent at once.
const IN_FLIGHT: usize = 32;
/// Time limit of one request.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How often due deliveries (retries) are looked for; new ones are sent at once.
const TICK: Duration = Duration::from_millis(200);
/// Longest wait between two attempts.
const MAX_BACKOFF_MS: i64 = 5 * 60 * 1000;

pub async fn notifier(ops: Ops) {
    let sender = match Sender::native() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "no usable system root certificates: notifications reach http:// targets only");
            match Sender::with_roots(rustls::RootCertStore::empty()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot build the notification client; notifications wait");
                    std::future::pending::<()>().await;
                    return;
                }
            }
        }
    };
    let max_attempts = ops.ctx().notify_attempts.max(1);
    let (tx, mut rx) = mpsc::channel::<DeliveryResult>(IN_FLIGHT * 2);
    let mut in_flight: HashSet<u64> = HashSet::new();
    // New deliveries wake the loop at once (an applied command that queued
    // some); retries wait for the tick.
    let mut applied = ops.applied();
    let mut queued = 0;
    // An interval, not a fresh sleep per pass: a busy log (every applied
    // command wakes the loop) must not keep postponing retries.
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut results = Vec::new();
        tokio::select! {
            _ = tick.tick() => {}
            Some(r) = rx.recv() => results.push(r),
            Ok(()) = applied.changed() => {
                let now_queued = ops.local_queued_deliveries();
                if now_queued == queued {
                    continue;
                }
                queued = now_queued;
            }
        }
        while let Ok(r) = rx.try_recv() {
            results.push(r);
        }
        if !results.is_empty() {
            let ids: Vec<u64> = results.iter().map(|r| r.id).collect();
            if let Err(e) = ops.notify_attempted(results).await {
                // Not recorded: they stay due and are sent again.
                tracing::warn!(error = %e, "could not record notification attempts");
            }
            for id in ids {
                in_flight.remove(&id);
            }
        }
        let room = IN_FLIGHT.saturating_sub(in_flight.len());
        if room == 0 {
            continue;
        }
        let due: Vec<Delivery> = ops
            .local_due_deliveries(IN_FLIGHT * 2)
            .into_iter()
            .filter(|d| !in_flight.contains(&d.id))
            .take(room)
            .collect();
        for d in due {
            in_flight.insert(d.id);
            let keys = target_keys(&ops, &d);
            let (sender, tx) = (sender.clone(), tx.clone());
            let console = ops.ctx().console_url.clone();
            tokio::spawn(async move {
                let error = match keys {
                    Ok((url, secret)) => {
                        send(&sender, &d, &url, secret.as_deref(), console.as_deref())
                            .await
                            .err()
                    }
                    Err(e) => Some(e),
                };
                if let Some(e) = &error {
                    tracing::info!(delivery = d.id, event = d.event.id, target = %d.target.name, error = %e, "notification not delivered");
                }
                let retry_at =
                    (d.attempts + 1 < max_attempts).then(|| now_ms() + backoff_ms(d.attempts));
                let _ = tx
                    .send(DeliveryResult {
                        id: d.id,
                        error,
                        retry_at,
                    })
                    .await;
            });
        }
    }
}

/// Wait before attempt `attempts + 2`: 1 s, 2 s, 4 s, ... up to 5 min.
fn backoff_ms(attempts: u32) -> i64 {
    (1000_i64 << attempts.min(20)).min(MAX_BACKOFF_MS)
}

/// The URL a delivery goes to and the key that signs it, opened from the
/// secrets the target names.
fn target_keys(ops: &Ops, d: &Delivery) -> Result<(String, Option<Vec<u8>>), String> {
    let url = match &d.target.url_secret {
        None => d.target.url.clone(),
        Some(name) => {
            let value = ops
                .local_secret_value(name)
                .map_err(|e| format!("cannot read the URL: {e}"))?;
            let url = String::from_utf8(value)
                .map_err(|_| format!("the URL in secret `{name}` is not text"))?;
            let url = url.trim().to_string();
            ferry_pipeline::notify::check_notify_url(&url)
                .map_err(|e| format!("secret `{name}`: {e}"))?;
            url
        }
    };
    let secret = match d.target.secret.as_deref() {
        None => None,
        Some(name) => Some(
            ops.local_secret_value(name)
                .map_err(|e| format!("cannot sign: {e}"))?,
        ),
    };
    Ok((url, secret))
}

/// One attempt: Ok when the receiver answered 2xx.
async fn send(
    sender: &Sender,
    d: &Delivery,
    url: &str,
    secret: Option<&[u8]>,
    console: Option<&str>,
) -> Result<(), String> {
    let body = render(&d.event, d.target.format, console);
    let mut headers = vec![
        ("x-ferry-event", d.event.kind.as_str().to_string()),
        ("x-ferry-event-id", d.event.id.to_string()),
        ("x-ferry-delivery", d.id.to_string()),
    ];
    if let Some(secret) = secret {
        headers.push(("x-ferry-signature-256", signature(secret, &body)));
    }
    let status = sender
        .post_json(url, body, &headers, SEND_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("the receiver answered HTTP {status}"))
    }
}

/// The request body for `format`. With the console's address (`console`),
/// it links to the event's execution there: where an approver decides.
pub fn render(event: &Event, format: NotifyFormat, console: Option<&str>) -> Vec<u8> {
    let link = console
        .filter(|_| !event.execution.is_empty())
        .map(|base| crate::http::console::execution_url(base, &event.pipeline, &event.execution));
    let value = match format {
        NotifyFormat::Json => {
            let mut v = event_json(event);
            v["console"] = link.into();
            v
        }
        NotifyFormat::Slack => {
            let mut text = format!("*{}* {}", event.kind.as_str(), event.message);
            if let Some(cmd) = &event.command {
                text.push_str(&format!("\n`{cmd}`"));
            }
            if let Some(url) = &event.url {
                text.push_str(&format!("\n<{url}>"));
            }
            if let Some(link) = &link {
                text.push_str(&format!("\n<{link}|Open in the Ferry console>"));
            }
            serde_json::json!({ "text": text })
        }
    };
    serde_json::to_vec(&value).unwrap_or_default()
}

/// An event as JSON: what notifications carry and `ferry events -o json` prints.
pub fn event_json(event: &Event) -> serde_json::Value {
    serde_json::json!({
        "id": event.id,
        "kind": event.kind.as_str(),
        "at": crate::views::rfc3339(event.at),
        "pipeline": event.pipeline,
        "execution": event.execution,
        "revision": event.revision,
        "action": event.action,
        "environment": event.environment,
        "by": event.by,
        "message": event.message,
        "command": event.command,
        "url": event.url,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(backoff_ms(0), 1000);
        assert_eq!(backoff_ms(3), 8000);
        assert_eq!(backoff_ms(30), MAX_BACKOFF_MS);
    }
}
