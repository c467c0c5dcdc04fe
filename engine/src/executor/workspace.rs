//! Inside a started attempt: the inputs re-packed under `/workspace` and
//! streamed to the container, then each command run with `/bin/sh -c` (the
//! secrets in its exec request only) with its output streamed to the log,
//! until one fails; then the outputs are collected ([`super::outputs`]).

use std::collections::BTreeMap;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::query_parameters::{StartContainerOptions, UploadToContainerOptions};
use futures::StreamExt;

use super::Executor;
use crate::archive;
use crate::runner::{ActionError, ActionSpec, LogSink, Output, PreparedInput};

/// A file's bytes as chunks of a request body for the engine
/// (`bollard::body_try_stream`), read as they are sent: a read error fails
/// the request.
pub(crate) fn file_chunks(file: std::fs::File) -> tokio_util::io::ReaderStream<tokio::fs::File> {
    tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(file), 256 * 1024)
}

impl Executor {
    /// Everything an attempt does inside its container: inputs, commands,
    /// outputs.
    pub(super) async fn steps(
        &self,
        container: &str,
        a: &ActionSpec,
        inputs: &[PreparedInput],
        secrets: &[String],
        log: &mut dyn LogSink,
    ) -> Result<(Vec<Output>, BTreeMap<String, String>), ActionError> {
        self.upload_inputs(container, inputs, super::caches::restores(a), a)
            .await?;
        self.docker
            .start_container(container, None::<StartContainerOptions>)
            .await?;
        self.run_commands(container, a, secrets, log).await?;
        self.collect_outputs(container, a, log).await
    }

    /// Inputs, in order, then the caches to restore (from the cache
    /// store), re-packed under workspace/ and checked on the way.
    pub(super) async fn upload_inputs(
        &self,
        container: &str,
        inputs: &[PreparedInput],
        restores: Vec<(String, String)>,
        a: &ActionSpec,
    ) -> Result<(), ActionError> {
        let store = self.store.clone();
        // An action with caches: its source files' times say what changed
        // since the restored entries were built.
        let times = a.source_times.clone();
        let cache_store = self.caches.as_ref().map(|c| c.store().clone());
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
                let source_times = times
                    .as_ref()
                    .filter(|_| name == ferry_pipeline::SOURCE_ARTIFACT);
                let mtime = source_times.map(|t| move |path: &str| t.mtime(path));
                let mtime = mtime.as_ref().map(|f| f as &dyn Fn(&str) -> u64);
                tar.append_input_timed(name, std::io::BufReader::new(f), mtime)?;
            }
            if let Some(caches) = &cache_store {
                for (name, digest) in &restores {
                    let f = caches.open_blob(digest)?;
                    tar.append_input(name, std::io::BufReader::new(f))?;
                }
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
        Ok(())
    }

    /// Runs each command in turn; the first that exits non-zero fails the attempt.
    async fn run_commands(
        &self,
        container: &str,
        a: &ActionSpec,
        secrets: &[String],
        log: &mut dyn LogSink,
    ) -> Result<(), ActionError> {
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
        Ok(())
    }
}
