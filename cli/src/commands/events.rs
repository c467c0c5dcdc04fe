//! `ferry events [-f] [--pipeline P] [--after ID]`: what happened in the
//! cluster, one line per event (or one JSON document per line), resumable
//! from the last id printed.

use anyhow::Result;
use ferry_proto as pb;
use serde::Serialize;

use crate::args::{EventsArgs, Format, GlobalArgs};
use crate::client;
use crate::output;
use crate::wire;

/// An event as `-o json` prints it (the same fields notifications carry).
#[derive(Serialize)]
pub struct EventJson<'a> {
    pub id: u64,
    pub kind: String,
    pub at: String,
    pub pipeline: &'a str,
    pub execution: &'a str,
    pub revision: &'a str,
    pub action: &'a str,
    pub environment: &'a str,
    pub by: &'a str,
    pub message: &'a str,
    pub command: &'a str,
    pub url: &'a str,
}

impl<'a> From<&'a pb::Event> for EventJson<'a> {
    fn from(e: &'a pb::Event) -> Self {
        EventJson {
            id: e.id,
            kind: kind(e.kind),
            at: wire::time(e.at.as_ref()),
            pipeline: &e.pipeline,
            execution: &e.execution,
            revision: &e.revision,
            action: &e.action,
            environment: &e.environment,
            by: &e.by,
            message: &e.message,
            command: &e.command,
            url: &e.url,
        }
    }
}

/// An event's kind by its dotted name (`execution.failed`), as
/// notifications and event filters spell it; `Unknown(N)` for a kind this
/// version does not know.
pub fn kind(n: i32) -> String {
    pb::EventKind::try_from(n)
        .ok()
        .and_then(|k| ferry_pipeline::EventKind::try_from(k).ok())
        .map_or_else(|| format!("Unknown({n})"), |k| k.as_str().to_string())
}

/// One line for people: `ID TIME KIND MESSAGE`, and the approve command.
pub fn line(e: &pb::Event) -> String {
    let mut s = format!(
        "{:>6}  {}  {:<22} {}\n",
        e.id,
        wire::time(e.at.as_ref()),
        kind(e.kind),
        e.message
    );
    if !e.command.is_empty() {
        s.push_str(&format!("        approve with: {}\n", e.command));
    }
    if !e.url.is_empty() {
        s.push_str(&format!("        see: {}\n", e.url));
    }
    s
}

pub async fn run(global: &GlobalArgs, args: &EventsArgs) -> Result<()> {
    let mut api = client::connect(global).await?;
    let mut stream = api
        .notifications
        .watch_events(pb::WatchEventsRequest {
            pipeline: args.pipeline.clone().unwrap_or_default(),
            after: args.after,
            follow: args.follow,
        })
        .await?
        .into_inner();
    while let Some(event) = stream.message().await? {
        if event.gap {
            eprintln!(
                "note: events after {} were already dropped (the cluster keeps the last 2,000); continuing from {}",
                args.after, event.id
            );
        }
        match global.output {
            Format::Json => output::print_json(&EventJson::from(&event))?,
            Format::Table => output::print(&line(&event))?,
        }
    }
    Ok(())
}
