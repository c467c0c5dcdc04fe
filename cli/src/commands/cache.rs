//! `ferry cache list` and `ferry cache rm`: a pipeline's build cache
//! entries (`cache:` in its actions) with the agents holding them, and
//! removing some, which their holders then delete.

use anyhow::Result;
use ferry_proto as pb;
use serde::Serialize;

use crate::args::{CacheCommand, CacheListArgs, CacheRmArgs, Format, GlobalArgs};
use crate::client;
use crate::output::{self, Table};
use crate::wire;

#[derive(Serialize)]
struct EntryJson<'a> {
    scope: &'a str,
    key: &'a str,
    size: u64,
    digest: &'a str,
    holders: &'a [String],
    created_at: String,
    execution_id: &'a str,
}

pub async fn run(global: &GlobalArgs, command: &CacheCommand) -> Result<()> {
    match command {
        CacheCommand::List(a) => list(global, a).await,
        CacheCommand::Rm(a) => rm(global, a).await,
    }
}

async fn list(global: &GlobalArgs, a: &CacheListArgs) -> Result<()> {
    let mut api = client::connect(global).await?;
    let caches = api
        .artifacts
        .list_caches(pb::ListCachesRequest {
            pipeline: a.name.clone(),
        })
        .await?
        .into_inner()
        .caches;
    match global.output {
        Format::Json => output::print_json(
            &caches
                .iter()
                .map(|c| EntryJson {
                    scope: &c.scope,
                    key: &c.key,
                    size: c.size,
                    digest: &c.digest,
                    holders: &c.holders,
                    created_at: wire::time(c.created_at.as_ref()),
                    execution_id: &c.execution_id,
                })
                .collect::<Vec<_>>(),
        ),
        Format::Table => {
            let mut t = Table::new(&["SCOPE", "KEY", "SIZE", "SAVED", "EXECUTION", "HOLDERS"]);
            for c in &caches {
                t.row([
                    c.scope.clone(),
                    c.key.clone(),
                    c.size.to_string(),
                    wire::time(c.created_at.as_ref()),
                    c.execution_id.clone(),
                    c.holders.join(","),
                ]);
            }
            output::print(&t.render())
        }
    }
}

async fn rm(global: &GlobalArgs, a: &CacheRmArgs) -> Result<()> {
    let mut api = client::connect(global).await?;
    let r = api
        .artifacts
        .remove_caches(pb::RemoveCachesRequest {
            pipeline: a.name.clone(),
            scope: a.scope.clone().unwrap_or_default(),
            key_prefix: a.key_prefix.clone().unwrap_or_default(),
        })
        .await?
        .into_inner();
    match global.output {
        Format::Json => output::print_json(&serde_json::json!({
            "removed": r.removed,
            "bytes": r.bytes,
        })),
        Format::Table => output::print(&format!(
            "removed {} cache entries ({} bytes); their agents delete them\n",
            r.removed, r.bytes
        )),
    }
}
