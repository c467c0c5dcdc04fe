//! `ferry status` (one execution, optionally watched until it ends) and
//! `ferry executions` (recent executions). Defines the JSON shape of an
//! execution, which scripts depend on, and what `--execution latest` means
//! for every command that reads an execution: the pipeline's newest, found
//! through ListExecutions (newest first).

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;

use anyhow::{Result, anyhow};
use ferry_proto as pb;
use serde::Serialize;

use crate::args::{ExecutionsArgs, Format, GlobalArgs, LATEST, StatusArgs};
use crate::client;
use crate::errors;
use crate::output::{self, Table, or_dash, short_revision};
use crate::wire;

/// An execution as printed by `-o json`. Field order is the output order.
#[derive(Debug, Serialize)]
pub struct ExecutionJson<'a> {
    pub pipeline: &'a str,
    pub pipeline_version: u64,
    pub execution_id: &'a str,
    pub revision: &'a str,
    pub status: String,
    pub trigger: &'a str,
    pub started_at: String,
    pub finished_at: String,
    /// Why it waits before its next stage (absent when it does not).
    #[serde(skip_serializing_if = "str::is_empty")]
    pub waiting: &'a str,
    /// Who stopped it, why and how (absent unless a person stopped it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopJson<'a>>,
    /// The newer execution that replaced it (absent unless superseded).
    #[serde(skip_serializing_if = "str::is_empty")]
    pub superseded_by: &'a str,
    /// What it started from: "branch NAME" or "tag NAME" (absent for a bare commit).
    #[serde(skip_serializing_if = "str::is_empty")]
    pub source: &'a str,
    /// Executions its failed stage's `on_failure: rollback` started (absent when none).
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub rollbacks: &'a [String],
    /// Upstream executions whose success started it, `PIPELINE/EXECUTION`.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub upstream: &'a [String],
    /// Downstream executions its success started, `PIPELINE/EXECUTION`.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub downstream: &'a [String],
    /// Its pipeline variables (absent when the pipeline declares none).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<&'a str, &'a str>,
    pub stages: Vec<StageJson<'a>>,
}

#[derive(Debug, Serialize)]
pub struct StopJson<'a> {
    pub by: &'a str,
    pub reason: &'a str,
    pub abandon: bool,
    pub at: String,
}

#[derive(Debug, Serialize)]
pub struct StageJson<'a> {
    pub name: &'a str,
    pub status: String,
    pub actions: Vec<ActionJson<'a>>,
}

#[derive(Debug, Serialize)]
pub struct ActionJson<'a> {
    pub name: &'a str,
    pub kind: String,
    pub status: String,
    pub attempt: u32,
    pub agent: &'a str,
    /// `None` (JSON null) when the action ran no command to completion.
    pub exit_code: Option<i32>,
    pub started_at: String,
    pub finished_at: String,
    pub message: &'a str,
    pub outputs: Vec<OutputJson<'a>>,
    pub approvals: Vec<ApprovalJson<'a>>,
    /// Every attempt with its agent and outcome (Running, Succeeded, Failed, Lost).
    pub attempts: Vec<AttemptJson<'a>>,
    /// Approval actions only: how many must approve, what they are asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalSpecJson<'a>>,
    /// Output variables it wrote (absent when none).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub output_variables: BTreeMap<&'a str, &'a str>,
    /// The references in its texts and their values when it started (absent when none).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub resolved_variables: BTreeMap<&'a str, &'a str>,
    /// What its test reports said (absent when it lists none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tests: Option<ferry_pipeline::reports::TestSummary>,
}

#[derive(Debug, Serialize)]
pub struct ApprovalSpecJson<'a> {
    pub required: u32,
    pub message: &'a str,
    pub url: &'a str,
}

#[derive(Debug, Serialize)]
pub struct AttemptJson<'a> {
    pub attempt: u32,
    pub agent: &'a str,
    pub outcome: String,
    pub exit_code: Option<i32>,
    pub started_at: String,
    pub finished_at: String,
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
    pub decision: String,
    pub comment: &'a str,
    pub at: String,
}

impl<'a> ExecutionJson<'a> {
    pub fn new(e: &'a pb::ExecutionView) -> Self {
        ExecutionJson {
            pipeline: &e.pipeline,
            pipeline_version: e.pipeline_version,
            execution_id: &e.execution_id,
            revision: &e.revision,
            status: wire::execution_status(e.status),
            trigger: &e.trigger,
            started_at: wire::time(e.started_at.as_ref()),
            finished_at: wire::time(e.finished_at.as_ref()),
            waiting: &e.waiting,
            stop: e.stop.as_ref().map(|s| StopJson {
                by: &s.by,
                reason: &s.reason,
                abandon: s.abandon,
                at: wire::time(s.at.as_ref()),
            }),
            superseded_by: &e.superseded_by,
            source: &e.source,
            rollbacks: &e.rollbacks,
            upstream: &e.upstream,
            downstream: &e.downstream,
            variables: sorted(&e.variables),
            stages: e.stages.iter().map(StageJson::new).collect(),
        }
    }
}

