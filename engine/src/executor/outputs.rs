//! What an attempt leaves behind: each output's paths downloaded from the
//! container to scratch files (bounded by this agent's [`super::Limits`]) and
//! packed into a content-addressed tar in the store (in the normal form of
//! [`archive::OutputTar`], so equal contents give equal digests), and the output variables
//! file read, bounded and checked, with any secret in it masked.

use std::collections::BTreeMap;
use std::io::Write as _;

use bollard::query_parameters::DownloadFromContainerOptions;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::Executor;
use crate::archive;
use crate::runner::{ActionError, ActionSpec, LogSink, OUTPUT_VARS_PATH, Output, OutputSpec};
use crate::store::Blob;
use ferry_pipeline::mask::Masker;

/// `vars` with every secret value in them replaced by `***`, each one
/// masked named in the log.
pub(super) fn mask_variables(
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

impl Executor {
    /// The output variables, then each output of the action kept on
    /// success, packed into the store.
    pub(super) async fn collect_outputs(
        &self,
        container: &str,
        a: &ActionSpec,
        log: &mut dyn LogSink,
    ) -> Result<(Vec<Output>, BTreeMap<String, String>), ActionError> {
        let variables = self.output_variables(container).await?;
        if !variables.is_empty() {
            let names: Vec<&str> = variables.keys().map(String::as_str).collect();
            log.write(format!("[ferry] output variables: {}\n", names.join(", ")).as_bytes());
        }
        let mut outputs = Vec::new();
        for spec in a.outputs.iter().filter(|o| o.when.keeps(true)) {
            outputs.push(self.pack_output(container, spec, log).await?);
        }
        Ok((outputs, variables))
    }

    /// The outputs kept when the commands failed (`when: on_failure` or
    /// `always`): each one whose paths exist, the others named in the log,
    /// since a failed run may well not have written them.
    pub(super) async fn collect_failure_outputs(
        &self,
        container: &str,
        a: &ActionSpec,
        log: &mut dyn LogSink,
    ) -> Vec<Output> {
        let mut outputs = Vec::new();
        for spec in a.outputs.iter().filter(|o| o.when.keeps(false)) {
            match self.pack_output(container, spec, log).await {
                Ok(output) => outputs.push(output),
                Err(e) => {
                    log.write(format!("[ferry] output {} not kept: {e}\n", spec.name).as_bytes())
                }
            }
        }
        outputs
    }

    /// One output's paths, downloaded to scratch files and packed into the store.
    async fn pack_output(
        &self,
        container: &str,
        spec: &OutputSpec,
        log: &mut dyn LogSink,
    ) -> Result<Output, ActionError> {
        // Each path's archive from the engine goes to a scratch file, not
        // memory: an output may be far larger than the agent's RAM.
        let max = self.limits.max_artifact_bytes;
        let (tar, incoming) = match self
            .download_paths(container, &spec.paths, &self.store, max)
            .await
        {
            Ok(downloaded) => downloaded,
            Err(Download::Missing(path)) => {
                return Err(ActionError::MissingOutput {
                    name: spec.name.clone(),
                    path,
                });
            }
            Err(Download::OverLimit) => {
                return Err(ActionError::Limit(format!(
                    "output `{}` is over this agent's artifact size limit of {} MiB",
                    spec.name,
                    max / (1024 * 1024)
                )));
            }
            Err(Download::Failed(e)) => return Err(e),
        };
        let limit = self.limits.store_limit_bytes;
        if limit > 0 && self.store.used_bytes() + incoming > limit {
            return Err(ActionError::Limit(format!(
                "output `{}` does not fit: this agent's artifact store is at its limit of {} MiB \
                 (retention removes old executions' artifacts)",
                spec.name,
                limit / (1024 * 1024)
            )));
        }
        // In a normal form: equal contents, equal digest.
        let blob = pack_tars(self.store.clone(), tar, archive::OutputTar::new).await?;
        log.write(
            format!(
                "[ferry] output {} = {} ({} bytes)\n",
                spec.name, blob.digest, blob.size
            )
            .as_bytes(),
        );
        Ok(Output {
            name: spec.name.clone(),
            blob,
        })
    }

    /// The output variables file the commands wrote ([`OUTPUT_VARS_PATH`]),
    /// bounded and checked; none when they wrote none.
    async fn output_variables(
        &self,
        container: &str,
    ) -> Result<BTreeMap<String, String>, ActionError> {
        let limit = ferry_pipeline::vars::MAX_OUTPUT_VARS_BYTES;
        let tar_bytes = match self
            .download_small(container, OUTPUT_VARS_PATH, limit as u64)
            .await
        {
            Ok(bytes) => bytes,
            // The file does not exist: the action wrote no variables.
            Err(Small::Missing) => return Ok(BTreeMap::new()),
            Err(Small::TooLarge) => {
                return Err(ActionError::OutputVariables(format!(
                    "the file is larger than {limit} bytes"
                )));
            }
        };
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

    /// The engine's tar of `path` in `container`, held in memory: refused
    /// once it is over `max` bytes plus what a tar adds (headers, padding).
    pub(super) async fn download_small(
        &self,
        container: &str,
        path: &str,
        max: u64,
    ) -> Result<Vec<u8>, Small> {
        let mut stream = self.docker.download_from_container(
            container,
            Some(DownloadFromContainerOptions {
                path: path.to_string(),
            }),
        );
        let mut tar = Vec::new();
        while let Some(chunk) = stream.next().await {
            let bytes = chunk.map_err(|_| Small::Missing)?;
            tar.extend_from_slice(&bytes);
            if tar.len() as u64 > max + TAR_OVERHEAD {
                return Err(Small::TooLarge);
            }
        }
        Ok(tar)
    }
}

/// Why paths' tars could not be downloaded.
pub(super) enum Download {
    /// This path is not in the container.
    Missing(String),
    /// One path's tar is over the limit.
    OverLimit,
    Failed(ActionError),
}

impl<E: Into<ActionError>> From<E> for Download {
    fn from(e: E) -> Download {
        Download::Failed(e.into())
    }
}

impl Executor {
    /// Each of `paths` (under `/workspace`) as the engine's tar, in a
    /// scratch file of `scratch`, each at most `max` bytes (0: no limit);
    /// and their bytes in all.
    pub(super) async fn download_paths(
        &self,
        container: &str,
        paths: &[String],
        scratch: &crate::store::Store,
        max: u64,
    ) -> Result<(Vec<(String, std::fs::File)>, u64), Download> {
        let mut tars = Vec::new();
        let mut incoming: u64 = 0;
        for path in paths {
            let mut docker_tar = tokio::fs::File::from_std(scratch.scratch()?);
            let mut received: u64 = 0;
            let full = format!("/workspace/{}", path.trim_end_matches('/'));
            let mut stream = self.docker.download_from_container(
                container,
                Some(DownloadFromContainerOptions { path: full }),
            );
            while let Some(chunk) = stream.next().await {
                let bytes = chunk.map_err(|_| Download::Missing(path.clone()))?;
                received += bytes.len() as u64;
                if max > 0 && received > max {
                    return Err(Download::OverLimit);
                }
                docker_tar.write_all(&bytes).await?;
            }
            docker_tar.flush().await?;
            let mut file = docker_tar.into_std().await;
            std::io::Seek::rewind(&mut file)?;
            incoming += received;
            tars.push((path.clone(), file));
        }
        Ok((tars, incoming))
    }
}

/// Packs the engine's tars of some paths into one blob of `store`, in the
/// form `tar` makes ([`archive::OutputTar::new`], or `keeping_times` for a
/// cache), on a blocking thread.
pub(super) async fn pack_tars(
    store: crate::store::Store,
    tars: Vec<(String, std::fs::File)>,
    tar: fn() -> archive::OutputTar<std::io::BufReader<std::fs::File>>,
) -> Result<Blob, ActionError> {
    tokio::task::spawn_blocking(move || -> Result<Blob, ActionError> {
        let mut packed = tar();
        for (path, docker_tar) in tars {
            packed.add(&path, std::io::BufReader::new(docker_tar))?;
        }
        let mut w = packed.write(std::io::BufWriter::new(store.writer()?))?;
        w.flush()?;
        let w = w
            .into_inner()
            .map_err(|e| ActionError::Input(format!("packing failed: {e}")))?;
        Ok(w.commit(None)?)
    })
    .await
    .map_err(|e| ActionError::Input(format!("packing failed: {e}")))?
}

/// What a tar of one small file or directory adds to its contents, at most.
const TAR_OVERHEAD: u64 = 64 * 1024;

/// Why [`Executor::download_small`] gave nothing.
pub(super) enum Small {
    /// The path does not exist in the container.
    Missing,
    /// It is larger than asked for.
    TooLarge,
}
