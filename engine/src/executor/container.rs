//! An attempt's container from start to end: the image made sure of
//! (pulled when missing), the container created with its limits and its own
//! environment (never a secret), the steps run under the action's timeout and
//! a person's stop, test reports and failure outputs read once the commands
//! ended, and the container removed whatever happened (or kept for
//! `ferry exec --keep`); containers an earlier run left are removed too.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, KillContainerOptions, ListContainersOptions,
    RemoveContainerOptions,
};
use futures::StreamExt;

use super::outputs::mask_variables;
use super::{ContainerLimits, Executor, LABEL};
use crate::runner::{ActionError, ActionSpec, Attempt, LogSink, OUTPUT_VARS_PATH, Output, Secrets};
use ferry_pipeline::mask::Masker;
use ferry_pipeline::reports::TestSummary;

/// The container's own environment: the action's `env` and the `FERRY_*`
/// variables. Never a secret: this is stored in the container's configuration.
fn container_env(spec: &ActionSpec) -> Vec<String> {
    let own = spec.env.iter().map(|(k, v)| format!("{k}={v}"));
    let ferry = spec.context.ferry_env().map(|(k, v)| format!("{k}={v}"));
    let vars = std::iter::once(format!("FERRY_OUTPUT_VARS={OUTPUT_VARS_PATH}"));
    own.chain(ferry).chain(vars).collect()
}

/// The secrets as `NAME=value`, for each command's exec request only: the
/// engine keeps an exec's environment in memory, not in the container's
/// configuration or on disk.
fn secret_env(secrets: &Secrets) -> Vec<String> {
    secrets
        .iter()
        .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v)))
        .collect()
}

impl Executor {
    /// Removes containers an earlier run of this agent left (after a crash).
    pub async fn remove_stale(&self) {
        let filters = HashMap::from([
            ("label".to_string(), vec![LABEL.to_string()]),
            ("name".to_string(), vec![format!("ferry-{}-", self.agent)]),
        ]);
        let opts = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let Ok(list) = self.docker.list_containers(Some(opts)).await else {
            return;
        };
        let prefix = format!("/ferry-{}-", self.agent);
        for c in list {
            let Some(name) = c
                .names
                .unwrap_or_default()
                .into_iter()
                .find(|n| n.starts_with(&prefix))
            else {
                continue;
            };
            let name = name.trim_start_matches('/').to_string();
            tracing::info!(container = %name, "removing a container left by an earlier run");
            let _ = self.remove(&name).await;
        }
    }

    async fn ensure_image(&self, image: &str, log: &mut dyn LogSink) -> Result<(), ActionError> {
        if self.docker.inspect_image(image).await.is_ok() {
            return Ok(());
        }
        log.write(format!("[ferry] pulling image {image}\n").as_bytes());
        let opts = CreateImageOptions {
            from_image: Some(image.to_string()),
            ..Default::default()
        };
        let mut pull = self.docker.create_image(Some(opts), None, None);
        while let Some(progress) = pull.next().await {
            if let Err(e) = progress {
                return Err(ActionError::Image {
                    image: image.into(),
                    reason: e.to_string(),
                });
            }
        }
        self.docker
            .inspect_image(image)
            .await
            .map(|_| ())
            .map_err(|e| ActionError::Image {
                image: image.into(),
                reason: e.to_string(),
            })
    }

