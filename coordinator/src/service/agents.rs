//! gRPC adapter: agents (list, drain, labels, remove). Who is connected is
//! known to the leader only, so the list is served there.

use ferry_proto as pb;
use tonic::{Request, Response, Status};

use super::{caller, leader_channel};
use crate::ops::Ops;
use crate::ops::agents::{AgentInfo, no_agent};
use crate::views;

fn agent_view(a: AgentInfo) -> pb::AgentView {
    let r = a.record;
    pb::AgentView {
        state: if r.draining {
            pb::AgentState::Draining
        } else if a.connected {
            pb::AgentState::Connected
        } else if r.registered_at.is_some() {
            pb::AgentState::Disconnected
        } else {
            pb::AgentState::Enrolled
        }
        .into(),
        last_seen: views::timestamp(a.last_seen.or(r.registered_at)),
        running: a.running as u32,
        connected: a.connected,
        draining: r.draining,
        cert_expires_at: views::timestamp(r.cert.as_ref().map(|c| c.not_after)),
        name: r.name,
        labels: r.labels,
        capacity: r.capacity,
        version: r.version,
        address: r.address,
        holds_cluster_key: r.wrapping_key.is_none(),
    }
}

pub async fn list_agents(
    ops: &Ops,
    req: Request<pb::ListAgentsRequest>,
) -> Result<Response<pb::ListAgentsResponse>, Status> {
    let req = req.into_inner();
    if let Some(mut leader) = leader_channel(ops)?.map(pb::agents_client::AgentsClient::new) {
        return leader.list_agents(req).await;
    }
    let page = crate::ops::page::PageRequest::all(req.page_size, &req.page_token)?;
    let (agents, next_page_token) = ops.list_agents(&page).await?;
    Ok(Response::new(pb::ListAgentsResponse {
        agents: agents.into_iter().map(agent_view).collect(),
        next_page_token,
    }))
}

pub async fn drain_agent(
    ops: &Ops,
    req: Request<pb::AgentRequest>,
) -> Result<Response<pb::AgentView>, Status> {
    let who = caller(&req)?;
    let req = req.into_inner();
    ops.drain_agent(&who, &req.name, !req.undo).await?;
    view_of(ops, &req.name).await
}

pub async fn set_agent_labels(
    ops: &Ops,
    req: Request<pb::SetAgentLabelsRequest>,
) -> Result<Response<pb::AgentView>, Status> {
    let who = caller(&req)?;
    let req = req.into_inner();
    let set = req.replace.then_some(req.set);
    ops.set_agent_labels(&who, &req.name, set, (req.add, req.remove))
        .await?;
    view_of(ops, &req.name).await
}

/// Agent `name` as the list shows it (served by the leader).
async fn view_of(ops: &Ops, name: &str) -> Result<Response<pb::AgentView>, Status> {
    let list = list_agents(ops, Request::new(pb::ListAgentsRequest::default()))
        .await?
        .into_inner();
    list.agents
        .into_iter()
        .find(|a| a.name == name)
        .map(Response::new)
        .ok_or_else(|| no_agent(name).into())
}

pub async fn remove_agent(
    ops: &Ops,
    req: Request<pb::AgentRequest>,
) -> Result<Response<pb::ListAgentsResponse>, Status> {
    let who = caller(&req)?;
    let req = req.into_inner();
    ops.remove_agent(&who, &req.name).await?;
    list_agents(ops, Request::new(pb::ListAgentsRequest::default())).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_state::AgentRecord;

    /// An agent enrolled before wrapping keys (no wrapping key recorded)
    /// holds a copy of the cluster's secrets key: the list says so.
    #[test]
    fn agents_without_a_wrapping_key_are_listed_as_holding_the_cluster_key() {
        let view = |wrapping_key: Option<String>| {
            agent_view(AgentInfo {
                record: AgentRecord {
                    name: "a1".into(),
                    wrapping_key,
                    ..Default::default()
                },
                running: 0,
                connected: false,
                last_seen: None,
            })
        };
        assert!(view(None).holds_cluster_key);
        assert!(!view(Some("ab".repeat(32))).holds_cluster_key);
    }
}
