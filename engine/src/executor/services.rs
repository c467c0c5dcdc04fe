//! An attempt's service containers (`services:`): the attempt's own
//! network (internal: a service reaches nothing but the action and the
//! other services; it carries Ferry's label, so a crashed agent's leftovers
//! are found), each service created on it under its name with the action's
//! limits and hardening, the wait until every one is ready (its ready
//! command, run inside it, exits 0) within its own timeout, and the removal
//! of them all with the network. A service that exits before it is ready,
//! or is not ready in time, fails the attempt naming it, with its last log
//! lines. Services never get the action's secrets.

use std::collections::HashMap;
use std::time::Duration;

use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, EndpointSettings, NetworkConnectRequest, NetworkCreateRequest,
    NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptions, KillContainerOptions, ListNetworksOptions, StartContainerOptions,
};
use futures::StreamExt;
use tokio::time::Instant;

use super::service_log::SharedLog;
use super::{ContainerLimits, Executor, LABEL};
use crate::runner::{ActionError, ActionSpec, ServiceSpec};

/// Label naming the service a container runs (beside [`LABEL`]).
pub const SERVICE_LABEL: &str = "ferry.service";

use ferry_pipeline::service::ACTION_HOST_NAME;

/// Pause between two tries of a ready command.
const READY_INTERVAL: Duration = Duration::from_millis(500);

/// Lines of a service's log quoted when it fails to get ready.
const LAST_LINES: usize = 20;

/// Longest output of a ready command quoted when it last failed.
const READY_OUTPUT: usize = 300;

impl Executor {
    /// The name of the network of the attempt with fencing epoch `epoch`
    /// (the name of its container: networks and containers are named apart).
    pub fn network_name(&self, epoch: u64) -> String {
        self.container_name(epoch)
    }

    /// The name of service `service`'s container in attempt `epoch`.
    pub fn service_container_name(&self, epoch: u64, service: &str) -> String {
        format!("{}-svc-{service}", self.container_name(epoch))
    }

