//! End to end: steering executions through the CLI — stop (wait and
//! abandon), retry of a failed stage, the superseded execution mode, a
//! transition disabled across a leader failover, and `ferry run --wait`'s
//! exit codes.

use std::time::Duration;

use ferry_tests::{Cluster, Options, Repo, ensure_busybox_image, wait_for};
use serde_json::Value;

fn repo() -> Repo {
    let repo = Repo::new();
    repo.commit(&[("README", "steering\n")], "first");
    repo
}

/// A pipeline `name`: a build stage of `commands` (one action per entry,
/// in parallel), then an approval stage `gate`.
fn pipeline(name: &str, repo: &Repo, mode: &str, builds: &[(&str, &str)]) -> String {
    let mut yaml = format!(
        "name: {name}\nsource: {{git: {}, branch: main}}\nexecution_mode: {mode}\nstages:\n  - name: build\n    actions:\n",
        repo.url()
    );
    for (action, command) in builds {
        yaml.push_str(&format!(
            "      - {{name: {action}, type: build, image: ferry-local/busybox, commands: [{command:?}], secrets: {{FLAG: flag}}, timeout: 5m}}\n"
        ));
    }
    yaml.push_str(
        "  - name: gate\n    actions:\n      - {name: release, type: approval, timeout: 1h}\n",
    );
    yaml
}

fn run(c: &Cluster, pipeline: &str) -> String {
    c.ferry_ok(Some("admin"), &["run", pipeline])
        .trim()
        .to_string()
}

fn status_of(v: &Value) -> &str {
    v["status"].as_str().unwrap_or_default()
}

/// Waits until `stage/action` of an execution runs on an agent.
fn wait_running(c: &Cluster, pipeline: &str, exec: &str, action: &str) {
    c.wait_status(pipeline, exec, "the action to run on an agent", |v| {
        let a = Cluster::action(v, "build", action);
        a["status"] == "InProgress" && a["agent"].as_str().is_some_and(|s| !s.is_empty())
    });
}

#[test]
fn stop_abandons_a_running_build_or_lets_it_finish() {
    ensure_busybox_image();
    let mut c = Cluster::start("stop");
    c.add_agent("a", &[]);
    c.grant("olly", "operator");
    c.grant("vic", "viewer");
    c.set_secret("flag", b"x");
    let repo = repo();
    c.apply(&pipeline(
        "slow",
        &repo,
        "parallel",
        &[("sleepy", "echo started; sleep 600")],
    ));

    // Abandon: the running container goes at once, the execution ends Stopped.
    let exec = run(&c, "slow");
    wait_running(&c, "slow", &exec, "sleepy");
    wait_for("the container to start", Duration::from_secs(60), || {
        (!c.leftover_containers().is_empty()).then_some(())
    });
    let denied = c.ferry(
        Some("vic"),
        &["stop", "slow", "--execution", &exec, "--reason", "no"],
    );
    assert!(!denied.success, "a viewer may not stop a run");
    c.ferry_ok(
        Some("olly"),
        &[
            "stop",
            "slow",
            "--execution",
            &exec,
            "--reason",
            "wrong commit",
            "--abandon",
        ],
    );
    let v = c.wait_status("slow", &exec, "the execution to stop", |v| {
        status_of(v) == "Stopped"
    });
    let sleepy = Cluster::action(&v, "build", "sleepy");
    assert_eq!(sleepy["status"], "Stopped", "{v:#}");
    assert_eq!(sleepy["message"], "stopped by olly: wrong commit");
    assert_eq!(v["stop"]["by"], "olly", "{v:#}");
    assert_eq!(v["stop"]["abandon"], true);
    assert_eq!(Cluster::action(&v, "gate", "release")["status"], "Pending");
    wait_for(
        "the container to be removed",
        Duration::from_secs(60),
        || c.leftover_containers().is_empty().then_some(()),
    );
    let again = c.ferry(
        Some("olly"),
        &["stop", "slow", "--execution", &exec, "--reason", "again"],
    );
    assert!(!again.success);
    assert!(
        again.stderr.contains("already ended Stopped"),
        "{}",
        again.stderr
    );

    // Stop and wait: the running action finishes, nothing after it starts.
    c.apply(&pipeline(
        "slow",
        &repo,
        "parallel",
        &[("sleepy", "sleep 4; echo finished")],
    ));
    let exec = run(&c, "slow");
    wait_running(&c, "slow", &exec, "sleepy");
    c.ferry_ok(
        Some("olly"),
        &["stop", "slow", "--execution", &exec, "--reason", "freeze"],
    );
    let v = c.status("slow", &exec);
    assert_eq!(status_of(&v), "Stopping", "{v:#}");
    let table = c.ferry_ok(Some("vic"), &["status", "slow", "--execution", &exec]);
    assert!(table.contains("Stopping"), "{table}");
    let v = c.wait_status("slow", &exec, "the execution to stop", |v| {
        status_of(v) == "Stopped"
    });
    assert_eq!(
        Cluster::action(&v, "build", "sleepy")["status"],
        "Succeeded"
    );
    assert_eq!(Cluster::action(&v, "gate", "release")["status"], "Pending");
}