    /// Runs the attempt; the container is removed whatever happens.
    pub(super) async fn run_attempt(&self, attempt: Attempt<'_>) -> Ran {
        let Attempt {
            spec: a,
            inputs,
            secrets,
            log,
            mut cancel,
        } = attempt;
        if let Err(e) = self.ensure_image(&a.image, log).await {
            return Ran::failed(e);
        }
        let epoch = a.attempt.epoch;
        let name = self.container_name(epoch);
        let limits = ContainerLimits::of(&a.resources, &self.container);
        log.write(format!("[ferry] container limits: {limits}\n").as_bytes());
        let body = ContainerCreateBody {
            image: Some(a.image.clone()),
            entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
            cmd: Some(vec![
                "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done".into(),
            ]),
            working_dir: Some("/workspace".into()),
            env: Some(container_env(a)),
            labels: Some(HashMap::from([(LABEL.to_string(), epoch.to_string())])),
            host_config: Some(limits.host_config()),
            ..Default::default()
        };
        // A container left by an earlier run of this very attempt goes first.
        let _ = self.remove(&name).await;
        let opts = CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        if let Err(e) = self.docker.create_container(Some(opts), body).await {
            return Ran::failed(e.into());
        }
        let timeout = a.timeout;
        let masker = Masker::new(secrets.values().cloned());
        let secrets = secret_env(secrets);
        let result = tokio::select! {
            r = self.steps(&name, a, inputs, &secrets, log) => r,
            _ = tokio::time::sleep(timeout) => Err(ActionError::Timeout(timeout)),
            reason = cancel.cancelled() => Err(ActionError::Cancelled(reason)),
        };
        // Output variables go to the coordinators' log, `ferry status`,
        // approvals and notifications: a secret in one is masked here, as
        // in the action's log.
        let result = result.map(|(outputs, vars)| (outputs, mask_variables(vars, &masker, log)));
        let mut ran = self.after_commands(&name, a, result, log).await;
        // Test names and failure texts go where output variables go.
        ran.tests = ran.tests.map(|t| super::reports::masked(t, &masker));
        if self.keep_failed && matches!(ran.result, Err(ActionError::CommandFailed { .. })) {
            log.write(
                format!(
                    "[ferry] kept container {name} for inspection: docker exec -it {name} /bin/sh \
                     (remove it with: docker rm -f {name})\n"
                )
                .as_bytes(),
            );
        } else if let Err(e) = self.remove(&name).await {
            tracing::warn!(container = %name, error = %e, "could not remove container");
        }
        ran
    }

    /// What is read once the commands have ended, before the container
    /// goes: the test reports, whatever the outcome, and the outputs kept
    /// on failure when the commands failed or timed out (not when the
    /// attempt was cancelled or never ran a command). Bounded in time.
    async fn after_commands(
        &self,
        container: &str,
        a: &ActionSpec,
        result: Result<(Vec<Output>, BTreeMap<String, String>), ActionError>,
        log: &mut dyn LogSink,
    ) -> Ran {
        let ran_commands = matches!(
            &result,
            Ok(_) | Err(ActionError::CommandFailed { .. } | ActionError::Timeout(_))
        );
        if !ran_commands {
            return Ran::failed_with(result);
        }
        let read = async {
            let tests = self.read_reports(container, a, log).await;
            let failure_outputs = match result {
                Ok(_) => Vec::new(),
                Err(_) => self.collect_failure_outputs(container, a, log).await,
            };
            (tests, failure_outputs)
        };
        match tokio::time::timeout(AFTER_COMMANDS_TIMEOUT, read).await {
            Ok((tests, failure_outputs)) => Ran {
                result,
                failure_outputs,
                tests,
            },
            Err(_) => {
                log.write(
                    format!(
                        "[ferry] reading test reports and failure outputs took over {:?}: none kept\n",
                        AFTER_COMMANDS_TIMEOUT
                    )
                    .as_bytes(),
                );
                Ran::failed_with(result)
            }
        }
    }

    async fn remove(&self, name: &str) -> Result<(), bollard::errors::Error> {
        let _ = self
            .docker
            .kill_container(
                name,
                Some(KillContainerOptions {
                    signal: "KILL".into(),
                }),
            )
            .await;
        self.docker
            .remove_container(
                name,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
    }
}

/// Longest the engine spends reading test reports and failure outputs.
const AFTER_COMMANDS_TIMEOUT: Duration = Duration::from_secs(120);

/// How an attempt in a container ended.
pub(super) struct Ran {
    pub result: Result<(Vec<Output>, BTreeMap<String, String>), ActionError>,
    pub failure_outputs: Vec<Output>,
    pub tests: Option<TestSummary>,
}

impl Ran {
    fn failed(error: ActionError) -> Ran {
        Ran::failed_with(Err(error))
    }

    fn failed_with(result: Result<(Vec<Output>, BTreeMap<String, String>), ActionError>) -> Ran {
        Ran {
            result,
            failure_outputs: Vec::new(),
            tests: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ActionSpec {
        ActionSpec {
            context: crate::runner::ActionContext {
                pipeline: "p".into(),
                ..Default::default()
            },
            env: [("MODE".to_string(), "release".to_string())].into(),
            ..Default::default()
        }
    }

    fn secrets() -> Secrets {
        [("TOKEN".to_string(), b"hunter2".to_vec())].into()
    }

    #[test]
    fn secrets_stay_out_of_the_container_environment() {
        let env = container_env(&spec());
        assert!(env.contains(&"MODE=release".to_string()));
        assert!(env.contains(&"FERRY_PIPELINE=p".to_string()));
        assert!(
            !env.iter()
                .any(|e| e.contains("hunter2") || e.starts_with("TOKEN"))
        );
        assert_eq!(secret_env(&secrets()), vec!["TOKEN=hunter2".to_string()]);
    }
}
