//! A local run's report as the API's `ExecutionView`, so `ferry exec` ends
//! with the very table (or JSON) `ferry status` prints for a cluster's run:
//! statuses, kinds and outcomes convert to the API's enums as the
//! coordinator converts them (`ferry_proto::convert`) and print through
//! the same `crate::wire` words, and an action that ran no command to its
//! end has no exit code (`-`, `null`), as the coordinator records it.

use std::collections::HashMap;

use ferry_engine::local::Report;
use ferry_pipeline::{ActionKind, Pipeline};
use ferry_proto as pb;

fn time(ms: Option<i64>) -> Option<prost_types::Timestamp> {
    ms.map(|ms| prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    })
}

fn map(m: &std::collections::BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The report as an execution view (version 0: a file, not an applied version).
pub fn execution(pipeline: &Pipeline, report: &Report) -> pb::ExecutionView {
    let state = &report.state;
    pb::ExecutionView {
        pipeline: pipeline.name.clone(),
        pipeline_version: 0,
        execution_id: report.execution_id.clone(),
        revision: report.source.revision.clone(),
        status: pb::ExecutionStatus::from(state.status) as i32,
        trigger: "ferry exec".into(),
        started_at: None,
        finished_at: time(state.finished_at),
        waiting: String::new(),
        stop: state.stop.as_ref().map(|s| pb::StopInfo {
            by: s.by.clone(),
            reason: s.reason.clone(),
            abandon: s.abandon,
            at: time(Some(s.at)),
        }),
        superseded_by: String::new(),
        variables: map(&state.variables),
        source: report.source.description.clone(),
        rollbacks: Vec::new(),
        upstream: Vec::new(),
        downstream: Vec::new(),
        stages: pipeline
            .stages
            .iter()
            .enumerate()
            .map(|(si, stage)| pb::StageView {
                name: stage.name.clone(),
                status: pb::ActionStatus::from(state.stage_status(si)) as i32,
                actions: stage
                    .actions
                    .iter()
                    .enumerate()
                    .filter_map(|(ai, action)| {
                        let run = state.action(si, ai)?;
                        Some(pb::ActionView {
                            name: action.name.clone(),
                            status: pb::ActionStatus::from(run.status()) as i32,
                            attempt: run.attempt,
                            agent: run.agent.clone().unwrap_or_default(),
                            exit_code: run.exit_code,
                            started_at: time(run.started_at),
                            finished_at: time(run.finished_at),
                            approvals: run
                                .approvals
                                .iter()
                                .map(|d| pb::ApprovalView {
                                    by: d.by.clone(),
                                    decision: if d.approve {
                                        pb::ApprovalDecision::Approved
                                    } else {
                                        pb::ApprovalDecision::Rejected
                                    } as i32,
                                    comment: d.comment.clone(),
                                    at: time(Some(d.at)),
                                })
                                .collect(),
                            kind: pb::ActionKind::from(action.kind) as i32,
                            message: run.message.clone(),
                            run_order: action.run_order,
                            outputs: run
                                .outputs
                                .iter()
                                .map(|(name, a)| pb::ArtifactView {
                                    name: name.clone(),
                                    digest: a.digest.clone(),
                                    size: a.size,
                                    holders: Vec::new(),
                                })
                                .collect(),
                            attempts: run
                                .history
                                .iter()
                                .map(|h| pb::AttemptView {
                                    attempt: h.attempt,
                                    agent: h.agent.clone(),
                                    outcome: pb::AttemptOutcome::from(h.outcome) as i32,
                                    exit_code: h.exit_code,
                                    started_at: time(Some(h.started_at)),
                                    finished_at: time(h.finished_at),
                                    message: h.message.clone(),
                                })
                                .collect(),
                            approval_message: run.resolved_text(&action.message),
                            approval_url: run.resolved_text(&action.url),
                            approvals_required: if action.kind == ActionKind::Approval {
                                action.required
                            } else {
                                0
                            },
                            output_variables: map(&run.variables),
                            resolved_variables: map(&run.resolved),
                            tests: run.tests.clone().map(Into::into),
                        })
                    })
                    .collect(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_engine::local::{PreparedSource, Report};
    use ferry_engine::store::Blob;
    use ferry_pipeline::execution::{
        ActionStatus, AttemptRecord, ExecutionState, ExecutionStatus, Outcome,
    };

    type Failure = Box<dyn std::error::Error>;

    fn pipeline() -> Result<Pipeline, Failure> {
        Ok(ferry_pipeline::parse(
            "name: p\nsource: {git: x}\nstages:\n  - name: build\n    actions:\n      - {name: compile, type: build, image: i, commands: [make]}\n",
        )
        .map_err(|d| format!("{d:?}"))?)
    }

    fn report(state: ExecutionState) -> Report {
        Report {
            execution_id: "local-1".into(),
            source: PreparedSource {
                blob: Blob {
                    digest: "sha256:00".into(),
                    size: 0,
                },
                revision: "0123456789abcdef".into(),
                source_ref: None,
                description: "working tree".into(),
            },
            state,
            kept: Vec::new(),
            interrupted: false,
            artifacts: None,
        }
    }

    #[test]
    fn a_local_run_prints_as_ferry_status_does() -> Result<(), Failure> {
        let pipeline = pipeline()?;
        let mut state = ExecutionState::new(&pipeline);
        let run = state.action_mut(0, 0).ok_or("no action")?;
        run.status = Some(ActionStatus::Failed);
        run.attempt = 1;
        run.agent = Some("local".into());
        run.exit_code = Some(2);
        run.message = "command 1 `make` exited with code 2".into();
        state.status = ExecutionStatus::Failed;
        let report = report(state);
        let text = crate::commands::status::render_execution(&execution(&pipeline, &report));
        assert!(text.contains("EXECUTION local-1"), "{text}");
        assert!(text.contains("STATUS Failed"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("build/compile  Failed  1")
                    && l.contains("local  2     command 1 `make` exited with code 2")),
            "{text}"
        );
        Ok(())
    }

    /// An action that ran no command to its end (here it timed out) has no
    /// exit code: `-` in the table and `null` in JSON, as `ferry status`
    /// shows one of a cluster's runs, not -1.
    #[test]
    fn an_action_that_ran_no_command_shows_no_exit_code() -> Result<(), Failure> {
        let pipeline = pipeline()?;
        let mut state = ExecutionState::new(&pipeline);
        let run = state.action_mut(0, 0).ok_or("no action")?;
        let why = "timed out after 1s; the container was killed";
        run.status = Some(ActionStatus::Failed);
        run.attempt = 1;
        run.agent = Some("local".into());
        run.exit_code = None;
        run.message = why.into();
        run.history.push(AttemptRecord {
            attempt: 1,
            epoch: 1,
            agent: "local".into(),
            outcome: Outcome::Failed,
            exit_code: None,
            started_at: 0,
            finished_at: Some(1_000),
            message: why.into(),
        });
        state.status = ExecutionStatus::Failed;
        let report = report(state);
        let view = execution(&pipeline, &report);
        let text = crate::commands::status::render_execution(&view);
        assert!(
            text.lines()
                .any(|l| l.starts_with("build/compile  Failed  1")
                    && l.contains(&format!("local  -     {why}"))),
            "{text}"
        );
        assert!(!text.contains(" -1 "), "{text}");
        let json = serde_json::to_value(crate::commands::status::ExecutionJson::new(&view))?;
        let action = &json["stages"][0]["actions"][0];
        assert_eq!(action["status"], "Failed");
        assert!(action["exit_code"].is_null(), "{action}");
        assert_eq!(action["attempts"][0]["outcome"], "Failed");
        assert!(action["attempts"][0]["exit_code"].is_null(), "{action}");
        Ok(())
    }
}
