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
//!
//! What a failed attempt records (and `ferry notify status` shows viewers)
//! never holds a secret's value — not the URL a `url_secret` names, nor a
//! part of it — and says the same whether the receiver's address was
//! refused (`--notify-allow-network`) or could not be connected to. The
//! reason goes to this member's log at debug level, and only for URLs that
//! are no secret. Slack messages escape what they interpolate
//! ([`slack_escape`]), so a branch name or commit message is never a link
//! or a mention.

use std::collections::HashSet;
use std::time::Duration;

use ferry_pipeline::notify::NotifyFormat;
use tokio::sync::mpsc;

use crate::ops::Ops;
use crate::outbound::client::{Sender, signature};
use crate::views::now_ms;
use ferry_state::{Delivery, DeliveryResult, Event};

/// Deliveries being sent at once.
const IN_FLIGHT: usize = 32;
/// Time limit of one request.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How often due deliveries (retries) are looked for; new ones are sent at once.
const TICK: Duration = Duration::from_millis(200);
/// Longest wait between two attempts.
const MAX_BACKOFF_MS: i64 = 5 * 60 * 1000;

pub async fn notifier(ops: Ops) {
    let policy = ops.ctx().notify_policy.clone();
    let sender = match Sender::native(policy.clone()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "no usable system root certificates: notifications reach http:// targets only");
            match Sender::with_roots(rustls::RootCertStore::empty(), policy) {
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
            url_from_secret(name, value)?
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

/// The URL in the secret `name` (its `value`), checked as a target URL.
/// The error names the secret and what is wrong, never the value or a
/// part of it: it is stored, shown to viewers and logged.
fn url_from_secret(name: &str, value: Vec<u8>) -> Result<String, String> {
    let not_url = || {
        format!(
            "the secret `{name}` is not a valid notification URL (an http:// or https:// \
             URL with a host, at most {} bytes)",
            ferry_pipeline::notify::MAX_NOTIFY_URL_LEN
        )
    };
    let url = String::from_utf8(value).map_err(|_| not_url())?;
    let url = url.trim().to_string();
    ferry_pipeline::notify::check_notify_url(&url).map_err(|_| not_url())?;
    Ok(url)
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
        .map_err(|e| {
            // The reason may name the host, which is part of the secret
            // when the URL is one.
            let detail = match d.target.url_secret {
                Some(_) => "withheld: the target's URL is a secret".to_string(),
                None => e.detail(),
            };
            tracing::debug!(delivery = d.id, target = %d.target.name, %detail, "notification attempt failed");
            e.to_string()
        })?;
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
        .map(|base| crate::links::execution_url(base, &event.pipeline, &event.execution));
    let value = match format {
        NotifyFormat::Json => {
            let mut v = event_json(event);
            v["console"] = link.into();
            v
        }
        NotifyFormat::Slack => {
            // Every interpolated value is escaped: the message carries
            // branch names, commit-derived outputs, reasons and comments.
            let mut text = format!("*{}* {}", event.kind.as_str(), slack_escape(&event.message));
            if let Some(cmd) = &event.command {
                // A backtick would end the code span early.
                text.push_str(&format!("\n`{}`", slack_escape(&cmd.replace('`', "'"))));
            }
            if let Some(url) = &event.url {
                text.push_str(&format!("\n{}", slack_link(url, None)));
            }
            if let Some(link) = &link {
                text.push_str(&format!(
                    "\n{}",
                    slack_link(link, Some("Open in the Ferry console"))
                ));
            }
            // No previews of the pages a message links to.
            serde_json::json!({ "text": text, "unfurl_links": false, "unfurl_media": false })
        }
    };
    serde_json::to_vec(&value).unwrap_or_default()
}

/// `text` as Slack's message text shows it literally: `&`, `<` and `>`
/// escaped as Slack asks (`&amp;`, `&lt;`, `&gt;`), so a value never opens
/// a link (`<https://...|label>`) or a mention (`<!channel>`, `<@U123>`).
pub fn slack_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// A Slack link to `url` (with `label`), when it is an http(s) URL without
/// spaces or control characters; otherwise `url` as escaped text. A `|`
/// in the URL is percent-encoded: it would end the address and start the
/// link's label.
fn slack_link(url: &str, label: Option<&str>) -> String {
    let linkable = (url.starts_with("https://") || url.starts_with("http://"))
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if !linkable {
        return slack_escape(url);
    }
    let target = slack_escape(&url.replace('|', "%7C"));
    match label {
        Some(label) => format!("<{target}|{}>", slack_escape(label)),
        None => format!("<{target}>"),
    }
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

    /// An approval waiting whose every interpolated value is hostile: the
    /// branch in the trigger, an output in the approval's message and url.
    fn hostile_event() -> Event {
        Event {
            id: 7,
            at: 0,
            kind: ferry_pipeline::notify::EventKind::ApprovalWaiting,
            pipeline: "shop".into(),
            execution: "ex-1".into(),
            revision: "abc".into(),
            action: Some("approve/release".into()),
            environment: None,
            by: None,
            message: "shop ex-1 started on <!channel> & <@U024BE7LH>: \
                      <https://evil.example/login|Open in the Ferry console> <!here|here>"
                .into(),
            command: Some("ferry approve shop `rm -rf` <!everyone>".into()),
            url: Some("https://evil.example/a?b=1&c=2|Click>me<!channel".into()),
        }
    }

    #[test]
    fn slack_messages_escape_every_interpolated_value() {
        let body = render(
            &hostile_event(),
            NotifyFormat::Slack,
            Some("https://ferry.example:7443"),
        );
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        let text = v["text"].as_str().expect("text");
        // Only the two links Ferry makes open with `<`: the approval's
        // url and the console's, each one `<...>` with no `<` inside.
        let opened: Vec<&str> = text.split('<').skip(1).collect();
        assert_eq!(opened.len(), 2, "{text}");
        assert!(
            opened[0].starts_with("https://evil.example/a?b=1&amp;c=2%7CClick&gt;me&lt;!channel>"),
            "{text}"
        );
        assert!(
            opened[1].starts_with(
                "https://ferry.example:7443/pipelines/shop/executions/ex-1|Open in the Ferry console>"
            ),
            "{text}"
        );
        for bad in [
            "<!channel>",
            "<!here",
            "<@U",
            "<!everyone>",
            "<https://evil.example/login",
        ] {
            assert!(!text.contains(bad), "{bad} in {text}");
        }
        assert!(
            text.contains("&lt;!channel&gt; &amp; &lt;@U024BE7LH&gt;"),
            "{text}"
        );
        assert!(
            text.contains("`ferry approve shop 'rm -rf' &lt;!everyone&gt;`"),
            "{text}"
        );
        assert_eq!(v["unfurl_links"], false);
        // The JSON format carries the values as they are.
        let json = render(&hostile_event(), NotifyFormat::Json, None);
        let v: serde_json::Value = serde_json::from_slice(&json).expect("json");
        assert_eq!(v["message"], hostile_event().message.as_str());
    }

    #[test]
    fn slack_links_only_http_urls() {
        assert_eq!(
            slack_link("https://x.example/a", None),
            "<https://x.example/a>"
        );
        assert_eq!(
            slack_link("javascript:alert(1)<>", None),
            "javascript:alert(1)&lt;&gt;"
        );
        assert_eq!(
            slack_link("https://x.example/a b", Some("l")),
            "https://x.example/a b"
        );
        assert_eq!(slack_escape("a&b<c>d"), "a&amp;b&lt;c&gt;d");
    }

    #[test]
    fn a_url_secret_that_is_no_url_is_named_never_shown() {
        for value in [
            &b"hunter2-not-a-url"[..],
            b"hunter2:opaque-path",
            b"ftp://hunter2.example/x",
            b"https://",
            b"https://hunter2 .example/",
            b"\xffhunter2",
        ] {
            let err = url_from_secret("chat-url", value.to_vec()).expect_err("not a URL");
            assert!(
                err.starts_with("the secret `chat-url` is not a valid notification URL"),
                "{err}"
            );
            assert!(!err.contains("hunter2"), "the value leaked: {err}");
        }
        assert_eq!(
            url_from_secret("chat-url", b" https://hooks.example/T0/B0/x \n".to_vec()),
            Ok("https://hooks.example/T0/B0/x".to_string())
        );
    }
}
