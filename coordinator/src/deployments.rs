//! Deploy actions on the coordinator side: resolves an action's environment
//! into the host list an agent deploys to (each host's credentials as the
//! sealed secret, opened only by that agent), and renders the deployment history.

use ferry_pipeline::Deploy;
use ferry_pipeline::spec::HostOutcome;
use ferry_proto as pb;

use crate::views::timestamp;
use ferry_state::{ClusterState, DeploymentRecord, Execution};

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
    let release = exec.release_of.clone().unwrap_or_else(|| exec.id.clone());
    let fresh_release = exec.release_of.is_none() && attempt <= 1;
    let Some(env) = state.environments.get(&deploy.environment) else {
        return pb::internal::DeploySpec {
            environment: deploy.environment.clone(),
            release,
            problem: format!(
                "environment `{}` does not exist; apply it with `ferry env apply -f FILE`",
                deploy.environment
            ),
            ..Default::default()
        };
    };
    let (spec, secrets) =
        ferry_pipeline::spec::deploy_spec(deploy, &env.spec, &release, fresh_release);
    let names: Vec<String> = spec.hosts.iter().map(|h| h.name.clone()).collect();
    let mut spec = pb::internal::DeploySpec::from(spec);
    for ((h, secret), host) in spec.hosts.iter_mut().zip(secrets).zip(names) {
        let Some(name) = secret else { continue };
        match sealed(state, &name) {
            Some(value) => h.sealed_credentials = Some(value),
            None if spec.problem.is_empty() => {
                spec.problem = format!(
                    "secret `{name}` of host `{host}` is not set; an admin can set it with `ferry secret set {name}`"
                );
            }
            None => {}
        }
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
        report: Some(d.report().into()),
    }
}

/// The release each host of `environment` is on, from the newest
/// deployment that reached it.
pub fn host_releases(state: &ClusterState, environment: &str) -> Vec<pb::HostRelease> {
    let mut out: Vec<pb::HostRelease> = Vec::new();
    for d in state.deployments_of(environment) {
        for h in d.report().hosts {
            if h.outcome == HostOutcome::Skipped || out.iter().any(|o| o.host == h.host) {
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
