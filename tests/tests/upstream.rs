//! Pipelines that feed pipelines, end to end on a real agent with Docker: a
//! pipeline whose source is another starts when an execution of it
//! succeeds, builds the same revision and takes its outputs as
//! `UPSTREAM.OUTPUT`; `ferry status` names the upstream and the downstream
//! executions; a fan-in waits until each upstream succeeded for the same
//! revision; a cycle and an unknown upstream are refused at apply, and a
//! downstream cannot be started by hand.

use ferry_tests::{Cluster, Repo, ensure_busybox_image};
use serde_json::Value;

fn build(name: &str, git: &str, output: &str) -> String {
    format!(
        r#"name: {name}
execution_mode: parallel
source: {{git: {git}}}
stages:
  - name: build
    actions:
      - name: make
        type: build
        image: ferry-local/busybox
        inputs: [source]
        commands: ["cp VERSION {output}.txt"]
        outputs: {{{output}: [{output}.txt]}}
"#
    )
}

fn downstream(name: &str, upstreams: &str, inputs: &str, check: &str) -> String {
    format!(
        r#"name: {name}
execution_mode: parallel
source: {{pipeline: {upstreams}}}
stages:
  - name: use
    actions:
      - name: check
        type: test
        image: ferry-local/busybox
        inputs: [{inputs}]
        commands: ["{check}"]
"#
    )
}

/// Applies `yaml` expecting a refusal; the error text.
fn refused(c: &Cluster, yaml: &str) -> String {
    let path = c.path().join("refused.yml");
    std::fs::write(&path, yaml).unwrap_or_else(|e| panic!("{e}"));
    let r = c.ferry(
        Some("admin"),
        &["pipeline", "apply", "-f", &path.display().to_string()],
    );
    assert!(!r.success, "applied: {}", r.stdout);
    r.stderr
}

fn run_to_success(c: &Cluster, pipeline: &str) -> Value {
    let exec = c
        .ferry_ok(Some("admin"), &["run", pipeline])
        .trim()
        .to_string();
    let v = c.wait_status(pipeline, &exec, "the upstream to end", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(v["status"], "Succeeded", "{v:#}");
    v
}

/// The executions of `pipeline`, newest first, as status JSON.
fn executions(c: &Cluster, pipeline: &str) -> Vec<Value> {
    let out = c.ferry_ok(Some("admin"), &["executions", pipeline, "-o", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap_or_default();
    v.as_array().cloned().unwrap_or_default()
}

#[test]
fn a_succeeded_upstream_starts_its_downstreams_with_its_outputs() {
    ensure_busybox_image();
    let mut c = Cluster::start("upstream");
    c.add_agent("a", &[]);
    let repo = Repo::new();
    let revision = repo.commit(&[("VERSION", "1.4.2\n")], "v1");
    c.apply(&build("app-build", &repo.url(), "image"));
    c.apply(&build("docs-build", &repo.url(), "docs"));
    c.apply(&downstream(
        "app-deploy",
        "app-build",
        "app-build.image, source",
        "grep -q 1.4.2 image.txt && test -f VERSION",
    ));
    c.apply(&downstream(
        "release",
        "[app-build, docs-build]",
        "app-build.image, docs-build.docs",
        "cat image.txt docs.txt",
    ));

    // One upstream: its success starts the downstream, on its revision.
    let up = run_to_success(&c, "app-build");
    let up_id = up["execution_id"].as_str().unwrap_or_default().to_string();
    let down_id = format!("{up_id}-app-deploy");
    let down = c.wait_status("app-deploy", &down_id, "the downstream to end", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(down["status"], "Succeeded", "{down:#}");
    assert_eq!(down["revision"], revision.as_str());
    assert_eq!(down["upstream"][0], format!("app-build/{up_id}").as_str());
    let table = c.ferry_ok(
        Some("admin"),
        &["status", "app-deploy", "--execution", &down_id],
    );
    assert!(
        table.contains(&format!("UPSTREAM app-build/{up_id}")),
        "{table}"
    );
    let up = c.status("app-build", &up_id);
    let started: Vec<&str> = up["downstream"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(
        started,
        vec![format!("app-deploy/{down_id}").as_str()],
        "{up:#}"
    );

    // The fan-in waited: docs-build has not run for this revision.
    assert!(
        executions(&c, "release").is_empty(),
        "release started too early"
    );
    let docs = run_to_success(&c, "docs-build");
    let docs_id = docs["execution_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let rel_id = format!("{docs_id}-release");
    let rel = c.wait_status("release", &rel_id, "the fan-in to end", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(rel["status"], "Succeeded", "{rel:#}");
    let log = c.ferry_ok(
        Some("admin"),
        &[
            "logs",
            "release",
            "--execution",
            &rel_id,
            "--action",
            "use/check",
        ],
    );
    assert!(log.contains("1.4.2"), "{log}");
    assert_eq!(rel["upstream"].as_array().map(Vec::len), Some(2), "{rel:#}");

    // A downstream is not started by hand.
    let r = c.ferry(Some("admin"), &["run", "app-deploy"]);
    assert!(!r.success);
    assert!(
        r.stderr.contains("starts when its upstream succeeds"),
        "{}",
        r.stderr
    );
}

#[test]
fn cycles_and_unknown_upstreams_are_refused_at_apply() {
    let c = Cluster::start("upcycle");
    let repo = Repo::new();
    repo.commit(&[("VERSION", "1\n")], "v1");
    c.apply(&build("first", &repo.url(), "image"));
    c.apply(&downstream("second", "first", "first.image", "true"));
    // `first` fed by `second` would close the loop.
    let err = refused(&c, &downstream("first", "second", "second.image", "true"));
    assert!(
        err.contains("pipeline sources form a cycle: first → second → first"),
        "{err}"
    );
    let err = refused(&c, &downstream("third", "nope", "source", "true"));
    assert!(
        err.contains("upstream pipeline `nope` does not exist"),
        "{err}"
    );
    // An input from a pipeline that is not an upstream is a lint error.
    let err = refused(&c, &downstream("fourth", "first", "second.image", "true"));
    assert!(
        err.contains("`second` is not an upstream of this pipeline"),
        "{err}"
    );
}
