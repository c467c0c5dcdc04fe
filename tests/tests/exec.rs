//! `ferry exec`: a pipeline run on the local Docker Engine by the agent's
//! engine, no cluster. Real git repositories (with uncommitted changes),
//! real containers (`ferry-local/busybox`), the real `ferry` binary. These
//! tests fail, not skip, when Docker is missing (`ensure_busybox_image`).

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use ferry_tests::exec::text;
use ferry_tests::{Repo, bin, ensure_busybox_image};

/// Runs `ferry exec ARGS` in `dir` with its own cache folder.
fn exec(dir: &Path, args: &[&str]) -> Output {
    ferry_tests::exec::run(dir, args, &[])
}

fn exec_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    ferry_tests::exec::run(dir, args, env)
}

/// The containers a run started, from its `started (container NAME)` lines.
fn containers(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split("(container ").nth(1))
        .map(|rest| rest.trim_end_matches(')').to_string())
        .collect()
}

fn container_exists(name: &str) -> bool {
    Command::new("docker")
        .args(["inspect", "--type", "container", name])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Removes the named containers when dropped (also when a test fails).
struct Remove(Vec<String>);

impl Drop for Remove {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("docker").args(["rm", "-f", name]).output();
        }
    }
}

fn repo_with(files: &[(&str, &str)]) -> Repo {
    let r = Repo::new();
    r.commit(files, "init");
    r
}

#[test]
fn two_stages_pass_an_artifact_and_the_build_sees_uncommitted_changes() {
    ensure_busybox_image();
    let r = repo_with(&[("msg.txt", "committed\n")]);
    // Uncommitted: a changed tracked file and a new untracked one.
    std::fs::write(r.work().join("msg.txt"), "uncommitted change\n")
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(r.work().join("extra.txt"), "untracked file\n")
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        r.work().join("ferry.yml"),
        r#"name: local
source: {git: /not/fetched}
stages:
  - name: build
    actions:
      - name: compile
        type: build
        image: ferry-local/busybox
        inputs: [source]
        commands: ["mkdir -p dist", "cat msg.txt extra.txt > dist/app.txt", "echo rev=$FERRY_REVISION"]
        outputs: {app: [dist/]}
  - name: test
    actions:
      - name: check
        type: test
        image: ferry-local/busybox
        inputs: [app]
        commands: ["cat dist/app.txt", "test ! -e msg.txt"]
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = exec(r.work(), &[]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("test/check    | uncommitted change"),
        "{all}"
    );
    assert!(stdout.contains("test/check    | untracked file"), "{all}");
    assert!(stdout.contains("with its uncommitted changes"), "{all}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("build/compile  Succeeded")),
        "{all}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("test/check     Succeeded")),
        "{all}"
    );
    let started = containers(&out);
    assert_eq!(started.len(), 2, "{all}");
    for c in started {
        assert!(!container_exists(&c), "{c} was left behind");
    }
}

const FAILING: &str = r#"name: failing
source: {git: /not/fetched}
stages:
  - name: build
    actions:
      - {name: compile, type: build, image: ferry-local/busybox, inputs: [source], commands: ["echo built"]}
  - name: test
    actions:
      - {name: unit, type: test, image: ferry-local/busybox, inputs: [source], commands: ["echo checking", "echo 'assertion failed: 1 == 2'; exit 3", "echo never"]}
  - name: after
    actions:
      - {name: never, type: test, image: ferry-local/busybox, commands: ["echo should not run"]}
"#;

#[test]
fn a_failing_test_exits_1_with_its_log_and_its_container_removed() {
    ensure_busybox_image();
    let r = repo_with(&[("ferry.yml", FAILING)]);
    let out = exec(r.work(), &[]);
    let all = text(&out);
    let _cleanup = Remove(containers(&out));
    assert_eq!(out.status.code(), Some(1), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("test/unit     | assertion failed: 1 == 2"),
        "{all}"
    );
    assert!(!stdout.contains("should not run"), "{all}");
    assert!(!stdout.contains("| never"), "{all}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("test/unit      Failed") && l.contains("exited with code 3")),
        "{all}"
    );
    let started = containers(&out);
    assert_eq!(started.len(), 2, "{all}");
    for c in &started {
        assert!(!container_exists(c), "{c} was left behind");
    }
    assert!(!stdout.contains("kept container"), "{all}");
}

