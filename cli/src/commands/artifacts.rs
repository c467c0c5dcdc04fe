//! `ferry artifacts list` and `ferry artifacts get`: an execution's outputs and
//! logs, and downloading one through the coordinator with its digest checked:
//! by digest into a file as stored, or an execution's output by name (found
//! in the execution's status) unpacked into a directory ([`ferry_engine::unpack`]).
//! `--execution latest` is the pipeline's newest execution.

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use ferry_proto as pb;
use serde::Serialize;
use sha2::Digest as _;

use crate::args::{ArtifactsCommand, ArtifactsGetArgs, ArtifactsListArgs, Format, GlobalArgs};
use crate::client;
use crate::output::{self, Table};

use super::status::{execution_view, resolve_execution};
use ferry_engine::unpack;

#[derive(Serialize)]
struct EntryJson<'a> {
    action: &'a str,
    name: &'a str,
    attempt: u32,
    digest: &'a str,
    size: u64,
    holders: &'a [String],
}

pub async fn run(global: &GlobalArgs, command: &ArtifactsCommand) -> Result<()> {
    match command {
        ArtifactsCommand::List(a) => list(global, a).await,
        // clap makes --execution and NAME come together (each requires the other).
        ArtifactsCommand::Get(a) => match (&a.execution, &a.name) {
            (Some(execution), Some(name)) => get_by_name(global, a, execution, name).await,
            _ => get_by_digest(global, a).await,
        },
    }
}

/// `ferry artifacts list PIPELINE --execution ID|latest`.
async fn list(global: &GlobalArgs, a: &ArtifactsListArgs) -> Result<()> {
    let mut api = client::connect(global).await?;
    let req = pb::ListArtifactsRequest {
        pipeline: a.name.clone(),
        execution_id: resolve_execution(&mut api, &a.name, &a.execution).await?,
        // One page of everything (up to the coordinator's maximum), as before paging.
        ..Default::default()
    };
    let list = api
        .artifacts
        .list_artifacts(req)
        .await?
        .into_inner()
        .artifacts;
    match global.output {
        Format::Json => output::print_json(
            &list
                .iter()
                .map(|e| EntryJson {
                    action: &e.action,
                    name: &e.name,
                    attempt: e.attempt,
                    digest: &e.digest,
                    size: e.size,
                    holders: &e.holders,
                })
                .collect::<Vec<_>>(),
        ),
        Format::Table => {
            let mut t = Table::new(&["ACTION", "NAME", "SIZE", "DIGEST", "HOLDERS"]);
            for e in &list {
                t.row([
                    e.action.clone(),
                    e.name.clone(),
                    e.size.to_string(),
                    e.digest.clone(),
                    e.holders.join(","),
                ]);
            }
            output::print(&t.render())
        }
    }
}

/// `ferry artifacts get DIGEST --out FILE`: the blob as stored, kept only
/// once its digest matches.
async fn get_by_digest(global: &GlobalArgs, a: &ArtifactsGetArgs) -> Result<()> {
    let digest = &a.target;
    if !digest.starts_with("sha256:") {
        bail!(
            "`{digest}` is not a digest (sha256:<hex>); to get an output by name: \
             ferry artifacts get PIPELINE --execution ID|latest NAME --out DIR"
        );
    }
    let mut api = client::connect(global).await?;
    let dir = a
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing into {}", dir.display()))?;
    let size = download(&mut api, digest, tmp.as_file_mut(), None).await?;
    tmp.persist(&a.out)
        .with_context(|| format!("saving {}", a.out.display()))?;
    output::print(&format!(
        "wrote {} ({size} bytes, {digest})\n",
        a.out.display()
    ))
}

/// `ferry artifacts get PIPELINE --execution ID|latest NAME [--action S/A]
/// --out DIR`: the output found in the execution's status, downloaded,
/// checked and unpacked into DIR (created; refused when not empty).
async fn get_by_name(
    global: &GlobalArgs,
    a: &ArtifactsGetArgs,
    execution: &str,
    name: &str,
) -> Result<()> {
    let pipeline = &a.target;
    let out = &a.out;
    let existed = usable_dir(out)?;
    let mut api = client::connect(global).await?;
    let view = execution_view(&mut api, pipeline, execution).await?;
    let (action, artifact) = find_output(&view, name, a.action.as_deref())?;
    let mut tmp = tempfile::tempfile().context("a temporary file for the download")?;
    download(&mut api, &artifact.digest, &mut tmp, Some(artifact.size)).await?;
    if !existed {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    }
    let unpacked = match unpack::unpack(std::io::BufReader::new(tmp), out, artifact.size) {
        Ok(u) => u,
        Err(e) => {
            let cleaned = clear(out, existed);
            return Err(anyhow::Error::from(e).context(match cleaned {
                Ok(()) => format!(
                    "unpacking output `{name}` into {}; nothing was kept",
                    out.display()
                ),
                Err(c) => format!(
                    "unpacking output `{name}` into {} (and removing what was unpacked: {c:#})",
                    out.display()
                ),
            }));
        }
    };
    output::print(&format!(
        "unpacked output {name} of {action} (execution {}, {} bytes, {}) into {}: {} files, {} bytes\n",
        view.execution_id,
        artifact.size,
        artifact.digest,
        out.display(),
        unpacked.files,
        unpacked.bytes
    ))
}

