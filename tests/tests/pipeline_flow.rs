//! End to end: a git commit through build and test in Docker on two agents
//! (artifacts passed peer to peer), a manual approval, a failing command, a
//! source poller, and a coordinator killed while an approval waits.

use std::time::Duration;

use ferry_tests::{Cluster, Repo, ensure_busybox_image, wait_for};

fn sample_repo() -> (Repo, String) {
    let repo = Repo::new();
    let sha = repo.commit(
        &[
            ("build.sh", "set -e\nmkdir -p dist\necho \"app built from $FERRY_REVISION in $MODE mode\" > dist/app.txt\necho build-done\n"),
            ("test.sh", "set -e\ngrep -q 'release mode' dist/app.txt\necho tests-passed\n"),
        ],
        "first",
    );
    (repo, sha)
}

fn pipeline(name: &str, repo: &Repo, extra_source: &str) -> String {
    format!(
        r#"name: {name}
source:
  git: {url}
  branch: main
{extra_source}
stages:
  - name: build
    actions:
      - name: compile
        type: build
        image: ferry-local/busybox
        runs_on: [builder]
        inputs: [source]
        commands: ["sh build.sh"]
        env: {{MODE: release}}
        outputs: {{app: [dist/]}}
        timeout: 2m
  - name: test
    actions:
      - name: unit
        type: test
        image: ferry-local/busybox
        runs_on: [tester]
        inputs: [source, app]
        commands: ["sh test.sh", "echo env=$FERRY_PIPELINE/$FERRY_STAGE/$FERRY_ACTION"]
  - name: gate
    actions:
      - name: release
        type: approval
        timeout: 1h
"#,
        url = repo.url()
    )
}

