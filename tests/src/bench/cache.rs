//! A real Rust crate built cold and warm, through Ferry with a build cache
//! of its `target/` and beside the same `cargo build` in a bare `docker
//! run` of the same image with a target directory on the host.
//!
//! The crate is made at bench time: a binary over real crates (serde with
//! derive, serde_json, regex, syn, sha2, base64, url, clap, tokio, time,
//! petgraph, itertools, nom, prost, chrono, hyper: about 110 packages),
//! its `Cargo.lock` and `cargo vendor` made on the host (offline from the
//! host's cargo cache when it can), `.cargo/config.toml` pointing at
//! `vendor/` with `[net] offline = true`: no container needs a registry.
//! It runs in [`rust_image::IMAGE`] (made locally, no registry).
//!
//! Each round: the baseline cold (an empty target directory), warm (the same
//! again, nothing changed) and after a one-line change of `src/main.rs`;
//! then Ferry: run 1 (cache miss, saved), run 2 of the same commit
//! (restored), run 3 of a commit changing one line of `src/main.rs`. Rounds
//! after the first start with an empty cache (`ferry cache rm`, else a new
//! cluster and agent). It reports times and what cargo itself said; it
//! asserts nothing about them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;

use super::rust_image::{self, output};
use crate::{Cluster, Repo, ensure_busybox_image};

/// The pipeline, in the cache syntax of the build-cache feature. The
/// `source` input is unpacked into `/workspace` itself (inputs are merged
/// there, `ferry_engine::archive`), so cargo runs there, with its target
/// directory at `/workspace/target`: the cache's `paths: [target]`.
const PIPELINE: &str = r##"name: cachebench
source: {git: @URL@}
execution_mode: parallel
stages:
  - name: build
    actions:
      - name: cargo
        type: build
        image: ferry-bench/rust
        inputs: [source]
        resources: {cpus: 2, memory: 4g}
        env: {CARGO_TARGET_DIR: /workspace/target}
        commands: ["cargo build"]
        cache:
          - key: "cargo-#{hash_files: Cargo.lock}"
            paths: [target]
            restore_keys: ["cargo-"]
"##;

/// A pipeline on the same repository that fills the git caches (the
/// coordinator's mirror, the agent's archive of the commit) before the
/// first measured run, and builds nothing.
const WARM_UP: &str = r#"name: cachewarm
source: {git: @URL@}
stages:
  - name: fetch
    actions:
      - {name: source, type: build, image: ferry-local/busybox, inputs: [source], commands: ["test -f Cargo.lock"]}
"#;

/// The limits both the baseline's container and Ferry's (the pipeline's
/// `resources:`, and the agent's default process limit) get.
const LIMITS: [&str; 6] = ["--cpus", "2", "--memory", "4g", "--pids-limit", "1024"];

/// The crate's manifest. Its crates and features pull in no dependency for
/// Windows or WASI only (clap without `color`, chrono without `clock`, no
/// ring): `cargo vendor` copies every platform's dependencies, and those
/// are not in a Linux host's cargo cache, so vendoring stays offline.
/// About 30 s of a debug build on two quiet cores.
const CARGO_TOML: &str = r#"[package]
name = "cachebench"
version = "0.1.0"
edition = "2021"
publish = false

[dependencies]
serde = { version = "1", features = ["derive"] }
serde_json = "1"
regex = "1"
syn = { version = "2", features = ["full", "extra-traits"] }
sha2 = "0.10"
base64 = "0.22"
url = "2"
clap = { version = "4", default-features = false, features = ["std", "derive", "help", "usage", "error-context"] }
tokio = { version = "1", features = ["rt", "macros", "sync", "time"] }
time = { version = "0.3", features = ["formatting", "parsing", "macros", "serde"] }
petgraph = "0.8"
itertools = "0.15"
nom = "7"
prost = "0.14"
chrono = { version = "0.4", default-features = false, features = ["std", "alloc", "serde"] }
hyper = { version = "1", features = ["http1", "http2", "server", "client"] }
"#;

const CARGO_CONFIG: &str = r#"[source.crates-io]
replace-with = "vendored-sources"

[source.vendored-sources]
directory = "vendor"

[net]
offline = true
"#;

/// `src/main.rs`; `@NOTE@` is what the one-line change changes.
const MAIN_RS: &str = r#"//! A small program over real crates, built by `ferry-bench cache`.

use base64::Engine as _;
use clap::Parser;
use itertools::Itertools as _;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

const NOTE: &str = "@NOTE@";

