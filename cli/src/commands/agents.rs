//! `ferry agents`: enrolled build agents and their live state (`list`),
//! drain, removal, and an admin's change of their labels (`label`). The
//! list flags agents that still hold a copy of the cluster's secrets key
//! (enrolled before wrapping keys): they get no secrets until re-enrolled.

use anyhow::Result;
use ferry_proto as pb;
use serde::Serialize;

use crate::args::{Format, GlobalArgs, LabelArgs};
use crate::client;
use crate::output::{self, Table};
use crate::wire;

#[derive(Serialize)]
struct AgentJson<'a> {
    name: &'a str,
    labels: &'a [String],
    capacity: u32,
    running: u32,
    state: String,
    connected: bool,
    last_seen: String,
    address: &'a str,
    version: &'a str,
    draining: bool,
    cert_expires_at: String,
    /// Enrolled before wrapping keys: holds the cluster's secrets key and
    /// must be re-enrolled.
    holds_cluster_key: bool,
}

pub fn agents_table(agents: &[pb::AgentView]) -> Table {
    let mut table = Table::new(&[
        "NAME",
        "LABELS",
        "CAPACITY",
        "RUNNING",
        "STATE",
        "LAST-SEEN",
        "ADDRESS",
        "VERSION",
        "CERT-EXPIRES",
        "NOTE",
    ]);
    for a in agents {
        table.row([
            a.name.clone(),
            a.labels.join(","),
            a.capacity.to_string(),
            a.running.to_string(),
            wire::agent_state(a.state),
            wire::time(a.last_seen.as_ref()),
            a.address.clone(),
            crate::output::or_dash(&a.version).to_string(),
            wire::time(a.cert_expires_at.as_ref()),
            if a.holds_cluster_key {
                "HOLDS-CLUSTER-KEY: re-enroll".to_string()
            } else {
                String::new()
            },
        ]);
    }
    table
}

/// The line under the table when some agents hold the cluster's key.
fn legacy_note(agents: &[pb::AgentView]) -> Option<String> {
    let legacy: Vec<&str> = agents
        .iter()
        .filter(|a| a.holds_cluster_key)
        .map(|a| a.name.as_str())
        .collect();
    (!legacy.is_empty()).then(|| {
        format!(
            "{} enrolled before per-agent wrapping keys and hold(s) a copy of the cluster's \
             secrets key: they get no secrets. Re-enroll each: `ferry agents remove NAME`, wipe \
             its state dir, start it with a new join token (SECURITY.md, Secrets).",
            legacy.join(", ")
        )
    })
}

pub async fn list(global: &GlobalArgs) -> Result<()> {
    let mut api = client::connect(global).await?;
    let mut agents = api
        .agents
        .list_agents(pb::ListAgentsRequest::default())
        .await?
        .into_inner()
        .agents;
    agents.sort_by(|a, b| a.name.cmp(&b.name));
    match global.output {
        Format::Table => {
            if let Some(note) = legacy_note(&agents) {
                eprintln!("{note}");
            }
            output::print(&agents_table(&agents).render())
        }
        Format::Json => output::print_json(
            &agents
                .iter()
                .map(|a| AgentJson {
                    name: &a.name,
                    labels: &a.labels,
                    capacity: a.capacity,
                    running: a.running,
                    state: wire::agent_state(a.state),
                    connected: a.connected,
                    last_seen: wire::time(a.last_seen.as_ref()),
                    address: &a.address,
                    version: &a.version,
                    draining: a.draining,
                    cert_expires_at: wire::time(a.cert_expires_at.as_ref()),
                    holds_cluster_key: a.holds_cluster_key,
                })
                .collect::<Vec<_>>(),
        ),
    }
}

/// `ferry agents drain NAME [--undo]`.
pub async fn drain(global: &GlobalArgs, name: &str, undo: bool) -> Result<()> {
    let mut api = client::connect(global).await?;
    let a = api
        .agents
        .drain_agent(pb::AgentRequest {
            name: name.to_string(),
            undo,
        })
        .await?
        .into_inner();
    let verb = if undo {
        "back in service"
    } else {
        "draining: it finishes what it runs and takes no new work"
    };
    output::print(&format!(
        "agent {} {verb} ({} running)\n",
        a.name, a.running
    ))
}

/// `ferry agents label NAME --set a,b | --add a --remove b` (admin).
pub async fn label(global: &GlobalArgs, args: &LabelArgs) -> Result<()> {
    let mut api = client::connect(global).await?;
    // `--set ""` clears the labels.
    let set: Option<Vec<String>> = args
        .set
        .as_ref()
        .map(|s| s.iter().filter(|l| !l.is_empty()).cloned().collect());
    let a = api
        .agents
        .set_agent_labels(pb::SetAgentLabelsRequest {
            name: args.name.clone(),
            replace: set.is_some(),
            set: set.unwrap_or_default(),
            add: args.add.clone(),
            remove: args.remove.clone(),
        })
        .await?
        .into_inner();
    match global.output {
        Format::Table => output::print(&format!(
            "agent {} labels: {}\n",
            a.name,
            if a.labels.is_empty() {
                "(none)".to_string()
            } else {
                a.labels.join(",")
            }
        )),
        Format::Json => output::print_json(&serde_json::json!({
            "name": a.name,
            "labels": a.labels,
        })),
    }
}

/// `ferry agents remove NAME`.
pub async fn remove(global: &GlobalArgs, name: &str) -> Result<()> {
    let mut api = client::connect(global).await?;
    api.agents
        .remove_agent(pb::AgentRequest {
            name: name.to_string(),
            undo: false,
        })
        .await?;
    output::print(&format!(
        "agent {name} removed; its certificate is refused from now on\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_joins_labels() {
        let table = agents_table(&[pb::AgentView {
            name: "a1".into(),
            labels: vec!["docker".into(), "linux".into()],
            capacity: 2,
            running: 1,
            last_seen: wire::at("2024-01-01T00:00:00.000Z"),
            state: pb::AgentState::Connected.into(),
            version: "0.1.0".into(),
            address: "127.0.0.1:7500".into(),
            connected: true,
            draining: false,
            cert_expires_at: wire::at("2024-03-01T00:00:00.000Z"),
            holds_cluster_key: false,
        }]);
        assert_eq!(
            table.render(),
            "NAME  LABELS        CAPACITY  RUNNING  STATE      LAST-SEEN                 ADDRESS         VERSION  CERT-EXPIRES              NOTE\n\
             a1    docker,linux  2         1        Connected  2024-01-01T00:00:00.000Z  127.0.0.1:7500  0.1.0    2024-03-01T00:00:00.000Z  -\n"
        );
    }

    #[test]
    fn agents_holding_the_cluster_key_are_flagged() {
        let agent = |name: &str, legacy: bool| pb::AgentView {
            name: name.into(),
            holds_cluster_key: legacy,
            ..Default::default()
        };
        let agents = [agent("new-1", false), agent("old-1", true)];
        let table = agents_table(&agents).render();
        let old = table
            .lines()
            .find(|l| l.starts_with("old-1"))
            .unwrap_or_default();
        assert!(old.contains("HOLDS-CLUSTER-KEY: re-enroll"), "{table}");
        let new = table
            .lines()
            .find(|l| l.starts_with("new-1"))
            .unwrap_or_default();
        assert!(!new.contains("HOLDS-CLUSTER-KEY"), "{table}");
        let note = legacy_note(&agents).unwrap_or_default();
        assert!(
            note.starts_with("old-1 ") && note.contains("ferry agents remove"),
            "{note}"
        );
        assert_eq!(legacy_note(&agents[..1]), None);
    }
}