#[test]
fn commit_to_approved_build_on_two_agents() {
    ensure_busybox_image();
    let mut c = Cluster::start("flow");
    let builder = c.add_agent("builder", &["builder"]);
    let tester = c.add_agent("tester", &["tester"]);
    c.grant("alice", "approver");
    c.grant("vic", "viewer");
    let (repo, sha) = sample_repo();
    c.apply(&pipeline("hello", &repo, ""));

    let exec = c
        .ferry_ok(Some("admin"), &["run", "hello"])
        .trim()
        .to_string();
    let status = c.wait_status("hello", &exec, "approval to be waiting", |v| {
        Cluster::action(v, "gate", "release")["status"] == "WaitingForApproval"
            || v["status"] == "Failed"
    });
    assert_eq!(status["status"], "InProgress", "{status:#}");
    assert_eq!(status["revision"], sha.as_str());
    assert_eq!(status["pipeline_version"], 1);
    let compile = Cluster::action(&status, "build", "compile");
    assert_eq!(compile["status"], "Succeeded");
    assert_eq!(compile["agent"], builder.as_str());
    assert_eq!(compile["exit_code"], 0);
    assert_eq!(compile["attempt"], 1);
    let unit = Cluster::action(&status, "test", "unit");
    assert_eq!(unit["status"], "Succeeded", "{status:#}");
    assert_eq!(
        unit["agent"],
        tester.as_str(),
        "the test ran on the other agent, fetching `app` peer to peer"
    );

    // Live and stored logs.
    let logs = c.ferry_ok(
        Some("vic"),
        &[
            "logs",
            "hello",
            "--execution",
            &exec,
            "--action",
            "test/unit",
        ],
    );
    assert!(logs.contains("tests-passed"), "{logs}");
    assert!(logs.contains("env=hello/test/unit"), "{logs}");
    let logs = c.ferry_ok(
        Some("admin"),
        &[
            "logs",
            "hello",
            "--execution",
            &exec,
            "--action",
            "build/compile",
        ],
    );
    assert!(logs.contains("build-done"), "{logs}");

    // A viewer may not approve; nothing is recorded.
    let denied = c.ferry(
        Some("vic"),
        &[
            "approve",
            "hello",
            "--execution",
            &exec,
            "--action",
            "gate/release",
        ],
    );
    assert!(!denied.success);
    assert!(
        denied.stderr.to_lowercase().contains("may not"),
        "{}",
        denied.stderr
    );
    let status = c.status("hello", &exec);
    assert_eq!(
        Cluster::action(&status, "gate", "release")["approvals"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );

    c.ferry_ok(
        Some("alice"),
        &[
            "approve",
            "hello",
            "--execution",
            &exec,
            "--action",
            "gate/release",
            "--comment",
            "ship it",
        ],
    );
    let status = c.wait_status("hello", &exec, "execution to succeed", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(status["status"], "Succeeded", "{status:#}");
    let release = Cluster::action(&status, "gate", "release");
    assert_eq!(release["approvals"][0]["by"], "alice");
    assert_eq!(release["approvals"][0]["decision"], "Approved");
    assert_eq!(release["approvals"][0]["comment"], "ship it");

    // Applying a changed pipeline makes version 2; the old execution keeps version 1.
    c.apply(&pipeline("hello", &repo, "  poll_interval: 1h"));
    let status = c.status("hello", &exec);
    assert_eq!(status["pipeline_version"], 1);
    let show = c.ferry_ok(Some("admin"), &["pipeline", "show", "hello", "-o", "json"]);
    assert!(
        show.contains("\"version\": 2") || show.contains("\"version\":2"),
        "{show}"
    );
}

#[test]
fn failing_command_fails_execution_and_keeps_logs() {
    ensure_busybox_image();
    let mut c = Cluster::start("fail");
    c.add_agent("a", &["builder", "tester"]);
    let repo = Repo::new();
    repo.commit(
        &[
            ("build.sh", "echo about-to-fail\nexit 3\n"),
            ("test.sh", "true\n"),
        ],
        "broken",
    );
    c.apply(&pipeline("broken", &repo, ""));
    let exec = c
        .ferry_ok(Some("admin"), &["run", "broken"])
        .trim()
        .to_string();
    let status = c.wait_status("broken", &exec, "execution to end", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(status["status"], "Failed");
    let compile = Cluster::action(&status, "build", "compile");
    assert_eq!(compile["status"], "Failed");
    assert_eq!(compile["exit_code"], 3);
    assert!(
        compile["message"]
            .as_str()
            .unwrap_or("")
            .contains("exited with code 3"),
        "{compile}"
    );
    assert_eq!(
        Cluster::action(&status, "test", "unit")["status"],
        "Pending",
        "later stages never start"
    );
    assert_eq!(
        Cluster::action(&status, "gate", "release")["status"],
        "Pending"
    );
    let logs = c.ferry_ok(
        Some("admin"),
        &[
            "logs",
            "broken",
            "--execution",
            &exec,
            "--action",
            "build/compile",
        ],
    );
    assert!(logs.contains("about-to-fail"), "{logs}");
}

#[test]
fn missing_image_is_a_clear_action_failure() {
    ensure_busybox_image();
    let mut c = Cluster::start("noimg");
    c.add_agent("a", &[]);
    let repo = Repo::new();
    repo.commit(&[("x", "y")], "x");
    c.apply(&format!(
        "name: noimg\nsource: {{git: {}}}\nstages:\n  - name: b\n    actions:\n      - {{name: c, type: build, image: ferry-local/does-not-exist, commands: [true]}}\n",
        repo.url()
    ));
    let exec = c
        .ferry_ok(Some("admin"), &["run", "noimg"])
        .trim()
        .to_string();
    let status = c.wait_status("noimg", &exec, "execution to end", |v| {
        v["status"] != "InProgress"
    });
    let action = Cluster::action(&status, "b", "c");
    assert_eq!(action["status"], "Failed");
    let msg = action["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("ferry-local/does-not-exist") && msg.contains("could not be pulled"),
        "{msg}"
    );
}

#[test]
fn poller_starts_an_execution_for_each_new_commit() {
    ensure_busybox_image();
    let metrics = format!("127.0.0.1:{}", ferry_tests::free_port());
    let mut c = Cluster::start_members(
        "poll",
        1,
        ferry_tests::Options {
            coordinator_args: vec!["--metrics-listen".into(), metrics.clone()],
            ..Default::default()
        },
    );
    c.add_agent("a", &["builder", "tester"]);
    let polls = || {
        let text = ferry_tests::metrics::scrape(&metrics);
        ferry_tests::metrics::value(&text, "ferry_source_polls_total{result=\"ok\"}").unwrap_or(0.0)
    };
    let (repo, first) = sample_repo();
    c.apply(&pipeline("polled", &repo, "  poll_interval: 1s"));
    let revisions = |c: &Cluster| -> Vec<String> {
        let out = c.ferry_ok(Some("admin"), &["executions", "polled", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e["revision"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    wait_for(
        "the first commit to be picked up",
        Duration::from_secs(60),
        || revisions(&c).contains(&first).then_some(()),
    );
    let second = repo.commit(&[("README", "more")], "second");
    wait_for(
        "the second commit to be picked up",
        Duration::from_secs(60),
        || revisions(&c).contains(&second).then_some(()),
    );
    // Three more polls of the same head start nothing more.
    let seen = polls();
    wait_for("three more polls", Duration::from_secs(60), || {
        (polls() >= seen + 3.0).then_some(())
    });
    assert_eq!(
        revisions(&c).len(),
        2,
        "exactly one execution per new commit"
    );
}

#[test]
fn coordinator_killed_while_waiting_for_approval() {
    ensure_busybox_image();
    let mut c = Cluster::start("crash");
    c.add_agent("a", &["builder", "tester"]);
    c.grant("alice", "approver");
    let (repo, _) = sample_repo();
    c.apply(&pipeline("crashy", &repo, ""));
    let exec = c
        .ferry_ok(Some("admin"), &["run", "crashy"])
        .trim()
        .to_string();
    c.wait_status("crashy", &exec, "approval to be waiting", |v| {
        Cluster::action(v, "gate", "release")["status"] == "WaitingForApproval"
    });
    c.kill_coordinator();
    c.start_coordinator();
    let status = c.status("crashy", &exec);
    assert_eq!(
        Cluster::action(&status, "gate", "release")["status"],
        "WaitingForApproval"
    );
    assert_eq!(
        Cluster::action(&status, "build", "compile")["status"],
        "Succeeded"
    );
    c.ferry_ok(
        Some("alice"),
        &[
            "approve",
            "crashy",
            "--execution",
            &exec,
            "--action",
            "gate/release",
        ],
    );
    let status = c.wait_status("crashy", &exec, "execution to succeed", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(status["status"], "Succeeded");
}
