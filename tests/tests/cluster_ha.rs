//! A highly available coordinator: three real `ferry-coordinator` processes
//! that lose no work when the leader is killed, partitioned, restarted in
//! turn, or when a follower falls behind the compacted log; and membership
//! changes that a removed member obeys.

use std::time::Duration;

use ferry_tests::{Cluster, Options, Repo, ensure_busybox_image, wait_for};
use serde_json::Value;

fn work_pipeline(name: &str, repo: &Repo, gated: bool) -> String {
    let gate = if gated {
        "  - name: gate\n    actions:\n      - {name: release, type: approval}\n"
    } else {
        ""
    };
    format!(
        r#"name: {name}
source: {{git: {url}}}
# Several runs at once, each on its own: these tests are about failover.
execution_mode: parallel
stages:
  - name: build
    actions:
      - {{name: compile, type: build, image: ferry-local/busybox, commands: ["sleep 2", "mkdir -p out", "echo built > out/app"], outputs: {{app: [out/]}}}}
  - name: test
    actions:
      - {{name: check, type: test, image: ferry-local/busybox, inputs: [app], commands: ["grep -q built out/app"]}}
{gate}"#,
        url = repo.url()
    )
}

fn attempts_of(v: &Value) -> Vec<u64> {
    v["stages"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["actions"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["kind"] != "approval")
        .map(|a| a["attempt"].as_u64().unwrap_or(0))
        .collect()
}

#[test]
fn killing_the_leader_loses_no_work() {
    ensure_busybox_image();
    let mut c = Cluster::start_members("hakill", 3, Options::default());
    c.add_agent("a", &[]);
    c.add_agent("b", &[]);
    c.grant("ann", "approver");
    let repo = Repo::new();
    repo.commit(&[("README", "x")], "x");
    c.apply(&work_pipeline("work", &repo, false));
    c.apply(&work_pipeline("gated", &repo, true));
    let runs: Vec<String> = (0..3)
        .map(|_| {
            c.ferry_ok(Some("admin"), &["run", "work"])
                .trim()
                .to_string()
        })
        .collect();
    let gated = c
        .ferry_ok(Some("admin"), &["run", "gated"])
        .trim()
        .to_string();
    // Kill the leader while builds run.
    wait_for("builds to be running", Duration::from_secs(60), || {
        let v = c.status("work", &runs[0]);
        (Cluster::action(&v, "build", "compile")["agent"] != "").then_some(())
    });
    let old = c.leader();
    c.kill_member(old);
    let new = wait_for("a new leader", Duration::from_secs(30), || {
        let l = c.leader();
        (l != old).then_some(l)
    });
    assert_ne!(new, old);
    for id in &runs {
        let v = c.wait_status("work", id, "execution to finish after failover", |v| {
            v["status"] != "InProgress"
        });
        assert_eq!(v["status"], "Succeeded", "{v:#}");
        assert_eq!(
            attempts_of(&v),
            vec![1, 1],
            "each action ran exactly once: {v:#}"
        );
    }
    let v = c.wait_status("gated", &gated, "approval to wait", |v| {
        Cluster::action(v, "gate", "release")["status"] == "WaitingForApproval"
    });
    assert_eq!(attempts_of(&v), vec![1, 1]);
    c.ferry_ok(
        Some("ann"),
        &[
            "approve",
            "gated",
            "--execution",
            &gated,
            "--action",
            "gate/release",
        ],
    );
    let v = c.wait_status("gated", &gated, "gated to finish", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(v["status"], "Succeeded");
    // The killed member comes back and converges.
    c.start_member(old);
    c.wait_converged(&[1, 2, 3]);
}

#[test]
fn a_partitioned_leader_commits_nothing_and_converges_after_healing() {
    let c = Cluster::start_members(
        "hapart",
        3,
        Options {
            namespaces: true,
            ..Default::default()
        },
    );
    let old = c.leader();
    c.grant("before", "viewer");
    // Let everything proposed so far (late bootstrap proposals included) be
    // acknowledged everywhere, so only what comes after the cut is measured.
    c.wait_converged(&[1, 2, 3]);
    let before = c
        .cluster_status(Some(old))
        .and_then(|v| v["commit_index"].as_u64())
        .unwrap_or_default();
    c.partition(old);
    let others: Vec<u64> = (1..=3).filter(|i| *i != old).collect();
    let new = wait_for(
        "the majority to elect a leader",
        Duration::from_secs(30),
        || {
            let v = c.cluster_status(Some(others[0]))?;
            let l = v["leader_id"].as_u64()?;
            (l != 0 && l != old).then_some(l)
        },
    );
    // The majority keeps working.
    c.grant("during", "viewer");
    c.ferry_ok(Some("admin"), &["token", "create"]);
    // The old leader, asked directly inside its namespace, cannot commit.
    let r = c.ferry_inside(old, &["rbac", "grant", "isolated", "viewer"]);
    assert!(
        !r.success,
        "a write on the isolated old leader must fail: {}",
        r.stdout
    );
    let inside = c.ferry_inside(old, &["cluster", "status", "-o", "json"]);
    let v: Value = serde_json::from_str(&inside.stdout).unwrap_or_default();
    assert_eq!(
        v["commit_index"].as_u64(),
        Some(before),
        "the old leader committed nothing new: {v}"
    );
    // Cut off, it stops leading and says so to standard health probes.
    wait_for(
        "the isolated member to report NOT_SERVING",
        Duration::from_secs(30),
        || {
            let r = c.ferry_inside(old, &["cluster", "health", "-o", "json"]);
            (!r.success && r.stdout.contains("NOT_SERVING")).then_some(())
        },
    );
    c.heal(old);
    c.wait_converged(&[1, 2, 3]);
    wait_for(
        "every member to report SERVING again",
        Duration::from_secs(30),
        || c.ferry(None, &["cluster", "health"]).success.then_some(()),
    );
    let list = c.ferry_ok(Some("admin"), &["rbac", "list", "-o", "json"]);
    assert!(
        list.contains("during") && !list.contains("isolated"),
        "{list}"
    );
    assert_ne!(new, 0);
}

#[test]
fn a_follower_behind_the_compacted_log_catches_up_by_snapshot() {
    let mut c = Cluster::start_members(
        "hasnap",
        3,
        Options {
            coordinator_args: vec!["--snapshot-every".into(), "10".into()],
            ..Default::default()
        },
    );
    let leader = c.leader();
    let follower = (1..=3).find(|i| *i != leader).unwrap_or(1);
    c.kill_member(follower);
    for i in 0..40 {
        c.grant(&format!("user{i}"), "viewer");
    }
    c.start_member(follower);
    c.wait_converged(&[1, 2, 3]);
    let log = std::fs::read_to_string(c.path().join(format!("coordinator-{follower}.log")))
        .unwrap_or_default();
    assert!(
        log.contains("installed a snapshot from the leader"),
        "the follower caught up by snapshot"
    );
}

#[test]
fn a_rolling_restart_under_load_fails_no_execution() {
    ensure_busybox_image();
    let mut c = Cluster::start_members("haroll", 3, Options::default());
    c.add_agent("a", &[]);
    let repo = Repo::new();
    repo.commit(&[("README", "x")], "x");
    c.apply(&work_pipeline("roll", &repo, false));
    let mut runs = Vec::new();
    for id in 1..=3 {
        runs.push(
            c.ferry_ok(Some("admin"), &["run", "roll"])
                .trim()
                .to_string(),
        );
        c.kill_member(id);
        runs.push(
            c.ferry_ok(Some("admin"), &["run", "roll"])
                .trim()
                .to_string(),
        );
        c.start_member(id);
        c.wait_converged(&[1, 2, 3]);
    }
    for id in &runs {
        let v = c.wait_status("roll", id, "execution to finish", |v| {
            v["status"] != "InProgress"
        });
        assert_eq!(v["status"], "Succeeded", "{v:#}");
        assert_eq!(attempts_of(&v), vec![1, 1], "{v:#}");
    }
}

#[test]
fn members_are_added_removed_and_leadership_moves() {
    let mut c = Cluster::start_members("hamember", 3, Options::default());
    // A member that is not an address, or does not answer as itself, is
    // refused: as a voter it would cost the cluster its quorum.
    let r = c.ferry(
        Some("admin"),
        &["cluster", "add", "--id", "5", "--address", "not an address"],
    );
    assert!(!r.success && r.stderr.contains("HOST:PORT"), "{}", r.stderr);
    let r = c.ferry(
        Some("admin"),
        &["cluster", "add", "--id", "5", "--address", "127.0.0.1:1"],
    );
    assert!(
        !r.success && r.stderr.contains("does not answer"),
        "{}",
        r.stderr
    );
    c.grant("still-electing", "viewer");
    let addr = c.spawn_joiner(4);
    c.ferry_ok(
        Some("admin"),
        &["cluster", "add", "--id", "4", "--address", &addr],
    );
    c.wait_converged(&[1, 2, 3, 4]);
    c.ferry_ok(Some("admin"), &["cluster", "transfer-leader", "--to", "4"]);
    assert_eq!(c.leader(), 4);
    // Ask a member that stays: member 1 stops serving as soon as the change commits.
    let via = c.member_addr(2);
    c.ferry_ok(
        Some("admin"),
        &["--coordinator", &via, "cluster", "remove", "--id", "1"],
    );
    wait_for(
        "the removed member to stop serving",
        Duration::from_secs(20),
        || c.member_exited(1),
    );
    let v = c.cluster_status(Some(4)).unwrap_or_default();
    let ids: Vec<u64> = v["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["id"].as_u64())
        .collect();
    assert_eq!(ids, vec![2, 3, 4]);
    c.grant("after", "viewer");
    c.wait_converged(&[2, 3, 4]);
}

#[test]
fn a_member_whose_disk_fills_stops_serving_and_the_rest_go_on() {
    let mut c = Cluster::start_members(
        "hadisk",
        3,
        Options {
            small_disk: Some((3, 8)),
            ..Default::default()
        },
    );
    // Fill member 3's disk to the last byte.
    let filler = c.data_dir(3).join("filler");
    {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&filler).unwrap_or_else(|e| panic!("{e}"));
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let one = [0u8; 1];
        while f.write_all(&one).is_ok() {}
        let _ = f.sync_all();
    }
    // Keep writing through the healthy majority until member 3 gives up.
    let mut i = 0;
    let status = wait_for(
        "member 3 to stop on a failed write",
        Duration::from_secs(120),
        || {
            i += 1;
            let via = c.member_addr(if c.leader() == 3 { 1 } else { c.leader() });
            let _ = c.ferry(
                Some("admin"),
                &[
                    "--coordinator",
                    &via,
                    "rbac",
                    "grant",
                    &format!("u{i}"),
                    "viewer",
                ],
            );
            c.member_exited(3)
        },
    );
    assert!(!status.success(), "it exits with an error, not silently");
    let log = std::fs::read_to_string(c.path().join("coordinator-3.log")).unwrap_or_default();
    assert!(log.contains("Raft storage failed"), "{log}");
    // The other two still commit.
    let via = c.member_addr(1);
    c.ferry_ok(
        Some("admin"),
        &[
            "--coordinator",
            &via,
            "rbac",
            "grant",
            "still-working",
            "viewer",
        ],
    );
    c.wait_converged(&[1, 2]);
}
