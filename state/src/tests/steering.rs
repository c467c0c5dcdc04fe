//! Execution modes, transitions, stop and retry in the replicated state:
//! what several executions of one pipeline do to each other, and what a
//! person's steering does to one.

use std::collections::BTreeMap;

use ferry_pipeline::execution::{ActionStatus, ExecutionStatus, Outcome};

use super::{applied, enroll_a1};
use crate::{By, ClusterState, Command, Output, Rejection};

/// A build stage and a deploy-like `ship` stage; `MODE` is replaced.
const YAML: &str = r#"
name: app
source: {git: /tmp/app.git}
execution_mode: MODE
stages:
  - name: build
    actions:
      - {name: compile, type: build, image: img, commands: [true]}
      - {name: lint, type: build, image: img, commands: [true]}
  - name: ship
    actions:
      - {name: push, type: build, image: img, commands: [true]}
"#;

/// A cluster with pipeline `app` in `mode` and one agent, `a1`.
fn cluster(mode: &str) -> ClusterState {
    let mut s = applied(&YAML.replace("MODE", mode));
    enroll_a1(&mut s);
    s
}

fn ok(s: &mut ClusterState, c: Command) -> Output {
    s.apply(c).unwrap_or_else(|e| panic!("{e}"))
}

fn start(s: &mut ClusterState, id: &str, at: i64) {
    ok(
        s,
        Command::StartExecution {
            source: None,
            once: None,
            variables: Default::default(),
            id: id.into(),
            pipeline: "app".into(),
            revision: format!("rev-{id}"),
            trigger: "t".into(),
            started_by: None,
            at,
        },
    );
}

/// Assigns and finishes action (stage, action) of `id`; returns its epoch.
fn run(s: &mut ClusterState, id: &str, (stage, action): (usize, usize), success: bool) -> u64 {
    let epoch = assign(s, id, (stage, action));
    finish(s, epoch, success);
    epoch
}

fn assign(s: &mut ClusterState, id: &str, (stage, action): (usize, usize)) -> u64 {
    match ok(
        s,
        Command::Assign {
            execution: id.into(),
            stage,
            action,
            agent: "a1".into(),
            at: 20,
        },
    ) {
        Output::Assigned { epoch, .. } => epoch,
        other => panic!("{other:?}"),
    }
}

fn finish(s: &mut ClusterState, epoch: u64, success: bool) {
    ok(
        s,
        Command::FinishAttempt {
            variables: Default::default(),
            tests: None,
            caches: Vec::new(),
            epoch,
            agent: "a1".into(),
            success,
            exit_code: Some(i32::from(!success)),
            message: String::new(),
            outputs: BTreeMap::new(),
            log: None,
            deployment: None,
            at: 30,
        },
    );
}

fn status(s: &ClusterState, id: &str) -> ExecutionStatus {
    s.executions[id].state.status
}

fn waiting(s: &ClusterState, id: &str) -> Option<String> {
    s.executions[id].state.waiting.clone()
}

fn stop(id: &str, abandon: bool) -> Command {
    Command::StopExecution {
        execution: id.into(),
        reason: "bad release".into(),
        abandon,
        by: By::operator("root"),
        at: 40,
    }
}

fn retry(id: &str, stage: &str, all: bool) -> Command {
    Command::RetryStage {
        execution: id.into(),
        stage: stage.into(),
        all,
        by: By::operator("root"),
        at: 50,
    }
}

fn transition(stage: &str, enabled: bool) -> Command {
    Command::SetTransition {
        pipeline: "app".into(),
        stage: stage.into(),
        enabled,
        reason: "change freeze".into(),
        by: By::operator("root"),
        at: 60,
    }
}

#[test]
fn superseded_replaces_the_waiting_execution_with_a_newer_one() {
    let mut s = cluster("superseded");
    start(&mut s, "e1", 10);
    start(&mut s, "e2", 11);
    assert_eq!(
        waiting(&s, "e2").as_deref(),
        Some("stage build is held by execution e1")
    );
    start(&mut s, "e3", 12);
    assert_eq!(status(&s, "e2"), ExecutionStatus::Superseded);
    assert_eq!(
        s.executions["e2"].state.superseded_by.as_deref(),
        Some("e3")
    );
    // e1 leaves build: e3 enters it, and e1 holds ship.
    run(&mut s, "e1", (0, 0), true);
    run(&mut s, "e1", (0, 1), true);
    assert!(s.executions["e3"].state.is_in_stage(0));
    assert!(s.executions["e1"].state.is_in_stage(1));
    run(&mut s, "e3", (0, 0), true);
    run(&mut s, "e3", (0, 1), true);
    assert_eq!(
        waiting(&s, "e3").as_deref(),
        Some("stage ship is held by execution e1")
    );
    run(&mut s, "e1", (1, 0), true);
    assert_eq!(status(&s, "e1"), ExecutionStatus::Succeeded);
    assert!(s.executions["e3"].state.is_in_stage(1));
    assert!(
        !s.active.contains("e2"),
        "a superseded execution is settled"
    );
}

