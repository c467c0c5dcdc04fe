//! The Docker executor, the [`ActionRunner`] for build and test actions:
//! runs one attempt in a fresh Docker container: make sure the
//! image is there (pulling it if it can), upload the inputs to `/workspace`,
//! run each command with `/bin/sh -c` until one fails, stream its output,
//! collect the outputs as content-addressed tars, and always remove the
//! container — on success, failure, timeout or cancellation alike.
//!
//! Every container is bounded (memory, CPUs, processes: the action's
//! `resources:` or this agent's defaults), keeps only the capabilities in
//! [`KEPT_CAPABILITIES`], runs with no-new-privileges and never privileged.
//! Secrets must never go into the container's configuration (which `docker
//! inspect` shows and the engine writes to disk): they travel only in each
//! command's exec request.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, DownloadFromContainerOptions, KillContainerOptions,
    ListContainersOptions, RemoveContainerOptions, StartContainerOptions, UploadToContainerOptions,
};
use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::io::AsyncWriteExt;

use crate::archive;
use crate::mask::Masker;
use crate::runner::{
    ActionError, ActionRunner, ActionSpec, Attempt, LogSink, OUTPUT_VARS_PATH, Outcome, Output,
    PreparedInput, Resources, Secrets,
};
use crate::store::{Blob, Store};

/// Label on every container Ferry starts, for cleanup and inspection.
pub const LABEL: &str = "ferry.attempt";

pub struct Executor {
    docker: Docker,
    store: Store,
    agent: String,
    limits: Limits,
    container: ContainerDefaults,
    /// Leave the container of an attempt whose command failed in place, for
    /// inspection (`ferry exec --keep`); never set on an agent.
    keep_failed: bool,
}

/// Size limits on what an attempt may store on this agent (0 = none).
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub max_artifact_bytes: u64,
    pub store_limit_bytes: u64,
}

/// What a container gets when its action's `resources:` leave a limit unset
/// (`ferry-agent --default-memory`, `--default-cpus`, `--default-pids`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerDefaults {
    pub memory_bytes: u64,
    pub millicpus: u64,
    pub pids: u64,
}

impl Default for ContainerDefaults {
    /// 2 GiB of memory, 2 CPUs, 1024 processes.
    fn default() -> Self {
        ContainerDefaults {
            memory_bytes: 2 << 30,
            millicpus: 2_000,
            pids: 1_024,
        }
    }
}

impl ContainerDefaults {
    /// These defaults on a host with `host_cpus` CPUs: Docker refuses a CPU
    /// limit above the host's count, so the default is lowered to it; the
    /// message says when that happened.
    pub fn fit_host(self, host_cpus: Option<u64>) -> (ContainerDefaults, Option<String>) {
        let Some(most) = host_cpus
            .filter(|&n| n > 0)
            .map(|n| n.saturating_mul(1_000))
        else {
            return (self, None);
        };
        if self.millicpus <= most {
            return (self, None);
        }
        let fitted = ContainerDefaults {
            millicpus: most,
            ..self
        };
        let message = format!(
            "the default CPU limit of {} is more than this host's {} CPUs: containers get {} \
             unless their action's resources say otherwise",
            cpus_text(self.millicpus),
            most / 1_000,
            cpus_text(most)
        );
        (fitted, Some(message))
    }
}

/// Capabilities a container keeps after dropping them all. Docker's default
/// set minus what a build has no use for: MKNOD (device nodes), NET_RAW (raw
/// sockets: spoofing on the bridge network; `ping` as root stops working),
/// SYS_CHROOT, SETPCAP, SETFCAP (file capabilities) and AUDIT_WRITE. Kept,
/// because builds run as root and package managers (apt/dpkg, apk, pip, npm)
/// need them:
/// - CHOWN, FOWNER, FSETID: unpacking files with their owners and modes,
///   setuid/setgid bits included (dpkg chowns then chmods; without FSETID the
///   kernel silently clears a setgid bit for a group root is not in);
/// - DAC_OVERRIDE: root reading and writing files it does not own (caches,
///   files unpacked read-only, workspaces of other users);
/// - SETUID, SETGID: dropping to another user (apt's `_apt` sandbox, `su`,
///   tests run as an unprivileged user);
/// - KILL: signalling processes started under another user (test servers);
/// - NET_BIND_SERVICE: test servers on ports below 1024.
///
/// What is dropped stays out of the bounding set for good; no-new-privileges
/// also stops a command that switched to another user from getting the kept
/// ones back through a setuid binary or file capabilities.
pub const KEPT_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "NET_BIND_SERVICE",
];