#[test]
fn keep_leaves_the_failed_container_for_docker_exec() {
    ensure_busybox_image();
    let r = repo_with(&[("ferry.yml", FAILING)]);
    let out = exec(r.work(), &["--keep"]);
    let all = text(&out);
    let started = containers(&out);
    let _cleanup = Remove(started.clone());
    assert_eq!(out.status.code(), Some(1), "{all}");
    let [build, unit] = started.as_slice() else {
        panic!("expected two containers: {all}");
    };
    // The build succeeded: its container is gone; the failed one stays.
    assert!(!container_exists(build), "{all}");
    assert!(container_exists(unit), "{all}");
    let command = format!("docker exec -it {unit} /bin/sh");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&command),
        "{all}"
    );
    // It can be entered: the workspace is there.
    let inside = Command::new("docker")
        .args(["exec", unit, "cat", "/workspace/ferry.yml"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        String::from_utf8_lossy(&inside.stdout).contains("name: failing"),
        "{}",
        String::from_utf8_lossy(&inside.stderr)
    );
}

#[test]
fn output_variables_var_and_secrets_reach_later_actions() {
    ensure_busybox_image();
    let r = repo_with(&[(
        "ferry.yml",
        r##"name: vars
source: {git: /not/fetched}
variables:
  GREETING: {default: hello}
stages:
  - name: build
    actions:
      - name: version
        type: build
        image: ferry-local/busybox
        secrets: {TOKEN: api-token}
        commands:
          - echo "VERSION=1.2.#{variables.GREETING}" >> "$FERRY_OUTPUT_VARS"
          - echo "token is $TOKEN"
  - name: test
    actions:
      - name: use
        type: test
        image: ferry-local/busybox
        env: {V: "#{build.version.VERSION}"}
        commands: ["echo got $V", "echo greeting #{variables.GREETING}"]
"##,
    )]);
    let secret = tempfile::NamedTempFile::new().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(secret.path(), "s3cr3t-value\n").unwrap_or_else(|e| panic!("{e}"));
    let secret_arg = format!("api-token=@{}", secret.path().display());
    let out = exec(
        r.work(),
        &["--var", "GREETING=override", "--secret", &secret_arg],
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("test/use      | got 1.2.override"), "{all}");
    assert!(all.contains("test/use      | greeting override"), "{all}");
    assert!(all.contains("build/version | token is ***"), "{all}");
    assert!(!all.contains("s3cr3t"), "{all}");
    assert!(
        all.contains("build/version wrote VERSION=1.2.override"),
        "{all}"
    );

    // The same secret from the environment; an undeclared --var is refused.
    let out = exec_with(
        r.work(),
        &[],
        &[("FERRY_SECRET_API_TOKEN", "from-the-env-value")],
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("test/use      | got 1.2.hello"), "{all}");
    assert!(!all.contains("from-the-env"), "{all}");
    let out = exec(r.work(), &["--var", "NOPE=1", "--secret", &secret_arg]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("declares no variable `NOPE`"),
        "{}",
        text(&out)
    );

    // Without the secret, the action fails by name and says how to give it.
    let out = exec(r.work(), &[]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("--secret api-token=@FILE"), "{all}");
}

#[test]
fn an_invalid_pipeline_exits_2_with_positions() {
    let r = repo_with(&[("README", "x")]);
    let file = r.work().join("broken.yml");
    std::fs::write(
        &file,
        "name: broken\nsource: {git: x}\nstages:\n  - name: s\n    actions:\n      - {name: a, type: biuld}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = exec(r.work(), &["broken.yml"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("broken.yml:6:"),
        "{all}"
    );
    assert!(all.contains("unknown action type"), "{all}");
}

