//! An attempt's container from start to end: the images made sure of
//! (pulled when missing), the container created with its limits and its own
//! environment (never a secret, but for a plugin's: [`super::plugin`]), its
//! services started and ready ([`super::services`]), the steps run under
//! the action's timeout and a person's stop, test reports and failure
//! outputs read once the commands ended, and the containers and network
//! removed whatever happened (or kept for `ferry exec --keep`); what an
//! earlier run left is removed too.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, KillContainerOptions, ListContainersOptions,
    RemoveContainerOptions,
};
use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::outputs::mask_variables;
use super::service_log::{LogHandle, SharedLog};
use super::{ContainerLimits, Executor, LABEL};
use crate::runner::{
    ActionError, ActionSpec, Attempt, Cancel, LogSink, OUTPUT_VARS_PATH, Outcome, Output,
    PreparedInput, Secrets,
};
use ferry_pipeline::mask::Masker;

/// How an attempt's work inside its containers ended.
type Attended = Result<(Vec<Output>, BTreeMap<String, String>), ActionError>;

/// How long the services' log followers get, once the services stopped, to
/// pass on what they printed last.
const LAST_OUTPUT: Duration = Duration::from_secs(2);

/// Drives the services' log followers; never ends (a follower whose stream
/// ended is done, the others go on), so a `select!` ends on its other arms.
async fn follow_forever<F: std::future::Future<Output = ()>>(
    followers: &mut FuturesUnordered<F>,
) -> Attended {
    while followers.next().await.is_some() {}
    std::future::pending().await
}

/// The action's own variables, as `(NAME, value)`: its `env`, the
/// `FERRY_*` variables and where output variables go. Never a secret.
pub(super) fn own_env(spec: &ActionSpec) -> impl Iterator<Item = (&str, &str)> {
    let own = spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let vars = std::iter::once(("FERRY_OUTPUT_VARS", OUTPUT_VARS_PATH));
    own.chain(spec.context.ferry_env()).chain(vars)
}