/// Whether `dir` exists (as an empty directory: anything else is refused
/// before anything is downloaded).
fn usable_dir(dir: &Path) -> Result<bool> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {
            let mut entries =
                std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
            if entries.next().is_some() {
                bail!(
                    "{} is not empty: give a new or empty directory to unpack into",
                    dir.display()
                );
            }
            Ok(true)
        }
        Ok(_) => bail!(
            "{} exists and is not a directory: give a new or empty directory to unpack into",
            dir.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("checking {}", dir.display())),
    }
}

/// Undoes a failed unpack: removes `dir` if this command created it, or
/// what is in it (it was empty before).
fn clear(dir: &Path, existed: bool) -> Result<()> {
    if !existed {
        return Ok(std::fs::remove_dir_all(dir)?);
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Output `name` of an execution as (STAGE/ACTION, the output): the one
/// action's that has it, or `action`'s when given; more than one without
/// `action` is an error that asks for it.
fn find_output<'a>(
    view: &'a pb::ExecutionView,
    name: &str,
    action: Option<&str>,
) -> Result<(String, &'a pb::ArtifactView)> {
    let of = format!(
        "execution {} of pipeline `{}`",
        view.execution_id, view.pipeline
    );
    let actions: Vec<(String, &pb::ActionView)> = view
        .stages
        .iter()
        .flat_map(|s| {
            s.actions
                .iter()
                .map(move |a| (format!("{}/{}", s.name, a.name), a))
        })
        .collect();
    if let Some(wanted) = action {
        let Some((path, a)) = actions.iter().find(|(p, _)| p == wanted) else {
            bail!("{of} has no action {wanted}");
        };
        return match a.outputs.iter().find(|o| o.name == name) {
            Some(o) => ready(path, o, &of),
            None => bail!(
                "{path} of {of} has no output `{name}` ({})",
                outputs_of(std::slice::from_ref(&(path.clone(), *a)), &view.status)
            ),
        };
    }
    let found: Vec<(&String, &pb::ArtifactView)> = actions
        .iter()
        .flat_map(|(p, a)| {
            a.outputs
                .iter()
                .filter(|o| o.name == name)
                .map(move |o| (p, o))
        })
        .collect();
    match found.as_slice() {
        [] => bail!(
            "{of} has no output `{name}` ({})",
            outputs_of(&actions, &view.status)
        ),
        [(path, o)] => ready(path, o, &of),
        more => bail!(
            "output `{name}` of {of} is made by more than one action ({}): choose one with \
             --action STAGE/ACTION",
            more.iter()
                .map(|(p, _)| p.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The output, if it has been stored (a digest to download).
fn ready<'a>(
    path: &str,
    o: &'a pb::ArtifactView,
    of: &str,
) -> Result<(String, &'a pb::ArtifactView)> {
    if o.digest.is_empty() {
        bail!("output `{}` of {path} in {of} is not stored yet", o.name);
    }
    Ok((path.to_string(), o))
}

/// What the actions do output, for an error: "its outputs: a (s/x), ...",
/// or that there are none (yet, while the execution runs).
fn outputs_of(actions: &[(String, &pb::ActionView)], status: &i32) -> String {
    let listed: Vec<String> = actions
        .iter()
        .flat_map(|(p, a)| a.outputs.iter().map(move |o| format!("{} ({p})", o.name)))
        .collect();
    if !listed.is_empty() {
        format!("its outputs: {}", listed.join(", "))
    } else if *status == pb::ExecutionStatus::InProgress as i32 {
        "no outputs yet: it is still running".to_string()
    } else {
        "no outputs".to_string()
    }
}

/// Downloads blob `digest` into `into`, checking its sha256, and at most
/// `max` bytes when the size is known; the size.
async fn download(
    api: &mut client::Api,
    digest: &str,
    into: &mut std::fs::File,
    max: Option<u64>,
) -> Result<u64> {
    let mut stream = api
        .artifacts
        .get_artifact(pb::GetArtifactRequest {
            digest: digest.to_string(),
        })
        .await?
        .into_inner();
    let mut hasher = sha2::Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = stream.message().await? {
        size += chunk.data.len() as u64;
        if let Some(max) = max.filter(|m| size > *m) {
            bail!("the coordinator sent more than the {max} bytes of {digest}; nothing was kept");
        }
        hasher.update(&chunk.data);
        into.write_all(&chunk.data)?;
    }
    into.flush()?;
    let got = format!("sha256:{}", hex::encode(hasher.finalize()));
    if got != digest {
        bail!("downloaded bytes do not match {digest}: got {got}; nothing was written");
    }
    std::io::Seek::rewind(into)?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(name: &str, outputs: &[(&str, &str)]) -> pb::ActionView {
        pb::ActionView {
            name: name.into(),
            outputs: outputs
                .iter()
                .map(|(n, d)| pb::ArtifactView {
                    name: (*n).into(),
                    digest: (*d).into(),
                    size: 10,
                    holders: vec!["a1".into()],
                })
                .collect(),
            ..Default::default()
        }
    }

    fn view() -> pb::ExecutionView {
        pb::ExecutionView {
            pipeline: "hello".into(),
            execution_id: "k2m4n6p8q9".into(),
            status: pb::ExecutionStatus::Succeeded.into(),
            stages: vec![
                pb::StageView {
                    name: "build".into(),
                    actions: vec![
                        action("linux", &[("app", "sha256:11"), ("docs", "sha256:22")]),
                        action("mac", &[("app", "sha256:33")]),
                    ],
                    ..Default::default()
                },
                pb::StageView {
                    name: "test".into(),
                    actions: vec![action("unit", &[("report", "sha256:44")])],
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn an_output_made_once_is_found_by_name() {
        let v = view();
        let (path, o) = find_output(&v, "report", None).expect("found");
        assert_eq!(
            (path.as_str(), o.digest.as_str()),
            ("test/unit", "sha256:44")
        );
        let (path, o) = find_output(&v, "docs", None).expect("found");
        assert_eq!(
            (path.as_str(), o.digest.as_str()),
            ("build/linux", "sha256:22")
        );
    }

    #[test]
    fn an_output_made_twice_needs_the_action() {
        let v = view();
        let err = find_output(&v, "app", None).expect_err("ambiguous");
        assert_eq!(
            err.to_string(),
            "output `app` of execution k2m4n6p8q9 of pipeline `hello` is made by more than one \
             action (build/linux, build/mac): choose one with --action STAGE/ACTION"
        );
        let (path, o) = find_output(&v, "app", Some("build/mac")).expect("chosen");
        assert_eq!(
            (path.as_str(), o.digest.as_str()),
            ("build/mac", "sha256:33")
        );
    }

    #[test]
    fn missing_outputs_and_actions_are_named() {
        let v = view();
        let err = find_output(&v, "nope", None).expect_err("missing");
        assert_eq!(
            err.to_string(),
            "execution k2m4n6p8q9 of pipeline `hello` has no output `nope` (its outputs: \
             app (build/linux), docs (build/linux), app (build/mac), report (test/unit))"
        );
        let err = find_output(&v, "docs", Some("build/mac")).expect_err("not of that action");
        assert_eq!(
            err.to_string(),
            "build/mac of execution k2m4n6p8q9 of pipeline `hello` has no output `docs` \
             (its outputs: app (build/mac))"
        );
        let err = find_output(&v, "app", Some("build/windows")).expect_err("no such action");
        assert_eq!(
            err.to_string(),
            "execution k2m4n6p8q9 of pipeline `hello` has no action build/windows"
        );

        let mut running = view();
        running.status = pb::ExecutionStatus::InProgress.into();
        for s in &mut running.stages {
            for a in &mut s.actions {
                a.outputs.clear();
            }
        }
        let err = find_output(&running, "app", None).expect_err("not yet");
        assert!(
            err.to_string()
                .ends_with("(no outputs yet: it is still running)"),
            "{err}"
        );
    }

    #[test]
    fn only_an_empty_directory_is_unpacked_into() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let fresh = tmp.path().join("new");
        assert!(!usable_dir(&fresh).expect("absent is fine"));
        std::fs::create_dir(&fresh).expect("mkdir");
        assert!(usable_dir(&fresh).expect("empty is fine"));
        std::fs::write(fresh.join("x"), "x").expect("write");
        let err = usable_dir(&fresh).expect_err("not empty");
        assert!(err.to_string().contains("is not empty"), "{err}");
        let err = usable_dir(&fresh.join("x")).expect_err("a file");
        assert!(err.to_string().contains("is not a directory"), "{err}");
        clear(&fresh, true).expect("cleared");
        assert!(usable_dir(&fresh).expect("empty again"));
    }
}
