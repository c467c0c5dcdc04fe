//! End to end: a rolling upgrade from the previous release (issue 23,
//! item 3). `scripts/previous-release` builds that release's binaries from
//! its commit (a git worktree sharing the target directory); this test starts
//! a 3-member cluster and two agents of that version, with executions
//! finished, waiting for approval and running, and a client writing and
//! reading all along through this build's CLI given every member's address.
//! Then it replaces the members one at a time with this build (the leader
//! last, after handing leadership to an upgraded member, as OPERATIONS.md's
//! runbook says), then the agents. Nothing fails or is lost: every execution
//! succeeds (builds, artifacts across agents, approvals decided after the
//! upgrade, a deployment to a real SSH host), the client saw no failed
//! request, the members' state digests agree, and the cluster version rises
//! to this one only once every member runs it. The previous release's CLI
//! still works against the upgraded cluster.
//!
//! It prints how long the upgrade took and how many requests the client
//! made and how many failed (the note of issue 23 and OPERATIONS.md quote
//! them).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferry_tests::targets::{Targets, sample_app};
use ferry_tests::{
    Cli, Cluster, Options, Repo, ensure_busybox_image, previous_release, this_minor_version,
    wait_for,
};
use serde_json::Value;

fn pipeline(repo: &Repo) -> String {
    format!(
        r#"name: ship
source: {{git: {url}, branch: main}}
# Every run goes through on its own (no run supersedes another).
execution_mode: parallel
stages:
  - name: build
    actions:
      - name: package
        type: build
        image: ferry-local/busybox
        inputs: [source]
        commands:
          - sleep 3
          - mkdir -p www && echo "app version $(cat VERSION)" > www/index.html
        outputs: {{app: [ferry-deploy.yml, bin, www]}}
  - name: test
    actions:
      - {{name: check, type: test, image: ferry-local/busybox, inputs: [app], commands: ["grep -q 'app version' www/index.html"]}}
  - name: gate
    actions:
      - {{name: release, type: approval, timeout: 1h}}
  - name: deploy
    actions:
      - {{name: web, type: deploy, inputs: [app], environment: staging}}
"#,
        url = repo.url()
    )
}

/// What the client thread did while the cluster was upgraded.
#[derive(Default)]
struct Load {
    requests: usize,
    failures: Vec<String>,
}

