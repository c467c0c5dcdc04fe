//! Containers on a Docker Engine target: who holds which container and
//! host port, creating and starting the release's container (its
//! environment, ports, health check, restart policy and owner labels),
//! removing one, and waiting for it to be healthy.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, HealthConfig, HealthStatusEnum, HostConfig, PortBinding, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, ListContainersOptions, RemoveContainerOptions,
    StartContainerOptions,
};
use ferry_pipeline::DockerSpec;

use crate::deploy::Deployment;
use crate::deploy::owner::{Owner, Publisher};

/// How long a container without a health check must keep running to count as up.
const SETTLE: Duration = Duration::from_secs(2);

/// The labels of container `name` (`Some(None)`: it has none), or `None`
/// when there is no such container.
pub(super) async fn inspect_labels(
    docker: &Docker,
    name: &str,
) -> Option<Option<HashMap<String, String>>> {
    let found = docker
        .inspect_container(name, None::<InspectContainerOptions>)
        .await
        .ok()?;
    Some(found.config.and_then(|c| c.labels))
}

/// Every container on the engine with the host ports it publishes: from
/// the listing for running ones, from their configuration for the others
/// (a stopped container kept for rollback will want its ports back).
pub(super) async fn publishers(docker: &Docker) -> Result<Vec<Publisher>, String> {
    let list = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            ..Default::default()
        }))
        .await
        .map_err(|e| format!("cannot list the engine's containers: {e}"))?;
    let mut out = Vec::with_capacity(list.len());
    for c in list {
        let name = c
            .names
            .as_ref()
            .and_then(|n| n.first())
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_default();
        let mut ports: Vec<u16> = c
            .ports
            .iter()
            .flatten()
            .filter_map(|p| p.public_port)
            .collect();
        let running = c.state.is_some_and(|s| s.to_string() == "running");
        if !running && let Some(id) = &c.id {
            let bindings = docker
                .inspect_container(id, None::<InspectContainerOptions>)
                .await
                .ok()
                .and_then(|i| i.host_config)
                .and_then(|h| h.port_bindings);
            ports.extend(
                bindings
                    .iter()
                    .flat_map(|b| b.values())
                    .flatten()
                    .flatten()
                    .filter_map(|b| b.host_port.as_deref()?.parse::<u16>().ok()),
            );
        }
        out.push(Publisher {
            name,
            labels: c.labels.unwrap_or_default(),
            ports,
        });
    }
    Ok(out)
}

pub(super) async fn remove(docker: &Docker, name: &str) {
    let _ = docker
        .remove_container(
            name,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await;
}

pub(super) async fn create_and_start(
    docker: &Docker,
    d: &Deployment<'_>,
    spec: &DockerSpec,
    (image_id, owner): (&str, Owner<'_>),
) -> Result<String, String> {
    let host = owner.host;
    let mut env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    env.extend([
        format!("FERRY_ENVIRONMENT={}", d.environment),
        format!("FERRY_HOST={host}"),
        format!("FERRY_RELEASE={}", d.release),
    ]);
    env.extend(
        d.env
            .iter()
            .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v))),
    );
    let mut bindings = HashMap::new();
    let mut exposed = HashMap::new();
    for (host_port, container_port) in &spec.ports {
        let key = format!("{container_port}/tcp");
        bindings.insert(
            key.clone(),
            Some(vec![PortBinding {
                host_ip: None,
                host_port: Some(host_port.to_string()),
            }]),
        );
        exposed.insert(key, HashMap::new());
    }
    let healthcheck = spec.healthcheck.as_ref().map(|cmd| HealthConfig {
        test: Some(vec!["CMD-SHELL".into(), cmd.clone()]),
        interval: Some(1_000_000_000),
        timeout: Some(5_000_000_000),
        retries: Some(((spec.health_timeout_ms / 1_000) as i64).max(1)),
        start_period: None,
        start_interval: None,
    });
    let body = ContainerCreateBody {
        image: Some(image_id.to_string()),
        env: Some(env),
        cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
        labels: Some(owner.labels(d.release)),
        exposed_ports: Some(exposed),
        healthcheck,
        host_config: Some(HostConfig {
            port_bindings: Some(bindings),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    // A container of this name now can only be a half-made one of an
    // earlier attempt; anything else there stays, and creating fails.
    if let Some(labels) = inspect_labels(docker, &spec.container).await {
        owner.check(&spec.container, labels.as_ref())?;
        remove(docker, &spec.container).await;
    }
    let opts = CreateContainerOptions {
        name: Some(spec.container.clone()),
        ..Default::default()
    };
    docker
        .create_container(Some(opts), body)
        .await
        .map_err(|e| format!("cannot create container `{}`: {e}", spec.container))?;
    docker
        .start_container(&spec.container, None::<StartContainerOptions>)
        .await
        .map_err(|e| format!("cannot start container `{}`: {e}", spec.container))?;
    Ok(format!(
        "started container `{}` from {} ({image_id}, release {})",
        spec.container, spec.image, d.release
    ))
}

/// Waits for the container's health check to pass (or, without one, for
/// it to keep running for a moment).
pub(super) async fn wait_healthy(
    docker: &Docker,
    name: &str,
    timeout_ms: u64,
) -> Result<String, String> {
    let started = Instant::now();
    let limit = Duration::from_millis(timeout_ms);
    loop {
        let c = docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
            .map_err(|e| format!("cannot inspect container `{name}`: {e}"))?;
        let state = c.state.unwrap_or_default();
        if state.running != Some(true) {
            return Err(format!(
                "container `{name}` exited with code {}",
                state.exit_code.unwrap_or(-1)
            ));
        }
        match state.health.as_ref().and_then(|h| h.status) {
            Some(HealthStatusEnum::HEALTHY) => return Ok(format!("container `{name}` is healthy")),
            Some(HealthStatusEnum::UNHEALTHY) => {
                let last = state
                    .health
                    .and_then(|h| h.log)
                    .and_then(|l| l.last().cloned())
                    .and_then(|r| r.output)
                    .unwrap_or_default();
                return Err(format!("container `{name}` is unhealthy: {}", last.trim()));
            }
            Some(HealthStatusEnum::STARTING) => {}
            _ if started.elapsed() >= SETTLE => {
                return Ok(format!("container `{name}` is running (no health check)"));
            }
            _ => {}
        }
        if started.elapsed() >= limit {
            return Err(format!(
                "container `{name}` was not healthy within {limit:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