#[derive(Debug, Parser)]
struct Args {
    /// Text to look at.
    #[arg(default_value = "ferry builds crates: https://example.invalid/a?b=c 42 7")]
    text: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Report {
    note: String,
    words: usize,
    digest: String,
    host: Option<String>,
    items: usize,
    order: Vec<usize>,
    number: u32,
    at: String,
    today: String,
    encoded: usize,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Wire {
    #[prost(string, tag = "1")]
    note: String,
}

fn number(input: &str) -> nom::IResult<&str, u32> {
    nom::combinator::map_res(nom::character::complete::digit1, str::parse)(input)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let words = regex::Regex::new(r"\b\w+\b")?.find_iter(&args.text).count();
    let host = url::Url::parse("https://example.invalid/a?b=c")?
        .host_str()
        .map(str::to_owned);
    let digest = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&args.text));
    let file: syn::File = syn::parse_str("fn f(x: u8) -> u8 { x + 1 } struct S { a: u8 }")?;
    let mut graph = petgraph::graph::DiGraph::<&str, ()>::new();
    let (a, b, c) = (graph.add_node("a"), graph.add_node("b"), graph.add_node("c"));
    graph.extend_with_edges([(a, b), (b, c)]);
    let order = petgraph::algo::toposort(&graph, None)
        .map_err(|_| "a cycle")?
        .into_iter()
        .map(|n| n.index())
        .collect_vec();
    let (_, number) = number("42 and more").map_err(|e| e.to_string())?;
    let at = time::OffsetDateTime::UNIX_EPOCH.format(&time::format_description::well_known::Rfc3339)?;
    let today = chrono::NaiveDate::from_ymd_opt(2026, 12, 7).ok_or("no date")?.to_string();
    let encoded = prost::Message::encode_to_vec(&Wire { note: NOTE.into() }).len();
    let _request: hyper::Request<()> = hyper::Request::builder().uri("/").body(())?;
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let report = Report { note: NOTE.into(), words, digest, host, items: file.items.len(), order, number, at, today, encoded };
    tx.send(report).await?;
    let report = rx.recv().await.ok_or("no report")?;
    let json = serde_json::to_string(&report)?;
    let back: Report = serde_json::from_str(&json)?;
    println!("{json}\n{back:?}");
    Ok(())
}
"#;

/// `src/main.rs` with the `n`th one-line change.
fn main_rs(n: usize) -> String {
    MAIN_RS.replace("@NOTE@", &format!("change {n}"))
}

/// Writes the crate into `dir` (a repository's work tree): sources, lock
/// file, vendored dependencies, cargo's configuration. Lock and vendor run
/// before `.cargo/config.toml` exists (it names `vendor/`).
fn make_crate(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::write(dir.join("Cargo.toml"), CARGO_TOML)?;
    std::fs::write(dir.join("src/main.rs"), main_rs(0))?;
    std::fs::write(dir.join(".gitignore"), "/target\n")?;
    let cargo = |args: &[&str]| {
        let mut cmd = Command::new("cargo");
        cmd.args(args)
            .current_dir(dir)
            .env_remove("CARGO_TARGET_DIR");
        cmd
    };
    // From the host's cargo cache when it holds them, else from crates.io.
    if let Err(offline) = output(&mut cargo(&["generate-lockfile", "--offline"])) {
        eprintln!("cache: the lock file needs crates.io ({offline:#})");
        output(&mut cargo(&["generate-lockfile"]))?;
    }
    if let Err(offline) = output(&mut cargo(&["vendor", "--offline", "--locked", "vendor"])) {
        eprintln!("cache: vendoring needs crates.io ({offline:#})");
        output(&mut cargo(&["vendor", "--locked", "vendor"]))?;
    }
    std::fs::create_dir_all(dir.join(".cargo"))?;
    std::fs::write(dir.join(".cargo/config.toml"), CARGO_CONFIG)?;
    Ok(())
}

/// What one build told: the wall time, and what cargo printed.
#[derive(Debug, Clone, Default)]
struct Build {
    wall: Duration,
    /// The action's own time (assignment to result), for Ferry's runs.
    action: Option<Duration>,
    /// Cargo's own time, from its `Finished ... in X` line.
    cargo: Option<Duration>,
    /// Crates cargo compiled (its `Compiling` lines).
    compiled: usize,
    /// Ferry's `[ferry] cache` log lines.
    cache_lines: Vec<String>,
    /// What the agent's state directory grew by during the run, bytes.
    agent_growth: Option<i64>,
}

