//! `ferry artifacts list` and `ferry artifacts get`: an execution's outputs and
//! logs, and downloading one through the coordinator with its digest checked.

use std::io::Write as _;

use anyhow::{Context, Result, bail};
use ferry_proto as pb;
use serde::Serialize;
use sha2::Digest as _;

use crate::args::{ArtifactsCommand, Format, GlobalArgs};
use crate::client;
use crate::output::{self, Table};

#[derive(Serialize)]
struct EntryJson<'a> {
    action: &'a str,
    name: &'a str,
    attempt: u32,
    digest: &'a str,
    size: u64,
    holders: &'a [String],
}

pub async fn run(global: &GlobalArgs, command: &ArtifactsCommand) -> Result<()> {
    let mut api = client::connect(global).await?;
    match command {
        ArtifactsCommand::List(a) => {
            let req = pb::ListArtifactsRequest {
                pipeline: a.name.clone(),
                execution_id: a.execution.clone(),
                // One page of everything (up to the coordinator's maximum), as before paging.
                ..Default::default()
            };
            let list = api
                .artifacts
                .list_artifacts(req)
                .await?
                .into_inner()
                .artifacts;
            match global.output {
                Format::Json => output::print_json(
                    &list
                        .iter()
                        .map(|e| EntryJson {
                            action: &e.action,
                            name: &e.name,
                            attempt: e.attempt,
                            digest: &e.digest,
                            size: e.size,
                            holders: &e.holders,
                        })
                        .collect::<Vec<_>>(),
                ),
                Format::Table => {
                    let mut t = Table::new(&["ACTION", "NAME", "SIZE", "DIGEST", "HOLDERS"]);
                    for e in &list {
                        t.row([
                            e.action.clone(),
                            e.name.clone(),
                            e.size.to_string(),
                            e.digest.clone(),
                            e.holders.join(","),
                        ]);
                    }
                    output::print(&t.render())
                }
            }
        }
        ArtifactsCommand::Get(a) => {
            let mut stream = api
                .artifacts
                .get_artifact(pb::GetArtifactRequest {
                    digest: a.digest.clone(),
                })
                .await?
                .into_inner();
            let dir = a
                .out
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let mut tmp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("writing into {}", dir.display()))?;
            let mut hasher = sha2::Sha256::new();
            let mut size = 0u64;
            while let Some(chunk) = stream.message().await? {
                hasher.update(&chunk.data);
                size += chunk.data.len() as u64;
                tmp.write_all(&chunk.data)?;
            }
            let got = format!("sha256:{}", hex::encode(hasher.finalize()));
            if got != a.digest {
                bail!(
                    "downloaded bytes do not match {}: got {got}; nothing was written",
                    a.digest
                );
            }
            tmp.persist(&a.out)
                .with_context(|| format!("saving {}", a.out.display()))?;
            output::print(&format!(
                "wrote {} ({size} bytes, {got})\n",
                a.out.display()
            ))
        }
    }
}
