//! `ferry exec`: a pipeline run on this machine's Docker Engine by the
//! agent's own engine (`ferry_engine::local`), without a cluster. This file
//! only turns the arguments into `local::Options`, lints the pipeline as
//! `ferry pipeline lint` does, and prints (through [`terminal`] while it
//! runs, then the status table `ferry status` prints, from [`view`], and
//! where `--artifacts` kept the outputs).
//!
//! Exit codes: 0 when everything that ran succeeded, 1 when an action
//! failed (or an approval was rejected, or Ctrl-C stopped it, or an output
//! `--artifacts` asked for could not be kept), 2 when the
//! pipeline or an environment file is invalid (its problems printed as
//! `FILE:LINE:COL: message`) or the run could not start.

mod terminal;
mod view;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use ferry_engine::local;

use super::pipeline::Lint;
use crate::args::{ExecArgs, Format};
use crate::output;

/// Largest secret file read.
const MAX_SECRET_BYTES: u64 = 1024 * 1024;

/// `ferry exec [PIPELINE.yml] ...`.
pub async fn exec(args: &ExecArgs, format: Format) -> Result<ExitCode> {
    let file = pipeline_file(args.file.as_deref())?;
    // The parser `ferry pipeline lint` and the coordinator use; its
    // problems printed as lint prints them.
    let pipeline = match ferry_pipeline::parse(&super::read_input(&file)?) {
        Ok(pipeline) => pipeline,
        Err(diagnostics) => {
            let lint = Lint {
                file: super::display_name(&file),
                diagnostics,
            };
            eprint!("{}", lint.render_text());
            return Ok(ExitCode::from(2));
        }
    };
    let mut environments = BTreeMap::new();
    for path in &args.deploy {
        let text = super::read_input(path)?;
        match ferry_pipeline::parse_environment(&text) {
            Ok(env) => {
                if let Some(earlier) = environments.insert(env.name.clone(), env) {
                    bail!(
                        "--deploy: two files describe environment `{}`",
                        earlier.name
                    );
                }
            }
            Err(diagnostics) => {
                for d in diagnostics {
                    eprintln!("{}:{d}", super::display_name(path));
                }
                return Ok(ExitCode::from(2));
            }
        }
    }
    // Before anything runs: a folder that is not new or empty is refused.
    let artifacts = match &args.artifacts {
        Some(dir) => {
            local::artifacts::prepare(dir)?;
            let dir = std::fs::canonicalize(dir)
                .with_context(|| format!("--artifacts {}", dir.display()))?;
            Some(dir)
        }
        None => None,
    };
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let repo = local::source::toplevel(args.repo.as_deref().unwrap_or(&cwd)).await?;
    let work_dir = work_dir()?;
    let (docker, container) = local::docker().await?;
    let opts = local::Options {
        repo,
        revision: match &args.revision {
            Some(rev) => local::Revision::Commit(rev.clone()),
            None => local::Revision::Worktree,
        },
        selection: selection(args)?,
        variables: args.vars.iter().cloned().collect(),
        secrets: read_secrets(&args.secrets)?,
        keep: args.keep,
        environments,
        work_dir: work_dir.path().to_path_buf(),
        artifacts,
        container,
    };
    let observer = Arc::new(Mutex::new(terminal::Terminal::new(
        &pipeline,
        args.approve,
        format == Format::Json,
    )));
    let report = local::run(&pipeline, opts, docker, observer).await?;
    let view = view::execution(&pipeline, &report);
    match format {
        Format::Table => {
            output::print("")?;
            output::print(&super::status::render_execution(&view))?;
        }
        Format::Json => output::print_json(&super::status::ExecutionJson::new(&view))?,
    }
    if let Some(kept) = &report.artifacts {
        let text = kept_artifacts(kept);
        // JSON keeps stdout for the execution alone.
        match format {
            Format::Table => output::print(&text)?,
            Format::Json => eprint!("{text}"),
        }
        for problem in &kept.problems {
            eprintln!("error: {problem}");
        }
    }
    for name in &report.kept {
        eprintln!(
            "kept container {name}: docker exec -it {name} /bin/sh (then docker rm -f {name})"
        );
    }
    Ok(if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Where `--artifacts` unpacked the outputs, one line for each.
fn kept_artifacts(kept: &local::KeptArtifacts) -> String {
    let mut text = if kept.outputs.is_empty() {
        format!(
            "\nartifacts: no output was produced; {} is empty\n",
            kept.dir.display()
        )
    } else {
        format!("\nartifacts in {}:\n", kept.dir.display())
    };
    for o in &kept.outputs {
        let rel = o.path.strip_prefix(&kept.dir).unwrap_or(&o.path);
        text.push_str(&format!("  {}/  {}\n", rel.display(), o.digest));
    }
    text
}

/// The file named, else `ferry.yml` or `.ferry.yml` here.
fn pipeline_file(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path.to_path_buf());
    }
    for name in ["ferry.yml", ".ferry.yml"] {
        if Path::new(name).is_file() {
            return Ok(PathBuf::from(name));
        }
    }
    bail!(
        "no pipeline file given, and neither ferry.yml nor .ferry.yml is in the current directory"
    )
}

fn selection(args: &ExecArgs) -> Result<local::Selection> {
    if let Some(path) = &args.action {
        let Some((stage, action)) = path.split_once('/') else {
            bail!("--action `{path}` must be written STAGE/ACTION");
        };
        return Ok(local::Selection::Action(stage.into(), action.into()));
    }
    Ok(match &args.stage {
        Some(stage) => local::Selection::Stage(stage.clone()),
        None => local::Selection::All,
    })
}

/// `--secret NAME=@FILE` values, each file read whole (at most 1 MiB).
fn read_secrets(given: &[(String, PathBuf)]) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut secrets = BTreeMap::new();
    for (name, path) in given {
        let file = std::fs::File::open(path)
            .with_context(|| format!("--secret {name}: cannot read {}", path.display()))?;
        let mut value = Vec::new();
        file.take(MAX_SECRET_BYTES + 1)
            .read_to_end(&mut value)
            .with_context(|| format!("--secret {name}: cannot read {}", path.display()))?;
        if value.len() as u64 > MAX_SECRET_BYTES {
            bail!("--secret {name}: {} is larger than 1 MiB", path.display());
        }
        secrets.insert(name.clone(), value);
    }
    Ok(secrets)
}

/// A fresh scratch folder for the run's artifact store, removed when the
/// run ends: under `$XDG_CACHE_HOME/ferry/exec` (or `~/.cache/ferry/exec`),
/// else the system's temporary folder.
fn work_dir() -> Result<tempfile::TempDir> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|c| c.join("ferry").join("exec"));
    if let Some(dir) = cache
        && std::fs::create_dir_all(&dir).is_ok()
        && let Ok(tmp) = tempfile::Builder::new().prefix("run-").tempdir_in(&dir)
    {
        return Ok(tmp);
    }
    tempfile::Builder::new()
        .prefix("ferry-exec-")
        .tempdir()
        .context("cannot make a scratch folder for the run")
}
