//! Unit tests of `apply`: determinism and the refusals that protect state.

use std::collections::{BTreeMap, BTreeSet};

use ferry_pipeline::execution::{ActionStatus, ExecutionStatus};
use ferry_pipeline::spec::{DeployOutcome, DeploymentReport, HostOutcome, HostReport};

use super::*;
use crate::testing::{YAML, applied, enroll_a1};

mod authz;
mod caches;
mod console;
mod events;
mod rejected;
mod replicas;
mod requests;
mod steering;

fn spec() -> ferry_pipeline::Pipeline {
    ferry_pipeline::parse(YAML).unwrap_or_else(|e| panic!("{e:?}"))
}

fn cluster() -> ClusterState {
    let mut s = applied(YAML);
    enroll_a1(&mut s);
    s.apply(start_demo("e1", 4))
        .unwrap_or_else(|e| panic!("{e}"));
    s
}

/// The system (no person) starts execution `id` of pipeline `demo` at
/// commit `abc`, at time `at`.
fn start_demo(id: &str, at: i64) -> Command {
    Command::StartExecution {
        source: None,
        once: None,
        variables: Default::default(),
        id: id.into(),
        pipeline: "demo".into(),
        revision: "abc".into(),
        trigger: "t".into(),
        started_by: None,
        at,
    }
}

/// The state digest, which plain data always has.
fn digest(s: &ClusterState) -> String {
    s.digest().unwrap_or_else(|e| panic!("{e}"))
}

fn finish(epoch: u64, agent: &str, success: bool) -> Command {
    Command::FinishAttempt {
        variables: Default::default(),
        tests: None,
        caches: Vec::new(),
        epoch,
        agent: agent.into(),
        success,
        exit_code: Some(if success { 0 } else { 1 }),
        message: String::new(),
        outputs: BTreeMap::from([(
            "app".to_string(),
            ArtifactRef {
                digest: "sha256:x".into(),
                size: 3,
            },
        )]),
        log: None,
        deployment: None,
        at: 10,
    }
}

use ferry_pipeline::execution::ArtifactRef;