#[test]
fn queued_lets_executions_through_one_at_a_time_in_start_order() {
    let mut s = cluster("queued");
    for (i, id) in ["e1", "e2", "e3"].iter().enumerate() {
        start(&mut s, id, 10 + i as i64);
    }
    assert_eq!(
        waiting(&s, "e3").as_deref(),
        Some("stage build is held by execution e1")
    );
    run(&mut s, "e1", (0, 0), true);
    run(&mut s, "e1", (0, 1), true);
    // e2 is next, not e3.
    assert!(s.executions["e2"].state.is_in_stage(0));
    assert_eq!(
        waiting(&s, "e3").as_deref(),
        Some("stage build is held by execution e2")
    );
    run(&mut s, "e2", (0, 0), false);
    assert_eq!(status(&s, "e2"), ExecutionStatus::Failed);
    assert!(
        s.executions["e3"].state.is_in_stage(0),
        "a failure frees the stage"
    );
}

#[test]
fn parallel_executions_do_not_wait_for_each_other() {
    let mut s = cluster("parallel");
    start(&mut s, "e1", 10);
    start(&mut s, "e2", 11);
    assert!(s.executions["e1"].state.is_in_stage(0));
    assert!(s.executions["e2"].state.is_in_stage(0));
    assert_eq!(s.queued().len(), 4);
}

#[test]
fn a_disabled_transition_holds_executions_until_enabled() {
    let mut s = cluster("parallel");
    ok(&mut s, transition("ship", false));
    let refused = s.apply(transition("ship", false));
    assert!(
        matches!(refused, Err(Rejection::FailedPrecondition(m)) if m.contains("already disabled (by root: change freeze)"))
    );
    start(&mut s, "e1", 10);
    run(&mut s, "e1", (0, 0), true);
    run(&mut s, "e1", (0, 1), true);
    assert_eq!(status(&s, "e1"), ExecutionStatus::InProgress);
    assert_eq!(
        waiting(&s, "e1").as_deref(),
        Some("the transition into stage ship is disabled by root: change freeze")
    );
    assert!(s.queued().is_empty());
    ok(&mut s, transition("ship", true));
    assert_eq!(waiting(&s, "e1"), None);
    assert_eq!(s.queued(), vec![("e1".to_string(), 1, 0)]);
    let unknown = s.apply(transition("nope", false));
    assert!(
        matches!(unknown, Err(Rejection::NotFound(_))),
        "{unknown:?}"
    );
}

#[test]
fn stop_and_wait_lets_the_running_action_finish() {
    let mut s = cluster("superseded");
    start(&mut s, "e1", 10);
    start(&mut s, "e2", 11);
    let epoch = assign(&mut s, "e1", (0, 0));
    ok(&mut s, stop("e1", false));
    assert_eq!(status(&s, "e1"), ExecutionStatus::Stopping);
    assert!(
        s.is_current("a1", epoch),
        "the running attempt stays current"
    );
    // The queued sibling is not started, and e1 still holds build.
    assert_eq!(s.queued(), vec![]);
    finish(&mut s, epoch, true);
    assert_eq!(status(&s, "e1"), ExecutionStatus::Stopped);
    assert!(
        s.executions["e2"].state.is_in_stage(0),
        "the stop frees the stage"
    );
    let again = s.apply(stop("e1", true));
    assert!(
        matches!(again, Err(Rejection::FailedPrecondition(m)) if m.contains("already ended Stopped"))
    );
}

#[test]
fn abandon_ends_the_running_attempt_and_refuses_its_result() {
    let mut s = cluster("parallel");
    start(&mut s, "e1", 10);
    let epoch = assign(&mut s, "e1", (0, 0));
    ok(&mut s, stop("e1", true));
    assert_eq!(status(&s, "e1"), ExecutionStatus::Stopped);
    assert!(!s.is_current("a1", epoch));
    let run = &s.executions["e1"].state.actions[0][0];
    assert_eq!(run.status(), ActionStatus::Stopped);
    assert_eq!(run.history[0].outcome, Outcome::Stopped);
    let before = s.clone();
    let late = s.apply(Command::FinishAttempt {
        variables: Default::default(),
        tests: None,
        caches: Vec::new(),
        epoch,
        agent: "a1".into(),
        success: true,
        exit_code: Some(0),
        message: String::new(),
        outputs: BTreeMap::new(),
        log: None,
        deployment: None,
        at: 45,
    });
    assert!(
        matches!(
            late,
            Ok(Output::Attempt {
                accepted: false,
                ..
            })
        ),
        "{late:?}"
    );
    assert_eq!(s, before);
}

