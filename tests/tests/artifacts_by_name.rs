//! Artifacts people can find, end to end on a real agent with Docker:
//! `--execution latest` reads a pipeline's newest execution (logs, artifact
//! lists, status) and is refused for changes; `ferry artifacts get PIPELINE
//! --execution ID|latest NAME --out DIR` unpacks an output's files with their
//! content into a new directory; a pipeline that never ran is a clear error.

use std::path::Path;

use ferry_tests::{Cluster, Repo, ensure_busybox_image};
use serde_json::Value;

/// A pipeline whose build action outputs a directory (`out/`, with a nested
/// file and a symlink) made from the commit's VERSION file.
fn pipeline(name: &str, repo: &Repo) -> String {
    format!(
        r#"name: {name}
source: {{git: {url}}}
stages:
  - name: build
    actions:
      - name: make
        type: build
        image: ferry-local/busybox
        inputs: [source]
        commands:
          - mkdir -p out/sub
          - cp VERSION out/app
          - echo nested > out/sub/notes.txt
          - ln -s app out/current
          - echo build-done
        outputs: {{app: [out/]}}
"#,
        url = repo.url()
    )
}

/// Runs the pipeline and waits until the execution succeeded; its id.
fn run_to_success(c: &Cluster, name: &str) -> String {
    let exec = c.ferry_ok(Some("admin"), &["run", name]).trim().to_string();
    let v = c.wait_status(name, &exec, "the execution to end", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(v["status"], "Succeeded", "{v:#}");
    exec
}

/// `ferry artifacts get PIPELINE --execution EXECUTION NAME --out DIR`.
fn get(c: &Cluster, pipeline: &str, execution: &str, name: &str, dir: &Path) -> String {
    c.ferry_ok(
        Some("admin"),
        &[
            "artifacts",
            "get",
            pipeline,
            "--execution",
            execution,
            name,
            "--out",
            &dir.display().to_string(),
        ],
    )
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs the CLI as admin expecting a failure; its stderr.
fn fails(c: &Cluster, args: &[&str]) -> String {
    let r = c.ferry(Some("admin"), args);
    assert!(
        !r.success,
        "ferry {args:?} succeeded:\nstdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
    r.stderr
}

#[test]
fn outputs_are_found_by_name_in_the_latest_execution() {
    ensure_busybox_image();
    let mut c = Cluster::start("byname");
    c.add_agent("a", &[]);
    let repo = Repo::new();
    repo.commit(&[("VERSION", "first\n")], "first");
    c.apply(&pipeline("byname", &repo));
    let first = run_to_success(&c, "byname");
    repo.commit(&[("VERSION", "second\n")], "second");
    let second = run_to_success(&c, "byname");
    assert_ne!(first, second);

    // Reading the newest execution without naming it.
    let logs = c.ferry_ok(
        Some("admin"),
        &[
            "logs",
            "byname",
            "--execution",
            "latest",
            "--action",
            "build/make",
        ],
    );
    assert!(logs.contains("build-done"), "{logs}");
    let status = c.ferry_ok(
        Some("admin"),
        &["status", "byname", "--execution", "latest", "-o", "json"],
    );
    let status: Value = serde_json::from_str(&status).unwrap_or_default();
    assert_eq!(status["execution_id"], second.as_str(), "{status:#}");
    let list = c.ferry_ok(
        Some("admin"),
        &[
            "artifacts",
            "list",
            "byname",
            "--execution",
            "latest",
            "-o",
            "json",
        ],
    );
    let list: Value = serde_json::from_str(&list).unwrap_or_default();
    let listed_digest = list
        .as_array()
        .and_then(|a| a.iter().find(|e| e["name"] == "app"))
        .and_then(|e| e["digest"].as_str())
        .unwrap_or_else(|| panic!("no app artifact listed: {list:#}"))
        .to_string();
    let made = Cluster::action(&status, "build", "make");
    assert_eq!(made["outputs"][0]["digest"], listed_digest.as_str());

    // The output by name, unpacked with its content.
    let dir = c.path().join("latest-app");
    let said = get(&c, "byname", "latest", "app", &dir);
    assert!(said.contains(&second), "{said}");
    assert_eq!(read(&dir.join("out/app")), "second\n");
    assert_eq!(read(&dir.join("out/sub/notes.txt")), "nested\n");
    let link = std::fs::read_link(dir.join("out/current")).expect("out/current is a symlink");
    assert_eq!(link, Path::new("app"));
    assert_eq!(read(&dir.join("out/current")), "second\n");

    // An earlier execution by id; an existing non-empty directory is refused.
    let older = c.path().join("first-app");
    get(&c, "byname", &first, "app", &older);
    assert_eq!(read(&older.join("out/app")), "first\n");
    let err = fails(
        &c,
        &[
            "artifacts",
            "get",
            "byname",
            "--execution",
            "latest",
            "app",
            "--out",
            &dir.display().to_string(),
        ],
    );
    assert!(err.contains("is not empty"), "{err}");
    assert_eq!(read(&dir.join("out/app")), "second\n");

    // An output the execution does not have is named, and no directory is made.
    let none = c.path().join("none");
    let err = fails(
        &c,
        &[
            "artifacts",
            "get",
            "byname",
            "--execution",
            "latest",
            "nope",
            "--out",
            &none.display().to_string(),
        ],
    );
    assert!(err.contains("has no output `nope`"), "{err}");
    assert!(err.contains("app (build/make)"), "{err}");
    assert!(!none.exists());

    // The digest form works as before.
    let tar = c.path().join("app.tar");
    c.ferry_ok(
        Some("admin"),
        &[
            "artifacts",
            "get",
            &listed_digest,
            "--out",
            &tar.display().to_string(),
        ],
    );
    let bytes = std::fs::read(&tar).unwrap_or_default();
    assert!(
        bytes.windows(7).any(|w| w == b"second\n"),
        "the tar holds out/app"
    );

    // Changes must name their execution.
    let r = c.ferry(
        Some("admin"),
        &["stop", "byname", "--execution", "latest", "--reason", "no"],
    );
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("name the execution"), "{r:?}");

    // A pipeline that never ran: a clear error naming it, nothing written.
    c.apply(&pipeline("idle", &repo));
    let expected = "pipeline `idle` has no executions yet";
    let err = fails(
        &c,
        &[
            "logs",
            "idle",
            "--execution",
            "latest",
            "--action",
            "build/make",
        ],
    );
    assert!(err.contains(expected), "{err}");
    let err = fails(&c, &["artifacts", "list", "idle", "--execution", "latest"]);
    assert!(err.contains(expected), "{err}");
    let idle = c.path().join("idle-app");
    let err = fails(
        &c,
        &[
            "artifacts",
            "get",
            "idle",
            "--execution",
            "latest",
            "app",
            "--out",
            &idle.display().to_string(),
        ],
    );
    assert!(err.contains(expected), "{err}");
    assert!(!idle.exists());
}
