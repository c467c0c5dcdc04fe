//! One Docker Engine target (bollard, over a Unix socket, plain TCP, or TCP
//! with the client certificate from the host's TLS secret): load the image
//! from a `docker save` archive in the artifact when the revision spec names
//! one (no registry needed), keep the running container as
//! `<name>.ferry-previous` (stopped), start the new one, and wait for its
//! health check. Rolling back removes the new container and starts the
//! previous one again. Nothing on the engine is touched that is not this
//! deployment's own (`owner.rs`): the container, the one kept for rollback
//! and the host ports are checked first.

use std::collections::HashMap;
use std::io::Write as _;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, HealthConfig, HealthStatusEnum, HostConfig, PortBinding, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, ImportImageOptions, InspectContainerOptions, ListContainersOptions,
    RemoveContainerOptions, RenameContainerOptions, StartContainerOptions, StopContainerOptions,
};
use ferry_pipeline::{DockerSpec, PREVIOUS_CONTAINER_SUFFIX as PREVIOUS_SUFFIX};
use futures::StreamExt;

use super::owner::{Owner, Publisher, RELEASE_LABEL, port_taken};
use super::{DeployHost, Deployment, HookPhase, HostOutcome, HostReport, StepError, fail, record};

/// How long a container without a health check must keep running to count as up.
const SETTLE: Duration = Duration::from_secs(2);

pub struct DockerRun {
    pub host: DeployHost,
    docker: Option<Docker>,
    /// Client TLS files written from the host's secret; removed on drop.
    _tls: Option<tempfile::TempDir>,
    pub previous: String,
    had_previous: bool,
    created: bool,
    pub report: HostReport,
}

impl DockerRun {
    pub fn new(host: DeployHost, batch: u32) -> DockerRun {
        let report = super::new_report(&host, batch);
        DockerRun {
            host,
            docker: None,
            _tls: None,
            previous: String::new(),
            had_previous: false,
            created: false,
            report,
        }
    }

    pub fn changed(&self) -> bool {
        self.created || self.had_previous
    }

    pub async fn deploy(&mut self, d: &Deployment<'_>) {
        let Some(spec) = d.spec.docker.clone() else {
            self.report.outcome = HostOutcome::Failed;
            self.report.error = format!(
                "spec: host `{}` is a Docker Engine but ferry-deploy.yml has no `docker` section",
                self.host.name
            );
            return;
        };
        let result = self.deploy_steps(d, &spec).await;
        super::settle(
            &mut self.report,
            result,
            d.release,
            self.created,
            &self.previous,
        );
    }

