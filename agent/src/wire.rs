//! Conversions between the session's protocol messages and the action
//! engine's plain types ([`crate::runner`]): an assignment becomes an
//! [`ActionSpec`] and its opened secrets; an outcome's outputs and
//! deployment report become parts of an `AttemptResult`. Runners never see a
//! protocol message; this module does no I/O.

use std::time::Duration;

use ferry_proto as pb;

use crate::runner::{
    ActionContext, ActionSpec, AttemptId, DeployHost, DeploySpec, DeploymentReport, HostKind,
    Output, OutputSpec, Resources, Secrets,
};

/// What to run, from an assignment (whose secrets are opened separately).
pub fn action_spec(a: &pb::internal::Assignment) -> ActionSpec {
    let asked = |n: u64| (n > 0).then_some(n);
    ActionSpec {
        attempt: attempt_id(a.attempt.as_ref()),
        context: ActionContext {
            pipeline: a.pipeline.clone(),
            execution_id: a.execution_id.clone(),
            revision: a.revision.clone(),
            stage: a.stage.clone(),
            action: a.action.clone(),
        },
        image: a.image.clone(),
        commands: a.commands.clone(),
        env: a.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        outputs: a
            .outputs
            .iter()
            .map(|o| OutputSpec {
                name: o.name.clone(),
                paths: o.paths.clone(),
            })
            .collect(),
        timeout: Duration::from_secs(a.timeout_seconds.max(1)),
        resources: Resources {
            memory_bytes: asked(a.memory_bytes),
            millicpus: asked(a.millicpus),
            pids: asked(a.pids_limit),
        },
        deploy: a.deploy.as_ref().map(deploy_spec),
    }
}

pub fn attempt_id(r: Option<&pb::internal::AttemptRef>) -> AttemptId {
    r.map(|r| AttemptId {
        id: r.attempt_id.clone(),
        epoch: r.epoch,
    })
    .unwrap_or_default()
}

