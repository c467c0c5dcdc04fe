//! Tests of the execution state machine: groups and stages, failures,
//! stops, retries, gates, variables, conditions and `on_failure`.

use super::*;
use crate::Pipeline;
use crate::condition::SourceRef;

const YAML: &str = r#"
name: demo
source: {git: /tmp/x.git}
stages:
  - name: build
    actions:
      - {name: a, type: build, image: img, commands: [true]}
      - {name: b, type: build, image: img, commands: [true]}
      - {name: c, type: test, image: img, commands: [true], run_order: 2}
  - name: gate
    actions:
      - {name: ok, type: approval}
"#;

fn pipeline() -> Pipeline {
    match crate::parse(YAML) {
        Ok(p) => p,
        Err(e) => panic!("test pipeline invalid: {e:?}"),
    }
}

#[test]
fn runs_groups_then_stages_then_succeeds() {
    let p = pipeline();
    let mut e = ExecutionState::new(&p);
    let s = e.advance(&p, &Gates::open(), 1);
    assert_eq!(s.queued, vec![(0, 0), (0, 1)]);
    assert!(
        e.advance(&p, &Gates::open(), 2).queued.is_empty(),
        "advance is idempotent"
    );
    assert!(
        e.finish_action(&p, (0, 0), true, String::new(), &Gates::open(), 3)
            .queued
            .is_empty()
    );
    assert_eq!(
        e.finish_action(&p, (0, 1), true, String::new(), &Gates::open(), 4)
            .queued,
        vec![(0, 2)]
    );
    let s = e.finish_action(&p, (0, 2), true, String::new(), &Gates::open(), 5);
    assert_eq!(s.approvals, vec![(1, 0)]);
    assert_eq!(e.stage_status(1), ActionStatus::WaitingForApproval);
    assert_eq!(
        e.action(1, 0).and_then(|r| r.deadline),
        Some(5 + 7 * 24 * 3600 * 1000)
    );
    e.finish_action(&p, (1, 0), true, String::new(), &Gates::open(), 6);
    assert_eq!(e.status, ExecutionStatus::Succeeded);
    assert_eq!(e.finished_at, Some(6));
}

#[test]
fn an_approval_deadline_never_wraps_into_the_past() {
    // The reader caps timeouts at a year; a spec stored before that cap
    // may hold anything, and its deadline must still lie ahead.
    let mut p = pipeline();
    p.stages[1].actions[0].timeout_ms = u64::MAX;
    let mut e = ExecutionState::new(&p);
    e.advance(&p, &Gates::open(), 1);
    for action in [(0, 0), (0, 1), (0, 2)] {
        e.finish_action(&p, action, true, String::new(), &Gates::open(), 2);
    }
    assert_eq!(e.action(1, 0).and_then(|r| r.deadline), Some(i64::MAX));
}

#[test]
fn a_failure_fails_the_execution_and_starts_nothing_more() {
    let p = pipeline();
    let mut e = ExecutionState::new(&p);
    e.advance(&p, &Gates::open(), 1);
    let s = e.finish_action(&p, (0, 0), false, "exit 1".into(), &Gates::open(), 2);
    assert!(s.queued.is_empty() && s.approvals.is_empty());
    assert_eq!(e.status, ExecutionStatus::Failed);
    assert_eq!(e.stage_status(0), ActionStatus::Failed);
    assert_eq!(e.stage_status(1), ActionStatus::Pending);
    assert_eq!(
        e.action(1, 0).map(|r| r.status()),
        Some(ActionStatus::Pending)
    );
}

fn stop(by: &str, abandon: bool) -> StopRequest {
    StopRequest {
        by: by.into(),
        reason: "bad release".into(),
        abandon,
        at: 0,
    }
}

/// Gives queued action `at` to an agent under `epoch`, as the coordinator does.
fn assign(e: &mut ExecutionState, at: (usize, usize), epoch: u64) {
    if let Some(run) = e.action_mut(at.0, at.1) {
        run.agent = Some("agent-1".into());
        run.epoch = epoch;
        run.attempt += 1;
        run.history.push(AttemptRecord {
            attempt: run.attempt,
            epoch,
            agent: "agent-1".into(),
            outcome: Outcome::Running,
            exit_code: None,
            started_at: 1,
            finished_at: None,
            message: String::new(),
        });
    }
}