    async fn deploy_steps(
        &mut self,
        d: &Deployment<'_>,
        spec: &DockerSpec,
    ) -> Result<(), StepError> {
        let docker = self.connect(d).await?;
        // The container is made from the image's id, not its tag: a tag is
        // shared by every deployment to the engine, and another one (staging
        // loading an archive of its own) may move it at any moment.
        let mut image_id = None;
        if let Some(archive) = &spec.image_archive {
            let started = Instant::now();
            let result = load_image(&docker, d, archive, &spec.image).await;
            let shown = result
                .as_ref()
                .map(|(said, _)| said.clone())
                .map_err(Clone::clone);
            self.step(d, ("load", HookPhase::Deploy), started, &shown);
            image_id = Some(result.map_err(fail("load"))?.1);
        }
        let lookup = image_id.as_deref().unwrap_or(&spec.image);
        let image_id = match docker.inspect_image(lookup).await.ok().and_then(|i| i.id) {
            Some(id) => id,
            None => {
                let reason = format!(
                    "image `{}` is not on the engine{}",
                    spec.image,
                    if spec.image_archive.is_some() {
                        " (the loaded archive does not hold it)"
                    } else {
                        " and ferry-deploy.yml names no image_archive to load it from"
                    }
                );
                return Err(fail("image")(reason));
            }
        };
        let name = spec.container.as_str();
        let previous_name = format!("{name}{PREVIOUS_SUFFIX}");
        d.go_on("claim")?;
        let started = Instant::now();
        let result = self.claim(&docker, d, spec).await;
        self.step(d, ("claim", HookPhase::Deploy), started, &result);
        result.map_err(fail("claim"))?;
        d.go_on("stop")?;
        if let Ok(current) = docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
        {
            let started = Instant::now();
            self.previous = current
                .config
                .and_then(|c| c.labels)
                .and_then(|l| l.get(RELEASE_LABEL).cloned())
                .unwrap_or_else(|| "unmanaged".into());
            self.report.previous = self.previous.clone();
            let result = async {
                remove(&docker, &previous_name).await;
                docker
                    .rename_container(
                        name,
                        RenameContainerOptions {
                            name: previous_name.clone(),
                        },
                    )
                    .await
                    .map_err(|e| format!("cannot set the running container aside: {e}"))?;
                self.had_previous = true;
                docker
                    .stop_container(
                        &previous_name,
                        Some(StopContainerOptions {
                            t: Some(10),
                            signal: None,
                        }),
                    )
                    .await
                    .map_err(|e| format!("cannot stop the previous container: {e}"))?;
                Ok(format!(
                    "stopped release {} (kept as {previous_name})",
                    self.previous
                ))
            }
            .await;
            self.step(d, ("stop", HookPhase::Deploy), started, &result);
            result.map_err(fail("stop"))?;
        }
        d.go_on("start")?;
        let started = Instant::now();
        // Counted as changed from here: a half-made container is removed on rollback.
        self.created = true;
        let result =
            create_and_start(&docker, d, spec, (&image_id, owner_of(d, &self.host.name))).await;
        self.step(d, ("start", HookPhase::Deploy), started, &result);
        result.map_err(fail("start"))?;
        let started = Instant::now();
        let limit = d
            .budget(
                HookPhase::Deploy,
                Duration::from_millis(spec.health_timeout_ms),
            )
            .map_err(fail("validate"))?;
        let result = wait_healthy(&docker, name, limit.as_millis() as u64).await;
        self.step(d, ("validate", HookPhase::Deploy), started, &result);
        result.map(|_| ()).map_err(fail("validate"))
    }

    pub async fn roll_back(&mut self, d: &Deployment<'_>) {
        if !self.changed() || self.report.outcome == HostOutcome::RolledBack {
            return;
        }
        let Some(spec) = d.spec.docker.clone() else {
            return;
        };
        let Some(docker) = self.docker.clone() else {
            return;
        };
        let name = spec.container.as_str();
        let previous_name = format!("{name}{PREVIOUS_SUFFIX}");
        let started = Instant::now();
        let host = self.host.name.clone();
        let owner = owner_of(d, &host);
        let result = async {
            if self.created {
                // Only the container this deployment made: if creating it
                // failed because the name was taken, that one stays.
                let made = inspect_labels(&docker, name).await.is_some_and(|labels| {
                    owner.check(name, labels.as_ref()).is_ok()
                        && labels.as_ref().and_then(|l| l.get(RELEASE_LABEL))
                            == Some(&d.release.to_string())
                });
                if made {
                    remove(&docker, name).await;
                }
                self.created = false;
            }
            if self.had_previous {
                docker
                    .rename_container(&previous_name, RenameContainerOptions { name: name.into() })
                    .await
                    .map_err(|e| format!("cannot restore the previous container: {e}"))?;
                docker
                    .start_container(name, None::<StartContainerOptions>)
                    .await
                    .map_err(|e| format!("cannot start the previous container: {e}"))?;
            }
            Ok(format!("back on release {}", self.previous))
        }
        .await;
        self.step(d, ("switch", HookPhase::Rollback), started, &result);
        let result = match result {
            Ok(_) if self.had_previous => {
                let started = Instant::now();
                let health = wait_healthy(&docker, name, spec.health_timeout_ms).await;
                self.step(d, ("validate", HookPhase::Rollback), started, &health);
                health
            }
            other => other,
        };
        match result {
            Ok(_) => {
                self.report.outcome = HostOutcome::RolledBack;
                self.report.release = self.previous.clone();
            }
            Err(reason) => {
                self.report.outcome = HostOutcome::RollbackFailed;
                self.report.error = format!("{}; rollback: {reason}", self.report.error);
            }
        }
    }

