//! Runs one build or test attempt in a fresh Docker container: make sure the
//! image is there (pulling it if it can), upload the inputs to `/workspace`,
//! run each command with `/bin/sh -c` until one fails, stream its output,
//! collect the outputs as content-addressed tars, and always remove the
//! container — on success, failure, timeout or cancellation alike.

use std::collections::HashMap;
use std::io::Write as _;
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, DownloadFromContainerOptions, KillContainerOptions,
    ListContainersOptions, RemoveContainerOptions, StartContainerOptions, UploadToContainerOptions,
};
use ferry_proto as pb;
use futures::StreamExt;
use thiserror::Error;
use tokio::sync::watch;

use crate::archive;
use crate::store::{Blob, Store};

/// Label on every container Ferry starts, for cleanup and inspection.
pub const LABEL: &str = "ferry.attempt";

#[derive(Debug, Error)]
pub enum ActionError {
    #[error("image `{image}` is not present on this agent and could not be pulled: {reason}")]
    Image { image: String, reason: String },
    #[error("docker: {0}")]
    Docker(#[from] bollard::errors::Error),
    #[error("command {index} `{command}` exited with code {code}")]
    CommandFailed {
        index: usize,
        command: String,
        code: i32,
    },
    #[error("timed out after {0:?}; the container was killed")]
    Timeout(Duration),
    #[error("cancelled: {0}")]
    Cancelled(String),
    #[error("output `{name}`: path `{path}` does not exist in /workspace")]
    MissingOutput { name: String, path: String },
    #[error("{0}")]
    Input(String),
    /// A deployment failed; the text is its summary.
    #[error("{0}")]
    Deploy(String),
    #[error("{0}")]
    Limit(String),
    #[error(transparent)]
    Archive(#[from] archive::ArchiveError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl ActionError {
    pub fn exit_code(&self) -> i32 {
        match self {
            ActionError::CommandFailed { code, .. } => *code,
            _ => -1,
        }
    }
}

/// Where an attempt's output goes while it runs.
pub trait LogSink: Send {
    fn write(&mut self, bytes: &[u8]);
}

pub struct Outcome {
    pub outputs: Vec<(String, Blob)>,
}

/// Inputs already materialized as tar blobs in the store, in order.
pub struct PreparedInput {
    pub name: String,
    pub digest: String,
}

pub struct Executor {
    docker: Docker,
    store: Store,
    agent: String,
    limits: Limits,
}

/// Size limits on what an attempt may store on this agent (0 = none).
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub max_artifact_bytes: u64,
    pub store_limit_bytes: u64,
}

impl Executor {
    pub fn new(docker: Docker, store: Store, agent: String) -> Self {
        Executor {
            docker,
            store,
            agent,
            limits: Limits::default(),
        }
    }

    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

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
    pub async fn run(
        &self,
        a: &pb::Assignment,
        inputs: &[PreparedInput],
        log: &mut dyn LogSink,
        mut cancel: watch::Receiver<Option<String>>,
    ) -> Result<Outcome, ActionError> {
        self.ensure_image(&a.image, log).await?;
        let epoch = a.attempt.as_ref().map_or(0, |r| r.epoch);
        let name = format!("ferry-{}-{}", self.agent, epoch);
        let mut env: Vec<String> = a.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        env.extend(
            a.secret_env
                .iter()
                .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v))),
        );
        env.sort();
        env.extend([
            format!("FERRY_PIPELINE={}", a.pipeline),
            format!("FERRY_EXECUTION_ID={}", a.execution_id),
            format!("FERRY_REVISION={}", a.revision),
            format!("FERRY_STAGE={}", a.stage),
            format!("FERRY_ACTION={}", a.action),
        ]);
        let body = ContainerCreateBody {
            image: Some(a.image.clone()),
            entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
            cmd: Some(vec![
                "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done".into(),
            ]),
            working_dir: Some("/workspace".into()),
            env: Some(env.clone()),
            labels: Some(HashMap::from([(LABEL.to_string(), epoch.to_string())])),
            host_config: Some(HostConfig {
                init: Some(true),
                nano_cpus: (a.millicpus > 0)
                    .then(|| (a.millicpus as i64).saturating_mul(1_000_000)),
                memory: (a.memory_bytes > 0).then(|| a.memory_bytes.min(i64::MAX as u64) as i64),
                ..Default::default()
            }),
            ..Default::default()
        };
        // A container left by an earlier run of this very attempt goes first.
        let _ = self.remove(&name).await;
        let opts = CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        self.docker.create_container(Some(opts), body).await?;
        let timeout = Duration::from_secs(a.timeout_seconds.max(1));
        let result = tokio::select! {
            r = self.steps(&name, a, inputs, &env, log) => r,
            _ = tokio::time::sleep(timeout) => Err(ActionError::Timeout(timeout)),
            reason = wait_cancel(&mut cancel) => Err(ActionError::Cancelled(reason)),
        };
        if let Err(e) = self.remove(&name).await {
            tracing::warn!(container = %name, error = %e, "could not remove container");
        }
        result
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

    async fn steps(
        &self,
        container: &str,
        a: &pb::Assignment,
        inputs: &[PreparedInput],
        env: &[String],
        log: &mut dyn LogSink,
    ) -> Result<Outcome, ActionError> {
        // Inputs, in order, re-packed under workspace/ and checked on the way.
        let store = self.store.clone();
        let inputs_owned: Vec<(String, String)> = inputs
            .iter()
            .map(|i| (i.name.clone(), i.digest.clone()))
            .collect();
        let upload = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, ActionError> {
            let mut tar = archive::WorkspaceTar::new(Vec::new())?;
            for (name, digest) in &inputs_owned {
                let f = store.open_blob(digest)?;
                tar.append_input(name, std::io::BufReader::new(f))?;
            }
            Ok(tar.into_inner()?)
        })
        .await
        .map_err(|e| ActionError::Input(format!("preparing inputs failed: {e}")))??;
        self.docker
            .upload_to_container(
                container,
                Some(UploadToContainerOptions {
                    path: "/".into(),
                    ..Default::default()
                }),
                bollard::body_full(upload.into()),
            )
            .await?;
        self.docker
            .start_container(container, None::<StartContainerOptions>)
            .await?;

        for (i, command) in a.commands.iter().enumerate() {
            log.write(format!("$ {command}\n").as_bytes());
            let exec = self
                .docker
                .create_exec(
                    container,
                    CreateExecOptions {
                        cmd: Some(vec![
                            "/bin/sh".to_string(),
                            "-c".to_string(),
                            command.clone(),
                        ]),
                        attach_stdout: Some(true),
                        attach_stderr: Some(true),
                        working_dir: Some("/workspace".to_string()),
                        env: Some(env.to_vec()),
                        ..Default::default()
                    },
                )
                .await?;
            if let StartExecResults::Attached { mut output, .. } =
                self.docker.start_exec(&exec.id, None).await?
            {
                while let Some(chunk) = output.next().await {
                    match chunk? {
                        LogOutput::StdOut { message }
                        | LogOutput::StdErr { message }
                        | LogOutput::Console { message } => log.write(&message),
                        LogOutput::StdIn { .. } => {}
                    }
                }
            }
            let code = self
                .docker
                .inspect_exec(&exec.id)
                .await?
                .exit_code
                .unwrap_or(-1) as i32;
            if code != 0 {
                return Err(ActionError::CommandFailed {
                    index: i + 1,
                    command: command.clone(),
                    code,
                });
            }
        }

        let mut outputs = Vec::new();
        for spec in &a.outputs {
            let mut tar = Vec::new();
            for path in &spec.paths {
                let mut docker_tar = Vec::new();
                let full = format!("/workspace/{}", path.trim_end_matches('/'));
                let mut stream = self.docker.download_from_container(
                    container,
                    Some(DownloadFromContainerOptions { path: full }),
                );
                while let Some(chunk) = stream.next().await {
                    match chunk {
                        Ok(bytes) => {
                            docker_tar.extend_from_slice(&bytes);
                            let max = self.limits.max_artifact_bytes;
                            if max > 0 && docker_tar.len() as u64 > max {
                                return Err(ActionError::Limit(format!(
                                    "output `{}` is over this agent's artifact size limit of {} MiB",
                                    spec.name,
                                    max / (1024 * 1024)
                                )));
                            }
                        }
                        Err(_) => {
                            return Err(ActionError::MissingOutput {
                                name: spec.name.clone(),
                                path: path.clone(),
                            });
                        }
                    }
                }
                tar.push((path.clone(), docker_tar));
            }
            let limit = self.limits.store_limit_bytes;
            let incoming: u64 = tar.iter().map(|(_, t)| t.len() as u64).sum();
            if limit > 0 && self.store.used_bytes() + incoming > limit {
                return Err(ActionError::Limit(format!(
                    "output `{}` does not fit: this agent's artifact store is at its limit of {} MiB \
                     (retention removes old executions' artifacts)",
                    spec.name,
                    limit / (1024 * 1024)
                )));
            }
            let store = self.store.clone();
            let blob = tokio::task::spawn_blocking(move || -> Result<Blob, ActionError> {
                let mut w = store.writer()?;
                {
                    let mut b = tar::Builder::new(&mut w);
                    for (path, docker_tar) in &tar {
                        archive::append_output(path, &docker_tar[..], &mut b)?;
                    }
                    b.finish()?;
                }
                w.flush()?;
                Ok(w.commit(None)?)
            })
            .await
            .map_err(|e| ActionError::Input(format!("packing outputs failed: {e}")))??;
            log.write(
                format!(
                    "[ferry] output {} = {} ({} bytes)\n",
                    spec.name, blob.digest, blob.size
                )
                .as_bytes(),
            );
            outputs.push((spec.name.clone(), blob));
        }
        Ok(Outcome { outputs })
    }
}

async fn wait_cancel(rx: &mut watch::Receiver<Option<String>>) -> String {
    loop {
        if let Some(reason) = rx.borrow().clone() {
            return reason;
        }
        if rx.changed().await.is_err() {
            // Sender gone: never cancelled.
            std::future::pending::<()>().await;
        }
    }
}