impl Build {
    /// Reads cargo's output (or an action's whole log).
    fn from_log(wall: Duration, log: &str) -> Build {
        let lines = || log.lines().map(str::trim);
        Build {
            wall,
            cargo: lines()
                .filter(|l| l.starts_with("Finished "))
                .find_map(|l| cargo_seconds(l.rsplit_once(" in ")?.1)),
            compiled: lines().filter(|l| l.starts_with("Compiling ")).count(),
            cache_lines: lines()
                .filter(|l| l.starts_with("[ferry] cache"))
                .map(str::to_string)
                .collect(),
            ..Build::default()
        }
    }
}

/// Cargo's duration (`0.53s`, `29.00s`, `1m 05s`).
fn cargo_seconds(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (minutes, seconds) = match text.split_once('m') {
        Some((m, s)) => (m.trim().parse::<f64>().ok()?, s.trim()),
        None => (0.0, text),
    };
    let seconds = seconds.strip_suffix('s')?.trim().parse::<f64>().ok()?;
    Some(Duration::from_secs_f64(minutes * 60.0 + seconds))
}

/// `cargo build` of `src` into `target` in a bare `docker run` of the
/// image, with the limits Ferry's container gets.
fn bare_build(src: &Path, target: &Path) -> anyhow::Result<Build> {
    let name = format!("ferry-bench-cache-{}", std::process::id());
    let t = Instant::now();
    let out = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--name",
            &name,
            "--label",
            "ferry.bench=cache",
        ])
        .args(LIMITS)
        .arg("-v")
        .arg(format!("{}:/src", src.display()))
        .arg("-v")
        .arg(format!("{}:/target", target.display()))
        .args(["-e", "CARGO_TARGET_DIR=/target", "-w", "/src"])
        .args([rust_image::IMAGE, "cargo", "build"])
        .output()
        .context("cannot run docker")?;
    let wall = t.elapsed();
    let log = String::from_utf8_lossy(&out.stderr);
    anyhow::ensure!(
        out.status.success(),
        "cargo build in a bare docker run failed ({}):\n{log}",
        out.status
    );
    Ok(Build::from_log(wall, &log))
}

/// The baseline of one round: cold, warm, one-line change. `change` is the
/// number of the next one-line change.
fn baseline_round(crate_dir: &Path, change: usize) -> anyhow::Result<([Build; 3], u64)> {
    let dir = tempfile::Builder::new()
        .prefix("ferry-bench-cache-")
        .tempdir()?;
    let src = dir.path().join("src");
    let target = dir.path().join("target");
    std::fs::create_dir_all(&target)?;
    output(Command::new("cp").arg("-a").arg(crate_dir).arg(&src))?;
    let _ = std::fs::remove_dir_all(src.join(".git"));
    std::fs::write(src.join("src/main.rs"), main_rs(0))?;
    eprintln!("cache: baseline, cold");
    let cold = bare_build(&src, &target)?;
    let size = dir_size(&target);
    eprintln!("cache: baseline, warm");
    let warm = bare_build(&src, &target)?;
    std::fs::write(src.join("src/main.rs"), main_rs(change))?;
    eprintln!("cache: baseline, one-line change");
    let changed = bare_build(&src, &target)?;
    Ok(([cold, warm, changed], size))
}

/// One-member cluster, one agent, the bench's pipelines applied and the
/// git caches warm; Err with the CLI's answer when Ferry refuses the
/// pipeline (a build without the cache feature).
struct Ferry {
    c: Cluster,
    agent: String,
}

impl Ferry {
    fn start(repo: &Repo) -> anyhow::Result<Result<Ferry, String>> {
        let mut c = Cluster::start("benchcache");
        let agent = c.add_agent("a", &[]);
        let file = tempfile::NamedTempFile::new()?;
        for (yaml, name) in [(WARM_UP, "cachewarm"), (PIPELINE, "cachebench")] {
            std::fs::write(file.path(), yaml.replace("@URL@", &repo.url()))?;
            let path = file.path().display().to_string();
            let applied = c.ferry(Some("admin"), &["pipeline", "apply", "-f", &path]);
            if !applied.success {
                return Ok(Err(format!(
                    "`ferry pipeline apply` refused `{name}`: {}",
                    applied.stderr.trim()
                )));
            }
        }
        let f = Ferry { c, agent };
        let warm = f.run("cachewarm", Some("fetch/source"))?;
        anyhow::ensure!(warm.1 == "Succeeded", "the warm-up run failed: {}", warm.2);
        Ok(Ok(f))
    }

