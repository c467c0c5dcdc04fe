//! What the engine is given for one action of a local run: the same
//! [`ActionSpec`] the agent builds from an assignment (`wire::action_spec`),
//! made here from the pipeline and the execution state the way the
//! coordinator's scheduler makes the assignment — texts with the values
//! their references resolved to when the action started — and the
//! action's secrets from the values the user gave.

use std::collections::BTreeMap;
use std::time::Duration;

use ferry_pipeline::execution::ActionRun;
use ferry_pipeline::{Action, Deploy, Environment, HostKey, Pipeline, Target};

use crate::runner::{
    ActionContext, ActionSpec, AttemptId, DeployHost, DeploySpec, HostKind, OutputSpec, Resources,
    Secrets,
};

/// The engine's spec of action (`si`, `ai`) for attempt `epoch`.
pub fn action_spec(
    pipeline: &Pipeline,
    (si, ai): (usize, usize),
    run: &ActionRun,
    execution_id: &str,
    revision: &str,
    epoch: u64,
) -> Option<ActionSpec> {
    let stage = pipeline.stages.get(si)?;
    let action = stage.actions.get(ai)?;
    // References in commands reach the shell as variables, never as text
    // (as `scheduler::assignment` sends them).
    let (commands, env) = run.resolved_commands_and_env(action);
    Some(ActionSpec {
        attempt: AttemptId {
            id: format!(
                "{execution_id}/{}/{}#{}",
                stage.name, action.name, run.attempt
            ),
            epoch,
        },
        context: ActionContext {
            pipeline: pipeline.name.clone(),
            execution_id: execution_id.to_string(),
            revision: revision.to_string(),
            stage: stage.name.clone(),
            action: action.name.clone(),
        },
        image: run.resolved_text(action.image.as_deref().unwrap_or_default()),
        commands,
        env,
        outputs: action
            .outputs
            .iter()
            .map(|(name, paths)| OutputSpec {
                name: name.clone(),
                paths: paths.clone(),
            })
            .collect(),
        timeout: Duration::from_secs(action.timeout_ms.div_ceil(1000).max(1)),
        resources: Resources {
            memory_bytes: action.resources.memory_bytes,
            millicpus: action.resources.millicpus,
            pids: action.resources.pids,
        },
        deploy: None,
    })
}

/// Where and how a deploy action of a local run rolls out: the hosts of
/// the environment file `--deploy` named, each host's key (or TLS bundle)
/// from the secrets the user gave — never from a cluster. Field for field
/// what the coordinator resolves for an agent (`deployments::deploy_spec`);
/// an unset key secret is the spec's `problem`, which fails the action.
pub fn deploy_spec(
    deploy: &Deploy,
    env: &Environment,
    given: &BTreeMap<String, Vec<u8>>,
    release: &str,
) -> DeploySpec {
    let hosts = env.hosts.len();
    let mut spec = DeploySpec {
        environment: deploy.environment.clone(),
        hosts: Vec::new(),
        batch_size: deploy.strategy.batch_size(hosts) as u32,
        min_healthy: deploy.min_healthy_of(hosts) as u32,
        rollback: deploy.rollback,
        keep_releases: deploy.keep_releases,
        hook_timeout_ms: deploy.hook_timeout_ms,
        connect_timeout_ms: deploy.connect_timeout_ms,
        release: release.to_string(),
        strategy: deploy.strategy.to_string(),
        problem: None,
        fresh_release: true,
    };
    for host in &env.hosts {
        let mut h = DeployHost {
            name: host.name.clone(),
            ..Default::default()
        };
        let secret = match &host.target {
            Target::Ssh(t) => {
                h.kind = HostKind::Ssh;
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
                h.kind = HostKind::Docker;
                h.endpoint = t.endpoint.clone();
                t.tls_secret.clone()
            }
        };
        if let Some(name) = secret {
            match given.get(&name) {
                Some(value) if h.kind == HostKind::Docker => h.tls_bundle = value.clone(),
                Some(value) => h.private_key = value.clone(),
                None if spec.problem.is_none() => {
                    spec.problem = Some(format!(
                        "secret `{name}` of host `{}` has no value: pass --secret {name}=@FILE or set {}",
                        host.name,
                        secret_env_var(&name)
                    ));
                }
                None => {}
            }
        }
        spec.hosts.push(h);
    }
    spec
}

/// The secret names an environment's hosts use for their credentials.
pub fn host_secrets(env: &Environment) -> impl Iterator<Item = String> + '_ {
    env.hosts.iter().filter_map(|h| match &h.target {
        Target::Ssh(t) => Some(t.key_secret.clone()),
        Target::Docker(t) => t.tls_secret.clone(),
    })
}

/// The environment variable `ferry exec` reads secret `name` from when no
/// `--secret` gives it: `FERRY_SECRET_` and the name in capitals, `.` and
/// `-` as `_` (`db-password` → `FERRY_SECRET_DB_PASSWORD`).
pub fn secret_env_var(name: &str) -> String {
    let tail: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("FERRY_SECRET_{tail}")
}

/// The action's secrets (environment variable → value) from `given` (secret
/// name → value), or the first secret it names that has no value.
pub fn secrets(action: &Action, given: &BTreeMap<String, Vec<u8>>) -> Result<Secrets, String> {
    action
        .secrets
        .iter()
        .map(|(var, name)| match given.get(name) {
            Some(value) => Ok((var.clone(), value.clone())),
            None => Err(name.clone()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_variables_are_named_after_the_secret() {
        assert_eq!(secret_env_var("db-password"), "FERRY_SECRET_DB_PASSWORD");
        assert_eq!(secret_env_var("a.b_c"), "FERRY_SECRET_A_B_C");
    }
}
