//! Read-only projections of cluster state into the wire types the CLI shows.

use std::time::{Duration, UNIX_EPOCH};

use ferry_pipeline::execution::ActionStatus;
use ferry_proto as pb;

use crate::state::{ClusterState, Execution};

/// Current wall-clock time in unix milliseconds (proposers only; never in apply).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// RFC 3339 text for a unix-ms timestamp; empty when absent.
/// 9999-12-31T23:59:59.999Z in unix milliseconds, the last time RFC 3339 can write.
const LAST_SHOWABLE_MS: u64 = 253_402_300_799_999;

pub fn ts(ms: Option<i64>) -> String {
    match ms {
        // humantime panics past year 9999; such a time is shown as that year's end.
        Some(ms) if ms >= 0 => humantime::format_rfc3339_millis(
            UNIX_EPOCH + Duration::from_millis((ms as u64).min(LAST_SHOWABLE_MS)),
        )
        .to_string(),
        _ => String::new(),
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
                status: exec.state.stage_status(si).to_string(),
                actions: runs
                    .iter()
                    .enumerate()
                    .map(|(ai, run)| {
                        let a = stage_spec.and_then(|s| s.actions.get(ai));
                        pb::ActionView {
                            name: a.map(|a| a.name.clone()).unwrap_or_default(),
                            kind: a.map(|a| a.kind.to_string()).unwrap_or_default(),
                            run_order: a.map_or(1, |a| a.run_order),
                            status: run.status().to_string(),
                            attempt: run.attempt,
                            agent: run.agent.clone().unwrap_or_default(),
                            exit_code: run.exit_code,
                            started_at: ts(run.started_at),
                            finished_at: ts(run.finished_at),
                            message: run.message.clone(),
                            approvals: run
                                .approvals
                                .iter()
                                .map(|d| pb::ApprovalView {
                                    by: d.by.clone(),
                                    decision: if d.approve { "Approved" } else { "Rejected" }
                                        .into(),
                                    comment: d.comment.clone(),
                                    at: ts(Some(d.at)),
                                })
                                .collect(),
                            attempts: run
                                .history
                                .iter()
                                .map(|h| pb::AttemptView {
                                    attempt: h.attempt,
                                    agent: h.agent.clone(),
                                    outcome: format!("{:?}", h.outcome),
                                    exit_code: h.exit_code,
                                    started_at: ts(Some(h.started_at)),
                                    finished_at: ts(h.finished_at),
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
        status: exec.state.status.to_string(),
        stages,
        trigger: exec.trigger.clone(),
        started_at: ts(Some(exec.started_at)),
        finished_at: ts(exec.state.finished_at),
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
    holders(state, digest)
        .iter()
        .filter_map(|a| state.agents.get(a))
        .filter(|a| !a.address.is_empty())
        .map(|a| a.address.clone())
        .collect()
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
        last_status: last.map(|e| e.state.status.to_string()).unwrap_or_default(),
        updated_at: ts(Some(latest.applied_at)),
    })
}

/// True when the action can produce no more log output.
pub fn is_final(status: ActionStatus) -> bool {
    status.is_final() || status == ActionStatus::WaitingForApproval
}

/// An environment with its hosts, and the secrets they name that are not set.
pub fn environment(
    state: &ClusterState,
    rec: &crate::state::EnvironmentRecord,
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
                        "ssh",
                        addr,
                        t.user.clone(),
                        key,
                        t.key_secret.clone(),
                        t.path.clone(),
                    )
                }
                Target::Docker(t) => (
                    "docker",
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
        applied_at: ts(Some(rec.applied_at)),
        unchanged: false,
    }
}