#[test]
fn tokens_expire_and_run_out() {
    let mut s = cluster();
    assert_eq!(
        s.apply(Command::Enroll {
            token_hash: "h".into(),
            agent: "a2".into(),
            cert: None,
            wrapping_key: None,
            at: 5,
            labels: Vec::new(),
        }),
        Err(Rejection::BadToken)
    );
    s.apply(Command::CreateToken {
        hash: "t2".into(),
        expires_at: 50,
        uses: 5,
        by: By::operator("root"),
        at: 6,
        labels: Vec::new(),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        s.apply(Command::Enroll {
            token_hash: "t2".into(),
            agent: "late".into(),
            cert: None,
            wrapping_key: None,
            at: 50,
            labels: Vec::new(),
        }),
        Err(Rejection::BadToken)
    );
    assert!(!s.agents.contains_key("late"));
}

#[test]
fn enroll_records_the_wrapping_key_and_old_entries_still_decode() {
    let mut s = cluster();
    assert_eq!(
        s.agents.get("a1").map(|a| a.wrapping_key.clone()),
        Some(None)
    );
    s.apply(Command::CreateToken {
        hash: "t2".into(),
        expires_at: 50,
        uses: 1,
        by: By::operator("root"),
        at: 6,
        labels: Vec::new(),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let key = "ab".repeat(32);
    let enroll = Command::Enroll {
        token_hash: "t2".into(),
        agent: "a2".into(),
        cert: None,
        wrapping_key: Some(key.clone()),
        at: 7,
        labels: Vec::new(),
    };
    // Through the log's encoding, as a follower would apply it.
    let decoded = Command::decode(&enroll.encode().unwrap_or_else(|e| panic!("{e}")))
        .unwrap_or_else(|e| panic!("{e}"));
    s.apply(decoded).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        s.agents.get("a2").and_then(|a| a.wrapping_key.as_deref()),
        Some(key.as_str())
    );
    // Entries and snapshots written before wrapping keys have no such field.
    let old = br#"{"Enroll":{"token_hash":"h","agent":"old","cert":null,"at":3}}"#;
    match Command::decode(old) {
        Ok(Command::Enroll { wrapping_key, .. }) => assert_eq!(wrapping_key, None),
        other => panic!("{other:?}"),
    }
    let mut json = serde_json::to_value(&s).unwrap_or_else(|e| panic!("{e}"));
    if let Some(agent) = json["agents"]["a2"].as_object_mut() {
        agent.remove("wrapping_key");
    }
    let back: ClusterState = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        back.agents.get("a2").map(|a| a.wrapping_key.clone()),
        Some(None)
    );
}

#[test]
fn only_the_current_epoch_records_a_result() {
    let mut s = cluster();
    assert_eq!(s.queued(), vec![("e1".to_string(), 0, 0)]);
    let out = s.apply(Command::Assign {
        execution: "e1".into(),
        stage: 0,
        action: 0,
        agent: "a1".into(),
        at: 5,
    });
    assert_eq!(
        out,
        Ok(Output::Assigned {
            epoch: 1,
            attempt: 1
        })
    );
    assert!(s.queued().is_empty());
    // Wrong agent, then wrong epoch: refused, nothing changes.
    let before = digest(&s);
    assert!(matches!(
        s.apply(finish(1, "intruder", true)),
        Ok(Output::Attempt {
            accepted: false,
            ..
        })
    ));
    assert!(matches!(
        s.apply(finish(7, "a1", true)),
        Ok(Output::Attempt {
            accepted: false,
            ..
        })
    ));
    assert_eq!(digest(&s), before);
    assert!(matches!(
        s.apply(finish(1, "a1", true)),
        Ok(Output::Attempt { accepted: true, .. })
    ));
    // A duplicate delivery of the same result is refused: exactly one result.
    assert!(matches!(
        s.apply(finish(1, "a1", true)),
        Ok(Output::Attempt {
            accepted: false,
            ..
        })
    ));
    let exec = &s.executions["e1"];
    assert_eq!(
        exec.state.action(1, 0).map(|r| r.status()),
        Some(ActionStatus::WaitingForApproval)
    );
    assert_eq!(
        s.artifacts["sha256:x"].holders.iter().collect::<Vec<_>>(),
        vec!["a1"]
    );
}

#[test]
fn approvals_expire_and_decisions_need_a_waiting_action() {
    let mut s = cluster();
    s.apply(Command::Grant {
        subject: "ann".into(),
        role: Role::Approver,
        by: By::operator("root"),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assign(&mut s, "e1", 0, 5);
    let early = Command::Decide {
        execution: "e1".into(),
        stage: 1,
        action: 0,
        by: "ann".into(),
        approve: true,
        comment: String::new(),
        at: 6,
    };
    assert!(matches!(
        s.apply(early),
        Err(Rejection::FailedPrecondition(_))
    ));
    s.apply(finish(1, "a1", true))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(s.expired_approvals(10 + 999).is_empty());
    assert_eq!(
        s.expired_approvals(10 + 1000),
        vec![("e1".to_string(), 1, 0)]
    );
    // Applying an expiry before its deadline is a no-op (a clock-skewed proposer).
    s.apply(Command::ExpireApproval {
        execution: "e1".into(),
        stage: 1,
        action: 0,
        at: 11,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.executions["e1"].state.status, ExecutionStatus::InProgress);
    s.apply(Command::ExpireApproval {
        execution: "e1".into(),
        stage: 1,
        action: 0,
        at: 2000,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.executions["e1"].state.status, ExecutionStatus::Failed);
    assert!(!s.active.contains("e1"));
}

#[test]
fn reapplying_the_same_pipeline_keeps_its_version() {
    let mut s = cluster();
    let out = s.apply(Command::ApplyPipeline {
        spec: spec(),
        yaml: YAML.into(),
        by: By::operator("root"),
        at: 9,
    });
    assert_eq!(
        out,
        Ok(Output::PipelineVersion {
            name: "demo".into(),
            version: 1,
            unchanged: true
        })
    );
}

#[test]
fn apply_is_deterministic_and_snapshots_round_trip() {
    let a = cluster();
    let b = cluster();
    assert_eq!(digest(&a), digest(&b));
    let json = serde_json::to_vec(&a).unwrap_or_default();
    let back: ClusterState = serde_json::from_slice(&json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, a);
}

#[test]
fn a_lost_agent_requeues_its_attempt_until_retries_run_out() {
    let mut s = cluster();
    let assign = |s: &mut ClusterState| {
        s.apply(Command::Assign {
            execution: "e1".into(),
            stage: 0,
            action: 0,
            agent: "a1".into(),
            at: 5,
        })
    };
    for n in 1..=3u64 {
        assert_eq!(
            assign(&mut s),
            Ok(Output::Assigned {
                epoch: n,
                attempt: n as u32
            })
        );
        s.apply(Command::AgentLost {
            agent: "a1".into(),
            at: 6,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        // The old attempt's result no longer counts.
        assert!(matches!(
            s.apply(finish(n, "a1", true)),
            Ok(Output::Attempt {
                accepted: false,
                ..
            })
        ));
    }
    let run = s.executions["e1"]
        .state
        .action(0, 0)
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        run.status(),
        ActionStatus::Failed,
        "two re-queues, then the third loss fails it"
    );
    assert_eq!(run.count(ferry_pipeline::execution::Outcome::Lost), 3);
    assert_eq!(s.executions["e1"].state.status, ExecutionStatus::Failed);
}

#[test]
fn retention_keeps_the_newest_executions_artifacts() {
    let mut s = cluster();
    assign(&mut s, "e1", 0, 5);
    s.apply(finish(1, "a1", true))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        s.unreferenced_artifacts(1).is_empty(),
        "still referenced by the newest execution"
    );
    s.apply(Command::StartExecution {
        source: None,
        once: None,
        variables: Default::default(),
        id: "e2".into(),
        pipeline: "demo".into(),
        revision: "def".into(),
        trigger: "t".into(),
        started_by: None,
        at: 20,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    // e1 still waits for its approval (active), so its artifact stays.
    assert!(s.unreferenced_artifacts(1).is_empty());
    s.apply(Command::ExpireApproval {
        execution: "e1".into(),
        stage: 1,
        action: 0,
        at: 1_000_000,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.unreferenced_artifacts(1), vec!["sha256:x".to_string()]);
    s.apply(Command::ForgetArtifacts {
        digests: vec!["sha256:x".into()],
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(s.artifacts.is_empty());
}

#[test]
fn execution_retention_forgets_only_finished_old_executions() {
    let mut s = cluster();
    for (i, id) in ["e2", "e3"].iter().enumerate() {
        s.apply(Command::StartExecution {
            source: None,
            once: None,
            variables: Default::default(),
            id: (*id).into(),
            pipeline: "demo".into(),
            revision: "r".into(),
            trigger: "t".into(),
            started_by: None,
            at: 10 + i as i64,
        })
        .unwrap_or_else(|e| panic!("{e}"));
    }
    // All three are still running: nothing is prunable.
    assert!(s.prunable_executions(1).is_empty());
    // A failed build ends e1; e2 and e3 still run.
    assign(&mut s, "e1", 0, 5);
    s.apply(finish(1, "a1", false))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.prunable_executions(2), vec!["e1".to_string()]);
    s.apply(Command::PruneExecutions {
        ids: vec!["e1".into(), "e2".into()],
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!s.executions.contains_key("e1"));
    assert!(
        s.executions.contains_key("e2"),
        "a running execution is never pruned"
    );
    assert_eq!(
        s.pipelines["demo"].executions,
        vec!["e2".to_string(), "e3".to_string()]
    );
    assert!(s.attempts.values().all(|l| l.execution != "e1"));
}

const DEPLOY_YAML: &str = r#"
name: web
source: {git: /tmp/web.git}
execution_mode: parallel
stages:
  - name: build
    actions:
      - {name: a, type: build, image: img, commands: [true], outputs: {app: [dist/]}}
  - name: prod
    actions:
      - {name: ship, type: deploy, inputs: [app], environment: production}
  - name: after
    actions:
      - {name: check, type: build, image: img, commands: [true]}
"#;

fn assign(s: &mut ClusterState, execution: &str, stage: usize, at: i64) -> u64 {
    match s.apply(Command::Assign {
        execution: execution.into(),
        stage,
        action: 0,
        agent: "a1".into(),
        at,
    }) {
        Ok(Output::Assigned { epoch, .. }) => epoch,
        other => panic!("{other:?}"),
    }
}

/// a1's successful result for deploy attempt `epoch`: no outputs, a report of
/// `release` deployed to production.
fn deploy_result(epoch: u64, release: &str) -> Command {
    let mut done = finish(epoch, "a1", true);
    if let Command::FinishAttempt {
        deployment,
        outputs,
        ..
    } = &mut done
    {
        outputs.clear();
        *deployment = Some(deployed(release, DeployOutcome::Succeeded));
    }
    done
}

fn deployed(release: &str, outcome: DeployOutcome) -> Vec<u8> {
    crate::report::encode(&DeploymentReport {
        environment: "production".into(),
        release: release.into(),
        outcome,
        hosts: vec![HostReport {
            host: "web1".into(),
            outcome: HostOutcome::Deployed,
            release: release.into(),
            ..Default::default()
        }],
        ..Default::default()
    })
}

#[test]
fn deployments_are_recorded_and_redeployed_as_new_executions() {
    let mut s = cluster();
    let spec = ferry_pipeline::parse(DEPLOY_YAML).unwrap_or_else(|e| panic!("{e:?}"));
    s.apply(Command::ApplyPipeline {
        spec,
        yaml: DEPLOY_YAML.into(),
        by: By::operator("root"),
        at: 5,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    for (id, at) in [("w1", 10), ("w2", 20)] {
        s.apply(Command::StartExecution {
            source: None,
            once: None,
            variables: Default::default(),
            id: id.into(),
            pipeline: "web".into(),
            revision: format!("rev-{id}"),
            trigger: "t".into(),
            started_by: None,
            at,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let epoch = assign(&mut s, id, 0, at + 1);
        let mut done = finish(epoch, "a1", true);
        if let Command::FinishAttempt { outputs, .. } = &mut done {
            outputs.insert(
                "app".into(),
                ArtifactRef {
                    digest: format!("sha256:{id}"),
                    size: 1,
                },
            );
        }
        s.apply(done).unwrap_or_else(|e| panic!("{e}"));
        let epoch = assign(&mut s, id, 1, at + 2);
        s.apply(deploy_result(epoch, id))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let ids: Vec<(u64, String)> = s
        .deployments_of("production")
        .map(|d| (d.id, d.release.clone()))
        .collect();
    assert_eq!(ids, vec![(2, "w2".to_string()), (1, "w1".to_string())]);
    let first = &s.deployments[&1];
    assert_eq!(
        first.artifact.as_ref().map(|a| a.digest.as_str()),
        Some("sha256:w1")
    );
    assert_eq!((first.stage, first.action), (1, 0));
    // Rollback targets: the newest good release other than the current one, or the one named.
    assert_eq!(s.rollback_target("production", "").map(|d| d.id), Ok(1));
    assert_eq!(s.rollback_target("production", "w2").map(|d| d.id), Ok(2));
    assert!(s.rollback_target("production", "zz").is_err());
    assert!(s.rollback_target("staging", "").is_err());
    // Retention keeps deployed artifacts for rollback.
    assert!(
        !s.unreferenced_artifacts(0)
            .contains(&"sha256:w1".to_string())
    );

    s.apply(Command::Redeploy {
        id: "r1".into(),
        from: 1,
        trigger: "rollback".into(),
        started_by: None,
        at: 30,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let r = &s.executions["r1"];
    assert_eq!(r.release_of.as_deref(), Some("w1"));
    assert_eq!(r.revision, "rev-w1");
    // Only the deploy action is queued; the build and the later stage are not run.
    assert!(s.queued().contains(&("r1".to_string(), 1, 0)));
    assert!(!s.queued().iter().any(|(id, st, _)| id == "r1" && *st != 1));
    assert_eq!(
        r.state.action(0, 0).map(|a| a.status()),
        Some(ActionStatus::Succeeded)
    );
    assert_eq!(
        r.state.produced().get("app").map(|a| a.digest.as_str()),
        Some("sha256:w1")
    );
    // After a failed deployment, rollback applies the last good release again.
    s.deployments.insert(
        9,
        DeploymentRecord {
            id: 9,
            outcome: DeployOutcome::Failed,
            release: "w3".into(),
            ..s.deployments[&2].clone()
        },
    );
    assert_eq!(s.rollback_target("production", "").map(|d| d.id), Ok(2));
    s.deployments.remove(&9);
    let epoch = assign(&mut s, "r1", 1, 31);
    s.apply(finish(epoch, "a1", true))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.executions["r1"].state.status, ExecutionStatus::Succeeded);
}

/// `cluster()` with the build done, so `e1`'s approval waits; `bob` (operator
/// and approver) applied version 2 and `carol` (approver) started `e2` on it.
fn waiting_approvals(yaml: &str, applier: &str) -> ClusterState {
    let mut s = cluster();
    for (subject, role) in [
        ("bob", Role::Operator),
        ("bob", Role::Approver),
        ("carol", Role::Approver),
        ("carol", Role::Operator),
        ("ann", Role::Approver),
        ("op", Role::Operator),
    ] {
        s.apply(Command::Grant {
            subject: subject.into(),
            role,
            by: By::operator("root"),
        })
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let spec = ferry_pipeline::parse(yaml).unwrap_or_else(|e| panic!("{e:?}"));
    s.apply(Command::ApplyPipeline {
        spec,
        yaml: yaml.into(),
        by: By::operator(applier),
        at: 5,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    s.apply(Command::StartExecution {
        source: None,
        once: None,
        variables: Default::default(),
        id: "e2".into(),
        pipeline: "demo".into(),
        revision: "abc".into(),
        trigger: "manual by carol".into(),
        started_by: Some(By::operator("carol")),
        at: 6,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let epoch = assign(&mut s, "e2", 0, 7);
    s.apply(finish(epoch, "a1", true))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        s.executions["e2"].state.action(1, 0).map(|r| r.status()),
        Some(ActionStatus::WaitingForApproval)
    );
    s
}

fn decide(by: &str) -> Command {
    Command::Decide {
        execution: "e2".into(),
        stage: 1,
        action: 0,
        by: by.into(),
        approve: true,
        comment: String::new(),
        at: 20,
    }
}

fn denied(s: &mut ClusterState, by: &str) -> String {
    let before = s.clone();
    match s.apply(decide(by)) {
        Err(Rejection::PermissionDenied(reason, why)) => {
            assert_eq!(*s, before, "a refused decision leaves the state untouched");
            format!("{reason}: {why}")
        }
        other => panic!("{by}: expected a refusal, got {other:?}"),
    }
}

const NAMED: &str = r#"
name: demo
source: {git: /tmp/demo.git}
execution_mode: parallel
stages:
  - name: build
    actions:
      - {name: a, type: build, image: img, commands: [true], outputs: {app: [dist/]}}
  - name: gate
    actions:
      - {name: ok, type: approval, approvers: [bob, op, dave]}
"#;

#[test]
fn naming_someone_in_approvers_grants_nothing() {
    let mut s = waiting_approvals(NAMED, "root");
    // `op` and `dave` are listed but hold no approver role.
    assert!(denied(&mut s, "op").starts_with("MISSING_ROLE: "));
    assert!(denied(&mut s, "dave").contains("needs the approver role"));
    // `ann` is an approver but the list narrows it to bob.
    assert!(denied(&mut s, "ann").starts_with("NOT_AN_APPROVER: "));
    assert!(denied(&mut s, "ann").contains("not among this approval's approvers"));
    s.apply(decide("bob")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.executions["e2"].state.status, ExecutionStatus::Succeeded);
}

#[test]
fn nobody_approves_what_they_started_or_applied() {
    let mut s = waiting_approvals(YAML.replace("ok, type", "ok2, type").as_str(), "bob");
    assert!(denied(&mut s, "carol").starts_with("FOUR_EYES: "));
    assert!(denied(&mut s, "carol").contains("started execution e2"));
    assert!(denied(&mut s, "bob").starts_with("FOUR_EYES: "));
    assert!(denied(&mut s, "bob").contains("applied version 2"));
    // An admin is an approver too, but not of what it applied.
    s.apply(Command::ApplyPipeline {
        spec: ferry_pipeline::parse(YAML).unwrap_or_else(|e| panic!("{e:?}")),
        yaml: YAML.into(),
        by: By::operator("root"),
        at: 30,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    s.apply(decide("ann")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.executions["e2"].state.status, ExecutionStatus::Succeeded);
    assert_eq!(
        s.executions["e2"].state.actions[1][0].approvals[0].by,
        "ann"
    );
}

const SELF_OK: &str = r#"
name: demo
source: {git: /tmp/demo.git}
execution_mode: parallel
stages:
  - name: build
    actions:
      - {name: a, type: build, image: img, commands: [true], outputs: {app: [dist/]}}
  - name: gate
    actions:
      - {name: ok, type: approval, allow_self_approval: true}
"#;

#[test]
fn only_an_admin_may_allow_self_approval() {
    let mut s = waiting_approvals(NAMED, "root");
    let before = s.clone();
    let spec = ferry_pipeline::parse(SELF_OK).unwrap_or_else(|e| panic!("{e:?}"));
    let refused = s.apply(Command::ApplyPipeline {
        spec: spec.clone(),
        yaml: SELF_OK.into(),
        by: By::operator("bob"),
        at: 30,
    });
    assert!(
        matches!(refused, Err(Rejection::PermissionDenied(..))),
        "{refused:?}"
    );
    assert_eq!(s, before);
    let mut s = waiting_approvals(SELF_OK, "root");
    // carol started e2 and may approve it: an admin allowed it for this approval.
    s.apply(decide("carol")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.executions["e2"].state.status, ExecutionStatus::Succeeded);
}

#[test]
fn a_role_revoked_before_the_decision_applies_refuses_it() {
    let mut s = waiting_approvals(NAMED, "root");
    // The handler checked on a member that had not yet applied the revoke.
    s.apply(Command::Revoke {
        subject: "bob".into(),
        role: Role::Approver,
        by: By::operator("root"),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(denied(&mut s, "bob").contains("needs the approver role"));
}

#[test]
fn old_pipeline_versions_are_pruned_unless_still_run() {
    let mut s = cluster();
    // e1 (from `cluster()`) runs version 1; versions 2.. are applied and unused.
    for i in 0..(super::definitions::PIPELINE_VERSIONS_KEPT + 10) {
        let yaml = YAML.replace("commands: [true]", &format!("commands: [\"echo {i}\"]"));
        s.apply(Command::ApplyPipeline {
            spec: ferry_pipeline::parse(&yaml).unwrap_or_else(|e| panic!("{e:?}")),
            yaml,
            by: By::operator("root"),
            at: 10,
        })
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let versions: Vec<u64> = s.pipelines["demo"]
        .versions
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(
        versions.len(),
        super::definitions::PIPELINE_VERSIONS_KEPT + 1
    );
    assert_eq!(versions[0], 1, "version 1 is still run by e1");
    assert_eq!(
        versions.last().copied(),
        Some(super::definitions::PIPELINE_VERSIONS_KEPT as u64 + 11)
    );
    assert!(s.pipeline_of(&s.executions["e1"]).is_some());
}

#[test]
fn a_replica_claim_needs_a_known_blob_of_its_size() {
    let mut s = cluster();
    assign(&mut s, "e1", 0, 5);
    s.apply(finish(1, "a1", true))
        .unwrap_or_else(|e| panic!("{e}"));
    let before = s.clone();
    let unknown = s.apply(Command::ArtifactHeld {
        digest: "sha256:made-up".into(),
        size: 3,
        agent: "a1".into(),
    });
    assert!(
        matches!(unknown, Err(Rejection::NotFound(_))),
        "{unknown:?}"
    );
    let wrong_size = s.apply(Command::ArtifactHeld {
        digest: "sha256:x".into(),
        size: 4,
        agent: "a1".into(),
    });
    assert!(
        matches!(wrong_size, Err(Rejection::FailedPrecondition(_))),
        "{wrong_size:?}"
    );
    assert_eq!(s, before, "refused claims change nothing");
}

fn binding(fingerprint: &str) -> CertBinding {
    CertBinding {
        fingerprint: fingerprint.into(),
        not_after: 1_000_000,
    }
}

fn renew(presented: &str, new: &str) -> Command {
    Command::RenewAgentCertificate {
        agent: "a1".into(),
        presented: binding(presented),
        cert: binding(new),
        at: 10,
    }
}

#[test]
fn a_renewal_binds_the_new_certificate_and_keeps_only_the_presented_one() {
    let mut s = cluster();
    let bound = |s: &ClusterState| {
        let a = &s.agents["a1"];
        (
            a.cert.as_ref().map(|c| c.fingerprint.clone()),
            a.previous_cert.as_ref().map(|c| c.fingerprint.clone()),
        )
    };
    let some = |f: &str| Some(f.to_string());
    // Enrolled before certificates were bound: the first renewal binds it.
    s.apply(renew("c0", "c1")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bound(&s), (some("c1"), some("c0")));
    s.apply(renew("c1", "c2")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bound(&s), (some("c2"), some("c1")));
    // Two renewals back is no longer bound: refused, nothing changes.
    let before = s.clone();
    let stale = s.apply(renew("c0", "c3"));
    assert!(
        matches!(stale, Err(Rejection::PermissionDenied(..))),
        "{stale:?}"
    );
    assert_eq!(s, before);
    // The agent never saved c2 (a lost answer): it renews again with c1.
    s.apply(renew("c1", "c4")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bound(&s), (some("c4"), some("c1")));
    // A revoked certificate renews nothing.
    s.apply(Command::RevokeCertificate {
        fingerprint: "c4".into(),
        identity: "spiffe://ferry/agent/a1".into(),
        not_after: 1_000_000,
        by: By::operator("root"),
        at: 11,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let before = s.clone();
    assert!(matches!(
        s.apply(renew("c4", "c5")),
        Err(Rejection::PermissionDenied(..))
    ));
    assert_eq!(s, before);
    // Removing the agent revokes every certificate it was bound to.
    s.apply(Command::RemoveAgent {
        agent: "a1".into(),
        by: By::operator("root"),
        at: 12,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(s.is_revoked("c1") && s.is_revoked("c4"));
    assert!(matches!(
        s.apply(renew("c1", "c6")),
        Err(Rejection::PermissionDenied(..) | Rejection::NotFound(_))
    ));
}

#[test]
fn replicas_go_only_to_agents_that_could_run_the_pipeline() {
    let mut s = cluster();
    assign(&mut s, "e1", 0, 5);
    s.apply(finish(1, "a1", true))
        .unwrap_or_else(|e| panic!("{e}"));
    for (name, labels) in [("builder", vec!["builder"]), ("other", vec!["gpu"])] {
        s.agents.insert(
            name.into(),
            AgentRecord {
                name: name.into(),
                labels: labels.into_iter().map(String::from).collect(),
                ..Default::default()
            },
        );
    }
    let wanted = BTreeSet::from(["sha256:x", "sha256:unknown"]);
    // Its build action runs anywhere: every agent could be given its work.
    let all = s.replica_candidates(&wanted);
    assert_eq!(all.get("sha256:x").map(BTreeSet::len), Some(3), "{all:?}");
    assert!(!all.contains_key("sha256:unknown"));
    // It runs on `builder` agents only (the approval runs on none).
    if let Some(p) = s.pipelines.get_mut("demo") {
        for v in &mut p.versions {
            v.spec.stages[0].actions[0].runs_on = vec!["builder".into()];
        }
    }
    let some = s.replica_candidates(&wanted);
    assert_eq!(
        some.get("sha256:x"),
        Some(&BTreeSet::from(["builder".to_string()]))
    );
}

/// An agent's labels are bound at enrollment — to those it asks for, within
/// what its token grants — and changed only by an admin: a registration
/// asking for `prod-deploy` gains nothing. Entries logged before (a
/// registration that carried labels) replay as they applied then, and a
/// snapshot from before keeps the labels it had.
#[test]
fn labels_are_bound_at_enrollment_and_changed_only_by_an_admin() {
    let mut s = cluster();
    let token = |hash: &str, labels: &[&str]| Command::CreateToken {
        hash: hash.into(),
        expires_at: 100,
        uses: 5,
        by: By::operator("root"),
        at: 6,
        labels: labels.iter().map(|l| l.to_string()).collect(),
    };
    let enroll = |hash: &str, agent: &str, labels: &[&str]| Command::Enroll {
        token_hash: hash.into(),
        agent: agent.into(),
        cert: None,
        wrapping_key: Some("ab".repeat(32)),
        at: 7,
        labels: labels.iter().map(|l| l.to_string()).collect(),
    };
    let labels_of = |s: &ClusterState, a: &str| s.agents.get(a).map(|r| r.labels.clone());
    s.apply(token("open", &[]))
        .unwrap_or_else(|e| panic!("{e}"));
    s.apply(token("build", &["build", "linux"]))
        .unwrap_or_else(|e| panic!("{e}"));
    // A token without labels records the ask (sorted, each once).
    s.apply(enroll("open", "b1", &["linux", "build", "linux"]))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        labels_of(&s, "b1"),
        Some(vec!["build".into(), "linux".into()])
    );
    // A token with labels refuses any it does not grant, and changes nothing.
    let before = s.clone();
    match s.apply(enroll("build", "b2", &["build", "prod-deploy"])) {
        Err(Rejection::PermissionDenied(_, why)) => assert!(why.contains("prod-deploy"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(s, before);
    // ... grants a subset asked for, or all of its own when none are.
    s.apply(enroll("build", "b2", &["linux"]))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(labels_of(&s, "b2"), Some(vec!["linux".into()]));
    s.apply(enroll("build", "b3", &[]))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        labels_of(&s, "b3"),
        Some(vec!["build".into(), "linux".into()])
    );
    // A registration now carries no labels: they stay as bound.
    s.apply(Command::RegisterAgent {
        name: "b2".into(),
        labels: None,
        capacity: 4,
        version: "v".into(),
        address: "10.0.0.2:7000".into(),
        at: 8,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(labels_of(&s, "b2"), Some(vec!["linux".into()]));
    assert_eq!(s.agents.get("b2").map(|a| a.capacity), Some(4));
    // What is logged for it says nothing of labels.
    let bytes = Command::RegisterAgent {
        name: "b2".into(),
        labels: None,
        capacity: 4,
        version: "v".into(),
        address: "a:1".into(),
        at: 8,
    }
    .encode()
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!String::from_utf8_lossy(&bytes).contains("labels"));
    // An admin changes them: add and remove, or replace.
    let label = |set: Option<&[&str]>, add: &[&str], remove: &[&str]| Command::SetAgentLabels {
        agent: "b2".into(),
        set: set.map(|l| l.iter().map(|x| x.to_string()).collect()),
        add: add.iter().map(|x| x.to_string()).collect(),
        remove: remove.iter().map(|x| x.to_string()).collect(),
        by: By::operator("root"),
        at: 9,
    };
    s.apply(label(None, &["prod-deploy"], &["linux"]))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(labels_of(&s, "b2"), Some(vec!["prod-deploy".into()]));
    s.apply(label(Some(&["a", "b"]), &[], &[]))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(labels_of(&s, "b2"), Some(vec!["a".into(), "b".into()]));
    s.apply(label(Some(&[]), &[], &[]))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(labels_of(&s, "b2"), Some(Vec::new()));
    // An entry logged before labels were bound set them; it replays so.
    let old = br#"{"RegisterAgent":{"name":"b1","labels":["gpu"],"capacity":2,"version":"v","address":"a:1","at":10}}"#;
    let old = Command::decode(old).unwrap_or_else(|e| panic!("{e}"));
    s.apply(old).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(labels_of(&s, "b1"), Some(vec!["gpu".into()]));
    // Old entries and snapshots without the new fields read as before.
    let old = br#"{"CreateToken":{"hash":"t","expires_at":1,"uses":1,"by":"root","at":0}}"#;
    assert!(matches!(
        Command::decode(old),
        Ok(Command::CreateToken { labels, .. }) if labels.is_empty()
    ));
    let mut json = serde_json::to_value(&s).unwrap_or_else(|e| panic!("{e}"));
    if let Some(t) = json["tokens"]["build"].as_object_mut() {
        t.remove("labels");
    }
    let back: ClusterState = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
    assert!(back.tokens["build"].labels.is_empty());
    assert_eq!(back.agents["b1"].labels, vec!["gpu".to_string()]);
}