#[test]
fn retry_reruns_only_the_failed_action_and_the_run_goes_on() {
    ensure_busybox_image();
    let mut c = Cluster::start("retry");
    c.add_agent("a", &[]);
    c.grant("olly", "operator");
    c.set_secret("flag", b"broken");
    let repo = repo();
    c.apply(&pipeline(
        "flaky",
        &repo,
        "parallel",
        &[("steady", "echo fine"), ("flaky", "[ \"$FLAG\" = fixed ]")],
    ));
    let exec = run(&c, "flaky");
    // The run fails as soon as `flaky` fails; `steady` may still be
    // finishing then (its result is still taken), so wait for both.
    let v = c.wait_status("flaky", &exec, "the build to fail", |v| {
        status_of(v) == "Failed" && Cluster::action(v, "build", "steady")["status"] != "InProgress"
    });
    assert_eq!(
        Cluster::action(&v, "build", "steady")["status"],
        "Succeeded"
    );
    assert_eq!(Cluster::action(&v, "build", "flaky")["status"], "Failed");

    let refused = c.ferry(
        Some("olly"),
        &["retry", "flaky", "--execution", &exec, "--stage", "gate"],
    );
    assert!(!refused.success);
    assert!(
        refused.stderr.contains("stage `build` has not succeeded"),
        "{}",
        refused.stderr
    );
    // What made it fail is fixed; the same execution runs the action again.
    c.set_secret("flag", b"fixed");
    c.ferry_ok(
        Some("olly"),
        &["retry", "flaky", "--execution", &exec, "--stage", "build"],
    );
    let v = c.wait_status("flaky", &exec, "the approval after the retry", |v| {
        Cluster::action(v, "gate", "release")["status"] == "WaitingForApproval"
            || status_of(v) == "Failed"
    });
    assert_eq!(status_of(&v), "InProgress", "{v:#}");
    let steady = Cluster::action(&v, "build", "steady");
    assert_eq!(steady["attempt"], 1, "a succeeded action is not run again");
    let flaky = Cluster::action(&v, "build", "flaky");
    assert_eq!(flaky["attempt"], 2, "{v:#}");
    assert_eq!(flaky["status"], "Succeeded");
    let history = flaky["attempts"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        history.len(),
        2,
        "the failed attempt stays in the history: {v:#}"
    );
    assert_eq!(history[0]["outcome"], "Failed");
    assert_eq!(history[1]["outcome"], "Succeeded");
}

#[test]
fn superseded_mode_replaces_the_waiting_execution() {
    ensure_busybox_image();
    let mut c = Cluster::start("supersede");
    c.add_agent("a", &[]);
    c.grant("alice", "approver");
    c.set_secret("flag", b"x");
    let repo = repo();
    c.apply(&pipeline(
        "rel",
        &repo,
        "superseded",
        &[("compile", "true")],
    ));
    let first = run(&c, "rel");
    c.wait_status("rel", &first, "the first to wait for approval", |v| {
        Cluster::action(v, "gate", "release")["status"] == "WaitingForApproval"
    });
    let second = run(&c, "rel");
    let v = c.wait_status("rel", &second, "the second to wait before gate", |v| {
        v["waiting"].as_str().is_some_and(|w| !w.is_empty())
    });
    assert_eq!(
        v["waiting"],
        format!("stage gate is held by execution {first}"),
        "{v:#}"
    );
    let listed = c.ferry_ok(Some("admin"), &["executions", "rel"]);
    assert!(
        listed.contains(&format!("stage gate is held by execution {first}")),
        "{listed}"
    );
    let third = run(&c, "rel");
    let v = c.wait_status("rel", &second, "the second to be superseded", |v| {
        status_of(v) == "Superseded"
    });
    assert_eq!(v["superseded_by"], third.as_str(), "{v:#}");
    c.wait_status("rel", &third, "the third to wait before gate", |v| {
        v["waiting"].as_str().is_some_and(|w| !w.is_empty())
    });
    c.ferry_ok(
        Some("alice"),
        &[
            "approve",
            "rel",
            "--execution",
            &first,
            "--action",
            "gate/release",
        ],
    );
    c.wait_status("rel", &third, "the third to reach the approval", |v| {
        Cluster::action(v, "gate", "release")["status"] == "WaitingForApproval"
    });
    assert_eq!(status_of(&c.status("rel", &first)), "Succeeded");
}