    /// Creates the attempt's network: a bridge of its own, internal, with
    /// Ferry's label. One an earlier run of the same attempt left goes first.
    pub(super) async fn create_network(&self, epoch: u64) -> Result<(), ActionError> {
        let name = self.network_name(epoch);
        let _ = self.docker.remove_network(&name).await;
        self.docker
            .create_network(NetworkCreateRequest {
                name,
                driver: Some("bridge".into()),
                internal: Some(true),
                labels: Some(HashMap::from([(LABEL.to_string(), epoch.to_string())])),
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    /// The action's container on the attempt's network, where it answers to
    /// `workspace` and its action's name; it keeps the way out every action
    /// has through the default bridge, connected before it starts.
    pub(super) fn join_network(&self, body: &mut ContainerCreateBody, a: &ActionSpec) {
        let network = self.network_name(a.attempt.epoch);
        let mut aliases = vec![ACTION_HOST_NAME.to_string()];
        // Only a name that is a host name (not, say, a matrix cell's).
        if ferry_pipeline::validate_name(&a.context.action).is_ok() {
            aliases.push(a.context.action.clone());
        }
        if let Some(host) = body.host_config.as_mut() {
            host.network_mode = Some(network.clone());
        }
        body.networking_config = Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                network,
                EndpointSettings {
                    aliases: Some(aliases),
                    ..Default::default()
                },
            )])),
        });
    }

    /// Connects the created action container `name` to the default bridge
    /// (its way out); a failure is noted in the log and the action runs on.
    pub(super) async fn connect_bridge(&self, name: &str, log: &SharedLog<'_>) {
        let connected = self
            .docker
            .connect_network(
                "bridge",
                NetworkConnectRequest {
                    container: Some(name.to_string()),
                    endpoint_config: None,
                },
            )
            .await;
        if let Err(e) = connected {
            log.write(
                format!(
                    "[ferry] could not connect the action to Docker's default bridge ({e}): it \
                     reaches only its services\n"
                )
                .as_bytes(),
            );
        }
    }

    /// Creates and starts every service of `a` on the attempt's network,
    /// in order; returns each started one's (service, container) names.
    pub(super) async fn start_services(
        &self,
        a: &ActionSpec,
        limits: &ContainerLimits,
        log: &SharedLog<'_>,
    ) -> Result<Vec<(String, String)>, ActionError> {
        let epoch = a.attempt.epoch;
        let network = self.network_name(epoch);
        let mut started = Vec::new();
        for s in &a.services {
            let name = self.service_container_name(epoch, &s.name);
            let failed = |e: bollard::errors::Error| ActionError::ServiceStart {
                service: s.name.clone(),
                reason: e.to_string(),
            };
            let mut host = limits.host_config();
            host.network_mode = Some(network.clone());
            let body = ContainerCreateBody {
                image: Some(s.image.clone()),
                cmd: (!s.command.is_empty()).then(|| s.command.clone()),
                env: Some(s.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
                labels: Some(HashMap::from([
                    (LABEL.to_string(), epoch.to_string()),
                    (SERVICE_LABEL.to_string(), s.name.clone()),
                ])),
                host_config: Some(host),
                networking_config: Some(NetworkingConfig {
                    endpoints_config: Some(HashMap::from([(
                        network.clone(),
                        EndpointSettings {
                            aliases: Some(vec![s.name.clone()]),
                            ..Default::default()
                        },
                    )])),
                }),
                ..Default::default()
            };
            let opts = CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            };
            self.docker
                .create_container(Some(opts), body)
                .await
                .map_err(failed)?;
            self.docker
                .start_container(&name, None::<StartContainerOptions>)
                .await
                .map_err(failed)?;
            log.write(format!("[ferry] service {} started ({})\n", s.name, s.image).as_bytes());
            started.push((s.name.clone(), name));
        }
        Ok(started)
    }

    /// Waits until every service of `a` is ready, each within its own
    /// timeout from now; the first that fails ends the wait.
    pub(super) async fn wait_ready(
        &self,
        a: &ActionSpec,
        log: &SharedLog<'_>,
    ) -> Result<(), ActionError> {
        let waits = a.services.iter().map(|s| async move {
            let name = self.service_container_name(a.attempt.epoch, &s.name);
            let since = Instant::now();
            self.ready(&name, s).await?;
            log.write(
                format!(
                    "[ferry] service {} is ready after {:.1}s\n",
                    s.name,
                    since.elapsed().as_secs_f64()
                )
                .as_bytes(),
            );
            Ok::<(), ActionError>(())
        });
        futures::future::try_join_all(waits).await.map(|_| ())
    }

    /// Tries service `s` (container `container`) until it is ready, it
    /// exits, or its ready timeout passes.
    async fn ready(&self, container: &str, s: &ServiceSpec) -> Result<(), ActionError> {
        let deadline = Instant::now() + s.ready_timeout;
        let mut seen_running = false;
        // How the ready command's last try ended.
        let mut last = String::new();
        loop {
            let state = self
                .docker
                .inspect_container(
                    container,
                    None::<bollard::query_parameters::InspectContainerOptions>,
                )
                .await
                .map_err(|e| ActionError::ServiceStart {
                    service: s.name.clone(),
                    reason: e.to_string(),
                })?
                .state
                .unwrap_or_default();
            if !state.running.unwrap_or(false) {
                return Err(ActionError::ServiceExited {
                    service: s.name.clone(),
                    code: state.exit_code.unwrap_or(-1),
                    logs: self.last_lines(container, LAST_LINES).await,
                });
            }
            if s.ready_command.is_empty() {
                // Without a ready command, running is ready: once it still
                // runs a moment after it started (a program that cannot
                // start exits at once).
                if seen_running {
                    return Ok(());
                }
                seen_running = true;
                tokio::time::sleep(READY_INTERVAL).await;
                continue;
            }
            let tried =
                tokio::time::timeout_at(deadline, self.try_ready(container, &s.ready_command))
                    .await;
            last = match tried {
                Ok(Ok((0, _))) => return Ok(()),
                Ok(Ok((code, output))) => match output.trim() {
                    "" => format!("its ready command last exited with code {code}"),
                    output => format!("its ready command last exited with code {code}: {output}"),
                },
                Ok(Err(e)) => format!("its ready command could not run: {e}"),
                // Cut off by the deadline: how the try before ended says more.
                Err(_) if !last.is_empty() => last,
                Err(_) => "its ready command was still running".to_string(),
            };
            if Instant::now() + READY_INTERVAL >= deadline {
                return Err(self.not_ready(container, s, last).await);
            }
            tokio::time::sleep(READY_INTERVAL).await;
        }
    }

    /// Why `s` is not ready: it exited meanwhile, or its time is up.
    async fn not_ready(&self, container: &str, s: &ServiceSpec, last: String) -> ActionError {
        let logs = self.last_lines(container, LAST_LINES).await;
        let exited = self
            .docker
            .inspect_container(
                container,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .ok()
            .and_then(|c| c.state)
            .filter(|state| !state.running.unwrap_or(false));
        match exited {
            Some(state) => ActionError::ServiceExited {
                service: s.name.clone(),
                code: state.exit_code.unwrap_or(-1),
                logs,
            },
            None => ActionError::ServiceNotReady {
                service: s.name.clone(),
                timeout: s.ready_timeout,
                last,
                logs,
            },
        }
    }

    /// Runs `command` once with `/bin/sh -c` in `container`: its exit code
    /// and the end of its output.
    async fn try_ready(
        &self,
        container: &str,
        command: &str,
    ) -> Result<(i64, String), bollard::errors::Error> {
        let exec = self
            .docker
            .create_exec(
                container,
                CreateExecOptions {
                    cmd: Some(vec!["/bin/sh", "-c", command]),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await?;
        let mut output = Vec::new();
        if let StartExecResults::Attached {
            output: mut out, ..
        } = self.docker.start_exec(&exec.id, None).await?
        {
            while let Some(chunk) = out.next().await {
                output.extend_from_slice(&chunk?.into_bytes());
                if output.len() > 4 * READY_OUTPUT {
                    output.drain(..output.len() - READY_OUTPUT);
                }
            }
        }
        let code = self
            .docker
            .inspect_exec(&exec.id)
            .await?
            .exit_code
            .unwrap_or(-1);
        let text = String::from_utf8_lossy(&output);
        let tail: String = text
            .chars()
            .rev()
            .take(READY_OUTPUT)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        Ok((code, tail))
    }

    /// Stops the services that were started (their log streams end).
    pub(super) async fn stop_services(&self, started: &[(String, String)]) {
        for (_, container) in started {
            let _ = self
                .docker
                .kill_container(
                    container,
                    Some(KillContainerOptions {
                        signal: "KILL".into(),
                    }),
                )
                .await;
        }
    }

    /// Removes every service container of `a` and the attempt's network
    /// (after the action's own container, which is on it, is gone).
    pub(super) async fn remove_services(&self, a: &ActionSpec) {
        let epoch = a.attempt.epoch;
        for s in &a.services {
            let name = self.service_container_name(epoch, &s.name);
            if let Err(e) = self.remove(&name).await
                && !is_not_found(&e)
            {
                tracing::warn!(container = %name, error = %e, "could not remove a service container");
            }
        }
        self.remove_network(&self.network_name(epoch)).await;
    }

    /// Removes network `name`; a few tries, as endpoints of containers just
    /// removed may still be going away.
    pub(super) async fn remove_network(&self, name: &str) {
        for i in 0..5 {
            match self.docker.remove_network(name).await {
                Ok(()) => return,
                Err(e) if is_not_found(&e) => return,
                Err(e) if i == 4 => {
                    tracing::warn!(network = %name, error = %e, "could not remove a network");
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200 << i)).await,
            }
        }
    }

    /// Removes the networks an earlier run of this agent left (after a
    /// crash); their containers are gone first ([`Executor::remove_stale`]).
    pub(super) async fn remove_stale_networks(&self) {
        let prefix = format!("ferry-{}-", self.agent);
        let filters = HashMap::from([
            ("label".to_string(), vec![LABEL.to_string()]),
            ("name".to_string(), vec![prefix.clone()]),
        ]);
        let opts = ListNetworksOptions {
            filters: Some(filters),
        };
        let Ok(list) = self.docker.list_networks(Some(opts)).await else {
            return;
        };
        for n in list {
            let Some(name) = n.name.filter(|n| n.starts_with(&prefix)) else {
                continue;
            };
            tracing::info!(network = %name, "removing a network left by an earlier run");
            self.remove_network(&name).await;
        }
    }
}

/// Whether the engine answered 404: the thing is gone already.
fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}
