//! Deploy actions on the coordinator side: resolves an action's environment
//! into the host list an agent deploys to (each host's credentials as the
//! sealed secret, opened only by that agent), and renders the deployment history.

use ferry_pipeline::{Deploy, HostKey, Target};
use ferry_proto as pb;

use crate::state::{ClusterState, DeploymentRecord, Execution};
use crate::views::{deployment_report, timestamp};

/// One line per deploy action of `spec` whose environment does not exist.
pub fn unknown_environments(state: &ClusterState, spec: &ferry_pipeline::Pipeline) -> Vec<String> {
    let mut out = Vec::new();
    for stage in &spec.stages {
        for a in &stage.actions {
            if let Some(d) = a.deploy.as_ref()
                && !state.environments.contains_key(&d.environment)
            {
                out.push(format!(
                    "action {}/{} deploys to environment `{}`, which does not exist",
                    stage.name, a.name, d.environment
                ));
            }
        }
    }
    out
}

/// The deploy settings of one attempt. Problems that stop the deployment
/// before it starts (unknown environment, unset key secret) go in `problem`.
pub fn deploy_spec(
    state: &ClusterState,
    exec: &Execution,
    deploy: &Deploy,
    attempt: u32,
) -> pb::internal::DeploySpec {
    let mut spec = pb::internal::DeploySpec {
        environment: deploy.environment.clone(),
        rollback: deploy.rollback,
        keep_releases: deploy.keep_releases,
        hook_timeout_ms: deploy.hook_timeout_ms,
        connect_timeout_ms: deploy.connect_timeout_ms,
        release: exec.release_of.clone().unwrap_or_else(|| exec.id.clone()),
        strategy: deploy.strategy.to_string(),
        fresh_release: exec.release_of.is_none() && attempt <= 1,
        ..Default::default()
    };
    let Some(env) = state.environments.get(&deploy.environment) else {
        spec.problem = format!(
            "environment `{}` does not exist; apply it with `ferry env apply -f FILE`",
            deploy.environment
        );
        return spec;
    };
    let hosts = env.spec.hosts.len();
    spec.batch_size = deploy.strategy.batch_size(hosts) as u32;
    spec.min_healthy = deploy.min_healthy_of(hosts) as u32;
    for host in &env.spec.hosts {
        let mut h = pb::internal::DeployHost {
            name: host.name.clone(),
            ..Default::default()
        };
        let secret = match &host.target {
            Target::Ssh(t) => {
                h.kind = "ssh".into();
                h.host = t.host.clone();
                h.port = u32::from(t.port);
                h.user = t.user.clone();
                h.host_key = match &t.host_key {
                    HostKey::PublicKey { algorithm, base64 } => format!("{algorithm} {base64}"),
                    HostKey::Fingerprint(f) => f.clone(),
                };
                h.path = t.path.clone();
                Some(t.key_secret.clone())
            }
            Target::Docker(t) => {
                h.kind = "docker".into();
                h.endpoint = t.endpoint.clone();
                t.tls_secret.clone()
            }
        };
        if let Some(name) = secret {
            match sealed(state, &name) {
                Some(value) => h.sealed_credentials = Some(value),
                None if spec.problem.is_empty() => {
                    spec.problem = format!(
                        "secret `{name}` of host `{}` is not set; an admin can set it with `ferry secret set {name}`",
                        host.name
                    );
                }
                None => {}
            }
        }
        spec.hosts.push(h);
    }
    spec
}

/// Secret `name` as stored (sealed under the cluster's key), for an
/// assignment; `scheduler::assignment_with_secrets` seals it again to an
/// agent that has a wrapping key.
pub fn sealed(state: &ClusterState, name: &str) -> Option<pb::internal::SealedSecret> {
    state.secrets.get(name).map(|r| pb::internal::SealedSecret {
        name: name.to_string(),
        nonce: r.nonce.clone(),
        ciphertext: r.ciphertext.clone(),
        ephemeral_public_key: Vec::new(),
    })
}

/// One deployment as the API shows it.
pub fn view(state: &ClusterState, d: &DeploymentRecord) -> pb::DeploymentView {
    let action = state
        .pipelines
        .get(&d.pipeline)
        .and_then(|p| p.version(d.version))
        .and_then(|v| v.spec.stages.get(d.stage))
        .and_then(|s| {
            s.actions
                .get(d.action)
                .map(|a| format!("{}/{}", s.name, a.name))
        })
        .unwrap_or_default();
    pb::DeploymentView {
        id: d.id,
        pipeline: d.pipeline.clone(),
        execution_id: d.execution.clone(),
        action,
        agent: d.agent.clone(),
        started_at: timestamp(Some(d.started_at)),
        finished_at: timestamp(Some(d.finished_at)),
        report: Some(deployment_report(d.report())),
    }
}

/// The release each host of `environment` is on, from the newest
/// deployment that reached it.
pub fn host_releases(state: &ClusterState, environment: &str) -> Vec<pb::HostRelease> {
    let mut out: Vec<pb::HostRelease> = Vec::new();
    for d in state.deployments_of(environment) {
        for h in d.report().hosts {
            if h.outcome == "Skipped" || out.iter().any(|o| o.host == h.host) {
                continue;
            }
            out.push(pb::HostRelease {
                host: h.host,
                release: h.release,
                deployment: d.id,
                since: timestamp(Some(d.finished_at)),
            });
        }
    }
    out.sort_by(|a, b| a.host.cmp(&b.host));
    out
}
