//! `ferry exec --artifacts DIR`: the outputs of a local run kept after it
//! ends (otherwise they go with the run's scratch store). The folder is
//! checked before anything runs ([`prepare`]: new or empty); when the run
//! ends, each output of each action that produced one is unpacked under
//! `DIR/<stage>/<action>/<output>/` by the rules inputs keep
//! ([`crate::unpack`]: nothing outside its folder).

use std::io::BufReader;
use std::path::{Path, PathBuf};

use ferry_pipeline::Pipeline;
use ferry_pipeline::execution::ExecutionState;

use super::{ActionName, LocalError};
use crate::store::Store;

/// Where a run's outputs were unpacked.
#[derive(Debug, Clone, Default)]
pub struct KeptArtifacts {
    /// The `--artifacts` folder.
    pub dir: PathBuf,
    /// Each output unpacked, in the pipeline's order.
    pub outputs: Vec<KeptOutput>,
    /// Outputs that could not be unpacked, each with why.
    pub problems: Vec<String>,
}

/// One output unpacked.
#[derive(Debug, Clone)]
pub struct KeptOutput {
    pub action: ActionName,
    /// The output's name.
    pub output: String,
    pub digest: String,
    /// `DIR/<stage>/<action>/<output>`.
    pub path: PathBuf,
}

/// Checks the `--artifacts` folder before a run: one that exists must be an
/// empty folder (outputs are never mixed with, or written over, other
/// files); one that does not is made.
pub fn prepare(dir: &Path) -> Result<(), LocalError> {
    let refuse = |why: String| LocalError::Artifacts {
        dir: dir.display().to_string(),
        why,
    };
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(refuse(
                    "the folder exists and is not empty; name a new or empty folder".into(),
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| refuse(format!("cannot make the folder: {e}")))
        }
        Err(_) if dir.exists() => Err(refuse("is not a folder".into())),
        Err(e) => Err(refuse(format!("cannot read the folder: {e}"))),
    }
}

/// Unpacks every output the run's actions produced under `dir`; an output
/// that cannot be unpacked is a problem noted, not an end to the others.
pub(super) fn keep(
    dir: &Path,
    pipeline: &Pipeline,
    state: &ExecutionState,
    store: &Store,
) -> KeptArtifacts {
    let mut kept = KeptArtifacts {
        dir: dir.to_path_buf(),
        ..KeptArtifacts::default()
    };
    for (si, stage) in pipeline.stages.iter().enumerate() {
        for (ai, action) in stage.actions.iter().enumerate() {
            let Some(run) = state.action(si, ai) else {
                continue;
            };
            let name = ActionName {
                stage: stage.name.clone(),
                action: action.name.clone(),
            };
            for (output, artifact) in &run.outputs {
                let path = dir.join(&stage.name).join(&action.name).join(output);
                match unpack(
                    &path,
                    [&stage.name, &action.name, output],
                    store,
                    &artifact.digest,
                ) {
                    Ok(()) => kept.outputs.push(KeptOutput {
                        action: name.clone(),
                        output: output.clone(),
                        digest: artifact.digest.clone(),
                        path,
                    }),
                    Err(why) => kept
                        .problems
                        .push(format!("output `{output}` of {name} was not kept: {why}")),
                }
            }
        }
    }
    kept
}

/// One output's blob unpacked into the new folder `path`.
fn unpack(path: &Path, names: [&str; 3], store: &Store, digest: &str) -> Result<(), String> {
    // The parser allows only plain names; a name that is not one would
    // make a path outside the folder.
    for name in names {
        ferry_pipeline::validate_name(name).map_err(|e| format!("name `{name}` {e}"))?;
    }
    std::fs::create_dir_all(path).map_err(|e| format!("cannot make {}: {e}", path.display()))?;
    let blob = store.open_blob(digest).map_err(|e| e.to_string())?;
    // The tar's own size bounds its files' bytes.
    let size = blob.metadata().map_err(|e| e.to_string())?.len();
    crate::unpack::unpack(BufReader::new(blob), path, size)
        .map(drop)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_new_or_empty_folder_is_taken() -> Result<(), Box<dyn std::error::Error>> {
        let root = tempfile::tempdir()?;
        let new = root.path().join("a/b");
        prepare(&new)?;
        assert!(new.is_dir());
        prepare(&new)?;
        std::fs::write(new.join("x"), "x")?;
        let err = prepare(&new).map_err(|e| e.to_string());
        assert_eq!(
            err,
            Err(format!(
                "--artifacts {}: the folder exists and is not empty; name a new or empty folder",
                new.display()
            ))
        );
        let file = new.join("x");
        assert!(
            prepare(&file)
                .map_err(|e| e.to_string())
                .is_err_and(|e| e.ends_with("is not a folder"))
        );
        Ok(())
    }
}
