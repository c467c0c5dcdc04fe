//! `ferry status` (one execution, optionally watched until it ends) and
//! `ferry executions` (recent executions). Defines the JSON shape of an
//! execution, which scripts depend on.

use anyhow::Result;
use ferry_proto as pb;
use serde::Serialize;

use crate::args::{ExecutionsArgs, Format, GlobalArgs, StatusArgs};
use crate::client;
use crate::errors;
use crate::output::{self, Table, or_dash, short_revision};

/// An execution as printed by `-o json`. Field order is the output order.
#[derive(Debug, Serialize)]
pub struct ExecutionJson<'a> {
    pub pipeline: &'a str,
    pub pipeline_version: u64,
    pub execution_id: &'a str,
    pub revision: &'a str,
    pub status: &'a str,
    pub trigger: &'a str,
    pub started_at: &'a str,
    pub finished_at: &'a str,
    pub stages: Vec<StageJson<'a>>,
}

#[derive(Debug, Serialize)]
pub struct StageJson<'a> {
    pub name: &'a str,
    pub status: &'a str,
    pub actions: Vec<ActionJson<'a>>,
}

#[derive(Debug, Serialize)]
pub struct ActionJson<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub status: &'a str,
    pub attempt: u32,
    pub agent: &'a str,
    /// `None` (JSON null) when the action ran no command to completion.
    pub exit_code: Option<i32>,
    pub started_at: &'a str,
    pub finished_at: &'a str,
    pub message: &'a str,
    pub outputs: Vec<OutputJson<'a>>,
    pub approvals: Vec<ApprovalJson<'a>>,
    /// Every attempt with its agent and outcome (Running, Succeeded, Failed, Lost).
    pub attempts: Vec<AttemptJson<'a>>,
}

#[derive(Debug, Serialize)]
pub struct AttemptJson<'a> {
    pub attempt: u32,
    pub agent: &'a str,
    pub outcome: &'a str,
    pub exit_code: Option<i32>,
    pub started_at: &'a str,
    pub finished_at: &'a str,
    pub message: &'a str,
}

#[derive(Debug, Serialize)]
pub struct OutputJson<'a> {
    pub name: &'a str,
    pub digest: &'a str,
    pub size: u64,
    pub holders: &'a [String],
}

#[derive(Debug, Serialize)]
pub struct ApprovalJson<'a> {
    pub by: &'a str,
    pub decision: &'a str,
    pub comment: &'a str,
    pub at: &'a str,
}

impl<'a> ExecutionJson<'a> {
    pub fn new(e: &'a pb::ExecutionView) -> Self {
        ExecutionJson {
            pipeline: &e.pipeline,
            pipeline_version: e.pipeline_version,
            execution_id: &e.execution_id,
            revision: &e.revision,
            status: &e.status,
            trigger: &e.trigger,
            started_at: &e.started_at,
            finished_at: &e.finished_at,
            stages: e.stages.iter().map(StageJson::new).collect(),
        }
    }
}

impl<'a> StageJson<'a> {
    fn new(s: &'a pb::StageView) -> Self {
        StageJson {
            name: &s.name,
            status: &s.status,
            actions: s.actions.iter().map(ActionJson::new).collect(),
        }
    }
}

impl<'a> ActionJson<'a> {
    fn new(a: &'a pb::ActionView) -> Self {
        ActionJson {
            name: &a.name,
            kind: &a.kind,
            status: &a.status,
            attempt: a.attempt,
            agent: &a.agent,
            exit_code: a.exit_code,
            started_at: &a.started_at,
            finished_at: &a.finished_at,
            message: &a.message,
            outputs: a
                .outputs
                .iter()
                .map(|o| OutputJson {
                    name: &o.name,
                    digest: &o.digest,
                    size: o.size,
                    holders: &o.holders,
                })
                .collect(),
            approvals: a
                .approvals
                .iter()
                .map(|d| ApprovalJson {
                    by: &d.by,
                    decision: &d.decision,
                    comment: &d.comment,
                    at: &d.at,
                })
                .collect(),
            attempts: a
                .attempts
                .iter()
                .map(|t| AttemptJson {
                    attempt: t.attempt,
                    agent: &t.agent,
                    outcome: &t.outcome,
                    exit_code: t.exit_code,
                    started_at: &t.started_at,
                    finished_at: &t.finished_at,
                    message: &t.message,
                })
                .collect(),
        }
    }
}

