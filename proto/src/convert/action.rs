//! An action's spec and the assignment that carries it to an agent.

use std::time::Duration;

use ferry_pipeline::reports::{OutputWhen, Reports};
use ferry_pipeline::spec::{
    ActionContext, ActionSpec, AttemptId, DeployHost, DeploySpec, HostKind, OutputSpec, Resources,
    ServiceSpec,
};

use crate::internal as wire;

impl From<&wire::AttemptRef> for AttemptId {
    fn from(r: &wire::AttemptRef) -> AttemptId {
        AttemptId {
            id: r.attempt_id.clone(),
            epoch: r.epoch,
        }
    }
}

impl From<AttemptId> for wire::AttemptRef {
    fn from(a: AttemptId) -> wire::AttemptRef {
        wire::AttemptRef {
            attempt_id: a.id,
            epoch: a.epoch,
        }
    }
}

/// The spec's part of an assignment; inputs, the git URL and secrets are
/// the scheduler's to add.
impl From<ActionSpec> for wire::Assignment {
    fn from(s: ActionSpec) -> wire::Assignment {
        wire::Assignment {
            attempt: Some(s.attempt.into()),
            pipeline: s.context.pipeline,
            execution_id: s.context.execution_id,
            revision: s.context.revision,
            stage: s.context.stage,
            action: s.context.action,
            image: s.image,
            plugin: s.plugin,
            commands: s.commands,
            env: s.env.into_iter().collect(),
            outputs: s
                .outputs
                .into_iter()
                .map(|o| wire::OutputSpec {
                    name: o.name,
                    paths: o.paths,
                    when: wire::OutputWhen::from(o.when).into(),
                })
                .collect(),
            junit_reports: s.reports.junit,
            timeout_seconds: s.timeout.as_secs(),
            millicpus: s.resources.millicpus.unwrap_or(0),
            memory_bytes: s.resources.memory_bytes.unwrap_or(0),
            pids_limit: s.resources.pids.unwrap_or(0),
            deploy: s.deploy.map(Into::into),
            services: s.services.into_iter().map(Into::into).collect(),
            caches: s.caches.into_iter().map(Into::into).collect(),
            ..Default::default()
        }
    }
}

/// What to run, from an assignment (whose secrets are opened separately).
impl From<&wire::Assignment> for ActionSpec {
    fn from(a: &wire::Assignment) -> ActionSpec {
        // 0 on the wire is "the engine's default".
        let asked = |n: u64| (n > 0).then_some(n);
        ActionSpec {
            attempt: a.attempt.as_ref().map(Into::into).unwrap_or_default(),
            context: ActionContext {
                pipeline: a.pipeline.clone(),
                execution_id: a.execution_id.clone(),
                revision: a.revision.clone(),
                stage: a.stage.clone(),
                action: a.action.clone(),
            },
            image: a.image.clone(),
            plugin: a.plugin,
            commands: a.commands.clone(),
            env: a.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            outputs: a
                .outputs
                .iter()
                .map(|o| OutputSpec {
                    name: o.name.clone(),
                    paths: o.paths.clone(),
                    when: o.when().into(),
                })
                .collect(),
            reports: Reports {
                junit: a.junit_reports.clone(),
            },
            timeout: Duration::from_secs(a.timeout_seconds.max(1)),
            resources: Resources {
                memory_bytes: asked(a.memory_bytes),
                millicpus: asked(a.millicpus),
                pids: asked(a.pids_limit),
            },
            deploy: a.deploy.as_ref().map(Into::into),
            services: a.services.iter().map(Into::into).collect(),
            caches: a.caches.iter().map(Into::into).collect(),
            source_times: None,
        }
    }
}