/// Reads and writes through this build's CLI, given every member's address,
/// until `stop`: the status of an execution, the agents, a role granted to
/// a new name each round (a write through the leader) and read back.
fn client(cli: Cli, execution: String, stop: Arc<AtomicBool>) -> Load {
    let mut load = Load::default();
    let mut round = 0u32;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let user = format!("load-{round}");
        let calls: [Vec<&str>; 4] = [
            vec!["status", "ship", "--execution", &execution, "-o", "json"],
            vec!["agents", "list", "-o", "json"],
            vec!["rbac", "grant", &user, "viewer"],
            vec!["rbac", "list", "-o", "json"],
        ];
        for args in &calls {
            let r = cli.run(args);
            load.requests += 1;
            if !r.success {
                load.failures
                    .push(format!("ferry {args:?}: {}", r.stderr.trim()));
            } else if args[0] == "rbac" && args[1] == "list" && !r.stdout.contains(&user) {
                load.failures
                    .push(format!("granted {user} viewer, then `rbac list` lacks it"));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    load
}

/// Polls `f` until it says done or `timeout` passes; its last answer.
fn wait_for_or<T>(timeout: Duration, mut f: impl FnMut() -> (bool, T)) -> (bool, T) {
    let deadline = Instant::now() + timeout;
    loop {
        let (done, last) = f();
        if done || Instant::now() > deadline {
            return (done, last);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn run(c: &Cluster) -> String {
    c.ferry_ok(Some("admin"), &["run", "ship"])
        .trim()
        .to_string()
}

fn wait_gate(c: &Cluster, execution: &str) {
    c.wait_status("ship", execution, "the approval to wait", |v| {
        Cluster::action(v, "gate", "release")["status"] == "WaitingForApproval"
    });
}

/// `ferry cluster status -o json` through member `id`, once it answers.
fn status_via(c: &Cluster, id: u64) -> Value {
    wait_for(
        &format!("member {id} to answer"),
        Duration::from_secs(30),
        || c.cluster_status(Some(id)),
    )
}

/// Replaces member `id` with this build: stopped as systemd would, started
/// on the same data dir, caught up with the others.
fn upgrade_member(c: &mut Cluster, id: u64) {
    let _ = c.stop_member(id, Duration::from_secs(30));
    c.set_member_bins(id, None);
    c.start_member(id);
    c.wait_converged(&[1, 2, 3]);
    let me = status_via(c, id)["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["id"] == id).cloned())
        .unwrap_or_default();
    assert_eq!(me["version"], env!("CARGO_PKG_VERSION"), "{me}");
}

#[test]
fn a_cluster_is_upgraded_from_the_previous_release_one_member_at_a_time_while_it_serves() {
    ensure_busybox_image();
    let previous = previous_release();
    let t = Targets::start(1);
    let repo = Repo::new();
    repo.commit(&sample_app("1"), "v1");
    let mut c = Cluster::start_members(
        "upgrade",
        3,
        Options {
            bins: Some(previous.clone()),
            ..Options::default()
        },
    );
    let old_version = status_via(&c, 1)["members"][0]["version"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_ne!(
        old_version,
        env!("CARGO_PKG_VERSION"),
        "the previous release must be another version"
    );
    let agents = [c.add_agent("a", &[]), c.add_agent("b", &[])];
    t.set_key_secrets(&c);
    t.apply_environment(&c, &t.environment("staging", "stage", &[1]));
    c.grant("alice", "approver");
    c.apply(&pipeline(&repo));

    // Before: one execution deployed, one waiting for its approval, one running.
    let deployed = run(&c);
    let s = c.approve_and_finish("ship", &deployed, ("gate", "release"), "alice");
    assert_eq!(s["status"], "Succeeded", "{s:#}");
    t.wait_serves(1, "app version 1");
    let waiting = run(&c);
    wait_gate(&c, &waiting);
    let running = run(&c);
    let cluster_version = status_via(&c, 1)["cluster_version"].clone();
    assert_ne!(cluster_version, this_minor_version(), "{cluster_version}");

    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (cli, execution, stop) = (c.cli_for("admin"), waiting.clone(), stop.clone());
        std::thread::spawn(move || client(cli, execution, stop))
    };

    // The members, followers first; then the leader, once it has handed
    // leadership to an upgraded member.
    let started = Instant::now();
    let leader = c.leader();
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    upgrade_member(&mut c, followers[0]);
    // A run started on a mixed cluster.
    let mixed = run(&c);
    upgrade_member(&mut c, followers[1]);
    // Mixed versions: the cluster version stays the lowest.
    assert_eq!(
        status_via(&c, followers[0])["cluster_version"],
        cluster_version
    );
    let to = followers[0].to_string();
    c.ferry_ok(Some("admin"), &["cluster", "transfer-leader", "--to", &to]);
    wait_for("leadership to move", Duration::from_secs(30), || {
        (c.leader() == followers[0]).then_some(())
    });
    upgrade_member(&mut c, leader);
    let members_took = started.elapsed();

    // The agents, one at a time: each finishes what it runs before it stops.
    for name in &agents {
        let _ = c.stop_agent(name, Duration::from_secs(120));
        c.set_agent_bins(name, None);
        c.start_agent_with_token(name, None);
        c.wait_connected(name);
    }
    let all_took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let load = load
        .join()
        .unwrap_or_else(|_| panic!("the client thread panicked"));
    eprintln!(
        "rolling upgrade {old_version} -> {}: 3 members in {:.1} s, with the 2 agents {:.1} s; \
         the client made {} requests, {} failed",
        env!("CARGO_PKG_VERSION"),
        members_took.as_secs_f64(),
        all_took.as_secs_f64(),
        load.requests,
        load.failures.len()
    );
    assert!(
        load.failures.is_empty(),
        "requests failed during the upgrade:\n{}",
        load.failures.join("\n")
    );

    // Every member runs this build; the cluster version follows.
    wait_for(
        "the cluster version to rise",
        Duration::from_secs(60),
        || (status_via(&c, 1)["cluster_version"] == this_minor_version()).then_some(()),
    );
    let list = c.ferry_ok(Some("admin"), &["agents", "list", "-o", "json"]);
    let list: Value = serde_json::from_str(&list).unwrap_or_default();
    for name in &agents {
        let a = list
            .as_array()
            .and_then(|l| l.iter().find(|a| a["name"] == name.as_str()).cloned())
            .unwrap_or_default();
        assert_eq!(a["version"], env!("CARGO_PKG_VERSION"), "{a}");
    }

    // Nothing was lost: the runs started before and during the upgrade
    // finish, their approvals decided now; none failed.
    for execution in [&waiting, &running, &mixed] {
        let at_gate = wait_for_or(Duration::from_secs(60), || {
            let s = c.status("ship", execution);
            let ok = Cluster::action(&s, "gate", "release")["status"] == "WaitingForApproval";
            (ok, s)
        });
        assert!(
            at_gate.0,
            "{execution} never reached its approval:\n{:#}",
            at_gate.1
        );
        let s = c.approve_and_finish("ship", execution, ("gate", "release"), "alice");
        assert_eq!(s["status"], "Succeeded", "{execution}: {s:#}");
    }
    let s = c.status("ship", &deployed);
    assert_eq!(s["status"], "Succeeded", "{s:#}");

    // The previous release's CLI works against the upgraded cluster.
    let old = c.ferry_from(&previous, Some("admin"), &["run", "ship"]);
    assert!(old.success, "{old:?}");
    let last = old.stdout.trim().to_string();
    wait_gate(&c, &last);
    let old = c.ferry_from(
        &previous,
        Some("alice"),
        &[
            "approve",
            "ship",
            "--execution",
            &last,
            "--action",
            "gate/release",
        ],
    );
    assert!(old.success, "{old:?}");
    let s = c.wait_status("ship", &last, "the last run", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(s["status"], "Succeeded", "{s:#}");
    t.wait_serves(1, "app version 1");

    c.wait_converged(&[1, 2, 3]);
}
