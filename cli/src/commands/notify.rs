//! `ferry notify set/rm/status`: cluster-wide notification targets (every
//! pipeline's events go to them, beside each pipeline's own
//! `notifications:`), and the deliveries still tried or given up on.

use anyhow::Result;
use ferry_proto as pb;
use serde::Serialize;

use crate::args::{Format, GlobalArgs, NotifyCommand, NotifyFormatArg};
use crate::client;
use crate::output::{self, Table};
use crate::wire;

#[derive(Serialize)]
struct TargetJson<'a> {
    name: &'a str,
    url: &'a str,
    url_secret: &'a str,
    secret: &'a str,
    format: &'a str,
    events: &'a [String],
}

#[derive(Serialize)]
struct DeliveryJson<'a> {
    id: u64,
    target: &'a str,
    scope: &'a str,
    attempts: u32,
    next_attempt_at: String,
    last_error: &'a str,
    gave_up_at: String,
    event: Option<super::events::EventJson<'a>>,
}

#[derive(Serialize)]
struct StatusJson<'a> {
    targets: Vec<TargetJson<'a>>,
    deliveries: Vec<DeliveryJson<'a>>,
}

fn print_status(global: &GlobalArgs, s: &pb::NotifyStatusResponse) -> Result<()> {
    match global.output {
        Format::Json => output::print_json(&StatusJson {
            targets: s
                .targets
                .iter()
                .map(|t| TargetJson {
                    name: &t.name,
                    url: &t.url,
                    url_secret: &t.url_secret,
                    secret: &t.secret,
                    format: &t.format,
                    events: &t.events,
                })
                .collect(),
            deliveries: s
                .deliveries
                .iter()
                .map(|d| DeliveryJson {
                    id: d.id,
                    target: &d.target,
                    scope: &d.scope,
                    attempts: d.attempts,
                    next_attempt_at: wire::time(d.next_attempt_at.as_ref()),
                    last_error: &d.last_error,
                    gave_up_at: wire::time(d.gave_up_at.as_ref()),
                    event: d.event.as_ref().map(super::events::EventJson::from),
                })
                .collect(),
        }),
        Format::Table => {
            let mut t = Table::new(&["TARGET", "URL", "FORMAT", "SIGNED", "EVENTS"]);
            for x in &s.targets {
                t.row([
                    x.name.clone(),
                    if x.url_secret.is_empty() {
                        x.url.clone()
                    } else {
                        format!("(secret {})", x.url_secret)
                    },
                    x.format.clone(),
                    if x.secret.is_empty() {
                        "no".to_string()
                    } else {
                        format!("with {}", x.secret)
                    },
                    if x.events.is_empty() {
                        "all".to_string()
                    } else {
                        x.events.join(",")
                    },
                ]);
            }
            let mut out = if s.targets.is_empty() {
                "no cluster-wide notification targets\n".to_string()
            } else {
                t.render()
            };
            if s.deliveries.is_empty() {
                out.push_str("\nevery notification was delivered\n");
            } else {
                let mut d = Table::new(&[
                    "DELIVERY",
                    "EVENT",
                    "KIND",
                    "TARGET",
                    "ATTEMPTS",
                    "STATE",
                    "LAST-ERROR",
                ]);
                for x in &s.deliveries {
                    let state = if x.gave_up_at.is_some() {
                        format!("gave up {}", wire::time(x.gave_up_at.as_ref()))
                    } else {
                        format!("next {}", wire::time(x.next_attempt_at.as_ref()))
                    };
                    let event = x.event.as_ref();
                    d.row([
                        x.id.to_string(),
                        event.map(|e| e.id.to_string()).unwrap_or_default(),
                        event
                            .map(|e| super::events::kind(e.kind))
                            .unwrap_or_default(),
                        format!("{} ({})", x.target, x.scope),
                        x.attempts.to_string(),
                        state,
                        output::or_dash(&x.last_error).to_string(),
                    ]);
                }
                out.push('\n');
                out.push_str(&d.render());
            }
            output::print(&out)
        }
    }
}

pub async fn run(global: &GlobalArgs, command: &NotifyCommand) -> Result<()> {
    let mut api = client::connect(global).await?;
    let status = match command {
        NotifyCommand::Set(a) => api
            .notifications
            .set_target(pb::NotificationTarget {
                name: a.name.clone(),
                url: a.url.clone().unwrap_or_default(),
                url_secret: a.url_secret.clone().unwrap_or_default(),
                secret: a.secret.clone().unwrap_or_default(),
                format: match a.format {
                    NotifyFormatArg::Json => "json",
                    NotifyFormatArg::Slack => "slack",
                }
                .to_string(),
                events: a.events.clone(),
            })
            .await?
            .into_inner(),
        NotifyCommand::Rm(a) => api
            .notifications
            .remove_target(pb::RemoveTargetRequest {
                name: a.name.clone(),
            })
            .await?
            .into_inner(),
        NotifyCommand::Status => api
            .notifications
            .notify_status(pb::NotifyStatusRequest {})
            .await?
            .into_inner(),
    };
    print_status(global, &status)
}