#[test]
fn stop_and_wait_lets_running_actions_finish_and_starts_nothing() {
    let p = pipeline();
    let mut e = ExecutionState::new(&p);
    e.advance(&p, &Gates::open(), 1);
    assign(&mut e, (0, 0), 1);
    assert_eq!(e.stop(&p, stop("ann", false), 2), Ok(vec![]));
    assert_eq!(e.status, ExecutionStatus::Stopping);
    // The queued sibling never starts; the running one finishes.
    assert_eq!(
        e.action(0, 1).map(|r| r.status()),
        Some(ActionStatus::Pending)
    );
    assert_eq!(
        e.stop(&p, stop("bob", false), 3),
        Err(SteerError::AlreadyStopping(""))
    );
    let s = e.finish_action(&p, (0, 0), true, String::new(), &Gates::open(), 4);
    assert_eq!(s, Started::default());
    assert_eq!(e.status, ExecutionStatus::Stopped);
    assert_eq!(e.stage_status(0), ActionStatus::Stopped);
    assert_eq!(e.finished_at, Some(4));
    assert!(matches!(
        e.stop(&p, stop("ann", true), 5),
        Err(SteerError::AlreadyEnded(ExecutionStatus::Stopped))
    ));
}

#[test]
fn abandon_ends_running_attempts_at_once() {
    let p = pipeline();
    let mut e = ExecutionState::new(&p);
    e.advance(&p, &Gates::open(), 1);
    assign(&mut e, (0, 0), 7);
    assert_eq!(e.stop(&p, stop("ann", false), 2), Ok(vec![]));
    // Stop-and-wait can be upgraded to abandon, not the other way round.
    assert_eq!(e.stop(&p, stop("ann", true), 3), Ok(vec![7]));
    assert_eq!(e.status, ExecutionStatus::Stopped);
    let run = e.action(0, 0).cloned().unwrap_or_default();
    assert_eq!(run.status(), ActionStatus::Stopped);
    assert_eq!(run.message, "stopped by ann: bad release");
    assert_eq!(run.history[0].outcome, Outcome::Stopped);
}

#[test]
fn a_stop_ends_a_waiting_approval() {
    let p = pipeline();
    let mut e = ExecutionState::new(&p);
    e.advance(&p, &Gates::open(), 1);
    for a in [(0, 0), (0, 1), (0, 2)] {
        e.finish_action(&p, a, true, String::new(), &Gates::open(), 2);
    }
    assert_eq!(e.stage_status(1), ActionStatus::WaitingForApproval);
    assert_eq!(e.stop(&p, stop("ann", false), 3), Ok(vec![]));
    assert_eq!(e.status, ExecutionStatus::Stopped);
    assert_eq!(
        e.action(1, 0).map(|r| r.status()),
        Some(ActionStatus::Stopped)
    );
}

#[test]
fn retry_reruns_only_what_did_not_succeed_and_keeps_history() {
    let p = pipeline();
    let mut e = ExecutionState::new(&p);
    e.advance(&p, &Gates::open(), 1);
    assign(&mut e, (0, 0), 1);
    assign(&mut e, (0, 1), 2);
    e.finish_action(&p, (0, 0), true, String::new(), &Gates::open(), 2);
    if let Some(run) = e.action_mut(0, 1) {
        run.close_attempt(2, Outcome::Failed, Some(1), "exit 1", 3);
    }
    e.finish_action(&p, (0, 1), false, "exit 1".into(), &Gates::open(), 3);
    assert_eq!(e.status, ExecutionStatus::Failed);
    assert_eq!(
        e.retry(&p, 1, false, &Gates::open(), 4),
        Err(SteerError::EarlierStage("build".into()))
    );
    let s = e.retry(&p, 0, false, &Gates::open(), 4);
    assert_eq!(s.map(|s| s.queued), Ok(vec![(0, 1)]));
    assert_eq!(e.status, ExecutionStatus::InProgress);
    let run = e.action(0, 1).cloned().unwrap_or_default();
    assert_eq!(
        (run.history.len(), run.round.history, run.attempt),
        (1, 1, 1)
    );
    assert_eq!(
        run.count(Outcome::Failed),
        0,
        "a new round has its own retry budget"
    );
    assert_eq!(
        e.action(0, 0).map(|r| r.status()),
        Some(ActionStatus::Succeeded)
    );
    assert!(matches!(
        e.retry(&p, 0, true, &Gates::open(), 5),
        Err(SteerError::NotRetryable(ExecutionStatus::InProgress))
    ));
}