#[test]
fn run_wait_exits_by_how_the_execution_ended() {
    ensure_busybox_image();
    let mut c = Cluster::start("wait");
    c.add_agent("a", &[]);
    c.set_secret("flag", b"x");
    let repo = repo();
    let yaml = |command: &str| {
        format!(
            "name: w\nsource: {{git: {}, branch: main}}\nexecution_mode: parallel\nstages:\n  - name: build\n    actions:\n      - {{name: b, type: build, image: ferry-local/busybox, commands: [{command:?}]}}\n",
            repo.url()
        )
    };
    c.apply(&yaml("echo ok"));
    let ok = c.ferry(Some("admin"), &["run", "w", "--wait"]);
    assert_eq!(ok.code, Some(0), "{ok:?}");
    assert!(ok.stdout.contains("Succeeded"), "{}", ok.stdout);
    c.apply(&yaml("exit 3"));
    let failed = c.ferry(Some("admin"), &["run", "w", "--wait"]);
    assert_eq!(failed.code, Some(1), "{failed:?}");
    assert!(failed.stdout.contains("Failed"), "{}", failed.stdout);
    let listed: Value =
        serde_json::from_str(&c.ferry_ok(Some("admin"), &["executions", "w", "-o", "json"]))
            .unwrap_or_else(|e| panic!("executions JSON: {e}"));
    let id = listed[0]["execution_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let watched = c.ferry(
        Some("admin"),
        &["status", "w", "--execution", &id, "--watch"],
    );
    assert_eq!(
        watched.code,
        Some(1),
        "status --watch on a failed run: {watched:?}"
    );
    c.apply(&yaml("sleep 600"));
    let exec = run(&c, "w");
    wait_running(&c, "w", &exec, "b");
    let mut waiter = c.cli_process(
        Some("admin"),
        &["status", "w", "--execution", &exec, "--watch"],
    );
    c.ferry_ok(
        Some("admin"),
        &[
            "stop",
            "w",
            "--execution",
            &exec,
            "--abandon",
            "--reason",
            "enough",
        ],
    );
    let code = waiter.wait().map(|s| s.code()).unwrap_or_default();
    assert_eq!(code, Some(1), "a stopped run makes --watch exit 1");
    let usage = c.ferry(Some("admin"), &["run", "nope", "--wait"]);
    assert_eq!(usage.code, Some(2), "{usage:?}");
}

