//! How actions run: order within a stage, timeouts that kill the container,
//! rejections, and an agent that restarts without its join token.

use std::time::Duration;

use ferry_tests::{Cluster, Repo, ensure_busybox_image};

fn repo() -> Repo {
    let r = Repo::new();
    r.commit(&[("README", "x")], "init");
    r
}

#[test]
fn run_order_groups_run_one_after_another() {
    ensure_busybox_image();
    let mut c = Cluster::start("order");
    c.add_agent("a", &[]);
    let r = repo();
    c.apply(&format!(
        r#"name: order
source: {{git: {}}}
stages:
  - name: s
    actions:
      - {{name: first, type: build, image: ferry-local/busybox, commands: ["sleep 1", "echo y > one.txt"], outputs: {{one: [one.txt]}}}}
      - {{name: also-first, type: build, image: ferry-local/busybox, commands: ["echo x > one.txt"], outputs: {{two: [one.txt]}}}}
      - {{name: second, type: test, image: ferry-local/busybox, run_order: 2, inputs: [two], commands: ["cat one.txt"]}}
"#,
        r.url()
    ));
    let exec = c
        .ferry_ok(Some("admin"), &["run", "order"])
        .trim()
        .to_string();
    let v = c.wait_status("order", &exec, "execution to end", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(v["status"], "Succeeded", "{v:#}");
    let first_done = [
        Cluster::action(&v, "s", "first"),
        Cluster::action(&v, "s", "also-first"),
    ]
    .iter()
    .filter_map(|a| a["finished_at"].as_str().map(String::from))
    .max()
    .unwrap_or_default();
    let second_started = Cluster::action(&v, "s", "second")["started_at"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        second_started >= first_done,
        "run_order 2 started at {second_started}, before group 1 ended at {first_done}"
    );
}

#[test]
fn timeout_kills_and_removes_the_container() {
    ensure_busybox_image();
    let mut c = Cluster::start("tmo");
    c.add_agent("a", &[]);
    let r = repo();
    c.apply(&format!(
        "name: slow\nsource: {{git: {}}}\nstages:\n  - name: s\n    actions:\n      - {{name: sleepy, type: build, image: ferry-local/busybox, commands: [\"echo started\", \"sleep 120\"], timeout: 3s}}\n",
        r.url()
    ));
    let exec = c
        .ferry_ok(Some("admin"), &["run", "slow"])
        .trim()
        .to_string();
    let v = c.wait_status("slow", &exec, "execution to end", |v| {
        v["status"] != "InProgress"
    });
    let a = Cluster::action(&v, "s", "sleepy");
    assert_eq!(a["status"], "Failed");
    assert!(
        a["message"].as_str().unwrap_or("").contains("timed out"),
        "{a}"
    );
    let logs = c.ferry_ok(
        Some("admin"),
        &["logs", "slow", "--execution", &exec, "--action", "s/sleepy"],
    );
    assert!(logs.contains("started"), "{logs}");
    ferry_tests::wait_for(
        "the container to be removed",
        Duration::from_secs(20),
        || c.leftover_containers().is_empty().then_some(()),
    );
}

#[test]
fn rejection_fails_the_execution_with_who_and_why() {
    let c = Cluster::start("reject");
    c.grant("ann", "approver");
    let r = repo();
    c.apply(&format!(
        "name: gated\nsource: {{git: {}}}\nstages:\n  - name: gate\n    actions:\n      - {{name: ok, type: approval}}\n  - name: after\n    actions:\n      - {{name: never, type: build, image: ferry-local/busybox, commands: [true]}}\n",
        r.url()
    ));
    let exec = c
        .ferry_ok(Some("admin"), &["run", "gated"])
        .trim()
        .to_string();
    c.wait_status("gated", &exec, "approval", |v| {
        Cluster::action(v, "gate", "ok")["status"] == "WaitingForApproval"
    });
    let no_comment = c.ferry(
        Some("ann"),
        &[
            "reject",
            "gated",
            "--execution",
            &exec,
            "--action",
            "gate/ok",
        ],
    );
    assert!(!no_comment.success, "a rejection needs a comment");
    let wrong = c.ferry(
        Some("ann"),
        &[
            "approve",
            "gated",
            "--execution",
            &exec,
            "--action",
            "gate/nope",
        ],
    );
    assert!(
        !wrong.success && wrong.stderr.contains("gate/ok"),
        "unknown action names the known ones: {}",
        wrong.stderr
    );
    c.ferry_ok(
        Some("ann"),
        &[
            "reject",
            "gated",
            "--execution",
            &exec,
            "--action",
            "gate/ok",
            "--comment",
            "not today",
        ],
    );
    let v = c.status("gated", &exec);
    assert_eq!(v["status"], "Failed");
    let ok = Cluster::action(&v, "gate", "ok");
    assert_eq!(ok["status"], "Failed");
    assert_eq!(ok["approvals"][0]["by"], "ann");
    assert_eq!(ok["approvals"][0]["decision"], "Rejected");
    assert_eq!(ok["approvals"][0]["comment"], "not today");
    assert_eq!(Cluster::action(&v, "after", "never")["status"], "Pending");
    // A decided approval cannot be decided again.
    let again = c.ferry(
        Some("ann"),
        &[
            "approve",
            "gated",
            "--execution",
            &exec,
            "--action",
            "gate/ok",
        ],
    );
    assert!(!again.success);
}

#[test]
fn an_enrolled_agent_restarts_without_a_token_and_keeps_working() {
    ensure_busybox_image();
    let mut c = Cluster::start("restart");
    let name = c.add_agent("a", &[]);
    c.restart_agent(&name);
    let r = repo();
    c.apply(&format!(
        "name: after-restart\nsource: {{git: {}}}\nstages:\n  - name: s\n    actions:\n      - {{name: hi, type: build, image: ferry-local/busybox, commands: [\"echo hi\"]}}\n",
        r.url()
    ));
    let exec = c
        .ferry_ok(Some("admin"), &["run", "after-restart"])
        .trim()
        .to_string();
    let v = c.wait_status("after-restart", &exec, "execution to end", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(v["status"], "Succeeded");
    assert_eq!(Cluster::action(&v, "s", "hi")["agent"], name.as_str());
}

/// Peak resident memory of a process, in KiB (`VmHWM`).
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// An output is streamed to the store, never held whole in the agent's
/// memory: a 384 MiB output leaves the agent's peak RSS far below its size.
#[test]
fn large_outputs_are_streamed_not_held_in_memory() {
    ensure_busybox_image();
    let mut c = Cluster::start("bigout");
    let a = c.add_agent("a", &[]);
    let r = repo();
    c.apply(&format!(
        r#"name: bigout
source: {{git: {}}}
stages:
  - name: s
    actions:
      - {{name: make, type: build, image: ferry-local/busybox, commands: ["dd if=/dev/zero of=big.bin bs=1048576 count=384"], outputs: {{big: [big.bin]}}, resources: {{memory: 1g}}}}
"#,
        r.url()
    ));
    let exec = c
        .ferry_ok(Some("admin"), &["run", "bigout"])
        .trim()
        .to_string();
    let v = c.wait_status("bigout", &exec, "execution to end", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(v["status"], "Succeeded", "{v:#}");
    let pid = c
        .agent_pid(&a)
        .unwrap_or_else(|| panic!("agent {a} is not running"));
    let peak_mib = peak_rss_kib(pid) / 1024;
    assert!(
        peak_mib < 192,
        "the agent's peak RSS was {peak_mib} MiB for a 384 MiB output: it was held in memory"
    );
}

/// A repository of a few MiB can hold hundreds of MiB of zeros: its
/// `source` input streams from `git archive` to the store and from there
/// into the container, never whole in the agent's memory; and past the
/// agent's `--max-artifact-mb` the action fails saying so.
#[test]
fn a_large_source_is_streamed_and_bounded() {
    ensure_busybox_image();
    let mut c = Cluster::start("bigsrc");
    let a = c.add_agent("a", &["roomy"]);
    c.add_agent_with_args("small", &["small"], &["--max-artifact-mb", "64"]);
    let r = Repo::new();
    let zeros = vec![0u8; 256 * 1024 * 1024];
    r.commit_bytes(&[("zeros.bin", &zeros)], "zeros");
    drop(zeros);
    c.apply(&format!(
        r#"name: bigsrc
source: {{git: {}}}
stages:
  - name: s
    actions:
      - {{name: size, type: build, image: ferry-local/busybox, runs_on: [roomy], inputs: [source], commands: ["test $(wc -c < zeros.bin) -eq 268435456"]}}
  - name: t
    actions:
      - {{name: small, type: build, image: ferry-local/busybox, runs_on: [small], inputs: [source], commands: ["true"]}}
"#,
        r.url()
    ));
    let exec = c
        .ferry_ok(Some("admin"), &["run", "bigsrc"])
        .trim()
        .to_string();
    let v = c.wait_status("bigsrc", &exec, "execution to end", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(
        Cluster::action(&v, "s", "size")["status"],
        "Succeeded",
        "{v:#}"
    );
    let pid = c
        .agent_pid(&a)
        .unwrap_or_else(|| panic!("agent {a} is not running"));
    let peak_mib = peak_rss_kib(pid) / 1024;
    assert!(
        peak_mib < 128,
        "the agent's peak RSS was {peak_mib} MiB for a 256 MiB source: it was held in memory"
    );
    let small = Cluster::action(&v, "t", "small");
    assert_eq!(small["status"], "Failed", "{v:#}");
    assert!(
        small["message"]
            .as_str()
            .is_some_and(|m| m.contains("larger than this agent's artifact size limit of 64 MiB")),
        "{v:#}"
    );
}