#[test]
fn retry_all_reruns_every_action_of_the_stage() {
    let p = pipeline();
    let mut e = ExecutionState::new(&p);
    e.advance(&p, &Gates::open(), 1);
    e.finish_action(&p, (0, 0), true, String::new(), &Gates::open(), 2);
    e.finish_action(&p, (0, 1), false, "exit 1".into(), &Gates::open(), 2);
    let s = e.retry(&p, 0, true, &Gates::open(), 3);
    assert_eq!(s.map(|s| s.queued), Ok(vec![(0, 0), (0, 1)]));
}

#[test]
fn a_closed_gate_holds_the_execution_before_the_stage() {
    let p = pipeline();
    let mut e = ExecutionState::new(&p);
    e.advance(&p, &Gates::open(), 1);
    let mut gates = Gates::open();
    gates
        .closed
        .insert(1, "the transition into gate is disabled".into());
    for a in [(0, 0), (0, 1), (0, 2)] {
        e.finish_action(&p, a, true, String::new(), &gates, 2);
    }
    assert_eq!(e.status, ExecutionStatus::InProgress);
    assert_eq!(e.waits_before(), Some(1));
    assert_eq!(
        e.waiting.as_deref(),
        Some("the transition into gate is disabled")
    );
    // A gate only matters on the way in: the stage it guards is not entered.
    assert!(!e.is_in_stage(1));
    let s = e.advance(&p, &Gates::open(), 3);
    assert_eq!(s.approvals, vec![(1, 0)]);
    assert_eq!(e.waiting, None);
    assert!(e.is_in_stage(1));
}

#[test]
fn references_resolve_when_an_action_starts_or_fail_it_by_name() {
    let p = match crate::parse(
        "name: v\nsource: {git: /x}\nvariables: {REGION: eu}\nstages:\n  - name: b\n    actions:\n      - {name: c, type: build, image: i, commands: [true]}\n  - name: t\n    actions:\n      - {name: u, type: test, image: i, commands: [\"echo #{b.c.V} #{variables.REGION}\"]}\n      - {name: w, type: test, image: i, commands: [\"echo #{b.c.GONE}\"], run_order: 2}\n",
    ) {
        Ok(p) => p,
        Err(e) => panic!("{e:?}"),
    };
    let mut e = ExecutionState::new(&p);
    assert_eq!(e.variables.get("REGION").map(String::as_str), Some("eu"));
    e.advance(&p, &Gates::open(), 1);
    if let Some(run) = e.action_mut(0, 0) {
        run.variables.insert("V".into(), "1.4".into());
    }
    let s = e.finish_action(&p, (0, 0), true, String::new(), &Gates::open(), 2);
    assert_eq!(s.queued, vec![(1, 0)]);
    let u = e.action(1, 0).cloned().unwrap_or_default();
    assert_eq!(u.resolved.get("b.c.V").map(String::as_str), Some("1.4"));
    assert_eq!(
        u.resolved.get("variables.REGION").map(String::as_str),
        Some("eu")
    );
    let s = e.finish_action(&p, (1, 0), true, String::new(), &Gates::open(), 3);
    assert_eq!(s, Started::default(), "w cannot start");
    let w = e.action(1, 1).cloned().unwrap_or_default();
    assert_eq!(w.status(), ActionStatus::Failed);
    assert_eq!(
        w.message,
        "variable #{b.c.GONE} has no value: action b/c wrote no GONE to $FERRY_OUTPUT_VARS"
    );
    assert_eq!(e.status, ExecutionStatus::Failed);
}

fn parsed(text: &str) -> Pipeline {
    match crate::parse(text) {
        Ok(p) => p,
        Err(e) => panic!("{e:?}"),
    }
}

