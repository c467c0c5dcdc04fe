//! `ferry cluster`: the coordinator cluster's status, membership changes and
//! leadership transfer.

use anyhow::Result;
use ferry_proto as pb;
use serde::Serialize;

use crate::args::{ClusterCommand, Format, GlobalArgs};
use crate::client;
use crate::output::{self, Table};
use crate::wire;

#[derive(Serialize)]
struct MemberJson<'a> {
    id: u64,
    address: &'a str,
    role: String,
    applied_index: u64,
    reachable: bool,
    match_index: u64,
    state_digest: &'a str,
    version: &'a str,
}

#[derive(Serialize)]
struct StatusJson<'a> {
    leader_id: u64,
    term: u64,
    commit_index: u64,
    answered_by: u64,
    cluster_version: &'a str,
    members: Vec<MemberJson<'a>>,
}

fn print_status(global: &GlobalArgs, s: &pb::ClusterStatusResponse) -> Result<()> {
    match global.output {
        Format::Json => output::print_json(&StatusJson {
            leader_id: s.leader_id,
            term: s.term,
            commit_index: s.commit_index,
            answered_by: s.answered_by,
            cluster_version: &s.cluster_version,
            members: s
                .members
                .iter()
                .map(|m| MemberJson {
                    id: m.id,
                    address: &m.address,
                    role: wire::member_role(m),
                    applied_index: m.applied_index,
                    reachable: m.reachable,
                    match_index: m.match_index,
                    state_digest: &m.state_digest,
                    version: &m.version,
                })
                .collect(),
        }),
        Format::Table => {
            let leader = if s.leader_id == 0 {
                "none".to_string()
            } else {
                s.leader_id.to_string()
            };
            let mut text = format!(
                "LEADER {leader}  TERM {}  COMMIT {}  CLUSTER VERSION {}  (answered by member {})\n",
                s.term,
                s.commit_index,
                output::or_dash(&s.cluster_version),
                s.answered_by
            );
            let mut table =
                Table::new(&["ID", "ADDRESS", "ROLE", "APPLIED", "REACHABLE", "VERSION"]);
            for m in &s.members {
                table.row([
                    m.id.to_string(),
                    m.address.clone(),
                    wire::member_role(m),
                    m.applied_index.to_string(),
                    if m.reachable { "yes" } else { "no" }.to_string(),
                    output::or_dash(&m.version).to_string(),
                ]);
            }
            text.push_str(&table.render());
            output::print(&text)
        }
    }
}

/// `ferry cluster health`: every address's answer; an error unless all serve.
async fn health(global: &GlobalArgs) -> Result<()> {
    let answers = client::health(global).await?;
    match global.output {
        crate::args::Format::Json => output::print_json(
            &answers
                .iter()
                .map(|(addr, a)| match a {
                    Ok(status) => serde_json::json!({"address": addr, "status": status}),
                    Err(e) => {
                        serde_json::json!({"address": addr, "status": "UNREACHABLE", "error": e})
                    }
                })
                .collect::<Vec<_>>(),
        )?,
        crate::args::Format::Table => {
            let mut table = output::Table::new(&["ADDRESS", "STATUS"]);
            for (addr, a) in &answers {
                table.row([
                    addr.clone(),
                    match a {
                        Ok(status) => status.clone(),
                        Err(e) => format!("UNREACHABLE ({e})"),
                    },
                ]);
            }
            output::print(&table.render())?;
        }
    }
    let down = answers
        .iter()
        .filter(|(_, a)| a.as_deref() != Ok("SERVING"))
        .count();
    if down > 0 {
        anyhow::bail!("{down} of {} coordinators are not serving", answers.len());
    }
    Ok(())
}

/// Most bytes a backup may have (the state is bounded far below this).
const MAX_BACKUP: usize = 4 * 1024 * 1024 * 1024;

/// `ferry cluster backup`: the file is checked whole (format, size,
/// checksum, the state's decoding) before it replaces `out`.
async fn backup(api: &mut client::Api, out: &std::path::Path, global: &GlobalArgs) -> Result<()> {
    use anyhow::{Context as _, bail};
    use std::io::Write as _;
    let mut stream = api.cluster.backup(pb::BackupRequest {}).await?.into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await? {
        if bytes.len() + chunk.data.len() > MAX_BACKUP {
            bail!("the backup is larger than {MAX_BACKUP} bytes; nothing was written");
        }
        bytes.extend_from_slice(&chunk.data);
    }
    let (header, _) = ferry_state::backup::decode(&bytes)
        .context("the backup received does not read back; nothing was written")?;
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing into {}", dir.display()))?;
    tmp.write_all(&bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(out)
        .with_context(|| format!("saving {}", out.display()))?;
    match global.output {
        Format::Json => output::print_json(&header),
        Format::Table => output::print(&format!(
            "wrote {} ({} bytes): cluster {}, index {}, term {}, version {}, sha256 {}\n",
            out.display(),
            bytes.len(),
            if header.cluster_id.is_empty() {
                "(no id)"
            } else {
                &header.cluster_id
            },
            header.index,
            header.term,
            header.version,
            header.sha256
        )),
    }
}

pub async fn run(global: &GlobalArgs, command: &ClusterCommand) -> Result<()> {
    let mut api = match command {
        ClusterCommand::Health => return health(global).await,
        _ => client::connect(global).await?,
    };
    let status = match command {
        ClusterCommand::Backup(a) => return backup(&mut api, &a.out, global).await,
        // (Health has returned above.)
        ClusterCommand::Status | ClusterCommand::Health => {
            api.cluster
                .cluster_status(pb::ClusterStatusRequest {})
                .await?
        }
        ClusterCommand::Add(a) => {
            let members = api
                .cluster
                .cluster_status(pb::ClusterStatusRequest {})
                .await?
                .into_inner()
                .members;
            let setup = super::new_member::setup(a.id, &a.address, &members)?;
            if a.print_command {
                print!("{setup}");
                return Ok(());
            }
            match api
                .cluster
                .add_member(pb::MemberRequest {
                    id: a.id,
                    address: a.address.clone(),
                })
                .await
            {
                Ok(status) => status,
                Err(e) if super::new_member::not_running(&e) => {
                    anyhow::bail!(
                        "{}\n\nNothing was changed. {setup}\nThen run this command again.",
                        e.message()
                    )
                }
                Err(e) => return Err(e.into()),
            }
        }
        ClusterCommand::Remove(a) => {
            api.cluster
                .remove_member(pb::MemberRequest {
                    id: a.id,
                    address: String::new(),
                })
                .await?
        }
        ClusterCommand::TransferLeader(a) => {
            api.cluster
                .transfer_leader(pb::MemberRequest {
                    id: a.to,
                    address: String::new(),
                })
                .await?
        }
    };
    print_status(global, &status.into_inner())
}