impl From<ServiceSpec> for wire::Service {
    fn from(s: ServiceSpec) -> wire::Service {
        wire::Service {
            name: s.name,
            image: s.image,
            env: s.env.into_iter().collect(),
            command: s.command,
            ready_command: s.ready_command,
            ready_timeout_ms: u64::try_from(s.ready_timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// A service as sent; its bounds are checked where it is run
/// (`ferry_pipeline::spec::check_services`).
impl From<&wire::Service> for ServiceSpec {
    fn from(s: &wire::Service) -> ServiceSpec {
        ServiceSpec {
            name: s.name.clone(),
            image: s.image.clone(),
            env: s.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            command: s.command.clone(),
            ready_command: s.ready_command.clone(),
            ready_timeout: Duration::from_millis(s.ready_timeout_ms),
        }
    }
}

impl From<OutputWhen> for wire::OutputWhen {
    fn from(w: OutputWhen) -> wire::OutputWhen {
        match w {
            OutputWhen::OnSuccess => wire::OutputWhen::OnSuccess,
            OutputWhen::OnFailure => wire::OutputWhen::OnFailure,
            OutputWhen::Always => wire::OutputWhen::Always,
        }
    }
}

/// Unspecified (what a coordinator that knew no `when` sends) is on success.
impl From<wire::OutputWhen> for OutputWhen {
    fn from(w: wire::OutputWhen) -> OutputWhen {
        match w {
            wire::OutputWhen::Unspecified | wire::OutputWhen::OnSuccess => OutputWhen::OnSuccess,
            wire::OutputWhen::OnFailure => OutputWhen::OnFailure,
            wire::OutputWhen::Always => OutputWhen::Always,
        }
    }
}

impl From<DeploySpec> for wire::DeploySpec {
    fn from(d: DeploySpec) -> wire::DeploySpec {
        wire::DeploySpec {
            environment: d.environment,
            hosts: d.hosts.into_iter().map(Into::into).collect(),
            batch_size: d.batch_size,
            min_healthy: d.min_healthy,
            rollback: d.rollback,
            keep_releases: d.keep_releases,
            hook_timeout_ms: d.hook_timeout_ms,
            connect_timeout_ms: d.connect_timeout_ms,
            release: d.release,
            strategy: d.strategy,
            problem: d.problem.unwrap_or_default(),
            fresh_release: d.fresh_release,
        }
    }
}

/// A host of an unknown kind is the spec's `problem`: the deployment fails
/// before it touches any host.
impl From<&wire::DeploySpec> for DeploySpec {
    fn from(d: &wire::DeploySpec) -> DeploySpec {
        let mut problem = (!d.problem.is_empty()).then(|| d.problem.clone());
        let mut hosts = Vec::with_capacity(d.hosts.len());
        for h in &d.hosts {
            let kind = HostKind::parse(&h.kind);
            if kind.is_none() && problem.is_none() {
                problem = Some(format!(
                    "host `{}`: {}",
                    h.name,
                    super::UnknownWord::new("kind", &h.kind)
                ));
            }
            hosts.push(DeployHost {
                name: h.name.clone(),
                kind: kind.unwrap_or_default(),
                host: h.host.clone(),
                port: h.port,
                user: h.user.clone(),
                host_key: h.host_key.clone(),
                private_key: h.private_key.clone(),
                path: h.path.clone(),
                endpoint: h.endpoint.clone(),
                tls_bundle: h.tls_bundle.clone(),
            });
        }
        DeploySpec {
            environment: d.environment.clone(),
            hosts,
            batch_size: d.batch_size,
            min_healthy: d.min_healthy,
            rollback: d.rollback,
            keep_releases: d.keep_releases,
            hook_timeout_ms: d.hook_timeout_ms,
            connect_timeout_ms: d.connect_timeout_ms,
            release: d.release.clone(),
            strategy: d.strategy.clone(),
            problem,
            fresh_release: d.fresh_release,
        }
    }
}

impl From<DeployHost> for wire::DeployHost {
    fn from(h: DeployHost) -> wire::DeployHost {
        wire::DeployHost {
            name: h.name,
            kind: h.kind.as_str().to_string(),
            host: h.host,
            port: h.port,
            user: h.user,
            host_key: h.host_key,
            private_key: h.private_key,
            path: h.path,
            endpoint: h.endpoint,
            tls_bundle: h.tls_bundle,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment() -> wire::Assignment {
        wire::Assignment {
            attempt: Some(wire::AttemptRef {
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
            outputs: vec![
                wire::OutputSpec {
                    name: "bin".into(),
                    paths: vec!["out/".into()],
                    // As a coordinator that knew no `when` sends it.
                    when: wire::OutputWhen::Unspecified.into(),
                },
                wire::OutputSpec {
                    name: "junit".into(),
                    paths: vec!["report.xml".into()],
                    when: wire::OutputWhen::Always.into(),
                },
            ],
            junit_reports: vec!["report.xml".into()],
            millicpus: 1_500,
            secret_env: [("TOKEN".to_string(), b"hunter2".to_vec())].into(),
            ..Default::default()
        }
    }

    #[test]
    fn an_assignment_becomes_a_spec_without_its_secrets() {
        let a = assignment();
        let spec = ActionSpec::from(&a);
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
            vec![
                OutputSpec {
                    name: "bin".into(),
                    paths: vec!["out/".into()],
                    when: OutputWhen::OnSuccess,
                },
                OutputSpec {
                    name: "junit".into(),
                    paths: vec!["report.xml".into()],
                    when: OutputWhen::Always,
                }
            ]
        );
        assert_eq!(spec.reports.junit, vec!["report.xml".to_string()]);
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
    }

    #[test]
    fn a_spec_goes_to_the_wire_and_back_unchanged() {
        let mut spec = ActionSpec::from(&assignment());
        spec.deploy = Some(DeploySpec {
            environment: "prod".into(),
            hosts: vec![DeployHost {
                name: "engine".into(),
                kind: HostKind::Docker,
                endpoint: "tcp://10.0.0.1:2376".into(),
                ..Default::default()
            }],
            problem: Some("why".into()),
            ..Default::default()
        });
        spec.services = vec![ServiceSpec {
            name: "db".into(),
            image: "ferry-local/busybox".into(),
            env: [("PORT".to_string(), "5432".to_string())].into(),
            command: vec!["/bin/sh".into(), "-c".into(), "exec db".into()],
            ready_command: "nc -z 127.0.0.1 5432".into(),
            ready_timeout: Duration::from_secs(30),
        }];
        let wire = wire::Assignment::from(spec.clone());
        assert_eq!(ActionSpec::from(&wire), spec);
    }

    #[test]
    fn a_plugin_spec_says_so_on_the_wire() {
        let spec = ActionSpec {
            plugin: true,
            image: "plugins/docker".into(),
            env: [("PLUGIN_REPO".to_string(), "web".to_string())].into(),
            ..ActionSpec::from(&assignment())
        };
        let wire = wire::Assignment::from(spec.clone());
        assert!(wire.plugin);
        assert_eq!(ActionSpec::from(&wire), spec);
        // What a coordinator from before plugins sends: a command action.
        assert!(!ActionSpec::from(&assignment()).plugin);
    }

    #[test]
    fn deploy_specs_keep_their_hosts_and_problem() {
        let mut a = assignment();
        a.deploy = Some(wire::DeploySpec {
            environment: "prod".into(),
            hosts: vec![
                wire::DeployHost {
                    name: "web-1".into(),
                    kind: "ssh".into(),
                    port: 2222,
                    private_key: b"PEM".to_vec(),
                    ..Default::default()
                },
                wire::DeployHost {
                    name: "engine".into(),
                    kind: "docker".into(),
                    tls_bundle: b"BUNDLE".to_vec(),
                    ..Default::default()
                },
            ],
            batch_size: 1,
            ..Default::default()
        });
        let deploy = ActionSpec::from(&a).deploy.unwrap_or_default();
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
        let deploy = ActionSpec::from(&a).deploy.unwrap_or_default();
        assert_eq!(
            deploy.problem.as_deref(),
            Some("environment `prod` does not exist")
        );
    }

    #[test]
    fn a_host_of_an_unknown_kind_fails_the_deployment() {
        let d = wire::DeploySpec {
            hosts: vec![wire::DeployHost {
                name: "web-1".into(),
                kind: "telnet".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let spec = DeploySpec::from(&d);
        assert_eq!(
            spec.problem.as_deref(),
            Some("host `web-1`: kind: unknown value \"telnet\"")
        );
    }
}