#[test]
fn when_skips_stages_and_actions_with_the_reason() {
    let p = parsed(
        "name: w\nsource: {git: /x}\nstages:\n  - name: b\n    actions:\n      - {name: c, type: build, image: i, commands: [true]}\n      - {name: docs, type: build, image: i, commands: [true], when: {variables: {\"#{b.c.KIND}\": release}}, run_order: 2}\n  - name: prod\n    when: {branch: [main, \"release/*\"]}\n    actions:\n      - {name: ok, type: approval}\n  - name: after\n    actions:\n      - {name: t, type: test, image: i, commands: [true]}\n",
    );
    let mut e = ExecutionState::new(&p);
    e.source = Some(SourceRef::Branch("feature/x".into()));
    e.advance(&p, &Gates::open(), 1);
    if let Some(run) = e.action_mut(0, 0) {
        run.variables.insert("KIND".into(), "debug".into());
    }
    // docs is skipped, prod too: the run goes straight to `after`.
    let s = e.finish_action(&p, (0, 0), true, String::new(), &Gates::open(), 2);
    assert_eq!(s.queued, vec![(2, 0)]);
    let docs = e.action(0, 1).cloned().unwrap_or_default();
    assert_eq!(docs.status(), ActionStatus::Skipped);
    assert_eq!(
        docs.message,
        "skipped: #{b.c.KIND} is \"debug\", not \"release\""
    );
    assert_eq!(e.stage_status(0), ActionStatus::Succeeded);
    assert_eq!(e.stage_status(1), ActionStatus::Skipped);
    assert_eq!(
        e.action(1, 0).map(|r| r.message.clone()),
        Some("skipped: branch feature/x matches none of main, release/*".to_string())
    );
    e.finish_action(&p, (2, 0), true, String::new(), &Gates::open(), 3);
    assert_eq!(e.status, ExecutionStatus::Succeeded);

    let mut on_main = ExecutionState::new(&p);
    on_main.source = Some(SourceRef::Branch("release/1.4".into()));
    on_main.advance(&p, &Gates::open(), 1);
    on_main.finish_action(&p, (0, 0), true, String::new(), &Gates::open(), 2);
    assert_eq!(on_main.stage_status(1), ActionStatus::WaitingForApproval);
}

#[test]
fn on_failure_retry_reruns_the_failed_actions_of_the_stage() {
    let p = parsed(
        "name: r\nsource: {git: /x}\nstages:\n  - name: b\n    on_failure: {retry: 1}\n    actions:\n      - {name: c, type: build, image: i, commands: [true]}\n      - {name: d, type: build, image: i, commands: [true]}\n",
    );
    let mut e = ExecutionState::new(&p);
    e.advance(&p, &Gates::open(), 1);
    assign(&mut e, (0, 1), 2);
    // c fails while d still runs: nothing happens until d ends.
    e.finish_action(&p, (0, 0), false, "exit 1".into(), &Gates::open(), 2);
    assert_eq!(e.status, ExecutionStatus::InProgress);
    assert_eq!(
        e.action(0, 0).map(|r| r.status()),
        Some(ActionStatus::Failed)
    );
    let s = e.finish_action(&p, (0, 1), true, String::new(), &Gates::open(), 3);
    assert_eq!(s.queued, vec![(0, 0)], "c runs again");
    assert_eq!(e.stage_retries.get(&0), Some(&1));
    // The second failure has no retry left.
    e.finish_action(&p, (0, 0), false, "exit 1".into(), &Gates::open(), 4);
    assert_eq!(e.status, ExecutionStatus::Failed);
}

#[test]
fn a_text_with_references_is_shown_only_once_its_action_started() {
    let mut run = ActionRun::default();
    let ask = "Ship #{build.app.version} to production?";
    // Before it starts its references have no values: nothing is shown,
    // rather than the reference as written.
    assert_eq!(run.shown_text(ask), "");
    assert_eq!(run.shown_text("Ship it?"), "Ship it?");
    run.resolved
        .insert("build.app.version".into(), "1.4.2".into());
    assert_eq!(run.shown_text(ask), "Ship 1.4.2 to production?");
    assert_eq!(run.resolved_text(ask), "Ship 1.4.2 to production?");
}