/// `2000` millicpus as `2`, `1500` as `1.5`.
fn cpus_text(millicpus: u64) -> String {
    let (whole, rest) = (millicpus / 1_000, millicpus % 1_000);
    if rest == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{}", format!("{rest:03}").trim_end_matches('0'))
    }
}

/// The limits an attempt's container gets: its action's, else these defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerLimits {
    pub memory_bytes: u64,
    pub millicpus: u64,
    pub pids: u64,
}

impl ContainerLimits {
    pub fn of(asked: &Resources, defaults: &ContainerDefaults) -> ContainerLimits {
        ContainerLimits {
            memory_bytes: asked.memory_bytes.unwrap_or(defaults.memory_bytes),
            millicpus: asked.millicpus.unwrap_or(defaults.millicpus),
            pids: asked.pids.unwrap_or(defaults.pids),
        }
    }

    /// The Docker host configuration: these limits, the kept capabilities,
    /// no-new-privileges, not privileged.
    pub fn host_config(&self) -> HostConfig {
        let signed = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        HostConfig {
            init: Some(true),
            privileged: Some(false),
            cap_drop: Some(vec!["ALL".to_string()]),
            cap_add: Some(KEPT_CAPABILITIES.iter().map(|c| c.to_string()).collect()),
            security_opt: Some(vec!["no-new-privileges".to_string()]),
            nano_cpus: Some(signed(self.millicpus.saturating_mul(1_000_000))),
            memory: Some(signed(self.memory_bytes)),
            pids_limit: Some(signed(self.pids)),
            ..Default::default()
        }
    }
}

impl std::fmt::Display for ContainerLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} CPUs, {} MiB of memory, {} processes",
            cpus_text(self.millicpus),
            self.memory_bytes / (1024 * 1024),
            self.pids
        )
    }
}

/// The container's own environment: the action's `env` and the `FERRY_*`
/// variables. Never a secret: this is stored in the container's configuration.
fn container_env(spec: &ActionSpec) -> Vec<String> {
    let own = spec.env.iter().map(|(k, v)| format!("{k}={v}"));
    let ferry = spec.context.ferry_env().map(|(k, v)| format!("{k}={v}"));
    let vars = std::iter::once(format!("FERRY_OUTPUT_VARS={OUTPUT_VARS_PATH}"));
    own.chain(ferry).chain(vars).collect()
}

/// A file's bytes as chunks of a request body for the engine
/// (`bollard::body_try_stream`), read as they are sent: a read error fails
/// the request.
pub(crate) fn file_chunks(file: std::fs::File) -> tokio_util::io::ReaderStream<tokio::fs::File> {
    tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(file), 256 * 1024)
}