    /// Checks that the container the spec names, the one kept beside it for
    /// rollback and the host ports it publishes are this deployment's to
    /// take: nothing of another environment, pipeline or host, and nothing
    /// Ferry did not make.
    async fn claim(
        &self,
        docker: &Docker,
        d: &Deployment<'_>,
        spec: &DockerSpec,
    ) -> Result<String, String> {
        let owner = owner_of(d, &self.host.name);
        let name = spec.container.as_str();
        let previous_name = format!("{name}{PREVIOUS_SUFFIX}");
        let mut adopted = Vec::new();
        for container in [name, previous_name.as_str()] {
            if let Some(labels) = inspect_labels(docker, container).await
                && owner.check(container, labels.as_ref())?
            {
                adopted.push(container);
            }
        }
        let wanted: Vec<u16> = spec.ports.iter().map(|(host, _)| *host).collect();
        if !wanted.is_empty() {
            let publishers = publishers(docker).await?;
            if let Some(taken) = port_taken(&wanted, &[name, &previous_name], &publishers) {
                return Err(taken);
            }
        }
        let mut said = format!(
            "container `{name}` is environment `{}`'s (pipeline `{}`, host `{}`)",
            d.environment, d.pipeline, self.host.name
        );
        if !adopted.is_empty() {
            said.push_str(&format!(
                "; adopted {} (made before Ferry labelled pipeline and host)",
                adopted.join(", ")
            ));
        }
        Ok(said)
    }

    async fn connect(&mut self, d: &Deployment<'_>) -> Result<Docker, StepError> {
        let started = Instant::now();
        let result = self.open(d.connect_timeout).await;
        let shown = match &result {
            Ok(_) => Ok(format!("connected to {}", self.host.endpoint)),
            Err(e) => Err(e.clone()),
        };
        self.step(d, ("connect", HookPhase::Deploy), started, &shown);
        let docker = result.map_err(fail("connect"))?;
        self.docker = Some(docker.clone());
        Ok(docker)
    }

    async fn open(&mut self, timeout: Duration) -> Result<Docker, String> {
        let endpoint = self.host.endpoint.as_str();
        let secs = timeout.as_secs().max(1) + 120;
        let version = bollard::API_DEFAULT_VERSION;
        let docker = if let Some(path) = endpoint.strip_prefix("unix://") {
            Docker::connect_with_unix(path, secs, version)
        } else if self.host.tls_bundle.is_empty() {
            Docker::connect_with_http(endpoint, secs, version)
        } else {
            let dir = write_tls_files(&self.host.tls_bundle)?;
            let p = |f: &str| dir.path().join(f);
            let docker = Docker::connect_with_ssl(
                endpoint,
                &p("key.pem"),
                &p("cert.pem"),
                &p("ca.pem"),
                secs,
                version,
            );
            self._tls = Some(dir);
            docker
        }
        .map_err(|e| format!("cannot use endpoint {endpoint}: {e}"))?;
        match tokio::time::timeout(timeout, docker.ping()).await {
            Err(_) => Err(format!("{endpoint} did not answer within {timeout:?}")),
            Ok(Err(e)) => Err(format!("{endpoint} is unreachable: {e}")),
            Ok(Ok(_)) => Ok(docker),
        }
    }

    fn step(
        &mut self,
        d: &Deployment<'_>,
        (hook, phase): (&str, HookPhase),
        started: Instant,
        result: &Result<String, String>,
    ) {
        let (success, text) = match result {
            Ok(t) => (true, t.clone()),
            Err(e) => (false, e.clone()),
        };
        d.log(&self.host.name, hook, format!("{text}\n").as_bytes());
        record(
            &mut self.report,
            (hook, phase),
            success,
            -1,
            started,
            text.as_bytes(),
        );
    }
}