/// The MESSAGE cell: the action's message, then each approval decision.
fn action_message(a: &pb::ActionView) -> String {
    let mut parts = Vec::new();
    if !a.message.trim().is_empty() {
        parts.push(a.message.trim().to_string());
    }
    for d in &a.approvals {
        let verb = match d.decision.as_str() {
            "Approved" => "approved".to_string(),
            "Rejected" => "rejected".to_string(),
            other => other.to_lowercase(),
        };
        parts.push(if d.comment.trim().is_empty() {
            format!("{verb} by {}", d.by)
        } else {
            format!("{verb} by {}: {}", d.by, d.comment.trim())
        });
    }
    parts.join("; ")
}

/// A header line and one row per action.
pub fn render_execution(e: &pb::ExecutionView) -> String {
    let mut text = format!(
        "PIPELINE {} v{}  EXECUTION {}  REVISION {}  STATUS {}\n",
        e.pipeline,
        e.pipeline_version,
        e.execution_id,
        or_dash(&short_revision(&e.revision)),
        e.status
    );
    let mut table = Table::new(&[
        "STAGE/ACTION",
        "STATUS",
        "ATTEMPT",
        "AGENT",
        "EXIT",
        "MESSAGE",
    ]);
    for stage in &e.stages {
        for a in &stage.actions {
            table.row([
                format!("{}/{}", stage.name, a.name),
                a.status.clone(),
                if a.attempt == 0 {
                    String::new()
                } else {
                    a.attempt.to_string()
                },
                a.agent.clone(),
                a.exit_code.map(|c| c.to_string()).unwrap_or_default(),
                action_message(a),
            ]);
        }
    }
    text.push_str(&table.render());
    text
}

fn print_execution(e: &pb::ExecutionView, format: Format) -> Result<()> {
    match format {
        Format::Table => output::print(&render_execution(e)),
        Format::Json => output::print_json(&ExecutionJson::new(e)),
    }
}

/// `ferry status NAME [--execution ID] [--watch]`.
pub async fn status(global: &GlobalArgs, args: &StatusArgs) -> Result<()> {
    let mut api = client::connect(global).await?;
    let request = pb::GetExecutionRequest {
        pipeline: args.name.clone(),
        execution_id: args.execution.clone().unwrap_or_default(),
    };
    if !args.watch {
        let view = api.executions.get_execution(request).await?.into_inner();
        return print_execution(&view, global.output);
    }
    let mut stream = api.executions.watch_execution(request).await?.into_inner();
    let mut first = true;
    while let Some(view) = stream.message().await.map_err(errors::mid_stream)? {
        if global.output == Format::Table && !first {
            output::print("")?;
        }
        first = false;
        print_execution(&view, global.output)?;
    }
    Ok(())
}

/// The executions list as a table.
pub fn executions_table(executions: &[pb::ExecutionView]) -> Table {
    let mut table = Table::new(&["ID", "STATUS", "REVISION", "TRIGGER", "STARTED", "FINISHED"]);
    for e in executions {
        table.row([
            e.execution_id.clone(),
            e.status.clone(),
            short_revision(&e.revision),
            e.trigger.clone(),
            e.started_at.clone(),
            e.finished_at.clone(),
        ]);
    }
    table
}