/// `vars` with every secret value in them replaced by `***`, each one
/// masked named in the log.
fn mask_variables(
    mut vars: BTreeMap<String, String>,
    masker: &Masker,
    log: &mut dyn LogSink,
) -> BTreeMap<String, String> {
    for (name, value) in vars.iter_mut() {
        let masked = masker.mask(value.as_bytes());
        if masked != value.as_bytes() {
            *value = String::from_utf8_lossy(&masked).into_owned();
            log.write(
                format!("[ferry] output variable `{name}` holds a secret: it was masked\n")
                    .as_bytes(),
            );
        }
    }
    vars
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
    pub fn new(docker: Docker, store: Store, agent: String) -> Self {
        Executor {
            docker,
            store,
            agent,
            limits: Limits::default(),
            container: ContainerDefaults::default(),
            keep_failed: false,
        }
    }

    /// Keeps the container of an attempt whose command failed (not one that
    /// timed out or was cancelled) instead of removing it; its log says how
    /// to enter it. For `ferry exec --keep`: the container is the user's to
    /// remove.
    pub fn with_keep_failed(mut self, keep: bool) -> Self {
        self.keep_failed = keep;
        self
    }

    /// Whether containers of failed commands are kept ([`Self::with_keep_failed`]).
    pub fn keeps_failed(&self) -> bool {
        self.keep_failed
    }

    /// The name of the container of the attempt with fencing epoch `epoch`.
    pub fn container_name(&self, epoch: u64) -> String {
        format!("ferry-{}-{}", self.agent, epoch)
    }

    /// Limits for containers whose action does not set them.
    pub fn with_container_defaults(mut self, defaults: ContainerDefaults) -> Self {
        self.container = defaults;
        self
    }

    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The size limits attempts on this agent run under.
    pub fn limits(&self) -> Limits {
        self.limits
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
    async fn run_attempt(
        &self,
        attempt: Attempt<'_>,
    ) -> Result<(Vec<Output>, BTreeMap<String, String>), ActionError> {
        let Attempt {
            spec: a,
            inputs,
            secrets,
            log,
            mut cancel,
        } = attempt;
        self.ensure_image(&a.image, log).await?;
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
        self.docker.create_container(Some(opts), body).await?;
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
        if self.keep_failed && matches!(result, Err(ActionError::CommandFailed { .. })) {
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
        a: &ActionSpec,
        inputs: &[PreparedInput],
        secrets: &[String],
        log: &mut dyn LogSink,
    ) -> Result<(Vec<Output>, BTreeMap<String, String>), ActionError> {
        // Inputs, in order, re-packed under workspace/ and checked on the way.
        let store = self.store.clone();
        let inputs_owned: Vec<(String, String)> = inputs
            .iter()
            .map(|i| (i.name.clone(), i.digest.clone()))
            .collect();
        // To a scratch file, then streamed to the engine: inputs (a commit's
        // source among them) may be far larger than the agent's memory.
        let upload = tokio::task::spawn_blocking(move || -> Result<std::fs::File, ActionError> {
            let scratch = std::io::BufWriter::new(store.scratch()?);
            let mut tar = archive::WorkspaceTar::new(scratch)?;
            for (name, digest) in &inputs_owned {
                let f = store.open_blob(digest)?;
                tar.append_input(name, std::io::BufReader::new(f))?;
            }
            let mut file = tar
                .into_inner()?
                .into_inner()
                .map_err(|e| ActionError::Input(format!("preparing inputs failed: {e}")))?;
            std::io::Seek::rewind(&mut file)?;
            Ok(file)
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
                bollard::body_try_stream(file_chunks(upload)),
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
                        // Added to the container's environment for this command only.
                        env: Some(secrets.to_vec()),
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

        let variables = self.output_variables(container).await?;
        if !variables.is_empty() {
            let names: Vec<&str> = variables.keys().map(String::as_str).collect();
            log.write(format!("[ferry] output variables: {}\n", names.join(", ")).as_bytes());
        }
        let mut outputs = Vec::new();
        for spec in &a.outputs {
            // Each path's archive from the engine goes to a scratch file, not
            // memory: an output may be far larger than the agent's RAM.
            let mut tar: Vec<(String, std::fs::File)> = Vec::new();
            let mut incoming: u64 = 0;
            for path in &spec.paths {
                let mut docker_tar = tokio::fs::File::from_std(self.store.scratch()?);
                let mut received: u64 = 0;
                let full = format!("/workspace/{}", path.trim_end_matches('/'));
                let mut stream = self.docker.download_from_container(
                    container,
                    Some(DownloadFromContainerOptions { path: full }),
                );
                while let Some(chunk) = stream.next().await {
                    match chunk {
                        Ok(bytes) => {
                            received += bytes.len() as u64;
                            let max = self.limits.max_artifact_bytes;
                            if max > 0 && received > max {
                                return Err(ActionError::Limit(format!(
                                    "output `{}` is over this agent's artifact size limit of {} MiB",
                                    spec.name,
                                    max / (1024 * 1024)
                                )));
                            }
                            docker_tar.write_all(&bytes).await?;
                        }
                        Err(_) => {
                            return Err(ActionError::MissingOutput {
                                name: spec.name.clone(),
                                path: path.clone(),
                            });
                        }
                    }
                }
                docker_tar.flush().await?;
                let mut file = docker_tar.into_std().await;
                std::io::Seek::rewind(&mut file)?;
                incoming += received;
                tar.push((path.clone(), file));
            }
            let limit = self.limits.store_limit_bytes;
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
                    for (path, docker_tar) in tar {
                        let reader = std::io::BufReader::new(docker_tar);
                        archive::append_output(&path, reader, &mut b)?;
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
            outputs.push(Output {
                name: spec.name.clone(),
                blob,
            });
        }
        Ok((outputs, variables))
    }

    /// The output variables file the commands wrote ([`OUTPUT_VARS_PATH`]),
    /// bounded and checked; none when they wrote none.
    async fn output_variables(
        &self,
        container: &str,
    ) -> Result<BTreeMap<String, String>, ActionError> {
        let limit = ferry_pipeline::vars::MAX_OUTPUT_VARS_BYTES;
        let mut stream = self.docker.download_from_container(
            container,
            Some(DownloadFromContainerOptions {
                path: OUTPUT_VARS_PATH.to_string(),
            }),
        );
        let mut tar_bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            let Ok(bytes) = chunk else {
                // The file does not exist: the action wrote no variables.
                return Ok(BTreeMap::new());
            };
            tar_bytes.extend_from_slice(&bytes);
            // A tar adds headers and padding to the file itself.
            if tar_bytes.len() > limit + 64 * 1024 {
                return Err(ActionError::OutputVariables(format!(
                    "the file is larger than {limit} bytes"
                )));
            }
        }
        let mut archive = tar::Archive::new(tar_bytes.as_slice());
        let mut content = Vec::new();
        if let Some(entry) = archive.entries()?.next() {
            let entry = entry?;
            std::io::Read::read_to_end(
                &mut std::io::Read::take(entry, limit as u64 + 1),
                &mut content,
            )?;
        }
        ferry_pipeline::vars::parse_output_file(&content).map_err(ActionError::OutputVariables)
    }
}

impl ActionRunner for Executor {
    fn run<'a>(&'a self, attempt: Attempt<'a>) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            match self.run_attempt(attempt).await {
                Ok((outputs, variables)) => Outcome {
                    result: Ok(outputs),
                    deployment: None,
                    variables,
                },
                Err(e) => Outcome::failed(e),
            }
        })
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
    fn defaults_apply_unless_the_action_sets_a_limit() {
        let defaults = ContainerDefaults::default();
        let mut a = Resources::default();
        let limits = ContainerLimits::of(&a, &defaults);
        assert_eq!(
            limits,
            ContainerLimits {
                memory_bytes: 2 << 30,
                millicpus: 2_000,
                pids: 1_024,
            }
        );
        assert_eq!(
            limits.to_string(),
            "2 CPUs, 2048 MiB of memory, 1024 processes"
        );
        a.pids = Some(64);
        a.millicpus = Some(1_500);
        let limits = ContainerLimits::of(&a, &defaults);
        assert_eq!((limits.pids, limits.millicpus), (64, 1_500));
        assert_eq!(limits.memory_bytes, 2 << 30);
        let host = limits.host_config();
        assert_eq!(host.pids_limit, Some(64));
        assert_eq!(host.nano_cpus, Some(1_500_000_000));
        assert_eq!(host.memory, Some(2 << 30));
        a.memory_bytes = Some(u64::MAX);
        let host = ContainerLimits::of(&a, &defaults).host_config();
        assert_eq!(host.memory, Some(i64::MAX));
    }

    #[test]
    fn every_container_drops_capabilities_and_privileges() {
        let host =
            ContainerLimits::of(&Resources::default(), &ContainerDefaults::default()).host_config();
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
        let kept = host.cap_add.unwrap_or_default();
        assert_eq!(kept.len(), KEPT_CAPABILITIES.len());
        for never in ["SYS_ADMIN", "NET_RAW", "MKNOD", "SYS_PTRACE", "NET_ADMIN"] {
            assert!(!kept.iter().any(|c| c == never), "{never}");
        }
        assert_eq!(
            host.security_opt,
            Some(vec!["no-new-privileges".to_string()])
        );
        assert_eq!(host.privileged, Some(false));
        assert!(host.pids_limit.is_some() && host.memory.is_some() && host.nano_cpus.is_some());
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

    #[test]
    fn the_cpu_default_fits_the_host() {
        let d = ContainerDefaults::default();
        assert_eq!(d.fit_host(Some(8)), (d, None));
        assert_eq!(d.fit_host(Some(2)), (d, None));
        assert_eq!(d.fit_host(None), (d, None));
        let (fitted, message) = d.fit_host(Some(1));
        assert_eq!(fitted.millicpus, 1_000);
        assert_eq!(fitted.memory_bytes, d.memory_bytes);
        assert!(message.is_some_and(|m| m.contains("1 CPUs")));
        assert_eq!(cpus_text(1_500), "1.5");
        assert_eq!(cpus_text(250), "0.25");
    }
}