/// Splits the TLS secret (CA certificate, client certificate, client key,
/// PEM, in that order) into the three files bollard reads.
fn write_tls_files(bundle: &[u8]) -> Result<tempfile::TempDir, String> {
    let text = String::from_utf8_lossy(bundle);
    let mut certs = Vec::new();
    let mut key = None;
    let mut rest = text.as_ref();
    while let Some(begin) = rest.find("-----BEGIN ") {
        let block = &rest[begin..];
        let Some(end_marker) = block.find("-----END ") else {
            break;
        };
        let end = block[end_marker..]
            .find("\n")
            .map_or(block.len(), |n| end_marker + n + 1);
        let pem = &block[..end];
        if pem.contains("PRIVATE KEY") {
            key = Some(pem.to_string());
        } else {
            certs.push(pem.to_string());
        }
        rest = &block[end..];
    }
    let (Some(key), [ca, cert, ..]) = (key, certs.as_slice()) else {
        return Err(
            "the TLS secret must hold the CA certificate, the client certificate and its key (PEM)"
                .into(),
        );
    };
    let dir = tempfile::tempdir().map_err(|e| format!("cannot write TLS files: {e}"))?;
    for (name, pem) in [("ca.pem", ca), ("cert.pem", cert), ("key.pem", &key)] {
        let mut f = std::fs::File::create(dir.path().join(name))
            .map_err(|e| format!("cannot write TLS files: {e}"))?;
        f.write_all(pem.as_bytes())
            .map_err(|e| format!("cannot write TLS files: {e}"))?;
    }
    Ok(dir)
}

/// Streams the `docker save` archive at `path` in the artifact to the
/// engine: what the engine said, and the id of `image` in the archive.
async fn load_image(
    docker: &Docker,
    d: &Deployment<'_>,
    path: &str,
    image: &str,
) -> Result<(String, String), String> {
    let artifact = d.artifact.to_path_buf();
    let member = path.to_string();
    let image_name = image.to_string();
    let (file, id) = tokio::task::spawn_blocking(move || {
        let file = super::with_member(&artifact, &member, |entry| {
            let mut out = tempfile::NamedTempFile::new()
                .map_err(|e| format!("cannot stage the image archive: {e}"))?;
            std::io::copy(entry, &mut out)
                .map_err(|e| format!("cannot stage the image archive: {e}"))?;
            Ok(out)
        })?
        .ok_or_else(|| format!("the artifact has no `{member}` (image_archive)"))?;
        let id = archive_image_id(file.path(), &image_name)?;
        Ok::<_, String>((file, id))
    })
    .await
    .map_err(|e| e.to_string())??;
    let f = file
        .reopen()
        .map_err(|e| format!("cannot read the staged image archive: {e}"))?;
    let mut stream = docker.import_image(
        ImportImageOptions {
            quiet: true,
            ..Default::default()
        },
        bollard::body_try_stream(crate::executor::file_chunks(f)),
        None,
    );
    let mut said = String::new();
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| format!("the engine refused the image archive: {e}"))?;
        if let Some(err) = info.error.or(info.error_detail.and_then(|e| e.message)) {
            return Err(format!("the engine refused the image archive: {err}"));
        }
        if let Some(s) = info.stream {
            said.push_str(s.trim());
            said.push(' ');
        }
    }
    let said = if said.is_empty() {
        format!("loaded {path}")
    } else {
        said.trim().to_string()
    };
    Ok((format!("{said} ({image} is {id})"), id))
}

/// Who deployment `d` to host `host` acts as on the engine.
fn owner_of<'d>(d: &'d Deployment<'_>, host: &'d str) -> Owner<'d> {
    Owner {
        environment: d.environment,
        pipeline: d.pipeline,
        host,
    }
}

/// Largest `manifest.json` of an image archive read.
const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// The id (`sha256:...`, the digest of its configuration) of the image
/// tagged `image` in the `docker save` archive at `path`, from the
/// archive's `manifest.json` (both the classic `<hex>.json` and the OCI
/// layout's `blobs/sha256/<hex>` names of the configuration).
fn archive_image_id(path: &std::path::Path, image: &str) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(rename = "Config")]
        config: String,
        #[serde(rename = "RepoTags", default)]
        repo_tags: Option<Vec<String>>,
    }
    let manifest = super::with_member(path, "manifest.json", |entry| {
        let mut text = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(entry, MAX_MANIFEST_BYTES),
            &mut text,
        )
        .map_err(|e| format!("cannot read the image archive's manifest.json: {e}"))?;
        serde_json::from_slice::<Vec<Entry>>(&text)
            .map_err(|e| format!("the image archive's manifest.json does not read: {e}"))
    })?
    .ok_or("the image archive has no manifest.json: make it with `docker save`")?;
    let tagged = |e: &&Entry| {
        e.repo_tags
            .iter()
            .flatten()
            .any(|t| t == image || t.strip_prefix("docker.io/library/") == Some(image))
    };
    let Some(entry) = manifest.iter().find(tagged) else {
        let tags: Vec<&str> = manifest
            .iter()
            .flat_map(|e| e.repo_tags.iter().flatten())
            .map(String::as_str)
            .take(8)
            .collect();
        return Err(format!(
            "the image archive does not hold `{image}` (it holds: {})",
            if tags.is_empty() {
                "no tagged image".to_string()
            } else {
                tags.join(", ")
            }
        ));
    };
    let hex = entry.config.trim_start_matches("blobs/sha256/");
    let hex = hex.strip_suffix(".json").unwrap_or(hex);
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "the image archive's manifest.json names no image id for `{image}`"
        ));
    }
    Ok(format!("sha256:{}", hex.to_ascii_lowercase()))
}