/// The container's own environment ([`own_env`]). Never a secret: this is
/// stored in the container's configuration.
fn container_env(spec: &ActionSpec) -> Vec<String> {
    own_env(spec).map(|(k, v)| format!("{k}={v}")).collect()
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
    /// Removes containers an earlier run of this agent left (after a crash):
    /// actions' and services' (all named `ferry-<agent>-...` with Ferry's
    /// label), then the attempts' networks.
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
        self.remove_stale_networks().await;
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

    /// Runs the attempt; its containers (the action's, its services' and
    /// their network) are removed whatever happens.
    pub(super) async fn run_attempt(&self, attempt: Attempt<'_>) -> Outcome {
        let Attempt {
            spec: a,
            inputs,
            secrets,
            log,
            mut cancel,
        } = attempt;
        for image in std::iter::once(&a.image).chain(a.services.iter().map(|s| &s.image)) {
            if let Err(e) = self.ensure_image(image, log).await {
                return Outcome::failed(e);
            }
        }
        let epoch = a.attempt.epoch;
        let name = self.container_name(epoch);
        let limits = ContainerLimits::of(&a.resources, &self.container);
        log.write(format!("[ferry] container limits: {limits}\n").as_bytes());
        // What an earlier run of this very attempt left goes first.
        let _ = self.remove(&name).await;
        if !a.services.is_empty() {
            self.remove_services(a).await;
            let names: Vec<&str> = a.services.iter().map(|s| s.name.as_str()).collect();
            log.write(
                format!(
                    "[ferry] services {} on network {} (each with these limits)\n",
                    names.join(", "),
                    self.network_name(epoch)
                )
                .as_bytes(),
            );
        }
        let masker = Masker::new(secrets.values().cloned());
        let secrets = secret_env(secrets);
        let (result, kept) = {
            let shared = SharedLog::new(log);
            self.attend(a, inputs, &secrets, &shared, &mut cancel, &limits)
                .await
        };
        // Output variables go to the coordinators' log, `ferry status`,
        // approvals and notifications: a secret in one is masked here, as
        // in the action's log.
        let result = result.map(|(outputs, vars)| (outputs, mask_variables(vars, &masker, log)));
        let mut outcome = self.after_commands(&name, a, result, log).await;
        // Test names and failure texts go where output variables go.
        outcome.tests = outcome.tests.map(|t| super::reports::masked(t, &masker));
        if outcome.success() && !a.caches.is_empty() {
            outcome.caches = self.save_caches(&name, a, log).await;
        }
        if kept {
            let mut all = vec![name.clone()];
            all.extend(
                a.services
                    .iter()
                    .map(|s| self.service_container_name(epoch, &s.name)),
            );
            let network = match a.services.is_empty() {
                true => String::new(),
                false => format!(" && docker network rm {}", self.network_name(epoch)),
            };
            // A plugin's container has stopped, and may have no shell.
            let enter = match a.plugin {
                false => format!("docker exec -it {name} /bin/sh"),
                true => format!("docker cp {name}:/workspace ./workspace"),
            };
            log.write(
                format!(
                    "[ferry] kept container {name} for inspection: {enter} \
                     (remove it with: docker rm -f {}{network})\n",
                    all.join(" ")
                )
                .as_bytes(),
            );
        } else {
            if let Err(e) = self.remove(&name).await {
                tracing::warn!(container = %name, error = %e, "could not remove container");
            }
            if !a.services.is_empty() {
                self.remove_services(a).await;
            }
        }
        outcome
    }

    /// Everything between the images and the clean-up: the network and the
    /// containers made, the services started and ready, the steps run, all
    /// under the action's timeout and a person's stop. Also says whether
    /// the containers are kept (`ferry exec --keep` after a failed command).
    async fn attend(
        &self,
        a: &ActionSpec,
        inputs: &[PreparedInput],
        secrets: &[String],
        log: &SharedLog<'_>,
        cancel: &mut Cancel,
        limits: &ContainerLimits,
    ) -> (Attended, bool) {
        let name = self.container_name(a.attempt.epoch);
        // A build or test container idles in a shell while each command runs
        // with `docker exec`; a plugin's runs its image's own entrypoint and
        // command (no shell needed) and reads everything from its
        // environment, secrets included.
        let (entrypoint, cmd, env) = match a.plugin {
            false => (
                Some(vec!["/bin/sh".into(), "-c".into()]),
                Some(vec![
                    "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done".into(),
                ]),
                container_env(a),
            ),
            true => (None, None, super::plugin::plugin_env(a, secrets)),
        };
        let mut body = ContainerCreateBody {
            image: Some(a.image.clone()),
            entrypoint,
            cmd,
            working_dir: Some("/workspace".into()),
            env: Some(env),
            labels: Some(HashMap::from([(
                LABEL.to_string(),
                a.attempt.epoch.to_string(),
            )])),
            host_config: Some(limits.host_config()),
            ..Default::default()
        };
        let services = !a.services.is_empty();
        if services {
            if let Err(e) = self.create_network(a.attempt.epoch).await {
                return (Err(e), false);
            }
            self.join_network(&mut body, a);
        }
        let opts = CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        if let Err(e) = self.docker.create_container(Some(opts), body).await {
            return (Err(e.into()), false);
        }
        if services {
            self.connect_bridge(&name, log).await;
        }
        let timeout = a.timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let stop = async {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => ActionError::Timeout(timeout),
                reason = cancel.cancelled() => ActionError::Cancelled(reason),
            }
        };
        tokio::pin!(stop);
        let started = tokio::select! {
            r = self.start_services(a, limits, log) => r,
            e = &mut stop => Err(e),
        };
        let started = match started {
            Ok(started) => started,
            Err(e) => return (Err(e), false),
        };
        let mut followers: FuturesUnordered<_> = started
            .iter()
            .map(|(service, container)| self.follow_logs(container, service, log))
            .collect();
        let work = async {
            if services {
                self.wait_ready(a, log).await?;
            }
            match a.plugin {
                false => {
                    self.steps(&name, a, inputs, secrets, &mut LogHandle(log))
                        .await
                }
                true => {
                    self.plugin_steps(&name, a, inputs, &mut LogHandle(log))
                        .await
                }
            }
        };
        let result = tokio::select! {
            r = work => r,
            e = &mut stop => Err(e),
            r = follow_forever(&mut followers) => r,
        };
        let kept = self.keep_failed && result.as_ref().is_err_and(ActionError::ran_and_failed);
        if !kept {
            self.stop_services(&started).await;
        }
        // What the services printed last reaches the log before they go.
        let _ = tokio::time::timeout(LAST_OUTPUT, async {
            while followers.next().await.is_some() {}
        })
        .await;
        (result, kept)
    }

    /// What is read once the commands have ended, before the container
    /// goes: the test reports, whatever the outcome, and the outputs kept
    /// on failure when the commands failed or timed out (not when the
    /// attempt was cancelled or never ran a command). Bounded in time.
    async fn after_commands(
        &self,
        container: &str,
        a: &ActionSpec,
        result: Attended,
        log: &mut dyn LogSink,
    ) -> Outcome {
        let ran_commands = match &result {
            Ok(_) | Err(ActionError::Timeout(_)) => true,
            Err(e) => e.ran_and_failed(),
        };
        if !ran_commands {
            return outcome_of(result);
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
            Ok((tests, failure_outputs)) => Outcome {
                failure_outputs,
                tests,
                ..outcome_of(result)
            },
            Err(_) => {
                log.write(
                    format!(
                        "[ferry] reading test reports and failure outputs took over {:?}: none kept\n",
                        AFTER_COMMANDS_TIMEOUT
                    )
                    .as_bytes(),
                );
                outcome_of(result)
            }
        }
    }

    pub(super) async fn remove(&self, name: &str) -> Result<(), bollard::errors::Error> {
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

/// The outcome of an attempt whose work ended with `result`, before its
/// test reports and failure outputs are read.
fn outcome_of(result: Attended) -> Outcome {
    match result {
        Ok((outputs, variables)) => Outcome {
            result: Ok(outputs),
            deployment: None,
            variables,
            failure_outputs: Vec::new(),
            tests: None,
            caches: Vec::new(),
        },
        Err(e) => Outcome::failed(e),
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
