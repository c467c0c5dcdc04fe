//! One Docker Engine target (bollard, over a Unix socket, plain TCP, or TCP
//! with the client certificate from the host's TLS secret): load the image
//! from a `docker save` archive in the artifact when the revision spec names
//! one (no registry needed), keep the running container as
//! `<name>.ferry-previous` (stopped), start the new one, and wait for its
//! health check. Rolling back removes the new container and starts the
//! previous one again. Nothing on the engine is touched that is not this
//! deployment's own (`owner.rs`): the container, the one kept for rollback
//! and the host ports are checked first.
//!
//! By concern: this file runs the deploy and rollback steps on one target;
//! `engine` connects to the Docker Engine (TLS from the host's secret),
//! `image` loads an image archive from the artifact and reads its manifest,
//! and `containers` creates, inspects, removes and health-checks containers.

mod containers;
mod engine;
mod image;

use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::{
    InspectContainerOptions, RenameContainerOptions, StartContainerOptions, StopContainerOptions,
};
use ferry_pipeline::{DockerSpec, PREVIOUS_CONTAINER_SUFFIX as PREVIOUS_SUFFIX};

use super::owner::{Owner, RELEASE_LABEL, port_taken};
use super::{DeployHost, Deployment, HookPhase, HostOutcome, HostReport, StepError, fail, record};
use containers::{create_and_start, inspect_labels, publishers, remove, wait_healthy};
use image::load_image;

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

/// Who deployment `d` to host `host` acts as on the engine.
fn owner_of<'d>(d: &'d Deployment<'_>, host: &'d str) -> Owner<'d> {
    Owner {
        environment: d.environment,
        pipeline: d.pipeline,
        host,
    }
}
