//! A deployment's report: from the engine to the agent protocol, and from
//! the replicated state (which decodes the agent's bytes itself,
//! `ferry_state::report`) out to the API.

use ferry_pipeline::spec::{DeployOutcome, DeploymentReport, HookPhase, HostOutcome};

use crate::internal as wire;

impl From<DeploymentReport> for wire::DeploymentReport {
    fn from(r: DeploymentReport) -> wire::DeploymentReport {
        wire::DeploymentReport {
            environment: r.environment,
            release: r.release,
            artifact_digest: r.artifact_digest,
            outcome: r.outcome.as_str().to_string(),
            summary: r.summary,
            strategy: r.strategy,
            hosts: r
                .hosts
                .into_iter()
                .map(|h| wire::HostReport {
                    host: h.host,
                    outcome: h.outcome.as_str().to_string(),
                    release: h.release,
                    previous: h.previous,
                    batch: h.batch,
                    error: h.error,
                    hooks: h
                        .hooks
                        .into_iter()
                        .map(|k| wire::HookReport {
                            hook: k.hook,
                            phase: k.phase.as_str().to_string(),
                            success: k.success,
                            exit_code: k.exit_code,
                            duration_ms: k.duration_ms,
                            output: k.output,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

impl From<DeployOutcome> for crate::DeploymentOutcome {
    fn from(o: DeployOutcome) -> crate::DeploymentOutcome {
        match o {
            DeployOutcome::Succeeded => crate::DeploymentOutcome::Succeeded,
            DeployOutcome::Failed => crate::DeploymentOutcome::Failed,
            DeployOutcome::RolledBack => crate::DeploymentOutcome::RolledBack,
        }
    }
}

impl From<HostOutcome> for crate::HostOutcome {
    fn from(o: HostOutcome) -> crate::HostOutcome {
        match o {
            HostOutcome::Deployed => crate::HostOutcome::Deployed,
            HostOutcome::Failed => crate::HostOutcome::Failed,
            HostOutcome::RolledBack => crate::HostOutcome::RolledBack,
            HostOutcome::RollbackFailed => crate::HostOutcome::RollbackFailed,
            HostOutcome::Skipped => crate::HostOutcome::Skipped,
        }
    }
}

impl From<HookPhase> for crate::HookPhase {
    fn from(p: HookPhase) -> crate::HookPhase {
        match p {
            HookPhase::Deploy => crate::HookPhase::Deploy,
            HookPhase::Rollback => crate::HookPhase::Rollback,
        }
    }
}

/// The report in the API's terms.
impl From<DeploymentReport> for crate::DeploymentReport {
    fn from(r: DeploymentReport) -> crate::DeploymentReport {
        crate::DeploymentReport {
            environment: r.environment,
            release: r.release,
            artifact_digest: r.artifact_digest,
            outcome: crate::DeploymentOutcome::from(r.outcome).into(),
            summary: r.summary,
            strategy: r.strategy,
            hosts: r
                .hosts
                .into_iter()
                .map(|h| crate::HostReport {
                    host: h.host,
                    outcome: crate::HostOutcome::from(h.outcome).into(),
                    release: h.release,
                    previous: h.previous,
                    batch: h.batch,
                    error: h.error,
                    hooks: h
                        .hooks
                        .into_iter()
                        .map(|k| crate::HookReport {
                            hook: k.hook,
                            phase: crate::HookPhase::from(k.phase).into(),
                            success: k.success,
                            exit_code: k.exit_code,
                            duration: Some(prost_types::Duration {
                                seconds: (k.duration_ms / 1000).min(i64::MAX as u64) as i64,
                                nanos: ((k.duration_ms % 1000) * 1_000_000) as i32,
                            }),
                            output: k.output,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_pipeline::spec::{HookReport, HostReport};

    fn report() -> DeploymentReport {
        DeploymentReport {
            environment: "prod".into(),
            outcome: DeployOutcome::RolledBack,
            hosts: vec![HostReport {
                host: "web-1".into(),
                outcome: HostOutcome::RollbackFailed,
                batch: 2,
                hooks: vec![HookReport {
                    hook: "validate".into(),
                    phase: HookPhase::Rollback,
                    exit_code: 1,
                    duration_ms: 1_500,
                    output: b"no".to_vec(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_report_reaches_the_agent_protocol_in_words() {
        let sent = wire::DeploymentReport::from(report());
        assert_eq!(sent.outcome, "RolledBack");
        assert_eq!(sent.hosts[0].outcome, "RollbackFailed");
        assert_eq!(sent.hosts[0].hooks[0].phase, "rollback");
    }

    #[test]
    fn the_api_sees_enums() {
        let shown = crate::DeploymentReport::from(report());
        assert_eq!(shown.outcome(), crate::DeploymentOutcome::RolledBack);
        assert_eq!(shown.hosts[0].outcome(), crate::HostOutcome::RollbackFailed);
        let hook = &shown.hosts[0].hooks[0];
        assert_eq!(hook.phase(), crate::HookPhase::Rollback);
        assert_eq!(
            hook.duration,
            Some(prost_types::Duration {
                seconds: 1,
                nanos: 500_000_000
            })
        );
    }
}
