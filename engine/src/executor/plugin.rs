//! A plugin action inside its container: an image in the Drone/Woodpecker
//! plugin format runs with its own entrypoint and command, which may need
//! no shell at all (an image `FROM scratch`), so nothing is run with `docker
//! exec`. Its configuration is its environment: the action's `env` (its
//! settings as `PLUGIN_*` variables among them), the CI variables such
//! plugins read (`ferry_pipeline::plugin::ci_env`), Ferry's own and its
//! secrets. Secrets are therefore in the container's configuration, which
//! the agent's engine keeps for as long as the container exists (removed
//! with it at the attempt's end; SECURITY.md says so).
//!
//! The inputs are uploaded before it starts, its output is attached before
//! it starts and streamed into the action's log (which masks secrets), its
//! exit code decides the outcome, and the outputs are collected from the
//! stopped container as a build's are. Limits, hardening, the timeout and a
//! person's stop are the container's, as for every action
//! ([`super::container`]).

use std::collections::BTreeMap;

use bollard::container::LogOutput;
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, InspectContainerOptions, StartContainerOptions,
    WaitContainerOptions,
};
use futures::StreamExt;

use super::Executor;
use crate::runner::{ActionError, ActionSpec, LogSink, Output, PreparedInput};

/// A plugin container's environment, as `NAME=value`: the CI variables,
/// then the action's `env` (its settings among them), Ferry's variables
/// and the secrets (`NAME=value` already), each later one winning over an
/// earlier of the same name. Holds secrets: only for a plugin's container.
pub(super) fn plugin_env(spec: &ActionSpec, secrets: &[String]) -> Vec<String> {
    let mut env: BTreeMap<&str, &str> = BTreeMap::new();
    let ci = ferry_pipeline::plugin::ci_env(&spec.context);
    env.extend(ci.iter().map(|(k, v)| (*k, v.as_str())));
    env.extend(super::container::own_env(spec));
    for secret in secrets {
        if let Some((k, v)) = secret.split_once('=') {
            env.insert(k, v);
        }
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

impl Executor {
    /// Everything a plugin attempt does in its (created, not yet started)
    /// container: inputs in, its own entrypoint run to its end with the
    /// output in the log, outputs out.
    pub(super) async fn plugin_steps(
        &self,
        container: &str,
        a: &ActionSpec,
        inputs: &[PreparedInput],
        log: &mut dyn LogSink,
    ) -> Result<(Vec<Output>, BTreeMap<String, String>), ActionError> {
        self.upload_inputs(container, inputs, super::caches::restores(a), a)
            .await?;
        log.write(format!("[ferry] running plugin {} (its own entrypoint)\n", a.image).as_bytes());
        // Attached before it starts, so none of its output is missed.
        let attach = AttachContainerOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .stream(true)
            .build();
        let mut attached = self
            .docker
            .attach_container(container, Some(attach))
            .await?;
        self.docker
            .start_container(container, None::<StartContainerOptions>)
            .await?;
        while let Some(chunk) = attached.output.next().await {
            match chunk? {
                LogOutput::StdOut { message }
                | LogOutput::StdErr { message }
                | LogOutput::Console { message } => log.write(&message),
                LogOutput::StdIn { .. } => {}
            }
        }
        let code = self.exit_code(container).await?;
        if code != 0 {
            return Err(ActionError::PluginFailed {
                image: a.image.clone(),
                code,
            });
        }
        self.collect_outputs(container, a, log).await
    }

    /// The code the container's process exited with, once it has.
    async fn exit_code(&self, container: &str) -> Result<i32, ActionError> {
        let mut wait = self
            .docker
            .wait_container(container, None::<WaitContainerOptions>);
        let code = match wait.next().await {
            Some(Ok(response)) => response.status_code,
            // bollard reports a non-zero exit as an error carrying the code.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
            Some(Err(e)) => return Err(e.into()),
            None => self
                .docker
                .inspect_container(container, None::<InspectContainerOptions>)
                .await?
                .state
                .and_then(|s| s.exit_code)
                .unwrap_or(-1),
        };
        Ok(i32::try_from(code).unwrap_or(-1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_gets_ci_variables_its_env_ferrys_and_its_secrets() {
        let spec = ActionSpec {
            context: crate::runner::ActionContext {
                pipeline: "web".into(),
                revision: "abc123".into(),
                action: "publish".into(),
                ..Default::default()
            },
            plugin: true,
            env: [
                ("PLUGIN_REPO".to_string(), "ferry/web".to_string()),
                // The action's own env wins over a CI variable.
                ("CI_REPO_NAME".to_string(), "own".to_string()),
            ]
            .into(),
            ..Default::default()
        };
        let env = plugin_env(&spec, &["PLUGIN_PASSWORD=hunter2".to_string()]);
        for wanted in [
            "CI=true",
            "DRONE_COMMIT_SHA=abc123",
            "DRONE_REPO_NAME=web",
            "CI_REPO_NAME=own",
            "DRONE_WORKSPACE=/workspace",
            "PLUGIN_REPO=ferry/web",
            "PLUGIN_PASSWORD=hunter2",
            "FERRY_PIPELINE=web",
            "FERRY_OUTPUT_VARS=/tmp/ferry-output-vars",
        ] {
            assert!(env.contains(&wanted.to_string()), "{wanted} in {env:?}");
        }
        assert_eq!(
            env.iter()
                .filter(|e| e.starts_with("CI_REPO_NAME="))
                .count(),
            1
        );
    }
}