    /// Runs `pipeline` (`ferry run` + `ferry status --watch`): the wall
    /// time, the status, and the log of `action` (stage/action).
    fn run(
        &self,
        pipeline: &str,
        action: Option<&str>,
    ) -> anyhow::Result<(Duration, String, String, Value)> {
        let t = Instant::now();
        let started = self.c.ferry(Some("admin"), &["run", pipeline]);
        anyhow::ensure!(started.success, "ferry run {pipeline}: {}", started.stderr);
        let exec = started.stdout.trim().to_string();
        // Exit code 1 without a message: the execution did not succeed,
        // which the status below tells in full.
        let watched = self.c.ferry(
            Some("admin"),
            &[
                "status",
                pipeline,
                "--execution",
                &exec,
                "--watch",
                "-o",
                "json",
            ],
        );
        let wall = t.elapsed();
        anyhow::ensure!(
            watched.success || watched.stderr.trim().is_empty(),
            "ferry status --watch {pipeline}: {}",
            watched.stderr
        );
        let status = self.c.ferry(
            Some("admin"),
            &["status", pipeline, "--execution", &exec, "-o", "json"],
        );
        anyhow::ensure!(status.success, "ferry status {pipeline}: {}", status.stderr);
        let v: Value = serde_json::from_str(&status.stdout)
            .with_context(|| format!("ferry status is not JSON: {}", status.stdout))?;
        let log = match action {
            Some(a) => {
                let logs = self.c.ferry(
                    Some("admin"),
                    &["logs", pipeline, "--execution", &exec, "--action", a],
                );
                anyhow::ensure!(logs.success, "ferry logs {pipeline} {a}: {}", logs.stderr);
                logs.stdout
            }
            None => String::new(),
        };
        let state = v["status"].as_str().unwrap_or("unknown").to_string();
        Ok((wall, state, log, v))
    }

    /// One measured run of `cachebench`.
    fn build(&self) -> anyhow::Result<Build> {
        let store = self.c.agent_state_dir(&self.agent);
        let before = dir_size(&store);
        let (wall, state, log, v) = self.run("cachebench", Some("build/cargo"))?;
        anyhow::ensure!(
            state == "Succeeded",
            "the cachebench run ended {state}:\n{log}\n{v:#}"
        );
        let a = Cluster::action(&v, "build", "cargo");
        let mut b = Build::from_log(wall, &log);
        b.action = elapsed(&a["started_at"], &a["finished_at"]);
        b.agent_growth = Some(dir_size(&store) as i64 - before as i64);
        Ok(b)
    }

    /// Empties the pipeline's cache; false when this Ferry cannot.
    fn clear_cache(&self) -> bool {
        let r = self.c.ferry(Some("admin"), &["cache", "rm", "cachebench"]);
        if !r.success {
            eprintln!(
                "cache: `ferry cache rm cachebench` failed ({}): starting a new cluster and agent",
                r.stderr.trim()
            );
        }
        r.success
    }
}