#[test]
fn a_retry_and_a_disabled_transition_survive_leader_failovers() {
    ensure_busybox_image();
    let mut c = Cluster::start_members("steerha", 3, Options::default());
    let agent = c.add_agent("a", &[]);
    c.set_secret("flag", b"broken");
    let repo = repo();
    c.apply(&pipeline(
        "ha",
        &repo,
        "superseded",
        &[("flaky", "[ \"$FLAG\" = fixed ]")],
    ));
    c.ferry_ok(
        Some("admin"),
        &[
            "transition",
            "disable",
            "ha",
            "--into",
            "gate",
            "--reason",
            "freeze",
        ],
    );
    let shown = c.ferry_ok(Some("admin"), &["pipeline", "show", "ha"]);
    assert!(shown.contains("disabled:    into gate by admin"), "{shown}");
    let exec = run(&c, "ha");
    c.wait_status("ha", &exec, "the build to fail", |v| {
        status_of(v) == "Failed"
    });
    c.set_secret("flag", b"fixed");

    // The retry commits while no agent can take the action; the leader dies
    // before anything is assigned, and the new one runs it exactly once.
    c.kill_agent(&agent);
    c.ferry_ok(
        Some("admin"),
        &["retry", "ha", "--execution", &exec, "--stage", "build"],
    );
    let first = c.leader();
    c.kill_member(first);
    wait_for("a new leader", Duration::from_secs(30), || {
        let l = c.leader();
        (l != 0 && l != first).then_some(())
    });
    c.start_agent_with_token(&agent, None);
    let v = c.wait_status("ha", &exec, "the retried run to wait before gate", |v| {
        v["waiting"].as_str().is_some_and(|w| !w.is_empty())
    });
    assert_eq!(
        v["waiting"], "the transition into stage gate is disabled by admin: freeze",
        "{v:#}"
    );
    let flaky = Cluster::action(&v, "build", "flaky");
    assert_eq!(flaky["status"], "Succeeded", "{v:#}");
    assert_eq!(
        flaky["attempt"], 2,
        "one attempt before the retry, one after: {v:#}"
    );

    // The frozen transition holds across a second failover, and lets go when enabled.
    c.start_member(first);
    let second = c.leader();
    c.kill_member(second);
    wait_for("another leader", Duration::from_secs(30), || {
        let l = c.leader();
        (l != 0 && l != second).then_some(())
    });
    let v = c.status("ha", &exec);
    assert_eq!(status_of(&v), "InProgress", "{v:#}");
    assert_eq!(Cluster::action(&v, "gate", "release")["status"], "Pending");
    c.ferry_ok(
        Some("admin"),
        &["transition", "enable", "ha", "--into", "gate"],
    );
    c.wait_status("ha", &exec, "the approval after the freeze", |v| {
        Cluster::action(v, "gate", "release")["status"] == "WaitingForApproval"
    });
}

#[test]
fn two_of_three_approvals_from_distinct_people() {
    let c = Cluster::start("twoofthree");
    for who in ["ann", "bob", "carol"] {
        c.grant(who, "approver");
    }
    let repo = repo();
    c.apply(&format!(
        "name: two\nsource: {{git: {}}}\nexecution_mode: parallel\nstages:\n  - name: gate\n    actions:\n      - {{name: release, type: approval, required: 2, message: \"Ship 1.4 to production?\", url: \"https://tickets.example/42\"}}\n",
        repo.url()
    ));
    let decide = |who: &str, verb: &str, exec: &str| {
        let mut args = vec![verb, "two", "--execution", exec, "--action", "gate/release"];
        if verb == "reject" {
            args.extend(["--comment", "not today"]);
        }
        c.ferry(Some(who), &args)
    };
    let exec = run(&c, "two");
    let v = c.wait_status("two", &exec, "the approval to wait", |v| {
        Cluster::action(v, "gate", "release")["status"] == "WaitingForApproval"
    });
    let release = Cluster::action(&v, "gate", "release");
    assert_eq!(release["approval"]["required"], 2, "{v:#}");
    assert_eq!(release["approval"]["url"], "https://tickets.example/42");
    let table = c.ferry_ok(Some("ann"), &["status", "two", "--execution", &exec]);
    assert!(
        table.contains("gate/release asks: Ship 1.4 to production? https://tickets.example/42"),
        "{table}"
    );
    assert!(decide("ann", "approve", &exec).success);
    let v = c.status("two", &exec);
    assert_eq!(
        status_of(&v),
        "InProgress",
        "one approval is not enough: {v:#}"
    );
    assert_eq!(
        Cluster::action(&v, "gate", "release")["message"],
        "approved by 1 of 2; waiting for 1 more"
    );
    let twice = decide("ann", "approve", &exec);
    assert!(!twice.success);
    assert!(
        twice.stderr.contains("each person counts once"),
        "{}",
        twice.stderr
    );
    assert!(decide("bob", "approve", &exec).success);
    let v = c.wait_status("two", &exec, "the run to end", |v| {
        status_of(v) != "InProgress"
    });
    assert_eq!(status_of(&v), "Succeeded", "{v:#}");

    let exec = run(&c, "two");
    c.wait_status("two", &exec, "the approval to wait", |v| {
        Cluster::action(v, "gate", "release")["status"] == "WaitingForApproval"
    });
    assert!(decide("ann", "approve", &exec).success);
    assert!(decide("carol", "reject", &exec).success);
    let v = c.wait_status("two", &exec, "the run to end", |v| {
        status_of(v) != "InProgress"
    });
    assert_eq!(status_of(&v), "Failed", "a rejection ends it: {v:#}");
}

