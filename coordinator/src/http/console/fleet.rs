//! Where releases go and what runs them: environments with the release
//! each host runs and their deployment history, one deployment's per-host
//! steps, the agents (state, labels, load, last seen), and the cluster's
//! members as this member sees them.

use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::{Html, IntoResponse, Response};
use ferry_proto as pb;
use maud::{Markup, html};
use tonic::Request;

use super::layout::{badge, duration, enc, execution_href, ms, page, short, time};
use super::{Viewer, field, query_of, status_refused};
use crate::ops::Ops;
use crate::service;

/// `HOST_OUTCOME_ROLLED_BACK` → `RolledBack`: a wire enum's name as a word.
fn enum_word(name: &str, prefix: &str) -> String {
    name.trim_start_matches(prefix)
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next().map_or_else(String::new, |f| {
                f.to_string() + &c.as_str().to_ascii_lowercase()
            })
        })
        .collect()
}

fn render(title: &str, viewer: &Viewer, body: Markup) -> Response {
    Html(page(title, Some(viewer), body).into_string()).into_response()
}

/// `GET /environments`.
pub async fn environments(State(ops): State<Ops>, viewer: Viewer) -> Response {
    let req = Request::new(pb::ListEnvironmentsRequest::default());
    let envs = match service::environments::list_environments(&ops, req).await {
        Ok(r) => r.into_inner().environments,
        Err(e) => return status_refused(e, "Cannot read the environments"),
    };
    let body = html! {
        h1 { "Environments" }
        @if envs.is_empty() { p { "None yet: apply one with " code { "ferry env apply -f FILE" } "." } }
        table {
            thead { tr { th { "Environment" } th { "Version" } th { "Hosts" } th { "Applied by" } th { "Applied" } } }
            tbody {
                @for e in &envs {
                    tr {
                        td { a href={ "/environments/" (enc(&e.name)) } { (e.name) } }
                        td { (e.version) }
                        td { (e.hosts.len()) }
                        td { (e.applied_by) }
                        td { (time(ms(&e.applied_at))) }
                    }
                }
            }
        }
    };
    render("Environments", &viewer, body)
}

/// `GET /environments/{name}[?page=TOKEN]`: its hosts with the release
/// each runs, and its deployments, newest first.
pub async fn environment(
    State(ops): State<Ops>,
    Path(name): Path<String>,
    uri: Uri,
    viewer: Viewer,
) -> Response {
    let req = Request::new(pb::GetEnvironmentRequest { name: name.clone() });
    let env = match service::environments::get_environment(&ops, req).await {
        Ok(r) => r.into_inner(),
        Err(e) => return status_refused(e, "No such environment"),
    };
    let req = Request::new(pb::ListDeploymentsRequest {
        environment: name.clone(),
        page_token: page_of(&uri),
        ..Default::default()
    });
    let deployments = match service::deployments::list_deployments(&ops, req).await {
        Ok(r) => r.into_inner(),
        Err(e) => return status_refused(e, "Cannot read the deployments"),
    };
    let now = crate::views::now_ms();
    let body = html! {
        p.crumbs { a href="/environments" { "Environments" } " › " (name) }
        h1 { (name) }
        h2 { "Hosts" }
        table {
            thead { tr { th { "Host" } th { "Kind" } th { "Address" } th { "Release" } th { "Since" } } }
            tbody {
                @for h in &env.hosts {
                    @let release = deployments.hosts.iter().find(|r| r.host == h.name);
                    tr {
                        td { (h.name) }
                        td { (enum_word(h.kind().as_str_name(), "HOST_KIND_")) }
                        td { code { (h.address) } }
                        @if let Some(r) = release {
                            td { a href={ "/deployments/" (r.deployment) } { code { (short(&r.release)) } } }
                            td { (time(ms(&r.since))) }
                        } @else { td { "none yet" } td { "-" } }
                    }
                }
            }
        }
        h2 { "Deployments" }
        @if deployments.deployments.is_empty() { p { "None yet." } }
        table {
            thead { tr { th { "#" } th { "Outcome" } th { "Pipeline" } th { "Execution" } th { "Release" } th { "Strategy" } th { "Started" } th { "Took" } } }
            tbody {
                @for d in &deployments.deployments {
                    @let report = d.report.clone().unwrap_or_default();
                    tr {
                        td { a href={ "/deployments/" (d.id) } { (d.id) } }
                        td { (badge(&enum_word(report.outcome().as_str_name(), "DEPLOYMENT_OUTCOME_"))) }
                        td { (d.pipeline) }
                        td { a href=(execution_href(&d.pipeline, &d.execution_id)) { code { (short(&d.execution_id)) } } }
                        td { code { (short(&report.release)) } }
                        td { (report.strategy) }
                        td { (time(ms(&d.started_at))) }
                        td { (duration(ms(&d.started_at), ms(&d.finished_at), now)) }
                    }
                }
            }
        }
        (next_link(&format!("/environments/{}", enc(&name)), &deployments.next_page_token))
    };
    render(&name, &viewer, body)
}