pub fn run(rounds: usize) -> anyhow::Result<String> {
    let rounds = rounds.max(1);
    ensure_busybox_image();
    let versions = rust_image::ensure()?;
    let repo = Repo::new();
    make_crate(repo.work())?;
    repo.commit::<&str>(&[], "a crate with vendored dependencies");
    let vendored = dir_size(&repo.work().join("vendor"));
    let locked = std::fs::read_to_string(repo.work().join("Cargo.lock"))?
        .lines()
        .filter(|l| l.starts_with("name = "))
        .count();

    let mut change = 0;
    let mut baseline: Vec<[Build; 3]> = Vec::new();
    let mut target_size = 0;
    for _ in 0..rounds {
        change += 1;
        let (b, size) = baseline_round(repo.work(), change)?;
        baseline.push(b);
        target_size = size;
    }

    let mut ferry: Vec<[Build; 3]> = Vec::new();
    let mut not_measured = None;
    match Ferry::start(&repo)? {
        Err(refused) => not_measured = Some(refused),
        Ok(mut f) => {
            for round in 0..rounds {
                if round > 0 && !f.clear_cache() {
                    drop(f);
                    f = match Ferry::start(&repo)? {
                        Ok(f) => f,
                        Err(refused) => anyhow::bail!("{refused}"),
                    };
                }
                eprintln!("cache: Ferry round {}, run 1 (cold)", round + 1);
                let cold = f.build()?;
                eprintln!("cache: Ferry round {}, run 2 (same commit)", round + 1);
                let warm = f.build()?;
                change += 1;
                repo.commit(&[("src/main.rs", main_rs(change))], "a one-line change");
                eprintln!("cache: Ferry round {}, run 3 (one-line change)", round + 1);
                let changed = f.build()?;
                ferry.push([cold, warm, changed]);
            }
        }
    }

    let mut out = format!(
        "A binary crate over {} locked packages ({} vendored), {}, in `{}` \
         (`--cpus 2 --memory 4g`, Ferry's through the pipeline's `resources:`); {} round(s).\n\n",
        locked - 1,
        mib(vendored),
        versions.lines().next().unwrap_or_default(),
        rust_image::IMAGE,
        rounds
    );
    out.push_str(
        "| cargo build of the crate | wall | action | cargo's own `Finished` | crates compiled |\n\
         | --- | --- | --- | --- | --- |\n",
    );
    let names = [
        "bare `docker run`, cold (empty target dir) (baseline)",
        "bare `docker run`, warm, nothing changed (baseline)",
        "bare `docker run`, one-line change of src/main.rs (baseline)",
    ];
    for (i, name) in names.iter().enumerate() {
        out.push_str(&row(name, &baseline, i));
    }
    let names = [
        "Ferry run 1: cold, cache miss, saved",
        "Ferry run 2: same commit, cache restored",
        "Ferry run 3: one-line change, cache restored",
    ];
    for (i, name) in names.iter().enumerate() {
        if ferry.is_empty() {
            out.push_str(&format!("| {name} | not measured | | | |\n"));
        } else {
            out.push_str(&row(name, &ferry, i));
        }
    }
    out.push_str(&format!(
        "\ntarget/ after the cold build (what the cache holds): {}\n",
        mib(target_size)
    ));
    for (round, runs) in ferry.iter().enumerate() {
        if runs[1].compiled > 1 || runs[2].compiled > 1 {
            out.push_str(&format!(
                "\nRound {}: Ferry's runs 2 and 3 compiled {} and {} crates (run 1: {}): \
                 more than a restored cache should leave (see the `[ferry] cache` lines below).\n",
                round + 1,
                runs[1].compiled,
                runs[2].compiled,
                runs[0].compiled
            ));
        }
    }
    if let Some(why) = not_measured {
        out.push_str(&format!("\nFerry not measured: {why}\n"));
    }
    for (round, runs) in ferry.iter().enumerate() {
        out.push_str(&format!("\nRound {}, Ferry:\n", round + 1));
        for (i, b) in runs.iter().enumerate() {
            let growth = b
                .agent_growth
                .map(|g| format!("{:+.1} MiB", g as f64 / (1024.0 * 1024.0)))
                .unwrap_or_default();
            out.push_str(&format!("- run {}: agent state dir {growth}; ", i + 1));
            if b.cache_lines.is_empty() {
                out.push_str("no `[ferry] cache` lines in the log\n");
            } else {
                let lines: Vec<String> = b.cache_lines.iter().map(|l| format!("`{l}`")).collect();
                out.push_str(&lines.join(", "));
                out.push('\n');
            }
        }
    }
    Ok(out)
}

/// A table row: the medians over rounds of run `i` (each round's value in
/// brackets when there are several).
fn row(name: &str, rounds: &[[Build; 3]], i: usize) -> String {
    let runs: Vec<&Build> = rounds.iter().map(|r| &r[i]).collect();
    let cell = |v: Vec<Option<Duration>>| -> String {
        let known: Vec<Duration> = v.iter().flatten().copied().collect();
        if known.is_empty() {
            return "—".to_string();
        }
        let [median] = super::quantiles(known, [0.5]);
        let mut text = secs(median);
        if v.len() > 1 {
            let each: Vec<String> = v
                .iter()
                .map(|d| d.map(secs).unwrap_or_else(|| "—".into()))
                .collect();
            text.push_str(&format!(" ({})", each.join(", ")));
        }
        text
    };
    let compiled: Vec<String> = runs.iter().map(|b| b.compiled.to_string()).collect();
    format!(
        "| {name} | {} | {} | {} | {} |\n",
        cell(runs.iter().map(|b| Some(b.wall)).collect()),
        cell(runs.iter().map(|b| b.action).collect()),
        cell(runs.iter().map(|b| b.cargo).collect()),
        compiled.join(", ")
    )
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The time between two RFC 3339 timestamps of a status answer.
fn elapsed(start: &Value, end: &Value) -> Option<Duration> {
    let parse = |v: &Value| humantime::parse_rfc3339(v.as_str()?).ok();
    parse(end)?.duration_since(parse(start)?).ok()
}

/// Bytes of the regular files under `p`, each hard-linked file once
/// (cargo links its binaries into `target/debug`); symbolic links not
/// followed.
fn dir_size(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut todo: Vec<PathBuf> = vec![p.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => todo.push(e.path()),
                Ok(t) if t.is_file() => {
                    if let Ok(m) = e.metadata()
                        && seen.insert((m.dev(), m.ino()))
                    {
                        total += m.len();
                    }
                }
                _ => {}
            }
        }
    }
    total
}