#[test]
fn retry_reruns_the_failed_action_and_the_execution_continues() {
    let mut s = cluster("parallel");
    start(&mut s, "e1", 10);
    run(&mut s, "e1", (0, 0), true);
    let first = run(&mut s, "e1", (0, 1), false);
    assert_eq!(status(&s, "e1"), ExecutionStatus::Failed);
    assert!(!s.active.contains("e1"));
    let refused = s.apply(retry("e1", "ship", false));
    assert!(
        matches!(refused, Err(Rejection::FailedPrecondition(m)) if m.contains("stage `build` has not succeeded"))
    );
    ok(&mut s, retry("e1", "build", false));
    assert_eq!(status(&s, "e1"), ExecutionStatus::InProgress);
    assert_eq!(
        s.queued(),
        vec![("e1".to_string(), 0, 1)],
        "only the failed action"
    );
    let second = run(&mut s, "e1", (0, 1), true);
    assert_ne!(first, second);
    run(&mut s, "e1", (1, 0), true);
    assert_eq!(status(&s, "e1"), ExecutionStatus::Succeeded);
    let lint = &s.executions["e1"].state.actions[0][1];
    assert_eq!(
        lint.history.len(),
        2,
        "the failed attempt stays in the history"
    );
    assert_eq!(lint.attempt, 2);
}

#[test]
fn an_older_execution_cannot_rerun_a_stage_a_newer_one_entered() {
    let mut s = cluster("superseded");
    start(&mut s, "e1", 10);
    run(&mut s, "e1", (0, 0), true);
    run(&mut s, "e1", (0, 1), true);
    run(&mut s, "e1", (1, 0), false);
    start(&mut s, "e2", 11);
    run(&mut s, "e2", (0, 0), true);
    run(&mut s, "e2", (0, 1), true);
    let refused = s.apply(retry("e1", "ship", false));
    assert!(
        matches!(refused, Err(Rejection::FailedPrecondition(m)) if m.contains("newer execution e2")),
    );
}

#[test]
fn stop_and_retry_need_the_operator_role() {
    let mut s = cluster("parallel");
    start(&mut s, "e1", 10);
    let before = s.clone();
    let refused = s.apply(Command::StopExecution {
        execution: "e1".into(),
        reason: String::new(),
        abandon: false,
        by: By::operator("mallory"),
        at: 40,
    });
    assert!(
        matches!(refused, Err(Rejection::PermissionDenied(..))),
        "{refused:?}"
    );
    assert_eq!(s, before);
}

const TWO_OF_THREE: &str = r#"
name: app
source: {git: /tmp/app.git}
execution_mode: parallel
stages:
  - name: gate
    actions:
      - {name: ok, type: approval, required: 2, message: "Ship it?"}
"#;

fn decide(s: &mut ClusterState, id: &str, by: &str, approve: bool) -> Result<Output, Rejection> {
    s.apply(Command::Decide {
        execution: id.into(),
        stage: 0,
        action: 0,
        by: by.into(),
        approve,
        comment: String::new(),
        at: 70,
    })
}

#[test]
fn an_approval_needs_its_required_number_of_distinct_people() {
    let mut s = applied(TWO_OF_THREE);
    for who in ["ann", "bob", "carol"] {
        ok(
            &mut s,
            Command::Grant {
                subject: who.into(),
                role: crate::Role::Approver,
                by: By::operator("root"),
            },
        );
    }
    start(&mut s, "e1", 10);
    let run = |s: &ClusterState| s.executions["e1"].state.actions[0][0].clone();
    assert_eq!(run(&s).message, "waiting for 2 approvals");
    assert!(decide(&mut s, "e1", "ann", true).is_ok());
    assert_eq!(run(&s).status(), ActionStatus::WaitingForApproval);
    assert_eq!(run(&s).message, "approved by 1 of 2; waiting for 1 more");
    let before = s.clone();
    let twice = decide(&mut s, "e1", "ann", true);
    assert!(
        matches!(twice, Err(Rejection::FailedPrecondition(m)) if m.contains("each person counts once"))
    );
    assert_eq!(
        s, before,
        "a second decision by the same person records nothing"
    );
    assert!(decide(&mut s, "e1", "bob", true).is_ok());
    assert_eq!(status(&s, "e1"), ExecutionStatus::Succeeded);

    start(&mut s, "e2", 11);
    assert!(decide(&mut s, "e2", "ann", true).is_ok());
    assert!(decide(&mut s, "e2", "carol", false).is_ok());
    assert_eq!(
        status(&s, "e2"),
        ExecutionStatus::Failed,
        "a rejection ends it"
    );
}