#[test]
fn revision_builds_a_commit_and_action_runs_only_what_it_needs() {
    ensure_busybox_image();
    let r = repo_with(&[
        ("msg.txt", "committed\n"),
        (
            "ferry.yml",
            r#"name: pick
source: {git: /not/fetched}
stages:
  - name: build
    actions:
      - {name: one, type: build, image: ferry-local/busybox, inputs: [source], commands: ["cp msg.txt out.txt"], outputs: {out: [out.txt]}}
      - {name: unrelated, type: build, image: ferry-local/busybox, commands: ["echo unrelated ran"]}
  - name: test
    actions:
      - {name: read, type: test, image: ferry-local/busybox, inputs: [out], commands: ["cat out.txt"]}
      - {name: other, type: test, image: ferry-local/busybox, commands: ["echo other ran"]}
"#,
        ),
    ]);
    std::fs::write(r.work().join("msg.txt"), "not committed\n").unwrap_or_else(|e| panic!("{e}"));
    let out = exec(r.work(), &["--revision", "main", "--action", "test/read"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("test/read       | committed"), "{all}");
    assert!(!all.contains("not committed"), "{all}");
    assert!(
        !all.contains("unrelated ran") && !all.contains("other ran"),
        "{all}"
    );
    assert!(
        all.contains("skipped (not selected): build/unrelated, test/other"),
        "{all}"
    );
}

/// Removes the deploy test's container (and the one set aside) when dropped.
struct RemoveDeployed(&'static str);

impl Drop for RemoveDeployed {
    fn drop(&mut self) {
        let previous = format!("{}.ferry-previous", self.0);
        let _ = Command::new("docker")
            .args(["rm", "-f", self.0, &previous])
            .output();
    }
}

#[test]
fn deploys_run_only_with_an_environment_file_and_after_an_approval() {
    ensure_busybox_image();
    const CONTAINER: &str = "ferry-exectest-web";
    let _cleanup = RemoveDeployed(CONTAINER);
    let port = ferry_tests::free_port();
    let r = repo_with(&[
        (
            "ferry-deploy.yml",
            &format!(
                r#"docker:
  image: ferry-local/busybox
  container: {CONTAINER}
  ports: ["{port}:8080"]
  command: [sh, -c, 'mkdir -p /www && echo "deployed by ferry exec" > /www/index.html && exec httpd -f -p 8080 -h /www']
  healthcheck: wget -qO- http://127.0.0.1:8080/
  health_timeout: 10s
"#
            ),
        ),
        (
            "ferry.yml",
            r#"name: ship
source: {git: /not/fetched}
stages:
  - name: build
    actions:
      - {name: bundle, type: build, image: ferry-local/busybox, inputs: [source], commands: ["true"], outputs: {release: [ferry-deploy.yml]}}
  - name: gate
    actions:
      - {name: ok, type: approval, message: "ship it?"}
  - name: local
    actions:
      - {name: deploy, type: deploy, inputs: [release], environment: here}
"#,
        ),
    ]);
    std::fs::write(
        r.work().join("here.yml"),
        "name: here\nhosts:\n  - name: engine\n    docker:\n      endpoint: unix:///var/run/docker.sock\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));

    // No environment file: the deploy is skipped, the rest succeeds.
    let out = exec(r.work(), &["--approve"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(
        all.contains("local/deploy") && all.contains("only with --deploy"),
        "{all}"
    );
    assert!(!container_exists(CONTAINER), "{all}");

    // An environment file, but no terminal to ask and no --approve: the
    // approval is skipped, and so is the deploy after it.
    let out = exec(r.work(), &["--deploy", "here.yml"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("gate/ok skipped: no terminal"), "{all}");
    assert!(all.contains("approval gate/ok was not given"), "{all}");
    assert!(!container_exists(CONTAINER), "{all}");

    // Approved: the deployer (the agent's) rolls the release out.
    let out = exec(r.work(), &["--deploy", "here.yml", "--approve"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("deployment to here Succeeded"), "{all}");
    assert!(container_exists(CONTAINER), "{all}");
    let page = Command::new("docker")
        .args(["exec", CONTAINER, "wget", "-qO-", "http://127.0.0.1:8080/"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        String::from_utf8_lossy(&page.stdout).contains("deployed by ferry exec"),
        "{all}"
    );

    // An invalid environment file is refused with positions, like a pipeline.
    std::fs::write(r.work().join("bad-env.yml"), "name: here\nhosts: 3\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let out = exec(r.work(), &["--deploy", "bad-env.yml"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("bad-env.yml:2:"), "{}", text(&out));
}

#[test]
fn ctrl_c_stops_the_run_and_removes_its_containers() {
    ensure_busybox_image();
    let r = repo_with(&[(
        "ferry.yml",
        r#"name: slow
source: {git: /not/fetched}
stages:
  - name: build
    actions:
      - {name: wait, type: build, image: ferry-local/busybox, commands: ["echo waiting", "sleep 120"]}
  - name: next
    actions:
      - {name: never, type: test, image: ferry-local/busybox, commands: ["echo should not run"]}
"#,
    )]);
    let cache = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let child = Command::new(bin("ferry"))
        .arg("exec")
        .current_dir(r.work())
        .env("XDG_CACHE_HOME", cache.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run ferry exec: {e}"));
    let container = format!("ferry-exec-{}-1", child.id());
    let _cleanup = Remove(vec![container.clone()]);
    ferry_tests::wait_for("the action's container", Duration::from_secs(60), || {
        container_exists(&container).then_some(())
    });
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap_or_else(|e| panic!("kill: {e}"));
    assert!(killed.success());
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("ferry exec: {e}"));
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("STATUS Stopped"), "{all}");
    assert!(all.contains("==> build/wait stopped"), "{all}");
    assert!(all.contains("interrupted (Ctrl-C)"), "{all}");
    assert!(!all.contains("should not run"), "{all}");
    assert!(!container_exists(&container), "{all}");
}

#[test]
fn an_approval_is_asked_on_the_terminal() {
    ensure_busybox_image();
    let r = repo_with(&[(
        "ferry.yml",
        r#"name: asked
source: {git: /not/fetched}
stages:
  - name: build
    actions:
      - {name: make, type: build, image: ferry-local/busybox, commands: ["echo made"]}
  - name: gate
    actions:
      - {name: ok, type: approval, message: "ship it?"}
  - name: after
    actions:
      - {name: check, type: test, image: ferry-local/busybox, commands: ["echo after the gate"]}
"#,
    )]);
    let cache = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // `script` gives ferry a terminal; the answer waits in its input.
    let ask = |answer: &str| -> Output {
        let mut child = Command::new("script")
            .args([
                "-qec",
                &format!("{} exec", bin("ferry").display()),
                "/dev/null",
            ])
            .current_dir(r.work())
            .env("XDG_CACHE_HOME", cache.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run script: {e}"));
        if let Some(mut stdin) = child.stdin.take() {
            std::io::Write::write_all(&mut stdin, answer.as_bytes())
                .unwrap_or_else(|e| panic!("{e}"));
        }
        child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("script: {e}"))
    };
    let out = ask("y\n");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("approve gate/ok? ship it? [y/N]"), "{all}");
    assert!(all.contains("after the gate"), "{all}");
    let out = ask("n\n");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("declined at the prompt"), "{all}");
    assert!(!all.contains("| after the gate"), "{all}");
}

#[test]
fn no_docker_engine_exits_2_and_says_so() {
    let r = repo_with(&[(
        "ferry.yml",
        "name: p\nsource: {git: x}\nstages:\n  - name: s\n    actions:\n      - {name: a, type: build, image: i, commands: [x]}\n",
    )]);
    let out = exec_with(
        r.work(),
        &[],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("the Docker Engine cannot be reached"), "{all}");
}