/// `GET /deployments/{id}`: each host's steps and hooks.
pub async fn deployment(State(ops): State<Ops>, Path(id): Path<u64>, viewer: Viewer) -> Response {
    let req = Request::new(pb::GetDeploymentRequest { id });
    let d = match service::deployments::get_deployment(&ops, req).await {
        Ok(r) => r.into_inner(),
        Err(e) => return status_refused(e, "No such deployment"),
    };
    let report = d.report.clone().unwrap_or_default();
    let now = crate::views::now_ms();
    let body = html! {
        p.crumbs { a href="/environments" { "Environments" } " › "
            a href={ "/environments/" (enc(&report.environment)) } { (report.environment) } " › deployment " (d.id) }
        h1 { "Deployment " (d.id) " " (badge(&enum_word(report.outcome().as_str_name(), "DEPLOYMENT_OUTCOME_"))) }
        dl.facts {
            dt { "Release" } dd { code { (report.release) } }
            dt { "Artifact" } dd { code { (report.artifact_digest) } }
            dt { "Execution" } dd { a href=(execution_href(&d.pipeline, &d.execution_id)) { (d.pipeline) " " (short(&d.execution_id)) } " (" (d.action) ")" }
            dt { "Agent" } dd { (d.agent) }
            dt { "Strategy" } dd { (report.strategy) }
            dt { "Took" } dd { (duration(ms(&d.started_at), ms(&d.finished_at), now)) }
            dt { "Summary" } dd { (report.summary) }
        }
        @for h in &report.hosts {
            section.host {
                h2 { (h.host) " " (badge(&enum_word(h.outcome().as_str_name(), "HOST_OUTCOME_"))) }
                p.small { "Batch " (h.batch) ", release " code { (short(&h.release)) }
                    @if !h.previous.is_empty() { ", previously " code { (short(&h.previous)) } } }
                @if !h.error.is_empty() { p.error { (h.error) } }
                table {
                    thead { tr { th { "Step" } th { "Phase" } th { "Result" } th { "Exit" } th { "Took" } th { "Output (end)" } } }
                    tbody {
                        @for k in &h.hooks {
                            tr {
                                td { code { (k.hook) } }
                                td { (enum_word(k.phase().as_str_name(), "HOOK_PHASE_")) }
                                td { (badge(if k.success { "Succeeded" } else { "Failed" })) }
                                td { (k.exit_code) }
                                td { (k.duration.as_ref().map_or(0, |d| d.seconds * 1000 + i64::from(d.nanos / 1_000_000))) " ms" }
                                td { pre.output { (String::from_utf8_lossy(&k.output)) } }
                            }
                        }
                    }
                }
            }
        }
    };
    render(&format!("Deployment {id}"), &viewer, body)
}

/// The `page` token of a request's query ("" for the first page).
fn page_of(uri: &Uri) -> String {
    field(&query_of(uri), "page")
        .unwrap_or_default()
        .to_string()
}

/// A link to the next page, when there is one.
fn next_link(path: &str, next: &str) -> Markup {
    html! {
        @if !next.is_empty() { p { a.next href={ (path) "?page=" (enc(next)) } { "Next page →" } } }
    }
}

/// `GET /agents[?page=TOKEN]` (the leader knows who is connected; a
/// follower asks it).
pub async fn agents(State(ops): State<Ops>, uri: Uri, viewer: Viewer) -> Response {
    let req = Request::new(pb::ListAgentsRequest {
        page_token: page_of(&uri),
        ..Default::default()
    });
    let (agents, next) = match service::agents::list_agents(&ops, req).await {
        Ok(r) => {
            let r = r.into_inner();
            (r.agents, r.next_page_token)
        }
        Err(e) => return status_refused(e, "Cannot read the agents"),
    };
    let body = html! {
        h1 { "Agents" }
        @if agents.is_empty() { p { "No agent enrolled yet: see " code { "ferry token create" } "." } }
        table {
            thead { tr { th { "Agent" } th { "State" } th { "Labels" } th { "Load" } th { "Version" } th { "Address" } th { "Last seen" } th { "Certificate until" } } }
            tbody {
                @for a in &agents {
                    tr {
                        td { (a.name) }
                        td { (badge(&enum_word(a.state().as_str_name(), "AGENT_STATE_"))) }
                        td { @for l in &a.labels { span.label { (l) } " " } }
                        td { (a.running) " / " (a.capacity) }
                        td { (a.version) }
                        td { code { (a.address) } }
                        td { (time(ms(&a.last_seen))) }
                        td { (time(ms(&a.cert_expires_at))) }
                    }
                }
            }
        }
        (next_link("/agents", &next))
    };
    render("Agents", &viewer, body)
}

/// `GET /cluster`: members, leader, term, applied index, reachability, as
/// this member sees them (it answers even when cut off from the leader).
pub async fn cluster(State(ops): State<Ops>, viewer: Viewer) -> Response {
    let status = ops.cluster_status().await;
    let own = &status.own;
    let body = html! {
        h1 { "Cluster" }
        p { "Answered by member " (own.id) "; leader " @if own.leader_id == 0 { "unknown" } @else { (own.leader_id) }
            ", term " (own.term) "." }
        table {
            thead { tr { th { "Member" } th { "Address" } th { "Role" } th { "Term" } th { "Commit" } th { "Applied" } th { "Matched" } th { "Reachable" } } }
            tbody {
                @for m in &status.members {
                    tr {
                        td { (m.id) @if m.id == own.leader_id { " ★" } }
                        td { code { (m.address) } }
                        @if let Some(a) = &m.answer {
                            td { (a.role.map_or_else(|| "?".to_string(), |r| format!("{r:?}"))) }
                            td { (a.term) } td { (a.commit_index) } td { (a.applied_index) }
                            td { (m.match_index) }
                            td { (badge("Reachable")) }
                        } @else {
                            td { "-" } td { "-" } td { "-" } td { "-" } td { (m.match_index) }
                            td { (badge("Unreachable")) }
                        }
                    }
                }
            }
        }
    };
    render("Cluster", &viewer, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_become_words() {
        assert_eq!(
            enum_word("HOST_OUTCOME_ROLLED_BACK", "HOST_OUTCOME_"),
            "RolledBack"
        );
        assert_eq!(
            enum_word("AGENT_STATE_CONNECTED", "AGENT_STATE_"),
            "Connected"
        );
    }
}
