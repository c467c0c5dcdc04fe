//! Build caches end to end on real agents with Docker: the first run of a
//! key is cold and saves its paths after success; the next run with the
//! same `#{hash_files: ...}` restores them; an action on another agent gets
//! the entry from the agent that saved it (peer transfer); a run of another
//! branch reads the default branch's entry through `restore_keys` and saves
//! to its own scope, which runs of the default branch never read; `ferry
//! cache list` shows the entries and `ferry cache rm` removes them, and the
//! agent holding one deletes its blob.

use ferry_tests::{Cluster, Repo, ensure_busybox_image};
use serde_json::Value;

fn pipeline(git: &str) -> String {
    format!(
        r##"name: cached
execution_mode: parallel
source: {{git: {git}, branch: main}}
stages:
  - name: build
    actions:
      - name: compile
        type: build
        image: ferry-local/busybox
        runs_on: [one]
        inputs: [source]
        commands:
          - 'if [ -f cache/stamp ]; then echo "warm from $(cat cache/stamp)"; else echo "cold run"; fi'
          - 'mkdir -p cache && echo "$FERRY_EXECUTION_ID" > cache/stamp'
        cache:
          - key: "deps-#{{hash_files: deps.lock}}"
            paths: [cache]
            restore_keys: [deps-]
  - name: check
    actions:
      - name: again
        type: test
        image: ferry-local/busybox
        runs_on: [two]
        inputs: [source]
        commands:
          - 'echo "on the other agent: $(cat cache/stamp)"'
        cache:
          - key: "deps-#{{hash_files: deps.lock}}"
            paths: [cache]
"##
    )
}

fn log(c: &Cluster, exec: &str, action: &str) -> String {
    c.ferry_ok(
        Some("admin"),
        &["logs", "cached", "--execution", exec, "--action", action],
    )
}

fn entries(c: &Cluster) -> Vec<(String, String)> {
    let out = c.ferry_ok(Some("admin"), &["cache", "list", "cached", "-o", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["scope"].as_str().unwrap_or_default().to_string(),
                        e["key"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn caches_restore_by_key_travel_between_agents_and_stay_in_their_branch() {
    ensure_busybox_image();
    let mut c = Cluster::start("caches");
    let one = c.add_agent("a", &["one"]);
    c.add_agent("b", &["two"]);
    let repo = Repo::new();
    repo.commit(&[("deps.lock", "v1\n"), ("README", "r\n")], "init");
    c.apply(&pipeline(&repo.url()));
    let run = |args: &[&str]| -> String {
        let mut all = vec!["run", "cached"];
        all.extend_from_slice(args);
        let exec = c.ferry_ok(Some("admin"), &all).trim().to_string();
        let v = c.wait_status("cached", &exec, "the run to end", |v| {
            v["status"] != "InProgress"
        });
        assert_eq!(v["status"], "Succeeded", "{v:#}");
        exec
    };

    // Cold, then saved; the action on the other agent fetches it.
    let first = run(&[]);
    let compile = log(&c, &first, "build/compile");
    assert!(compile.contains("cold run"), "{compile}");
    assert!(compile.contains("saved to branch:main"), "{compile}");
    let again = log(&c, &first, "check/again");
    assert!(
        again.contains(&format!("on the other agent: {first}")),
        "{again}"
    );
    assert!(again.contains("fetched from a peer"), "{again}");
    let listed = entries(&c);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].0, "branch:main");
    assert!(listed[0].1.starts_with("deps-"), "{listed:?}");

    // Warm: the same key restores the first run's files, and nothing is
    // saved again.
    let second = run(&[]);
    let compile = log(&c, &second, "build/compile");
    assert!(compile.contains(&format!("warm from {first}")), "{compile}");
    assert!(compile.contains("the entry with this key"), "{compile}");
    assert!(!compile.contains("saved to"), "{compile}");

    // Another branch with other dependencies: main's entry through the
    // restore key, then its own entry in its own scope.
    repo.commit_on_branch("feature", &[("deps.lock", "v2\n")], "bump");
    let feature = run(&["--revision", "feature"]);
    let compile = log(&c, &feature, "build/compile");
    assert!(compile.contains(&format!("warm from {first}")), "{compile}");
    assert!(compile.contains("from branch:main"), "{compile}");
    assert!(compile.contains("saved to branch:feature"), "{compile}");
    let scopes: Vec<String> = entries(&c).into_iter().map(|(s, _)| s).collect();
    assert_eq!(scopes, ["branch:feature", "branch:main"]);

    // Main's entry removed: main runs cold, though the feature branch's
    // entry is there (a branch's cache never reaches the default branch).
    let blob_dir = c.agent_state_dir(&one).join("caches").join("sha256");
    let blobs = || std::fs::read_dir(&blob_dir).map_or(0, |d| d.count());
    assert_eq!(blobs(), 2, "agent a holds main's and feature's entries");
    let removed = c.ferry_ok(
        Some("admin"),
        &["cache", "rm", "cached", "--scope", "branch:main"],
    );
    assert!(removed.contains("removed 1 cache entries"), "{removed}");
    let cold = run(&[]);
    let compile = log(&c, &cold, "build/compile");
    assert!(compile.contains("cold run"), "{compile}");
    // The holder deleted the removed entry's blob (the leader tells it
    // within a retention round).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while blobs() != 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    // feature's, and main's new one; the removed one is gone.
    assert_eq!(blobs(), 2);

    // A viewer may list but not remove.
    c.grant("vic", "viewer");
    assert!(c.ferry(Some("vic"), &["cache", "list", "cached"]).success);
    let refused = c.ferry(Some("vic"), &["cache", "rm", "cached"]);
    assert!(
        !refused.success && refused.stderr.contains("operator"),
        "{}",
        refused.stderr
    );
    assert_eq!(entries(&c).len(), 2);
}

#[test]
fn an_agent_over_its_cache_limit_evicts_the_least_recently_used_and_the_cluster_forgets_it() {
    ensure_busybox_image();
    let mut c = Cluster::start("cachelru");
    c.add_agent_with_args("a", &[], &["--cache-limit-mb", "1"]);
    let repo = Repo::new();
    repo.commit(&[("README", "r\n")], "init");
    c.apply(&format!(
        r##"name: lru
execution_mode: parallel
source: {{git: {}}}
variables:
  k: {{default: "1"}}
stages:
  - name: build
    actions:
      - name: fill
        type: build
        image: ferry-local/busybox
        commands: ["mkdir -p blob && dd if=/dev/urandom of=blob/data bs=1024 count=700"]
        cache:
          - {{key: "blob-#{{variables.k}}", paths: [blob]}}
"##,
        repo.url()
    ));
    let run = |k: &str| {
        let exec = c
            .ferry_ok(Some("admin"), &["run", "lru", "--var", &format!("k={k}")])
            .trim()
            .to_string();
        let v = c.wait_status("lru", &exec, "the run to end", |v| {
            v["status"] != "InProgress"
        });
        assert_eq!(v["status"], "Succeeded", "{v:#}");
    };
    let keys = || -> Vec<String> {
        let out = c.ferry_ok(Some("admin"), &["cache", "list", "lru", "-o", "json"]);
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|e| e["key"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    run("1");
    assert_eq!(keys(), ["blob-1"]);
    // A second entry of 700 KiB puts the agent over its 1 MiB: the older
    // one goes, and the cluster stops naming it.
    run("2");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while keys().len() > 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    assert_eq!(keys(), ["blob-2"]);
}
