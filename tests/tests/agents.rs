//! Agents you can trust: a lost agent's work is re-run elsewhere with exactly
//! one result recorded, a late result from the old attempt is refused, results
//! survive a coordinator restart, artifacts survive their producer, hostile
//! archives are refused, and agents can be drained, stopped gracefully and removed.
//! An agent never chooses its own labels after enrollment: a join token may
//! bind them, and only an admin changes them.

use std::time::Duration;

use ferry_tests::{Cluster, Repo, ensure_busybox_image, wait_for};
use serde_json::Value;

fn repo() -> Repo {
    let r = Repo::new();
    r.commit(&[("README", "x")], "init");
    r
}

fn one_action(name: &str, repo: &Repo, commands: &str) -> String {
    format!(
        "name: {name}\nsource: {{git: {}}}\nstages:\n  - name: s\n    actions:\n      - {{name: work, type: build, image: ferry-local/busybox, commands: {commands}}}\n",
        repo.url()
    )
}

fn outcomes(action: &Value) -> Vec<(String, String)> {
    action["attempts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                a["agent"].as_str().unwrap_or("").to_string(),
                a["outcome"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn a_lost_agent_is_replaced_and_its_late_result_refused() {
    ensure_busybox_image();
    let mut c = Cluster::start("lost");
    let a = c.add_agent("a", &[]);
    let b = c.add_agent("b", &[]);
    let r = repo();
    c.apply(&one_action("lost", &r, "[\"sleep 6\", \"echo done\"]"));
    let exec = c
        .ferry_ok(Some("admin"), &["run", "lost"])
        .trim()
        .to_string();
    let first = wait_for("the action to be assigned", Duration::from_secs(60), || {
        let v = c.status("lost", &exec);
        let agent = Cluster::action(&v, "s", "work")["agent"]
            .as_str()?
            .to_string();
        (!agent.is_empty()).then_some(agent)
    });
    let other = if first == a { b.clone() } else { a.clone() };
    // Freeze the agent: it misses its lease (3 heartbeats of 1 s) while its container runs on.
    c.signal_agent(&first, "STOP");
    let v = c.wait_status("lost", &exec, "the re-run to succeed", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(v["status"], "Succeeded", "{v:#}");
    let work = Cluster::action(&v, "s", "work");
    assert_eq!(work["attempt"], 2);
    assert_eq!(work["agent"], other.as_str());
    assert_eq!(
        outcomes(work),
        vec![
            (first.clone(), "Lost".to_string()),
            (other.clone(), "Succeeded".to_string())
        ],
        "{work:#}"
    );
    // Thaw it: its old attempt finishes and reports, and the result is refused.
    c.signal_agent(&first, "CONT");
    wait_for(
        "the late result to be refused",
        Duration::from_secs(60),
        || {
            c.agent_log(&first)
                .contains("coordinator refused a result")
                .then_some(())
        },
    );
    let v = c.status("lost", &exec);
    let work = Cluster::action(&v, "s", "work");
    assert_eq!(
        outcomes(work)
            .iter()
            .filter(|(_, o)| o == "Succeeded")
            .count(),
        1,
        "exactly one result: {work:#}"
    );
    assert_eq!(work["agent"], other.as_str());
}

#[test]
fn a_killed_agent_is_replaced() {
    ensure_busybox_image();
    let mut c = Cluster::start("killed");
    c.add_agent("a", &[]);
    c.add_agent("b", &[]);
    let r = repo();
    c.apply(&one_action("killed", &r, "[\"sleep 4\"]"));
    let exec = c
        .ferry_ok(Some("admin"), &["run", "killed"])
        .trim()
        .to_string();
    let first = wait_for("the action to be assigned", Duration::from_secs(60), || {
        let v = c.status("killed", &exec);
        let agent = Cluster::action(&v, "s", "work")["agent"]
            .as_str()?
            .to_string();
        (!agent.is_empty()).then_some(agent)
    });
    c.kill_agent(&first);
    let v = c.wait_status("killed", &exec, "the re-run to succeed", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(v["status"], "Succeeded", "{v:#}");
    let work = Cluster::action(&v, "s", "work");
    assert_eq!(
        outcomes(work).first().map(|(_, o)| o.as_str()),
        Some("Lost")
    );
    assert_eq!(
        outcomes(work)
            .iter()
            .filter(|(_, o)| o == "Succeeded")
            .count(),
        1
    );
}

#[test]
fn a_result_finished_while_the_coordinator_was_down_arrives() {
    ensure_busybox_image();
    let mut c = Cluster::start("cdown");
    c.add_agent("a", &[]);
    let r = repo();
    c.apply(&one_action(
        "cdown",
        &r,
        "[\"sleep 3\", \"echo finished-offline\"]",
    ));
    let exec = c
        .ferry_ok(Some("admin"), &["run", "cdown"])
        .trim()
        .to_string();
    wait_for("the action to run", Duration::from_secs(60), || {
        let v = c.status("cdown", &exec);
        (Cluster::action(&v, "s", "work")["agent"] != "").then_some(())
    });
    c.kill_coordinator();
    // The action ends while no coordinator runs: its result waits in the outbox.
    let name = c.agent_name("a");
    wait_for("the action to end offline", Duration::from_secs(60), || {
        c.agent_log(&name)
            .contains("attempt finished")
            .then_some(())
    });
    c.start_coordinator();
    let v = c.wait_status("cdown", &exec, "the result to arrive", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(v["status"], "Succeeded", "{v:#}");
    assert_eq!(
        Cluster::action(&v, "s", "work")["attempt"],
        1,
        "no re-run: the result arrived"
    );
    let logs = c.ferry_ok(
        Some("admin"),
        &["logs", "cdown", "--execution", &exec, "--action", "s/work"],
    );
    assert!(logs.contains("finished-offline"), "{logs}");
}

#[test]
fn artifacts_outlive_the_agent_that_made_them() {
    ensure_busybox_image();
    let mut c = Cluster::start("replica");
    let maker = c.add_agent("maker", &["builder"]);
    c.add_agent("keeper", &["spare"]);
    c.add_agent("user", &["tester"]);
    c.grant("ann", "approver");
    let r = repo();
    c.apply(&format!(
        r#"name: replica
source: {{git: {}}}
stages:
  - name: build
    actions:
      - {{name: make, type: build, image: ferry-local/busybox, runs_on: [builder], commands: ["mkdir -p out", "echo precious > out/app"], outputs: {{app: [out/]}}}}
  - name: gate
    actions:
      - {{name: go, type: approval}}
  - name: test
    actions:
      - {{name: use, type: test, image: ferry-local/busybox, runs_on: [tester], inputs: [app], commands: ["grep -q precious out/app"]}}
"#,
        r.url()
    ));
    let exec = c
        .ferry_ok(Some("admin"), &["run", "replica"])
        .trim()
        .to_string();
    wait_for(
        "the artifact to be replicated",
        Duration::from_secs(60),
        || {
            let v = c.status("replica", &exec);
            let holders = Cluster::action(&v, "build", "make")["outputs"][0]["holders"]
                .as_array()?
                .len();
            (holders >= 2).then_some(())
        },
    );
    c.kill_agent(&maker);
    c.ferry_ok(
        Some("ann"),
        &[
            "approve",
            "replica",
            "--execution",
            &exec,
            "--action",
            "gate/go",
        ],
    );
    let v = c.wait_status("replica", &exec, "the consumer to finish", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(v["status"], "Succeeded", "{v:#}");
    // Download it with the CLI, from the replica, digest checked.
    let list = c.ferry_ok(
        Some("admin"),
        &[
            "artifacts",
            "list",
            "replica",
            "--execution",
            &exec,
            "-o",
            "json",
        ],
    );
    let entries: Value = serde_json::from_str(&list).unwrap_or_default();
    let digest = entries
        .as_array()
        .and_then(|a| a.iter().find(|e| e["name"] == "app"))
        .and_then(|e| e["digest"].as_str())
        .unwrap_or_else(|| panic!("no app artifact listed: {list}"))
        .to_string();
    let out = c.path().join("app.tar");
    c.ferry_ok(
        Some("admin"),
        &[
            "artifacts",
            "get",
            &digest,
            "--out",
            &out.display().to_string(),
        ],
    );
    let bytes = std::fs::read(&out).unwrap_or_default();
    assert!(
        bytes.windows(8).any(|w| w == b"precious"),
        "the tar holds out/app"
    );
}

#[test]
fn a_hostile_archive_fails_the_action_and_writes_nothing_outside() {
    ensure_busybox_image();
    let mut c = Cluster::start("hostile");
    c.add_agent("a", &[]);
    let r = repo();
    c.apply(&format!(
        r#"name: hostile
source: {{git: {}}}
stages:
  - name: build
    actions:
      - {{name: make, type: build, image: ferry-local/busybox, commands: ["mkdir -p out", "ln -s /etc/passwd out/evil"], outputs: {{app: [out/]}}}}
  - name: test
    actions:
      - {{name: use, type: test, image: ferry-local/busybox, inputs: [app], commands: ["echo should-not-run > /tmp/ran"]}}
"#,
        r.url()
    ));
    let exec = c
        .ferry_ok(Some("admin"), &["run", "hostile"])
        .trim()
        .to_string();
    let v = c.wait_status("hostile", &exec, "the execution to end", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(v["status"], "Failed");
    let used = Cluster::action(&v, "test", "use");
    assert_eq!(used["status"], "Failed");
    let msg = used["message"].as_str().unwrap_or("");
    assert!(msg.contains("hostile") && msg.contains("out/evil"), "{msg}");
    let logs = c.ferry_ok(
        Some("admin"),
        &[
            "logs",
            "hostile",
            "--execution",
            &exec,
            "--action",
            "test/use",
        ],
    );
    assert!(!logs.contains("should-not-run"), "no command ran: {logs}");
}

#[test]
fn drained_agents_take_no_work_and_removed_agents_are_refused() {
    ensure_busybox_image();
    let mut c = Cluster::start("ops");
    let a = c.add_agent("a", &[]);
    let b = c.add_agent("b", &[]);
    let r = repo();
    c.apply(&one_action("ops", &r, "[\"true\"]"));
    c.ferry_ok(Some("admin"), &["agents", "drain", &a]);
    for _ in 0..3 {
        let exec = c
            .ferry_ok(Some("admin"), &["run", "ops"])
            .trim()
            .to_string();
        let v = c.wait_status("ops", &exec, "the execution to end", |v| {
            v["status"] != "InProgress"
        });
        assert_eq!(
            Cluster::action(&v, "s", "work")["agent"],
            b.as_str(),
            "a draining agent gets nothing"
        );
    }
    let list = c.ferry_ok(Some("admin"), &["agents", "list", "-o", "json"]);
    assert!(list.contains("Draining"), "{list}");
    c.ferry_ok(Some("admin"), &["agents", "drain", &a, "--undo"]);
    c.ferry_ok(Some("admin"), &["agents", "remove", &b]);
    let list = c.ferry_ok(Some("admin"), &["agents", "list", "-o", "json"]);
    assert!(!list.contains(&format!("\"{b}\"")), "{list}");
    wait_for(
        "the removed agent to be refused",
        Duration::from_secs(30),
        || {
            c.agent_log(&b)
                .contains("not enrolled in this cluster")
                .then_some(())
        },
    );
    // Work now goes to the agent back in service.
    let exec = c
        .ferry_ok(Some("admin"), &["run", "ops"])
        .trim()
        .to_string();
    let v = c.wait_status("ops", &exec, "the execution to end", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(Cluster::action(&v, "s", "work")["agent"], a.as_str());
}

#[test]
fn sigterm_finishes_running_work_before_exiting() {
    ensure_busybox_image();
    let mut c = Cluster::start("term");
    let a = c.add_agent("a", &[]);
    let r = repo();
    c.apply(&one_action(
        "term",
        &r,
        "[\"sleep 3\", \"echo drained-ok\"]",
    ));
    let exec = c
        .ferry_ok(Some("admin"), &["run", "term"])
        .trim()
        .to_string();
    wait_for("the action to run", Duration::from_secs(60), || {
        let v = c.status("term", &exec);
        (Cluster::action(&v, "s", "work")["agent"] != "").then_some(())
    });
    c.signal_agent(&a, "TERM");
    let status = wait_for("the agent to exit", Duration::from_secs(60), || {
        c.agent_exited(&a)
    });
    assert!(status.success(), "a drained agent exits cleanly");
    let v = c.wait_status("term", &exec, "the execution to end", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(v["status"], "Succeeded", "{v:#}");
    assert_eq!(Cluster::action(&v, "s", "work")["attempt"], 1);
}

#[test]
fn resource_limits_reach_the_container() {
    ensure_busybox_image();
    let mut c = Cluster::start("limits");
    c.add_agent("a", &[]);
    let r = repo();
    c.apply(&format!(
        r#"name: limits
source: {{git: {}}}
stages:
  - name: s
    actions:
      - name: work
        type: build
        image: ferry-local/busybox
        resources: {{cpus: 1.5, memory: 512m}}
        commands:
          - "echo mem=$(cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes)"
          - "echo cpu=$(cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us)"
"#,
        r.url()
    ));
    let exec = c
        .ferry_ok(Some("admin"), &["run", "limits"])
        .trim()
        .to_string();
    let v = c.wait_status("limits", &exec, "the execution to end", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(v["status"], "Succeeded", "{v:#}");
    let logs = c.ferry_ok(
        Some("admin"),
        &["logs", "limits", "--execution", &exec, "--action", "s/work"],
    );
    assert!(logs.contains("mem=536870912"), "{logs}");
    assert!(logs.contains("cpu=150000"), "{logs}");
}

#[test]
fn a_second_sigterm_cancels_and_the_work_moves_elsewhere() {
    ensure_busybox_image();
    let mut c = Cluster::start("term2");
    let a = c.add_agent("a", &[]);
    let r = repo();
    c.apply(&one_action("term2", &r, "[\"sleep 6\", \"echo finished\"]"));
    // Steer the first attempt to `a`: `b` is drained while it is scheduled.
    let b = c.add_agent("b", &[]);
    c.ferry_ok(Some("admin"), &["agents", "drain", &b]);
    let exec = c
        .ferry_ok(Some("admin"), &["run", "term2"])
        .trim()
        .to_string();
    wait_for("the action to run on a", Duration::from_secs(60), || {
        let v = c.status("term2", &exec);
        (Cluster::action(&v, "s", "work")["agent"] == a.as_str()).then_some(())
    });
    c.ferry_ok(Some("admin"), &["agents", "drain", &b, "--undo"]);
    c.signal_agent(&a, "TERM");
    wait_for(
        "the first SIGTERM to start a drain",
        Duration::from_secs(10),
        || c.agent_log(&a).contains("SIGTERM: draining").then_some(()),
    );
    c.signal_agent(&a, "TERM");
    let status = wait_for("the agent to exit", Duration::from_secs(30), || {
        c.agent_exited(&a)
    });
    assert!(status.success());
    let v = c.wait_status("term2", &exec, "the re-run to finish", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(v["status"], "Succeeded", "{v:#}");
    let work = Cluster::action(&v, "s", "work");
    assert_eq!(
        outcomes(work),
        vec![
            (a.clone(), "Lost".to_string()),
            (b.clone(), "Succeeded".to_string())
        ],
        "{work:#}"
    );
}

/// A `ferry-agent` this test starts itself (with its own token and
/// `--labels`), killed when dropped.
struct OwnAgent(std::process::Child);

impl Drop for OwnAgent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn own_agent(c: &Cluster, name: &str, token: Option<&str>, labels: &str) -> OwnAgent {
    let state = c.path().join(format!("own-{name}"));
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(c.path().join(format!("own-{name}.log")))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = std::process::Command::new(ferry_tests::bin("ferry-agent"));
    cmd.args(["--coordinator", &c.addr, "--name", name, "--labels", labels])
        .args(["--advertise", "127.0.0.1:0"])
        .arg("--state-dir")
        .arg(&state)
        .arg("--ca")
        .arg(c.tls.join("ca.pem"))
        .stdout(std::process::Stdio::null())
        .stderr(log);
    if let Some(t) = token {
        cmd.args(["--join-token", t]);
    }
    OwnAgent(
        cmd.spawn()
            .unwrap_or_else(|e| panic!("cannot start ferry-agent: {e}")),
    )
}

fn own_log(c: &Cluster, name: &str) -> String {
    std::fs::read_to_string(c.path().join(format!("own-{name}.log"))).unwrap_or_default()
}

/// `ferry agents list -o json`'s entry for `name`.
fn listed(c: &Cluster, name: &str) -> Option<Value> {
    let list = c.ferry_ok(Some("admin"), &["agents", "list", "-o", "json"]);
    let v: Value = serde_json::from_str(&list).ok()?;
    v.as_array()?.iter().find(|a| a["name"] == name).cloned()
}

/// A rogue agent used to take the `prod-deploy` label by asking for it at
/// registration, and with it the work (and artifacts) meant for that label.
/// Labels are now bound at enrollment — a token made with `--labels`
/// refuses others — and only an admin changes them: a registration asking
/// for others keeps the bound ones, and the agent is told why.
#[test]
fn an_agent_never_gains_a_label_by_asking() {
    ensure_busybox_image();
    let c = Cluster::start("labels");
    let token = c
        .ferry_ok(
            Some("admin"),
            &[
                "token", "create", "--ttl", "10m", "--uses", "2", "--labels", "build",
            ],
        )
        .trim()
        .to_string();
    // Asking for a label the token does not grant: refused at enrollment.
    let greedy = c.path().join("greedy");
    let out = std::process::Command::new(ferry_tests::bin("ferry-agent"))
        .args([
            "--coordinator",
            &c.addr,
            "--name",
            "greedy",
            "--enroll-only",
        ])
        .args(["--join-token", &token, "--labels", "build,prod-deploy"])
        .arg("--state-dir")
        .arg(&greedy)
        .arg("--ca")
        .arg(c.tls.join("ca.pem"))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("does not grant") && err.contains("prod-deploy"),
        "{err}"
    );
    assert!(listed(&c, "greedy").is_none());

    // Enrolled with the token's labels; later started asking for more.
    let first = own_agent(&c, "rogue", Some(&token), "build");
    wait_for("rogue to connect", Duration::from_secs(30), || {
        listed(&c, "rogue").filter(|a| a["connected"] == true)
    });
    drop(first);
    let _rogue = own_agent(&c, "rogue", None, "build,prod-deploy");
    wait_for("the agent to be told", Duration::from_secs(30), || {
        own_log(&c, "rogue")
            .contains("differ from the labels agent `rogue` is bound to")
            .then_some(())
    });
    let a = wait_for("rogue to reconnect", Duration::from_secs(30), || {
        listed(&c, "rogue").filter(|a| a["connected"] == true)
    });
    assert_eq!(a["labels"], serde_json::json!(["build"]), "{a}");
    assert_eq!(a["holds_cluster_key"], false, "{a}");

    // Work for `prod-deploy` finds no agent...
    let r = repo();
    c.apply(&format!(
        "name: deploy\nsource: {{git: {}}}\nstages:\n  - name: s\n    actions:\n      - {{name: work, type: build, image: ferry-local/busybox, runs_on: [prod-deploy], commands: [\"true\"]}}\n",
        r.url()
    ));
    let exec = c
        .ferry_ok(Some("admin"), &["run", "deploy"])
        .trim()
        .to_string();
    std::thread::sleep(Duration::from_secs(3));
    let v = c.status("deploy", &exec);
    assert_eq!(
        Cluster::action(&v, "s", "work")["agent"]
            .as_str()
            .unwrap_or(""),
        "",
        "an agent got prod-deploy work by asking: {v}"
    );
    // ... only an admin gives an agent a label.
    c.grant("olly", "operator");
    let refused = c.ferry(
        Some("olly"),
        &["agents", "label", "rogue", "--add", "prod-deploy"],
    );
    assert!(!refused.success, "{}", refused.stdout);
    assert!(refused.stderr.contains("admin"), "{}", refused.stderr);
    let bad = c.ferry(
        Some("admin"),
        &["agents", "label", "rogue", "--add", "prod deploy"],
    );
    assert!(
        !bad.success && bad.stderr.contains("whitespace"),
        "{}",
        bad.stderr
    );
    let out = c.ferry_ok(
        Some("admin"),
        &[
            "agents",
            "label",
            "rogue",
            "--add",
            "prod-deploy",
            "--remove",
            "build",
        ],
    );
    assert!(out.contains("prod-deploy"), "{out}");
    let v = c.wait_status("deploy", &exec, "the execution to end", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(v["status"], "Succeeded", "{v}");
    assert_eq!(Cluster::action(&v, "s", "work")["agent"], "rogue");
    let a = listed(&c, "rogue").unwrap_or_default();
    assert_eq!(a["labels"], serde_json::json!(["prod-deploy"]), "{a}");
}