#[test]
fn when_skips_a_stage_on_a_branch_it_does_not_match() {
    ensure_busybox_image();
    let mut c = Cluster::start("when");
    c.add_agent("a", &[]);
    let repo = repo();
    repo.push_branch("feature/login");
    repo.push_tag("v1.0");
    c.apply(&format!(
        "name: cond\nsource: {{git: {}, branch: main}}\nexecution_mode: parallel\nstages:\n  - name: build\n    actions:\n      - {{name: c, type: build, image: ferry-local/busybox, commands: [\"true\"]}}\n  - name: release\n    when: {{branch: [main, \"release/*\"]}}\n    actions:\n      - {{name: ship, type: build, image: ferry-local/busybox, commands: [\"true\"]}}\n  - name: publish\n    actions:\n      - {{name: tagged, type: build, image: ferry-local/busybox, commands: [\"true\"], when: {{tag: \"v*\"}}}}\n",
        repo.url()
    ));
    let ended = |exec: &str| {
        c.wait_status("cond", exec, "the run to end", |v| {
            status_of(v) != "InProgress"
        })
    };
    let feature = c
        .ferry_ok(
            Some("admin"),
            &["run", "cond", "--revision", "feature/login"],
        )
        .trim()
        .to_string();
    let v = ended(&feature);
    assert_eq!(status_of(&v), "Succeeded", "{v:#}");
    assert_eq!(v["source"], "branch feature/login");
    let ship = Cluster::action(&v, "release", "ship");
    assert_eq!(ship["status"], "Skipped", "{v:#}");
    assert_eq!(
        ship["message"],
        "skipped: branch feature/login matches none of main, release/*"
    );
    assert_eq!(
        Cluster::action(&v, "publish", "tagged")["status"],
        "Skipped"
    );
    let table = c.ferry_ok(Some("admin"), &["status", "cond", "--execution", &feature]);
    assert!(table.contains("Skipped"), "{table}");

    let main = run(&c, "cond");
    let v = ended(&main);
    assert_eq!(
        Cluster::action(&v, "release", "ship")["status"],
        "Succeeded",
        "{v:#}"
    );
    let tag = c
        .ferry_ok(Some("admin"), &["run", "cond", "--revision", "v1.0"])
        .trim()
        .to_string();
    let v = ended(&tag);
    assert_eq!(v["source"], "tag v1.0", "{v:#}");
    assert_eq!(Cluster::action(&v, "release", "ship")["status"], "Skipped");
    assert_eq!(
        Cluster::action(&v, "publish", "tagged")["status"],
        "Succeeded"
    );
}

#[test]
fn queued_mode_lets_executions_into_a_stage_in_start_order() {
    ensure_busybox_image();
    let mut c = Cluster::start("queued");
    c.add_agent("a", &[]);
    c.grant("alice", "approver");
    c.set_secret("flag", b"x");
    let repo = repo();
    c.apply(&pipeline("q", &repo, "queued", &[("compile", "true")]));
    let first = run(&c, "q");
    c.wait_status("q", &first, "the first to wait for approval", |v| {
        Cluster::action(v, "gate", "release")["status"] == "WaitingForApproval"
    });
    let second = run(&c, "q");
    let third = run(&c, "q");
    for id in [&second, &third] {
        let v = c.wait_status("q", id, "a later run to wait before gate", |v| {
            v["waiting"].as_str().is_some_and(|w| !w.is_empty())
        });
        assert_eq!(status_of(&v), "InProgress", "queued, not superseded: {v:#}");
    }
    let approve = |exec: &str| {
        c.ferry_ok(
            Some("alice"),
            &[
                "approve",
                "q",
                "--execution",
                exec,
                "--action",
                "gate/release",
            ],
        );
    };
    approve(&first);
    let v = c.wait_status("q", &second, "the second to reach the approval", |v| {
        Cluster::action(v, "gate", "release")["status"] == "WaitingForApproval"
    });
    assert_eq!(v["waiting"], Value::Null, "{v:#}");
    let v = c.status("q", &third);
    assert_eq!(
        v["waiting"],
        format!("stage gate is held by execution {second}"),
        "the third still waits, behind the second: {v:#}"
    );
    approve(&second);
    c.wait_status("q", &third, "the third to reach the approval", |v| {
        Cluster::action(v, "gate", "release")["status"] == "WaitingForApproval"
    });
}