/// The assignment's secrets, once `crate::unseal` opened them.
pub fn secrets(a: &pb::internal::Assignment) -> Secrets {
    a.secret_env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn deploy_spec(d: &pb::internal::DeploySpec) -> DeploySpec {
    DeploySpec {
        environment: d.environment.clone(),
        hosts: d.hosts.iter().map(deploy_host).collect(),
        batch_size: d.batch_size,
        min_healthy: d.min_healthy,
        rollback: d.rollback,
        keep_releases: d.keep_releases,
        hook_timeout_ms: d.hook_timeout_ms,
        connect_timeout_ms: d.connect_timeout_ms,
        release: d.release.clone(),
        strategy: d.strategy.clone(),
        problem: (!d.problem.is_empty()).then(|| d.problem.clone()),
        fresh_release: d.fresh_release,
    }
}

fn deploy_host(h: &pb::internal::DeployHost) -> DeployHost {
    DeployHost {
        name: h.name.clone(),
        kind: if h.kind == "docker" {
            HostKind::Docker
        } else {
            HostKind::Ssh
        },
        host: h.host.clone(),
        port: h.port,
        user: h.user.clone(),
        host_key: h.host_key.clone(),
        private_key: h.private_key.clone(),
        path: h.path.clone(),
        endpoint: h.endpoint.clone(),
        tls_bundle: h.tls_bundle.clone(),
    }
}

pub fn outputs(outputs: Vec<Output>) -> Vec<pb::internal::OutputArtifact> {
    outputs
        .into_iter()
        .map(|o| pb::internal::OutputArtifact {
            name: o.name,
            digest: o.blob.digest,
            size: o.blob.size,
        })
        .collect()
}

pub fn deployment_report(r: DeploymentReport) -> pb::internal::DeploymentReport {
    pb::internal::DeploymentReport {
        environment: r.environment,
        release: r.release,
        artifact_digest: r.artifact_digest,
        outcome: r.outcome,
        summary: r.summary,
        strategy: r.strategy,
        hosts: r
            .hosts
            .into_iter()
            .map(|h| pb::internal::HostReport {
                host: h.host,
                outcome: h.outcome,
                release: h.release,
                previous: h.previous,
                batch: h.batch,
                error: h.error,
                hooks: h
                    .hooks
                    .into_iter()
                    .map(|k| pb::internal::HookReport {
                        hook: k.hook,
                        phase: k.phase,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::{HookReport, HostReport};
    use crate::store::Blob;

    fn assignment() -> pb::internal::Assignment {
        pb::internal::Assignment {
            attempt: Some(pb::internal::AttemptRef {
                attempt_id: "a-1".into(),
                epoch: 7,
            }),
            pipeline: "web".into(),
            execution_id: "e-1".into(),
            revision: "abc".into(),
            stage: "build".into(),
            action: "compile".into(),
            image: "ferry-local/busybox".into(),
            commands: vec!["make".into()],
            env: [("MODE".to_string(), "release".to_string())].into(),
            outputs: vec![pb::internal::OutputSpec {
                name: "bin".into(),
                paths: vec!["out/".into()],
            }],
            millicpus: 1_500,
            secret_env: [("TOKEN".to_string(), b"hunter2".to_vec())].into(),
            ..Default::default()
        }
    }

    #[test]
    fn an_assignment_becomes_a_spec_without_its_secrets() {
        let a = assignment();
        let spec = action_spec(&a);
        assert_eq!(
            spec.attempt,
            AttemptId {
                id: "a-1".into(),
                epoch: 7
            }
        );
        assert_eq!(
            spec.context.ferry_env()[0..2],
            [("FERRY_PIPELINE", "web"), ("FERRY_EXECUTION_ID", "e-1")]
        );
        assert_eq!(spec.env.get("MODE").map(String::as_str), Some("release"));
        assert!(!format!("{spec:?}").contains("hunter2"));
        assert_eq!(
            spec.outputs,
            vec![OutputSpec {
                name: "bin".into(),
                paths: vec!["out/".into()]
            }]
        );
        // 0 on the wire is "the agent's default"; a timeout is at least a second.
        assert_eq!(
            spec.resources,
            Resources {
                memory_bytes: None,
                millicpus: Some(1_500),
                pids: None
            }
        );
        assert_eq!(spec.timeout, Duration::from_secs(1));
        assert!(spec.deploy.is_none());
        assert_eq!(
            secrets(&a).get("TOKEN").map(Vec::as_slice),
            Some(&b"hunter2"[..])
        );
    }

    #[test]
    fn deploy_specs_keep_their_hosts_and_problem() {
        let mut a = assignment();
        a.deploy = Some(pb::internal::DeploySpec {
            environment: "prod".into(),
            hosts: vec![
                pb::internal::DeployHost {
                    name: "web-1".into(),
                    kind: "ssh".into(),
                    port: 2222,
                    private_key: b"PEM".to_vec(),
                    ..Default::default()
                },
                pb::internal::DeployHost {
                    name: "engine".into(),
                    kind: "docker".into(),
                    tls_bundle: b"BUNDLE".to_vec(),
                    ..Default::default()
                },
            ],
            batch_size: 1,
            ..Default::default()
        });
        let deploy = action_spec(&a).deploy.unwrap_or_default();
        assert_eq!(deploy.environment, "prod");
        assert_eq!(deploy.problem, None);
        assert_eq!(deploy.hosts[0].kind, HostKind::Ssh);
        assert_eq!(
            (deploy.hosts[0].port, &deploy.hosts[0].private_key[..]),
            (2222, &b"PEM"[..])
        );
        assert_eq!(deploy.hosts[1].kind, HostKind::Docker);
        assert_eq!(deploy.hosts[1].tls_bundle, b"BUNDLE");
        if let Some(d) = a.deploy.as_mut() {
            d.problem = "environment `prod` does not exist".into();
        }
        let deploy = action_spec(&a).deploy.unwrap_or_default();
        assert_eq!(
            deploy.problem.as_deref(),
            Some("environment `prod` does not exist")
        );
    }

    #[test]
    fn outcomes_go_back_on_the_wire() {
        let out = outputs(vec![Output {
            name: "bin".into(),
            blob: Blob {
                digest: "sha256:00".into(),
                size: 3,
            },
        }]);
        assert_eq!(
            out,
            vec![pb::internal::OutputArtifact {
                name: "bin".into(),
                digest: "sha256:00".into(),
                size: 3
            }]
        );
        let report = deployment_report(DeploymentReport {
            environment: "prod".into(),
            outcome: "Failed".into(),
            hosts: vec![HostReport {
                host: "web-1".into(),
                batch: 2,
                hooks: vec![HookReport {
                    hook: "validate".into(),
                    exit_code: 1,
                    output: b"no".to_vec(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        });
        assert_eq!(
            (report.environment.as_str(), report.outcome.as_str()),
            ("prod", "Failed")
        );
        assert_eq!(
            (report.hosts[0].host.as_str(), report.hosts[0].batch),
            ("web-1", 2)
        );
        let hook = &report.hosts[0].hooks[0];
        assert_eq!(
            (hook.hook.as_str(), hook.exit_code, &hook.output[..]),
            ("validate", 1, &b"no"[..])
        );
    }
}