/// `ferry executions NAME [--limit N]`.
pub async fn executions(global: &GlobalArgs, args: &ExecutionsArgs) -> Result<()> {
    let mut api = client::connect(global).await?;
    let executions = api
        .executions
        .list_executions(pb::ListExecutionsRequest {
            pipeline: args.name.clone(),
            // One page; 0 is the coordinator's default (20).
            page_size: args
                .limit
                .map_or(0, |n| i32::try_from(n).unwrap_or(i32::MAX)),
            ..Default::default()
        })
        .await?
        .into_inner()
        .executions;
    match global.output {
        Format::Table => output::print(&executions_table(&executions).render()),
        Format::Json => output::print_json(
            &executions
                .iter()
                .map(ExecutionJson::new)
                .collect::<Vec<_>>(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> pb::ExecutionView {
        pb::ExecutionView {
            pipeline: "hello".into(),
            pipeline_version: 3,
            execution_id: "k2m4n6p8q9".into(),
            revision: "0123456789abcdef0123456789abcdef01234567".into(),
            status: "InProgress".into(),
            trigger: "manual by alice".into(),
            started_at: "2024-05-01T10:00:00.000Z".into(),
            finished_at: String::new(),
            stages: vec![
                pb::StageView {
                    name: "build".into(),
                    status: "Succeeded".into(),
                    actions: vec![pb::ActionView {
                        name: "compile".into(),
                        status: "Succeeded".into(),
                        attempt: 1,
                        agent: "a1".into(),
                        exit_code: Some(0),
                        started_at: "2024-05-01T10:00:01.000Z".into(),
                        finished_at: "2024-05-01T10:00:09.000Z".into(),
                        approvals: vec![],
                        attempts: vec![],
                        kind: "build".into(),
                        message: String::new(),
                        run_order: 1,
                        outputs: vec![pb::ArtifactView {
                            name: "app".into(),
                            digest: "sha256:abc".into(),
                            size: 42,
                            holders: vec!["a1".into()],
                        }],
                    }],
                },
                pb::StageView {
                    name: "release".into(),
                    status: "InProgress".into(),
                    actions: vec![pb::ActionView {
                        name: "gate".into(),
                        status: "Succeeded".into(),
                        attempt: 0,
                        agent: String::new(),
                        exit_code: None,
                        started_at: String::new(),
                        finished_at: String::new(),
                        attempts: vec![],
                        approvals: vec![pb::ApprovalView {
                            by: "bob".into(),
                            decision: "Approved".into(),
                            comment: "ship it".into(),
                            at: "2024-05-01T10:01:00.000Z".into(),
                        }],
                        kind: "approval".into(),
                        message: String::new(),
                        run_order: 1,
                        outputs: vec![],
                    }],
                },
            ],
        }
    }

    #[test]
    fn json_shape() {
        let view = sample();
        let value = serde_json::to_value(ExecutionJson::new(&view)).expect("json");
        assert_eq!(
            value,
            json!({
                "pipeline": "hello",
                "pipeline_version": 3,
                "execution_id": "k2m4n6p8q9",
                "revision": "0123456789abcdef0123456789abcdef01234567",
                "status": "InProgress",
                "trigger": "manual by alice",
                "started_at": "2024-05-01T10:00:00.000Z",
                "finished_at": "",
                "stages": [
                    {
                        "name": "build",
                        "status": "Succeeded",
                        "actions": [{
                            "name": "compile",
                            "kind": "build",
                            "status": "Succeeded",
                            "attempt": 1,
                            "agent": "a1",
                            "exit_code": 0,
                            "started_at": "2024-05-01T10:00:01.000Z",
                            "finished_at": "2024-05-01T10:00:09.000Z",
                            "message": "",
                            "outputs": [{"name": "app", "digest": "sha256:abc", "size": 42, "holders": ["a1"]}],
                            "approvals": [],
                            "attempts": []
                        }]
                    },
                    {
                        "name": "release",
                        "status": "InProgress",
                        "actions": [{
                            "name": "gate",
                            "kind": "approval",
                            "status": "Succeeded",
                            "attempt": 0,
                            "agent": "",
                            "exit_code": null,
                            "started_at": "",
                            "finished_at": "",
                            "message": "",
                            "outputs": [],
                            "approvals": [{"by": "bob", "decision": "Approved", "comment": "ship it", "at": "2024-05-01T10:01:00.000Z"}],
                            "attempts": []
                        }]
                    }
                ]
            })
        );
        // Keys come out in the documented order, on one line.
        let line = serde_json::to_string(&ExecutionJson::new(&view)).expect("json");
        assert!(line.starts_with(r#"{"pipeline":"hello","pipeline_version":3,"execution_id":"#));
        assert!(!line.contains('\n'));
    }

    #[test]
    fn table() {
        assert_eq!(
            render_execution(&sample()),
            "PIPELINE hello v3  EXECUTION k2m4n6p8q9  REVISION 0123456789ab  STATUS InProgress\n\
             STAGE/ACTION   STATUS     ATTEMPT  AGENT  EXIT  MESSAGE\n\
             build/compile  Succeeded  1        a1     0     -\n\
             release/gate   Succeeded  -        -      -     approved by bob: ship it\n"
        );
    }

    #[test]
    fn messages_and_rejections() {
        let mut action = sample().stages[1].actions[0].clone();
        action.message = "waited 2h".into();
        action.approvals.push(pb::ApprovalView {
            by: "carol".into(),
            decision: "Rejected".into(),
            comment: String::new(),
            at: String::new(),
        });
        assert_eq!(
            action_message(&action),
            "waited 2h; approved by bob: ship it; rejected by carol"
        );
    }

    #[test]
    fn executions_list() {
        assert_eq!(
            executions_table(&[sample()]).render(),
            "ID          STATUS      REVISION      TRIGGER          STARTED                   FINISHED\n\
             k2m4n6p8q9  InProgress  0123456789ab  manual by alice  2024-05-01T10:00:00.000Z  -\n"
        );
    }
}
