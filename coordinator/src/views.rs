//! Read-only projections of cluster state into the wire types the CLI shows,
//! and the one place where state values become protobuf values: unix
//! milliseconds become `google.protobuf.Timestamp`s (an absent time an unset
//! field), lengths of time `Duration`s, and statuses, kinds, roles and
//! outcomes the API's enums.

use std::time::UNIX_EPOCH;

use ferry_pipeline::ActionKind;
use ferry_pipeline::execution::ActionStatus;
use ferry_proto as pb;
use prost_types::{Duration, Timestamp};

use ferry_state::{ClusterState, Execution};

/// Current wall-clock time in unix milliseconds (proposers only; never in apply).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// 9999-12-31T23:59:59.999Z in unix milliseconds: the last instant a
/// `google.protobuf.Timestamp` may hold (and RFC 3339 can write).
const LAST_TIMESTAMP_MS: i64 = 253_402_300_799_999;

/// A unix-ms time on the wire; `None` (absent) stays unset. Times past year
/// 9999 are sent as that year's last millisecond, the end of Timestamp's range.
pub fn timestamp(ms: Option<i64>) -> Option<Timestamp> {
    let ms = ms?.min(LAST_TIMESTAMP_MS);
    Some(Timestamp {
        seconds: ms.div_euclid(1000),
        // In 0..1000 ms: the product fits an i32.
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    })
}

