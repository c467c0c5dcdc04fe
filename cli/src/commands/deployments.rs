//! `ferry deployments list/show` and `ferry rollback`: the deployment
//! history of an environment (which release is on which host, from which
//! execution, with every hook's outcome and output) and redeploying an
//! earlier good release.

use anyhow::Result;
use ferry_proto as pb;
use serde_json::json;

use crate::args::{DeploymentsCommand, Format, GlobalArgs, RollbackArgs};
use crate::client;
use crate::output::{self, Table, or_dash};
use crate::wire;

fn report_of(d: &pb::DeploymentView) -> pb::DeploymentReport {
    d.report.clone().unwrap_or_default()
}

fn hooks_json(h: &pb::HostReport) -> serde_json::Value {
    h.hooks
        .iter()
        .map(|k| {
            json!({
                "hook": k.hook, "phase": wire::hook_phase(k.phase), "success": k.success,
                "exit_code": k.exit_code, "duration_ms": wire::millis(k.duration.as_ref()),
                "output": String::from_utf8_lossy(&k.output),
            })
        })
        .collect()
}

fn deployment_json(d: &pb::DeploymentView, with_hooks: bool) -> serde_json::Value {
    let r = report_of(d);
    let hosts: Vec<serde_json::Value> = r
        .hosts
        .iter()
        .map(|h| {
            let mut v = json!({
                "host": h.host, "outcome": wire::host_outcome(h.outcome), "release": h.release,
                "previous": h.previous, "batch": h.batch, "error": h.error,
            });
            if with_hooks {
                v["hooks"] = hooks_json(h);
            }
            v
        })
        .collect();
    json!({
        "id": d.id, "environment": r.environment, "pipeline": d.pipeline,
        "execution_id": d.execution_id, "action": d.action, "agent": d.agent,
        "release": r.release, "artifact": r.artifact_digest,
        "outcome": wire::deployment_outcome(r.outcome), "summary": r.summary,
        "strategy": r.strategy, "started_at": wire::time(d.started_at.as_ref()),
        "finished_at": wire::time(d.finished_at.as_ref()), "hosts": hosts,
    })
}

pub async fn run(global: &GlobalArgs, command: &DeploymentsCommand) -> Result<()> {
    let mut api = client::connect(global).await?;
    match command {
        DeploymentsCommand::List(a) => {
            let req = pb::ListDeploymentsRequest {
                environment: a.environment.clone(),
                // One page (the coordinator refuses more than its maximum).
                page_size: i32::try_from(a.limit).unwrap_or(i32::MAX),
                ..Default::default()
            };
            let resp = api.deployments.list_deployments(req).await?.into_inner();
            if global.output == Format::Json {
                let deployments: Vec<_> = resp
                    .deployments
                    .iter()
                    .map(|d| deployment_json(d, false))
                    .collect();
                let hosts: Vec<_> = resp
                    .hosts
                    .iter()
                    .map(|h| json!({"host": h.host, "release": h.release, "deployment": h.deployment, "since": wire::time(h.since.as_ref())}))
                    .collect();
                return output::print_json(&json!({"deployments": deployments, "hosts": hosts}));
            }
            let mut hosts = Table::new(&["HOST", "RELEASE", "DEPLOYMENT", "SINCE"]);
            for h in &resp.hosts {
                hosts.row([
                    h.host.clone(),
                    or_dash(&h.release).to_string(),
                    h.deployment.to_string(),
                    wire::time(h.since.as_ref()),
                ]);
            }
            let mut t = Table::new(&[
                "ID",
                "RELEASE",
                "OUTCOME",
                "HOSTS",
                "PIPELINE",
                "EXECUTION",
                "FINISHED",
                "SUMMARY",
            ]);
            for d in &resp.deployments {
                let r = report_of(d);
                let ok = r
                    .hosts
                    .iter()
                    .filter(|h| h.outcome() == pb::HostOutcome::Deployed)
                    .count();
                t.row([
                    d.id.to_string(),
                    r.release.clone(),
                    wire::deployment_outcome(r.outcome),
                    format!("{ok}/{}", r.hosts.len()),
                    d.pipeline.clone(),
                    d.execution_id.clone(),
                    wire::time(d.finished_at.as_ref()),
                    r.summary.clone(),
                ]);
            }
            output::print(&format!(
                "Hosts of {}:\n{}\nDeployments:\n{}",
                a.environment,
                hosts.render(),
                t.render()
            ))
        }
        DeploymentsCommand::Show(a) => {
            let d = api
                .deployments
                .get_deployment(pb::GetDeploymentRequest { id: a.id })
                .await?
                .into_inner();
            if global.output == Format::Json {
                return output::print_json(&deployment_json(&d, true));
            }
            let r = report_of(&d);
            let mut text = format!(
                "Deployment {} of release {} to {} — {}\n  {}\n  pipeline {} execution {} action {} on agent {}\n  \
                 strategy {}, artifact {}\n  {} → {}\n",
                d.id,
                r.release,
                r.environment,
                wire::deployment_outcome(r.outcome),
                r.summary,
                d.pipeline,
                d.execution_id,
                d.action,
                d.agent,
                r.strategy,
                r.artifact_digest,
                wire::time(d.started_at.as_ref()),
                wire::time(d.finished_at.as_ref()),
            );
            for h in &r.hosts {
                text.push_str(&format!(
                    "\n{} (batch {}): {} — on {} (was {}){}\n",
                    h.host,
                    h.batch,
                    wire::host_outcome(h.outcome),
                    or_dash(&h.release),
                    or_dash(&h.previous),
                    if h.error.is_empty() {
                        String::new()
                    } else {
                        format!("\n  error: {}", h.error)
                    }
                ));
                for k in &h.hooks {
                    let status = if k.success {
                        "ok".to_string()
                    } else if k.exit_code >= 0 {
                        format!("FAILED (exit {})", k.exit_code)
                    } else {
                        "FAILED".to_string()
                    };
                    text.push_str(&format!(
                        "  {:<8} {:<15} {:<18} {:>6} ms\n",
                        wire::hook_phase(k.phase),
                        k.hook,
                        status,
                        wire::millis(k.duration.as_ref())
                    ));
                    for line in String::from_utf8_lossy(&k.output).lines() {
                        text.push_str(&format!("      | {line}\n"));
                    }
                }
            }
            output::print(&text)
        }
    }
}

pub async fn rollback(global: &GlobalArgs, args: &RollbackArgs) -> Result<()> {
    let mut api = client::connect(global).await?;
    let resp = api
        .deployments
        .rollback(pb::RollbackRequest {
            environment: args.environment.clone(),
            to_execution: args.to.clone().unwrap_or_default(),
        })
        .await?
        .into_inner();
    match global.output {
        Format::Json => output::print_json(&json!({
            "pipeline": resp.pipeline, "execution_id": resp.execution_id,
            "release": resp.release, "from_deployment": resp.from_deployment,
        })),
        Format::Table => output::print(&format!(
            "redeploying release {} to {} as execution {} of pipeline {} (watch: ferry status {} --execution {} --watch)\n",
            resp.release,
            args.environment,
            resp.execution_id,
            resp.pipeline,
            resp.pipeline,
            resp.execution_id
        )),
    }
}
