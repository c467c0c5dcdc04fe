//! Prometheus metrics end to end: a coordinator and two agents started with
//! `--metrics-listen` run a build on one agent and a test that fetches its
//! output on the other; then `GET /metrics` on each shows the cluster, Raft,
//! dispatch and artifact-transfer numbers, and any other path is a 404.

use std::time::Duration;

use ferry_tests::metrics::{get, must, scrape, value};
use ferry_tests::{Cluster, Options, Repo, ensure_busybox_image, free_port, wait_for};

#[test]
fn coordinator_and_agents_expose_metrics() {
    ensure_busybox_image();
    let coord = format!("127.0.0.1:{}", free_port());
    let mut c = Cluster::start_members(
        "metrics",
        1,
        Options {
            coordinator_args: vec!["--metrics-listen".into(), coord.clone()],
            ..Default::default()
        },
    );
    let a_addr = format!("127.0.0.1:{}", free_port());
    let b_addr = format!("127.0.0.1:{}", free_port());
    c.add_agent_with_args("a", &["builder"], &["--metrics-listen", &a_addr]);
    c.add_agent_with_args("b", &["tester"], &["--metrics-listen", &b_addr]);

    // Before any work: counters exist and are zero.
    let before = scrape(&a_addr);
    assert_eq!(must(&before, "ferry_agent_running_actions"), 0.0);
    assert_eq!(
        must(&before, "ferry_agent_artifact_bytes_served_total"),
        0.0
    );
    assert_eq!(
        must(&before, "ferry_agent_artifact_bytes_fetched_total"),
        0.0
    );

    let r = Repo::new();
    r.commit(&[("README", "x")], "init");
    c.apply(&format!(
        r#"name: measured
source: {{git: {}}}
stages:
  - name: build
    actions:
      - {{name: make, type: build, image: ferry-local/busybox, runs_on: [builder], commands: ["echo measured > out.txt"], outputs: {{out: [out.txt]}}}}
  - name: check
    actions:
      - {{name: use, type: test, image: ferry-local/busybox, runs_on: [tester], inputs: [out], commands: ["grep -q measured out.txt"]}}
"#,
        r.url()
    ));
    let exec = c
        .ferry_ok(Some("admin"), &["run", "measured"])
        .trim()
        .to_string();
    let v = c.wait_status("measured", &exec, "execution to end", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(v["status"], "Succeeded", "{v:#}");

    // The coordinator (the leader of a cluster of one).
    let m = wait_for(
        "the coordinator to report the execution",
        Duration::from_secs(20),
        || {
            let m = scrape(&coord);
            (value(&m, "ferry_executions{status=\"succeeded\"}") == Some(1.0)).then_some(m)
        },
    );
    assert_eq!(must(&m, "ferry_raft_is_leader"), 1.0, "{m}");
    assert!(must(&m, "ferry_raft_term") >= 1.0, "{m}");
    let commit = must(&m, "ferry_raft_commit_index");
    let applied = must(&m, "ferry_raft_applied_index");
    assert!(applied > 0.0 && applied <= commit, "{m}");
    assert_eq!(must(&m, "ferry_queue_depth"), 0.0, "{m}");
    assert_eq!(must(&m, "ferry_running_actions"), 0.0, "{m}");
    assert_eq!(must(&m, "ferry_agents{state=\"connected\"}"), 2.0, "{m}");
    assert_eq!(must(&m, "ferry_agents{state=\"disconnected\"}"), 0.0, "{m}");
    assert_eq!(must(&m, "ferry_agents{state=\"draining\"}"), 0.0, "{m}");
    assert_eq!(must(&m, "ferry_executions{status=\"failed\"}"), 0.0, "{m}");
    assert_eq!(
        must(&m, "ferry_executions{status=\"in_progress\"}"),
        0.0,
        "{m}"
    );
    // One dispatch per action.
    assert!(
        must(&m, "ferry_dispatch_latency_seconds_count") >= 2.0,
        "{m}"
    );
    assert!(must(&m, "ferry_dispatch_latency_seconds_sum") >= 0.0, "{m}");
    assert!(
        m.contains("ferry_dispatch_latency_seconds_bucket{le=\"+Inf\"}"),
        "{m}"
    );

    // The builder served its output to the tester, which fetched it.
    let a = scrape(&a_addr);
    let b = scrape(&b_addr);
    assert!(
        must(&a, "ferry_agent_artifact_bytes_served_total") > 0.0,
        "{a}"
    );
    assert!(
        must(&b, "ferry_agent_artifact_bytes_fetched_total") > 0.0,
        "{b}"
    );
    for text in [&a, &b] {
        assert_eq!(must(text, "ferry_agent_running_actions"), 0.0, "{text}");
        assert!(must(text, "ferry_agent_store_bytes") > 0.0, "{text}");
    }

    // Only /metrics is served.
    for addr in [&coord, &a_addr] {
        let (code, _, _) = get(addr, "/nope");
        assert_eq!(code, 404, "GET {addr}/nope");
    }
}