/// A unix-ms time as RFC 3339 text (UTC, milliseconds), for JSON bodies.
pub fn rfc3339(ms: i64) -> String {
    let ms = ms.clamp(0, LAST_TIMESTAMP_MS);
    let t = UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// A length of time in milliseconds on the wire.
pub fn duration_ms(ms: u64) -> Duration {
    Duration {
        // u64 milliseconds / 1000 always fits an i64.
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

/// A decision on an approval, on the wire.
pub fn approval_decision(approve: bool) -> pb::ApprovalDecision {
    if approve {
        pb::ApprovalDecision::Approved
    } else {
        pb::ApprovalDecision::Rejected
    }
}

/// A member's Raft role on the wire.
pub fn member_role(r: raft::StateRole) -> pb::MemberRole {
    match r {
        raft::StateRole::Leader => pb::MemberRole::Leader,
        raft::StateRole::Follower => pb::MemberRole::Follower,
        raft::StateRole::Candidate => pb::MemberRole::Candidate,
        raft::StateRole::PreCandidate => pb::MemberRole::PreCandidate,
    }
}

pub fn execution(state: &ClusterState, exec: &Execution) -> pb::ExecutionView {
    let spec = state.pipeline_of(exec);
    let stages = exec
        .state
        .actions
        .iter()
        .enumerate()
        .map(|(si, runs)| {
            let stage_spec = spec.and_then(|p| p.stages.get(si));
            pb::StageView {
                name: stage_spec.map(|s| s.name.clone()).unwrap_or_default(),
                status: pb::ActionStatus::from(exec.state.stage_status(si)).into(),
                actions: runs
                    .iter()
                    .enumerate()
                    .map(|(ai, run)| {
                        let a = stage_spec.and_then(|s| s.actions.get(ai));
                        pb::ActionView {
                            name: a.map(|a| a.name.clone()).unwrap_or_default(),
                            kind: a
                                .map_or(pb::ActionKind::Unspecified, |a| {
                                    pb::ActionKind::from(a.kind)
                                })
                                .into(),
                            run_order: a.map_or(1, |a| a.run_order),
                            approval_message: a
                                .map(|a| run.shown_text(&a.message))
                                .unwrap_or_default(),
                            approval_url: a.map(|a| run.shown_text(&a.url)).unwrap_or_default(),
                            approvals_required: a
                                .filter(|a| a.kind == ActionKind::Approval)
                                .map_or(0, |a| a.required),
                            output_variables: run.variables.clone().into_iter().collect(),
                            resolved_variables: run.resolved.clone().into_iter().collect(),
                            tests: run.tests.clone().map(Into::into),
                            status: pb::ActionStatus::from(run.status()).into(),
                            attempt: run.attempt,
                            agent: run.agent.clone().unwrap_or_default(),
                            exit_code: run.exit_code,
                            started_at: timestamp(run.started_at),
                            finished_at: timestamp(run.finished_at),
                            message: run.message.clone(),
                            approvals: run
                                .approvals
                                .iter()
                                .map(|d| pb::ApprovalView {
                                    by: d.by.clone(),
                                    decision: approval_decision(d.approve).into(),
                                    comment: d.comment.clone(),
                                    at: timestamp(Some(d.at)),
                                })
                                .collect(),
                            attempts: run
                                .history
                                .iter()
                                .map(|h| pb::AttemptView {
                                    attempt: h.attempt,
                                    agent: h.agent.clone(),
                                    outcome: pb::AttemptOutcome::from(h.outcome).into(),
                                    exit_code: h.exit_code,
                                    started_at: timestamp(Some(h.started_at)),
                                    finished_at: timestamp(h.finished_at),
                                    message: h.message.clone(),
                                })
                                .collect(),
                            outputs: run
                                .outputs
                                .iter()
                                .map(|(name, art)| pb::ArtifactView {
                                    name: name.clone(),
                                    digest: art.digest.clone(),
                                    size: art.size,
                                    holders: holders(state, &art.digest),
                                })
                                .collect(),
                        }
                    })
                    .collect(),
            }
        })
        .collect();
    pb::ExecutionView {
        pipeline: exec.pipeline.clone(),
        pipeline_version: exec.version,
        execution_id: exec.id.clone(),
        revision: exec.revision.clone(),
        status: pb::ExecutionStatus::from(exec.state.status).into(),
        stages,
        trigger: exec.trigger.clone(),
        started_at: timestamp(Some(exec.started_at)),
        finished_at: timestamp(exec.state.finished_at),
        waiting: exec.state.waiting.clone().unwrap_or_default(),
        stop: exec.state.stop.as_ref().map(|s| pb::StopInfo {
            by: s.by.clone(),
            reason: s.reason.clone(),
            abandon: s.abandon,
            at: timestamp(Some(s.at)),
        }),
        superseded_by: exec.state.superseded_by.clone().unwrap_or_default(),
        variables: exec.state.variables.clone().into_iter().collect(),
        source: match &exec.state.source {
            Some(ferry_pipeline::condition::SourceRef::Branch(b)) => format!("branch {b}"),
            Some(ferry_pipeline::condition::SourceRef::Tag(t)) => format!("tag {t}"),
            None => String::new(),
        },
        rollbacks: exec.rollbacks.clone().unwrap_or_default(),
        upstream: exec.upstream.clone(),
        downstream: exec
            .fed
            .iter()
            .flatten()
            .filter_map(|id| state.executions.get(id))
            .map(|d| format!("{}/{}", d.pipeline, d.id))
            .collect(),
    }
}

/// Agent names holding a blob.
pub fn holders(state: &ClusterState, digest: &str) -> Vec<String> {
    state
        .artifacts
        .get(digest)
        .map(|a| a.holders.iter().cloned().collect())
        .unwrap_or_default()
}

/// Peer addresses (host:port) of the agents holding a blob.
pub fn holder_addresses(state: &ClusterState, digest: &str) -> Vec<String> {
    state.agent_addresses(&holders(state, digest))
}

pub fn pipeline_summary(state: &ClusterState, name: &str) -> Option<pb::PipelineSummary> {
    let rec = state.pipelines.get(name)?;
    let latest = rec.latest()?;
    let last = rec
        .executions
        .last()
        .and_then(|id| state.executions.get(id));
    Some(pb::PipelineSummary {
        name: rec.name.clone(),
        version: latest.version,
        source: latest.spec.source.git.clone(),
        branch: latest.spec.source.branch.clone(),
        last_execution_id: last.map(|e| e.id.clone()).unwrap_or_default(),
        last_status: last
            .map_or(pb::ExecutionStatus::Unspecified, |e| {
                pb::ExecutionStatus::from(e.state.status)
            })
            .into(),
        updated_at: timestamp(Some(latest.applied_at)),
    })
}

/// True when the action can produce no more log output.
pub fn is_final(status: ActionStatus) -> bool {
    status.is_final() || status == ActionStatus::WaitingForApproval
}

/// An environment with its hosts, and the secrets they name that are not set.
pub fn environment(
    state: &ClusterState,
    rec: &ferry_state::EnvironmentRecord,
) -> pb::EnvironmentView {
    use ferry_pipeline::{HostKey, Target};
    let hosts = rec
        .spec
        .hosts
        .iter()
        .map(|h| {
            let (kind, address, user, host_key, secret, path) = match &h.target {
                Target::Ssh(t) => {
                    let key = match &t.host_key {
                        HostKey::PublicKey { algorithm, .. } => {
                            format!("{algorithm} (pinned public key)")
                        }
                        HostKey::Fingerprint(f) => f.clone(),
                    };
                    let addr = if t.host.contains(':') {
                        format!("[{}]:{}", t.host, t.port)
                    } else {
                        format!("{}:{}", t.host, t.port)
                    };
                    (
                        pb::HostKind::Ssh,
                        addr,
                        t.user.clone(),
                        key,
                        t.key_secret.clone(),
                        t.path.clone(),
                    )
                }
                Target::Docker(t) => (
                    pb::HostKind::Docker,
                    t.endpoint.clone(),
                    String::new(),
                    String::new(),
                    t.tls_secret.clone().unwrap_or_default(),
                    String::new(),
                ),
            };
            let missing_secrets = if secret.is_empty() || state.secrets.contains_key(&secret) {
                vec![]
            } else {
                vec![secret.clone()]
            };
            pb::HostView {
                name: h.name.clone(),
                kind: kind.into(),
                address,
                user,
                host_key,
                secret,
                path,
                missing_secrets,
            }
        })
        .collect();
    pb::EnvironmentView {
        name: rec.spec.name.clone(),
        version: rec.version,
        hosts,
        yaml: rec.yaml.clone(),
        applied_by: rec.applied_by.clone(),
        applied_at: timestamp(Some(rec.applied_at)),
        unchanged: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_pipeline::execution::{ExecutionStatus, Outcome};
    use ferry_state::Role;

    #[test]
    fn times_go_out_as_timestamps_and_absent_ones_unset() {
        assert_eq!(timestamp(None), None);
        let t = |seconds, nanos| Some(Timestamp { seconds, nanos });
        assert_eq!(timestamp(Some(0)), t(0, 0));
        assert_eq!(
            timestamp(Some(1_714_557_600_123)),
            t(1_714_557_600, 123_000_000)
        );
        // Before 1970 the millisecond stays exact (nanos are never negative).
        assert_eq!(timestamp(Some(-1)), t(-1, 999_000_000));
        // Past year 9999: the last millisecond a Timestamp may hold.
        assert_eq!(timestamp(Some(i64::MAX)), t(253_402_300_799, 999_000_000));
    }

    #[test]
    fn lengths_of_time_go_out_as_durations() {
        let d = duration_ms(90_250);
        assert_eq!((d.seconds, d.nanos), (90, 250_000_000));
        let d = duration_ms(u64::MAX);
        assert_eq!(
            (d.seconds, d.nanos),
            ((u64::MAX / 1000) as i64, 615_000_000)
        );
    }

    /// `ACTION_STATUS_WAITING_FOR_APPROVAL` from `WaitingForApproval`.
    fn wire_name(prefix: &str, word: &str) -> String {
        let mut out = format!("{prefix}_");
        for (i, c) in word.chars().enumerate() {
            if c.is_uppercase() && i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_uppercase());
        }
        out
    }

    #[test]
    fn every_state_value_has_the_enum_value_of_its_name() {
        for s in [
            ExecutionStatus::InProgress,
            ExecutionStatus::Succeeded,
            ExecutionStatus::Failed,
            ExecutionStatus::Stopping,
            ExecutionStatus::Stopped,
            ExecutionStatus::Superseded,
        ] {
            let name = wire_name("EXECUTION_STATUS", &s.to_string());
            assert_eq!(pb::ExecutionStatus::from(s).as_str_name(), name);
        }
        for s in [
            ActionStatus::Pending,
            ActionStatus::InProgress,
            ActionStatus::WaitingForApproval,
            ActionStatus::Succeeded,
            ActionStatus::Failed,
            ActionStatus::Stopped,
            ActionStatus::Skipped,
        ] {
            let name = wire_name("ACTION_STATUS", &s.to_string());
            assert_eq!(pb::ActionStatus::from(s).as_str_name(), name);
        }
        for k in ActionKind::ALL {
            let name = format!("ACTION_KIND_{}", k.as_str().to_uppercase());
            assert_eq!(pb::ActionKind::from(k).as_str_name(), name);
        }
        for o in [
            Outcome::Running,
            Outcome::Succeeded,
            Outcome::Failed,
            Outcome::Lost,
        ] {
            let name = wire_name("ATTEMPT_OUTCOME", &format!("{o:?}"));
            assert_eq!(pb::AttemptOutcome::from(o).as_str_name(), name);
        }
        for r in Role::ALL {
            let name = format!("ROLE_{}", r.as_str().to_uppercase());
            assert_eq!(pb::Role::from(r).as_str_name(), name);
        }
        for r in [
            raft::StateRole::Leader,
            raft::StateRole::Follower,
            raft::StateRole::Candidate,
            raft::StateRole::PreCandidate,
        ] {
            let name = wire_name("MEMBER_ROLE", &format!("{r:?}"));
            assert_eq!(member_role(r).as_str_name(), name);
        }
        assert_eq!(approval_decision(true), pb::ApprovalDecision::Approved);
        assert_eq!(approval_decision(false), pb::ApprovalDecision::Rejected);
    }

    #[test]
    fn an_agents_report_reads_as_enums() {
        use ferry_pipeline::spec::{
            DeployOutcome, DeploymentReport, HookPhase, HookReport, HostOutcome, HostReport,
        };
        use prost::Message as _;
        // What the agent sends (ferry_proto's encoding of the engine's
        // report) decodes in the state unchanged, and the API shows enums.
        let sent = DeploymentReport {
            environment: "prod".into(),
            outcome: DeployOutcome::RolledBack,
            hosts: vec![HostReport {
                host: "web-1".into(),
                outcome: HostOutcome::RolledBack,
                hooks: vec![HookReport {
                    hook: "validate".into(),
                    phase: HookPhase::Deploy,
                    duration_ms: 1_500,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let bytes = pb::internal::DeploymentReport::from(sent.clone()).encode_to_vec();
        let kept = ferry_state::report::decode(&bytes).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(kept, sent);
        assert_eq!(ferry_state::report::encode(&kept), bytes);
        let report = pb::DeploymentReport::from(kept);
        assert_eq!(report.outcome(), pb::DeploymentOutcome::RolledBack);
        assert_eq!(report.hosts[0].outcome(), pb::HostOutcome::RolledBack);
        let hook = &report.hosts[0].hooks[0];
        assert_eq!(hook.phase(), pb::HookPhase::Deploy);
        assert_eq!(
            hook.duration,
            Some(Duration {
                seconds: 1,
                nanos: 500_000_000
            })
        );
    }
}
