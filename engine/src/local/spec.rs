//! What a local run gives the engine beyond the action's spec (made by
//! `ferry_pipeline::spec::action_spec`, as the coordinator's scheduler
//! makes it): the deploy hosts' credentials and the action's secrets, from
//! the values the user gave, never from a cluster.

use std::collections::BTreeMap;

use ferry_pipeline::{Action, Deploy, Environment, Target};

use crate::runner::{DeploySpec, Secrets};

/// Where and how a deploy action of a local run rolls out: the hosts of
/// the environment file `--deploy` named, each host's key (or TLS bundle)
/// from the secrets the user gave — never from a cluster. The hosts are
/// `ferry_pipeline::spec::deploy_spec`'s, as for an agent; an unset key
/// secret is the spec's `problem`, which fails the action.
pub fn deploy_spec(
    deploy: &Deploy,
    env: &Environment,
    given: &BTreeMap<String, Vec<u8>>,
    release: &str,
) -> DeploySpec {
    let (mut spec, secrets) = ferry_pipeline::spec::deploy_spec(deploy, env, release, true);
    for (h, secret) in spec.hosts.iter_mut().zip(secrets) {
        let Some(name) = secret else { continue };
        match given.get(&name) {
            Some(value) => h.set_credentials(value.clone()),
            None if spec.problem.is_none() => {
                spec.problem = Some(format!(
                    "secret `{name}` of host `{}` has no value: pass --secret {name}=@FILE or set {}",
                    h.name,
                    secret_env_var(&name)
                ));
            }
            None => {}
        }
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