impl<'a> StageJson<'a> {
    fn new(s: &'a pb::StageView) -> Self {
        StageJson {
            name: &s.name,
            status: wire::action_status(s.status),
            actions: s.actions.iter().map(ActionJson::new).collect(),
        }
    }
}

impl<'a> ActionJson<'a> {
    fn new(a: &'a pb::ActionView) -> Self {
        ActionJson {
            name: &a.name,
            kind: wire::action_kind(a.kind),
            status: wire::action_status(a.status),
            attempt: a.attempt,
            agent: &a.agent,
            exit_code: a.exit_code,
            started_at: wire::time(a.started_at.as_ref()),
            finished_at: wire::time(a.finished_at.as_ref()),
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
                    decision: wire::approval_decision(d.decision),
                    comment: &d.comment,
                    at: wire::time(d.at.as_ref()),
                })
                .collect(),
            attempts: a
                .attempts
                .iter()
                .map(|t| AttemptJson {
                    attempt: t.attempt,
                    agent: &t.agent,
                    outcome: wire::attempt_outcome(t.outcome),
                    exit_code: t.exit_code,
                    started_at: wire::time(t.started_at.as_ref()),
                    finished_at: wire::time(t.finished_at.as_ref()),
                    message: &t.message,
                })
                .collect(),
            approval: (a.approvals_required > 0).then(|| ApprovalSpecJson {
                required: a.approvals_required,
                message: &a.approval_message,
                url: &a.approval_url,
            }),
            output_variables: sorted(&a.output_variables),
            resolved_variables: sorted(&a.resolved_variables),
            tests: a.tests.clone().map(Into::into),
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
        let verb = match wire::approval_decision(d.decision).as_str() {
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
        wire::execution_status(e.status)
    );
    for note in notes(e) {
        text.push_str(&note);
        text.push('\n');
    }
    if !e.variables.is_empty() {
        text.push_str(&format!("VARIABLES: {}\n", pairs(&e.variables)));
    }
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
            if let Some(row) = super::matrix_view::group_row(stage, a) {
                table.row(row);
            }
            table.row([
                format!("{}/{}", stage.name, a.name),
                wire::action_status(a.status),
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
    // What each approval asks, with its link.
    for stage in &e.stages {
        for a in &stage.actions {
            let ask = [a.approval_message.trim(), a.approval_url.trim()]
                .into_iter()
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            if !ask.is_empty() {
                text.push_str(&format!("{}/{} asks: {ask}\n", stage.name, a.name));
            }
            if !a.output_variables.is_empty() {
                text.push_str(&format!(
                    "{}/{} wrote {}\n",
                    stage.name,
                    a.name,
                    pairs(&a.output_variables)
                ));
            }
            if !a.resolved_variables.is_empty() {
                text.push_str(&format!(
                    "{}/{} used {}\n",
                    stage.name,
                    a.name,
                    pairs(&a.resolved_variables)
                ));
            }
            if let Some(tests) = a.tests.clone() {
                let lines = super::tests_view::lines(&tests.into());
                text.push_str(&format!("{}/{} {}\n", stage.name, a.name, lines.join("\n")));
            }
        }
    }
    text
}

fn print_execution(e: &pb::ExecutionView, format: Format) -> Result<()> {
    match format {
        Format::Table => output::print(&render_execution(e)),
        Format::Json => output::print_json(&ExecutionJson::new(e)),
    }
}

/// The pipeline's newest execution, with its stages and outputs; an error
/// naming the pipeline when it has none.
pub async fn newest_execution(api: &mut client::Api, pipeline: &str) -> Result<pb::ExecutionView> {
    let executions = api
        .executions
        .list_executions(pb::ListExecutionsRequest {
            pipeline: pipeline.to_string(),
            page_size: 1,
            ..Default::default()
        })
        .await?
        .into_inner()
        .executions;
    first_or_none_yet(pipeline, executions)
}

/// The first of a newest-first list, or the error for a pipeline that never ran.
fn first_or_none_yet(
    pipeline: &str,
    executions: Vec<pb::ExecutionView>,
) -> Result<pb::ExecutionView> {
    executions.into_iter().next().ok_or_else(|| {
        anyhow!(
            "pipeline `{pipeline}` has no executions yet, so `--execution {LATEST}` names none \
             (start one with `ferry run {pipeline}`)"
        )
    })
}

/// The id `--execution` names: as given, or for `latest` the id of the
/// pipeline's newest execution.
pub async fn resolve_execution(
    api: &mut client::Api,
    pipeline: &str,
    execution: &str,
) -> Result<String> {
    if execution == LATEST {
        Ok(newest_execution(api, pipeline).await?.execution_id)
    } else {
        Ok(execution.to_string())
    }
}

/// The execution `--execution` names (an id or `latest`), with its stages
/// and each action's outputs.
pub async fn execution_view(
    api: &mut client::Api,
    pipeline: &str,
    execution: &str,
) -> Result<pb::ExecutionView> {
    if execution == LATEST {
        return newest_execution(api, pipeline).await;
    }
    Ok(api
        .executions
        .get_execution(pb::GetExecutionRequest {
            pipeline: pipeline.to_string(),
            execution_id: execution.to_string(),
        })
        .await?
        .into_inner())
}

/// What `ferry status` asks for: "" (the coordinator's newest) when
/// `--execution` is absent or `latest`, the id otherwise.
fn status_execution_id(execution: Option<&str>) -> String {
    match execution {
        None | Some(LATEST) => String::new(),
        Some(id) => id.to_string(),
    }
}

/// `ferry status NAME [--execution ID|latest] [--watch]`. With `--watch`, the exit
/// code says how the execution ended ([`ended`]).
pub async fn status(global: &GlobalArgs, args: &StatusArgs) -> Result<ExitCode> {
    let mut api = client::connect(global).await?;
    let request = pb::GetExecutionRequest {
        pipeline: args.name.clone(),
        execution_id: status_execution_id(args.execution.as_deref()),
    };
    if !args.watch {
        let view = api.executions.get_execution(request).await?.into_inner();
        print_execution(&view, global.output)?;
        return Ok(ExitCode::SUCCESS);
    }
    follow(&mut api, request, global.output, Show::Every).await
}

/// What [`follow`] prints while the execution runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// Every update, one after the other (`status --watch`).
    Every,
    /// One table, redrawn in place (`run --wait` on a terminal).
    Live,
    /// Only the final state (`run --wait` into a pipe or file).
    Last,
}

/// Follows an execution until it ends; the exit code says how ([`ended`]).
pub async fn follow(
    api: &mut client::Api,
    request: pb::GetExecutionRequest,
    format: Format,
    show: Show,
) -> Result<ExitCode> {
    let mut stream = api.executions.watch_execution(request).await?.into_inner();
    let mut last: Option<pb::ExecutionView> = None;
    let mut drawn_lines = 0;
    while let Some(view) = stream.message().await.map_err(errors::mid_stream)? {
        match show {
            Show::Every => {
                if format == Format::Table && last.is_some() {
                    output::print("")?;
                }
                print_execution(&view, format)?;
            }
            Show::Live => {
                let text = render_execution(&view);
                // Move up over the previous table and clear to the end.
                if drawn_lines > 0 {
                    output::write_raw(format!("\x1b[{drawn_lines}A\x1b[J").as_bytes())?;
                }
                output::write_raw(text.as_bytes())?;
                drawn_lines = text.lines().count();
            }
            Show::Last => {}
        }
        last = Some(view);
    }
    let Some(last) = last else {
        anyhow::bail!("the coordinator ended the watch without sending the execution");
    };
    if show == Show::Last {
        print_execution(&last, format)?;
    }
    Ok(ended(&last))
}

/// 0 when the execution succeeded, 1 when it failed, was stopped or superseded.
pub fn ended(e: &pb::ExecutionView) -> ExitCode {
    if e.status == pb::ExecutionStatus::Succeeded as i32 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A protobuf map in name order.
fn sorted(map: &HashMap<String, String>) -> BTreeMap<&str, &str> {
    map.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// `NAME=VALUE` pairs in name order, comma-separated.
fn pairs(map: &HashMap<String, String>) -> String {
    sorted(map)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a person should know about an execution beyond its status: why it
/// waits, who stopped it, what replaced it (one line each).
fn notes(e: &pb::ExecutionView) -> Vec<String> {
    let mut notes = Vec::new();
    if !e.waiting.is_empty() {
        notes.push(format!("WAITING: {}", e.waiting));
    }
    if let Some(stop) = &e.stop {
        let how = if stop.abandon { "abandoned" } else { "stopped" };
        notes.push(format!(
            "{} by {} at {}: {}",
            how.to_uppercase(),
            stop.by,
            wire::time(stop.at.as_ref()),
            stop.reason
        ));
    }
    if !e.superseded_by.is_empty() {
        notes.push(format!("SUPERSEDED by execution {}", e.superseded_by));
    }
    if !e.rollbacks.is_empty() {
        notes.push(format!(
            "ROLLED BACK by execution {}",
            e.rollbacks.join(", ")
        ));
    }
    if !e.upstream.is_empty() {
        notes.push(format!("UPSTREAM {}", e.upstream.join(", ")));
    }
    if !e.downstream.is_empty() {
        notes.push(format!("STARTED {}", e.downstream.join(", ")));
    }
    notes
}

/// The executions list as a table; a NOTE column appears when an execution
/// waits, was stopped or superseded.
pub fn executions_table(executions: &[pb::ExecutionView]) -> Table {
    let noted = executions.iter().any(|e| !notes(e).is_empty());
    let mut header = vec!["ID", "STATUS", "REVISION", "TRIGGER", "STARTED", "FINISHED"];
    if noted {
        header.push("NOTE");
    }
    let mut table = Table::new(&header);
    for e in executions {
        let mut row = vec![
            e.execution_id.clone(),
            wire::execution_status(e.status),
            short_revision(&e.revision),
            e.trigger.clone(),
            wire::time(e.started_at.as_ref()),
            wire::time(e.finished_at.as_ref()),
        ];
        if noted {
            row.push(notes(e).join("; "));
        }
        table.row(row);
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
            status: pb::ExecutionStatus::InProgress.into(),
            trigger: "manual by alice".into(),
            started_at: wire::at("2024-05-01T10:00:00.000Z"),
            finished_at: None,
            waiting: String::new(),
            stop: None,
            superseded_by: String::new(),
            variables: Default::default(),
            source: String::new(),
            rollbacks: Vec::new(),
            upstream: Vec::new(),
            downstream: Vec::new(),
            stages: vec![
                pb::StageView {
                    name: "build".into(),
                    status: pb::ActionStatus::Succeeded.into(),
                    actions: vec![pb::ActionView {
                        name: "compile".into(),
                        status: pb::ActionStatus::Succeeded.into(),
                        attempt: 1,
                        agent: "a1".into(),
                        exit_code: Some(0),
                        started_at: wire::at("2024-05-01T10:00:01.000Z"),
                        finished_at: wire::at("2024-05-01T10:00:09.000Z"),
                        approvals: vec![],
                        attempts: vec![],
                        approval_message: String::new(),
                        approval_url: String::new(),
                        approvals_required: 0,
                        output_variables: Default::default(),
                        resolved_variables: Default::default(),
                        tests: None,
                        kind: pb::ActionKind::Build.into(),
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
                    status: pb::ActionStatus::InProgress.into(),
                    actions: vec![pb::ActionView {
                        name: "gate".into(),
                        status: pb::ActionStatus::Succeeded.into(),
                        attempt: 0,
                        agent: String::new(),
                        exit_code: None,
                        started_at: None,
                        finished_at: None,
                        attempts: vec![],
                        approval_message: String::new(),
                        approval_url: String::new(),
                        approvals_required: 0,
                        output_variables: Default::default(),
                        resolved_variables: Default::default(),
                        tests: None,
                        approvals: vec![pb::ApprovalView {
                            by: "bob".into(),
                            decision: pb::ApprovalDecision::Approved.into(),
                            comment: "ship it".into(),
                            at: wire::at("2024-05-01T10:01:00.000Z"),
                        }],
                        kind: pb::ActionKind::Approval.into(),
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
            decision: pb::ApprovalDecision::Rejected.into(),
            comment: String::new(),
            at: None,
        });
        assert_eq!(
            action_message(&action),
            "waited 2h; approved by bob: ship it; rejected by carol"
        );
    }

    #[test]
    fn latest_is_the_newest_or_a_clear_error() {
        assert_eq!(status_execution_id(None), "");
        assert_eq!(status_execution_id(Some("latest")), "");
        assert_eq!(status_execution_id(Some("k2m4n6p8q9")), "k2m4n6p8q9");

        let mut older = sample();
        older.execution_id = "older00000".into();
        let newest = first_or_none_yet("hello", vec![sample(), older]).expect("newest");
        assert_eq!(newest.execution_id, "k2m4n6p8q9");

        let err = first_or_none_yet("hello", Vec::new()).expect_err("none yet");
        let text = err.to_string();
        assert!(
            text.contains("pipeline `hello` has no executions yet"),
            "{text}"
        );
        assert!(text.contains("--execution latest"), "{text}");
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
