//! `ferry agents list`: enrolled build agents and their live state.

use anyhow::Result;
use ferry_proto as pb;
use serde::Serialize;

use crate::args::{Format, GlobalArgs};
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
        "CERT-EXPIRES",
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
            wire::time(a.cert_expires_at.as_ref()),
        ]);
    }
    table
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
        Format::Table => output::print(&agents_table(&agents).render()),
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
        }]);
        assert_eq!(
            table.render(),
            "NAME  LABELS        CAPACITY  RUNNING  STATE      LAST-SEEN                 ADDRESS         CERT-EXPIRES\n\
             a1    docker,linux  2         1        Connected  2024-01-01T00:00:00.000Z  127.0.0.1:7500  2024-03-01T00:00:00.000Z\n"
        );
    }
}