/// The labels of container `name` (`Some(None)`: it has none), or `None`
/// when there is no such container.
async fn inspect_labels(docker: &Docker, name: &str) -> Option<Option<HashMap<String, String>>> {
    let found = docker
        .inspect_container(name, None::<InspectContainerOptions>)
        .await
        .ok()?;
    Some(found.config.and_then(|c| c.labels))
}

/// Every container on the engine with the host ports it publishes: from
/// the listing for running ones, from their configuration for the others
/// (a stopped container kept for rollback will want its ports back).
async fn publishers(docker: &Docker) -> Result<Vec<Publisher>, String> {
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

async fn remove(docker: &Docker, name: &str) {
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

async fn create_and_start(
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
async fn wait_healthy(docker: &Docker, name: &str, timeout_ms: u64) -> Result<String, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nQ0E=\n-----END CERTIFICATE-----\n";
    const CERT: &str = "-----BEGIN CERTIFICATE-----\nQ0VSVA==\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nS0VZ\n-----END PRIVATE KEY-----\n";

    fn archive_with(manifest: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("temp");
        let mut tar = tar::Builder::new(file.reopen().expect("reopen"));
        let mut header = tar::Header::new_gnu();
        header.set_size(manifest.len() as u64);
        header.set_mode(0o644);
        tar.append_data(&mut header, "manifest.json", manifest.as_bytes())
            .expect("append");
        tar.finish().expect("finish");
        file
    }

    #[test]
    fn the_image_id_comes_from_the_archive_manifest() {
        let hex = "ab".repeat(32);
        let classic = archive_with(&format!(
            r#"[{{"Config":"{hex}.json","RepoTags":["shop:1.4"],"Layers":[]}}]"#
        ));
        assert_eq!(
            archive_image_id(classic.path(), "shop:1.4"),
            Ok(format!("sha256:{hex}"))
        );
        let oci = archive_with(&format!(
            r#"[{{"Config":"blobs/sha256/{hex}","RepoTags":["docker.io/library/shop:2"]}}]"#
        ));
        assert_eq!(
            archive_image_id(oci.path(), "shop:2"),
            Ok(format!("sha256:{hex}"))
        );
        let err = archive_image_id(classic.path(), "prod:1").expect_err("not in the archive");
        assert!(
            err.contains("does not hold `prod:1` (it holds: shop:1.4)"),
            "{err}"
        );
        let bad = archive_with(r#"[{"Config":"../../etc/passwd","RepoTags":["shop:1.4"]}]"#);
        assert!(archive_image_id(bad.path(), "shop:1.4").is_err());
        assert!(archive_image_id(archive_with("{").path(), "shop:1.4").is_err());
    }

    #[test]
    fn tls_bundle_is_split_into_ca_cert_and_key() {
        let dir = write_tls_files(format!("{CA}{CERT}{KEY}").as_bytes()).expect("bundle");
        let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).expect("file");
        assert_eq!(read("ca.pem"), CA);
        assert_eq!(read("cert.pem"), CERT);
        assert_eq!(read("key.pem"), KEY);
        assert!(write_tls_files(format!("{CA}{KEY}").as_bytes()).is_err());
        assert!(write_tls_files(b"not pem").is_err());
    }
}
