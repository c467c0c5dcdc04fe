//! Deployments end to end against real OpenSSH servers in network
//! namespaces, each serving the sample app over HTTP: a full pipeline from
//! commit to production, a validate hook failing on the third production
//! host (stop, automatic rollback, the host and hook named), `ferry rollback`,
//! a changed host key and an unreachable host, and the deploy secret
//! searched for everywhere.

use ferry_tests::targets::{Targets, current_release, sample_app};
use ferry_tests::{Cluster, Repo, ensure_busybox_image, files_containing};
use serde_json::Value;

const TOKEN: &str = "tok-Deploy-9f3e1c";

fn pipeline(repo: &Repo) -> String {
    format!(
        r#"name: shop
source: {{git: {}}}
stages:
  - name: build
    actions:
      - name: package
        type: build
        image: ferry-local/busybox
        inputs: [source]
        commands:
          - mkdir -p www && echo "app version $(cat VERSION)" > www/index.html
        outputs: {{app: [ferry-deploy.yml, bin, www]}}
  - name: test
    actions:
      - name: check
        type: test
        image: ferry-local/busybox
        inputs: [app]
        commands: ["grep -q 'app version' www/index.html"]
  - name: approve
    actions:
      - {{name: release, type: approval}}
  - name: staging
    actions:
      - name: deploy
        type: deploy
        inputs: [app]
        environment: staging
        secrets: {{API_TOKEN: api-token}}
  - name: production
    actions:
      - name: deploy
        type: deploy
        inputs: [app]
        environment: production
        strategy: one_at_a_time
        secrets: {{API_TOKEN: api-token}}
        keep_releases: 2
"#,
        repo.url()
    )
}

/// Runs the pipeline at HEAD through its approval (decided by `ann`, an
/// approver who neither applied nor started it); returns the execution id
/// and its final status.
fn run_and_approve(c: &Cluster) -> (String, Value) {
    c.grant("ann", "approver");
    let exec = c
        .ferry_ok(Some("admin"), &["run", "shop"])
        .trim()
        .to_string();
    let v = c.approve_and_finish("shop", &exec, ("approve", "release"), "ann");
    (exec, v)
}

fn json(c: &Cluster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = c.ferry_ok(Some("admin"), &all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[test]
fn pipeline_deploys_to_staging_then_production_and_rolls_back_a_failed_batch() {
    ensure_busybox_image();
    // Hosts 1-2 are staging, 3-6 production.
    let t = Targets::start(6);
    let mut c = Cluster::start("deploy");
    c.add_agent("a", &[]);
    t.set_key_secrets(&c);
    c.set_secret("api-token", TOKEN.as_bytes());
    t.apply_environment(&c, &t.environment("staging", "stage", &[1, 2]));
    t.apply_environment(&c, &t.environment("production", "prod", &[3, 4, 5, 6]));

    let repo = Repo::new();
    repo.commit(&sample_app("1"), "version 1");
    c.apply(&pipeline(&repo));

    // 1. Commit to production: every host serves version 1.
    let (v1, status) = run_and_approve(&c);
    assert_eq!(status["status"], "Succeeded", "{status:#}");
    assert_on_release(&t, 1..=6, "app version 1", &v1);
    let prod = json(&c, &["deployments", "list", "production"]);
    let first = &prod["deployments"][0];
    assert_eq!(first["outcome"], "Succeeded", "{prod:#}");
    assert_eq!(first["release"], v1.as_str());
    assert_eq!(first["strategy"], "one_at_a_time");
    let batches: Vec<u64> = first["hosts"]
        .as_array()
        .map(|h| h.iter().filter_map(|h| h["batch"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(batches, [1, 2, 3, 4], "one host per batch: {prod:#}");
    let hosts = prod["hosts"].as_array().cloned().unwrap_or_default();
    assert_eq!(hosts.len(), 4, "{prod:#}");
    assert!(
        hosts.iter().all(|h| h["release"] == v1.as_str()),
        "{prod:#}"
    );

    // 2. Version 2 with validate failing on the third production host.
    let rev2 = repo.commit(&sample_app("2"), "version 2");
    std::fs::write(t.path(5).join("FAIL_VALIDATE"), "app version 2")
        .unwrap_or_else(|e| panic!("{e}"));
    let (v2, status) = run_and_approve(&c);
    assert_eq!(status["status"], "Failed", "{status:#}");
    assert_eq!(
        Cluster::action(&status, "staging", "deploy")["status"],
        "Succeeded"
    );
    let failed = Cluster::action(&status, "production", "deploy");
    assert_eq!(failed["status"], "Failed", "{status:#}");
    let message = failed["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("prod3 failed at hook validate") && message.contains("rolled back"),
        "the host and hook are named: {message}"
    );
    for i in 1..=2 {
        t.wait_serves(i, "app version 2");
        assert_eq!(current_release(&t.path(i)).as_deref(), Some(v2.as_str()));
    }
    // prod1 and prod2 were changed and are back, prod3 failed and is back,
    // prod4 was never touched: all serve version 1.
    for i in 3..=6 {
        t.wait_serves(i, "app version 1");
        assert_eq!(
            current_release(&t.path(i)).as_deref(),
            Some(v1.as_str()),
            "host {i}"
        );
    }
    let prod = json(&c, &["deployments", "list", "production"]);
    let second = &prod["deployments"][0];
    assert_eq!(second["outcome"], "RolledBack", "{prod:#}");
    let outcomes: Vec<&str> = second["hosts"]
        .as_array()
        .map(|h| h.iter().filter_map(|h| h["outcome"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        outcomes,
        ["RolledBack", "RolledBack", "RolledBack", "Skipped"],
        "{prod:#}"
    );
    let id = second["id"].as_u64().unwrap_or_default().to_string();
    let shown = json(&c, &["deployments", "show", &id]);
    let prod3 = &shown["hosts"][2];
    assert!(
        prod3["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("hook validate"),
        "{shown:#}"
    );
    let hooks: Vec<(String, String, bool)> = prod3["hooks"]
        .as_array()
        .map(|h| {
            h.iter()
                .map(|k| {
                    (
                        k["phase"].as_str().unwrap_or_default().to_string(),
                        k["hook"].as_str().unwrap_or_default().to_string(),
                        k["success"].as_bool().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(
        hooks.contains(&("deploy".into(), "validate".into(), false))
            && hooks.contains(&("rollback".into(), "switch".into(), true))
            && hooks.contains(&("rollback".into(), "validate".into(), true)),
        "{hooks:?}"
    );
    let text = c.ferry_ok(Some("admin"), &["deployments", "show", &id]);
    assert!(
        text.contains("validation failed on purpose on prod3"),
        "{text}"
    );
    assert!(text.contains("token=***"), "{text}");

    // 3. `ferry rollback staging` returns staging to version 1 as a new execution.
    let out = json(&c, &["rollback", "staging"]);
    assert_eq!(out["release"], v1.as_str(), "{out}");
    let exec = out["execution_id"].as_str().unwrap_or_default().to_string();
    let v = c.wait_status("shop", &exec, "the rollback to end", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(v["status"], "Succeeded", "{v:#}");
    assert_on_release(&t, 1..=2, "app version 1", &v1);
    let staging = json(&c, &["deployments", "list", "staging"]);
    assert_eq!(staging["deployments"][0]["execution_id"], exec.as_str());
    assert_eq!(staging["deployments"][0]["release"], v1.as_str());

    // 4. The secret is in no answer, log or file the cluster wrote.
    let mut answers = vec![
        text,
        serde_json::to_string(&status).unwrap_or_default(),
        serde_json::to_string(&prod).unwrap_or_default(),
        serde_json::to_string(&shown).unwrap_or_default(),
    ];
    for action in ["staging/deploy", "production/deploy"] {
        let logs = c.ferry_ok(
            Some("admin"),
            &["logs", "shop", "--execution", &v2, "--action", action],
        );
        assert!(logs.contains("token=***"), "masked: {logs}");
        assert!(
            logs.contains(&format!("at {rev2}")),
            "hooks see FERRY_REVISION: {logs}"
        );
        answers.push(logs);
    }
    for a in &answers {
        assert!(!a.contains(TOKEN), "the secret leaked: {a}");
    }
    c.kill_coordinator();
    let leaks = files_containing(c.path(), TOKEN.as_bytes());
    assert!(leaks.is_empty(), "the secret is on disk in {leaks:?}");
    // Nor is any host's private key (a line of its base64 body).
    for i in 1..=6 {
        let key = t.host(i).client_key.clone();
        let line = key.lines().nth(2).unwrap_or_default();
        assert!(line.len() > 40, "{key}");
        let leaks = files_containing(c.path(), line.as_bytes());
        assert!(leaks.is_empty(), "host {i}'s key is on disk in {leaks:?}");
    }
    for i in 1..=6 {
        let leaks = files_containing(&t.path(i), TOKEN.as_bytes());
        assert!(leaks.is_empty(), "the secret is on host {i} in {leaks:?}");
    }
}

#[test]
fn changed_host_keys_are_refused_and_unreachable_hosts_fail_in_time() {
    let t = Targets::start(3);
    let mut c = Cluster::start("deployfault");
    c.add_agent("a", &[]);
    t.set_key_secrets(&c);
    // Host 1 is pinned to host 2's key (as if it had been replaced); host 3 is cut off.
    let env = t
        .environment("broken", "b", &[1, 3])
        .replace(&t.host(1).host_key, &t.host(2).host_key);
    t.apply_environment(&c, &env);
    t.net.cut(3);
    // A pipeline naming an environment that does not exist is refused at apply.
    let file = c.path().join("nowhere.yml");
    std::fs::write(
        &file,
        "name: nowhere\nsource: {git: /tmp/x.git}\nstages:\n  - name: s\n    actions:\n      - {name: d, type: deploy, inputs: [source], environment: atlantis}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let refused = c.ferry(
        Some("admin"),
        &["pipeline", "apply", "-f", &file.display().to_string()],
    );
    assert!(!refused.success);
    assert!(
        refused
            .stderr
            .contains("action s/d deploys to environment `atlantis`, which does not exist"),
        "{}",
        refused.stderr
    );
    let repo = Repo::new();
    repo.commit(&sample_app("1"), "v1");
    c.apply(&format!(
        r#"name: risky
source: {{git: {}}}
stages:
  - name: ship
    actions:
      - name: deploy
        type: deploy
        inputs: [source]
        environment: broken
        connect_timeout: 3s
"#,
        repo.url()
    ));
    let exec = c
        .ferry_ok(Some("admin"), &["run", "risky"])
        .trim()
        .to_string();
    let v = c.wait_status("risky", &exec, "the deployment to end", |v| {
        v["status"] != "InProgress"
    });
    let action = Cluster::action(&v, "ship", "deploy");
    assert_eq!(action["status"], "Failed", "{v:#}");
    let message = action["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("b1 failed at connect") && message.contains("not the pinned one"),
        "{message}"
    );
    assert!(message.contains("b2 failed at connect"), "{message}");
    let list = json(&c, &["deployments", "list", "broken"]);
    let hosts = list["deployments"][0]["hosts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let id = list["deployments"][0]["id"]
        .as_u64()
        .unwrap_or_default()
        .to_string();
    let shown = json(&c, &["deployments", "show", &id]);
    let connect_ms = shown["hosts"][1]["hooks"][0]["duration_ms"]
        .as_u64()
        .unwrap_or(u64::MAX);
    assert!(
        connect_ms < 3_000 + 1_000,
        "the unreachable host failed within its 3 s connect timeout: {connect_ms} ms"
    );
    assert!(
        hosts.iter().all(|h| h["outcome"] == "Failed"),
        "nothing was changed on either host: {list:#}"
    );
    assert!(
        current_release(&t.path(1)).is_none(),
        "no release on host 1"
    );
}

/// The sample app at `version` with its page in the repository (deployed
/// straight from `source`) and a slow `before_install`.
fn slow_app(version: &str) -> Vec<(&'static str, String)> {
    let mut files = sample_app(version);
    for (path, text) in &mut files {
        if *path == "ferry-deploy.yml" {
            *text = text.replace("before_install: echo", "before_install: sleep 2; echo");
        }
    }
    files.push(("www/index.html", format!("app version {version}\n")));
    files
}

/// Pipeline `name`, one deploy stage of the slow sample app to `env` (one
/// host at a time), applied and run to success at version 1: its
/// repository and the v1 execution (the release on every host).
fn deployed_v1(c: &Cluster, name: &str, env: &str) -> (Repo, String) {
    let repo = Repo::new();
    repo.commit(&slow_app("1"), "v1");
    c.apply(&format!(
        "name: {name}\nsource: {{git: {}}}\nstages:\n  - name: ship\n    actions:\n      - {{name: deploy, type: deploy, inputs: [source], environment: {env}, strategy: one_at_a_time}}\n",
        repo.url()
    ));
    let v1 = start(c, name);
    let status = c.wait_status(name, &v1, "v1", |v| v["status"] != "InProgress");
    assert_eq!(status["status"], "Succeeded", "{status:#}");
    (repo, v1)
}

/// `n` SSH hosts, all in environment `env` (named `short1`, `short2`, ...),
/// and a cluster `prefix` with `agents` that holds the hosts' keys.
fn hosts_and_cluster(
    n: u32,
    prefix: &str,
    agents: &[&str],
    (env, short): (&str, &str),
) -> (Targets, Cluster) {
    let t = Targets::start(n);
    let mut c = Cluster::start(prefix);
    for a in agents {
        c.add_agent(a, &[]);
    }
    t.set_key_secrets(&c);
    let hosts: Vec<u32> = (1..=n).collect();
    t.apply_environment(&c, &t.environment(env, short, &hosts));
    (t, c)
}

/// Waits until every host of `hosts` serves `page` from release `release`.
fn assert_on_release(t: &Targets, hosts: std::ops::RangeInclusive<u32>, page: &str, release: &str) {
    for i in hosts {
        t.wait_serves(i, page);
        assert_eq!(
            current_release(&t.path(i)).as_deref(),
            Some(release),
            "host {i}"
        );
    }
}

/// `ferry run NAME`: the execution id.
fn start(c: &Cluster, name: &str) -> String {
    c.ferry_ok(Some("admin"), &["run", name]).trim().to_string()
}

/// Waits until host `i` runs `release`.
fn wait_switched(t: &Targets, i: u32, release: &str) {
    ferry_tests::wait_for(
        "the host to be switched",
        std::time::Duration::from_secs(60),
        || (current_release(&t.path(i)).as_deref() == Some(release)).then_some(()),
    );
}

/// Commits generated files; returns the commit id.
#[test]
fn a_deployment_whose_agent_dies_is_finished_elsewhere_and_rolls_back_to_the_right_release() {
    let (t, mut c) = hosts_and_cluster(3, "deploykill", &["a", "b"], ("kenv", "k"));
    let (repo, v1) = deployed_v1(&c, "kp", "kenv");

    // Version 2 fails validation on the third host; its first agent dies after the
    // first host was switched, so the second agent's retry finds that host on v2.
    repo.commit(&slow_app("2"), "v2");
    std::fs::write(t.path(3).join("FAIL_VALIDATE"), "app version 2\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let v2 = start(&c, "kp");
    wait_switched(&t, 1, &v2);
    let status = c.status("kp", &v2);
    let first = Cluster::action(&status, "ship", "deploy")["agent"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    c.kill_agent(&first);
    let status = c.wait_status("kp", &v2, "the retry to end", |v| {
        v["status"] != "InProgress"
    });
    let action = Cluster::action(&status, "ship", "deploy");
    assert_eq!(action["status"], "Failed", "{status:#}");
    let outcomes: Vec<&str> = action["attempts"]
        .as_array()
        .map(|a| a.iter().filter_map(|a| a["outcome"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(outcomes, ["Lost", "Failed"], "{status:#}");
    let message = action["message"].as_str().unwrap_or_default();
    assert!(message.contains("k3 failed at hook validate"), "{message}");
    // Every host, including the one the dead attempt switched, is back on v1.
    assert_on_release(&t, 1..=3, "app version 1", &v1);
}

#[test]
fn min_healthy_tolerates_a_failed_host() {
    let (t, c) = hosts_and_cluster(2, "deploytol", &["a"], ("tol", "t"));
    t.net.cut(2);
    let repo = Repo::new();
    repo.commit(&slow_app("1"), "v1");
    c.apply(&format!(
        "name: tp\nsource: {{git: {}}}\nstages:\n  - name: ship\n    actions:\n      - {{name: deploy, type: deploy, inputs: [source], environment: tol, strategy: one_at_a_time, min_healthy: 50%, connect_timeout: 2s}}\n",
        repo.url()
    ));
    let exec = c.ferry_ok(Some("admin"), &["run", "tp"]).trim().to_string();
    let status = c.wait_status("tp", &exec, "the deployment", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(status["status"], "Succeeded", "{status:#}");
    t.wait_serves(1, "app version 1");
    let list = json(&c, &["deployments", "list", "tol"]);
    let d = &list["deployments"][0];
    assert_eq!(d["outcome"], "Succeeded", "{list:#}");
    assert!(
        d["summary"]
            .as_str()
            .is_some_and(|s| s.contains("deployed to 1 of 2") && s.contains("t2 failed at connect")),
        "{list:#}"
    );
}

#[test]
fn deployments_to_one_environment_never_overlap() {
    let (t, c) = hosts_and_cluster(1, "deployone", &["a", "b"], ("solo", "s"));
    let repo = Repo::new();
    repo.commit(&slow_app("1"), "v1");
    c.apply(&format!(
        "name: op\nsource: {{git: {}}}\nstages:\n  - name: ship\n    actions:\n      - {{name: deploy, type: deploy, inputs: [source], environment: solo}}\n",
        repo.url()
    ));
    // Two executions reach the deploy at once, with two free agents.
    let execs: Vec<String> = (0..2)
        .map(|_| c.ferry_ok(Some("admin"), &["run", "op"]).trim().to_string())
        .collect();
    let mut spans = Vec::new();
    for exec in &execs {
        let v = c.wait_status("op", exec, "the deployment", |v| {
            v["status"] != "InProgress"
        });
        assert_eq!(v["status"], "Succeeded", "{v:#}");
        let a = Cluster::action(&v, "ship", "deploy");
        let at = |k: &str| {
            humantime::parse_rfc3339(a[k].as_str().unwrap_or_default())
                .unwrap_or_else(|e| panic!("{k}: {e} in {a}"))
        };
        spans.push((at("started_at"), at("finished_at")));
    }
    spans.sort();
    assert!(
        spans[0].1 <= spans[1].0,
        "the second deployment started before the first ended: {spans:?}"
    );
    t.wait_serves(1, "app version 1");
}

#[test]
fn a_host_cut_off_mid_deployment_is_reported_and_recovered_by_ferry_rollback() {
    let (t, c) = hosts_and_cluster(2, "deploycut", &["a"], ("cut", "c"));
    let repo = Repo::new();
    repo.commit(&slow_app("1"), "v1");
    c.apply(&format!(
        "name: cp\nsource: {{git: {}}}\nstages:\n  - name: ship\n    actions:\n      - {{name: deploy, type: deploy, inputs: [source], environment: cut, hook_timeout: 3s, connect_timeout: 2s}}\n",
        repo.url()
    ));
    let run = |c: &Cluster| c.ferry_ok(Some("admin"), &["run", "cp"]).trim().to_string();
    let v1 = run(&c);
    let status = c.wait_status("cp", &v1, "v1", |v| v["status"] != "InProgress");
    assert_eq!(status["status"], "Succeeded", "{status:#}");

    // Version 2: the second host is cut off while its validate hook runs.
    repo.commit(&slow_app("2"), "v2");
    let hold = t.path(2).join("HOLD_VALIDATE");
    std::fs::write(&hold, "").unwrap_or_else(|e| panic!("{e}"));
    let v2 = run(&c);
    ferry_tests::wait_for(
        "the second host's validate hook to run",
        std::time::Duration::from_secs(60),
        || t.path(2).join("HOLDING").exists().then_some(()),
    );
    t.net.cut(2);
    let status = c.wait_status("cp", &v2, "v2 to end", |v| v["status"] != "InProgress");
    let action = Cluster::action(&status, "ship", "deploy");
    assert_eq!(action["status"], "Failed", "{status:#}");
    let message = action["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("c2 failed at hook validate")
            && message.contains("rolled back c1")
            && message.contains("ROLLBACK FAILED on c2"),
        "{message}"
    );
    t.wait_serves(1, "app version 1");
    let list = json(&c, &["deployments", "list", "cut"]);
    let hosts = list["hosts"].as_array().cloned().unwrap_or_default();
    let release_of = |name: &str| {
        hosts
            .iter()
            .find(|h| h["host"] == name)
            .and_then(|h| h["release"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(release_of("c1"), v1, "{list:#}");
    assert_eq!(
        release_of("c2"),
        v2,
        "the history says c2 is still on v2: {list:#}"
    );

    // Back on the network, `ferry rollback` returns it to the last good release.
    std::fs::remove_file(&hold).unwrap_or_else(|e| panic!("{e}"));
    t.net.heal(2);
    let out = json(&c, &["rollback", "cut"]);
    let exec = out["execution_id"].as_str().unwrap_or_default().to_string();
    let status = c.wait_status("cp", &exec, "the rollback", |v| v["status"] != "InProgress");
    assert_eq!(status["status"], "Succeeded", "{status:#}");
    assert_on_release(&t, 1..=2, "app version 1", &v1);
}

#[test]
fn a_deployment_over_its_timeout_stops_and_rolls_back() {
    let (t, c) = hosts_and_cluster(1, "deploytime", &["a"], ("slow", "w"));
    let repo = Repo::new();
    repo.commit(&slow_app("1"), "v1");
    c.apply(&format!(
        "name: sp\nsource: {{git: {}}}\nstages:\n  - name: ship\n    actions:\n      - {{name: deploy, type: deploy, inputs: [source], environment: slow, timeout: 8s}}\n",
        repo.url()
    ));
    let run = |c: &Cluster| c.ferry_ok(Some("admin"), &["run", "sp"]).trim().to_string();
    let v1 = run(&c);
    let status = c.wait_status("sp", &v1, "v1", |v| v["status"] != "InProgress");
    assert_eq!(status["status"], "Succeeded", "{status:#}");
    // Version 2's validate hangs (its own hook timeout is 30 s): the action's 8 s end it.
    repo.commit(&slow_app("2"), "v2");
    std::fs::write(t.path(1).join("HOLD_VALIDATE"), "app version 2\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let v2 = run(&c);
    let status = c.wait_status("sp", &v2, "v2 to end", |v| v["status"] != "InProgress");
    let action = Cluster::action(&status, "ship", "deploy");
    assert_eq!(action["status"], "Failed", "{status:#}");
    let message = action["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("w1 failed at hook validate: the action's timeout (8s) ran out")
            && message.contains("rolled back w1"),
        "{message}"
    );
    assert_eq!(current_release(&t.path(1)).as_deref(), Some(v1.as_str()));
}

#[test]
fn an_abandoned_deployment_stops_mid_batch_and_rolls_back_the_hosts_it_changed() {
    let (t, c) = hosts_and_cluster(3, "deploystop", &["a"], ("senv", "s"));
    let (repo, v1) = deployed_v1(&c, "stp", "senv");
    repo.commit(&slow_app("2"), "v2");
    let v2 = start(&c, "stp");
    wait_switched(&t, 1, &v2);
    c.ferry_ok(
        Some("admin"),
        &[
            "stop",
            "stp",
            "--execution",
            &v2,
            "--reason",
            "bad release",
            "--abandon",
        ],
    );
    let status = c.wait_status("stp", &v2, "the stop to finish", |v| {
        v["status"] == "Stopped"
    });
    let action = Cluster::action(&status, "ship", "deploy");
    assert_eq!(action["status"], "Stopped", "{status:#}");
    let message = action["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("stopped by admin: bad release") && message.contains("rolled back s1"),
        "who stopped it and what was rolled back: {message}"
    );
    // The host it had changed is back on v1; the last was never touched.
    assert_on_release(&t, 1..=3, "app version 1", &v1);
    let deployments = json(&c, &["deployments", "list", "senv"]);
    let stopped = &deployments["deployments"][0];
    assert_eq!(stopped["execution_id"], v2.as_str(), "{deployments:#}");
    assert_eq!(stopped["outcome"], "RolledBack", "{deployments:#}");
    assert!(
        stopped["summary"]
            .as_str()
            .is_some_and(|s| s.contains("stopped by admin: bad release")),
        "{deployments:#}"
    );
    let last = stopped["hosts"][2]["outcome"].as_str().unwrap_or_default();
    assert_eq!(last, "Skipped", "{deployments:#}");
}

#[test]
fn on_failure_rollback_restores_the_previous_release_when_a_stage_fails_after_deploying() {
    ensure_busybox_image();
    let (t, c) = hosts_and_cluster(2, "deployofr", &["a"], ("renv", "r"));
    let repo = Repo::new();
    repo.commit(&slow_app("1"), "v1");
    // The smoke test after the deployment fails on version 2.
    c.apply(&format!(
        "name: rb\nsource: {{git: {}}}\nstages:\n  - name: ship\n    on_failure: rollback\n    actions:\n      - {{name: deploy, type: deploy, inputs: [source], environment: renv}}\n      - {{name: smoke, type: test, image: ferry-local/busybox, inputs: [source], run_order: 2, commands: [\"! grep -q 'app version 2' www/index.html\"]}}\n",
        repo.url()
    ));
    let v1 = start(&c, "rb");
    let status = c.wait_status("rb", &v1, "v1", |v| v["status"] != "InProgress");
    assert_eq!(status["status"], "Succeeded", "{status:#}");

    repo.commit(&slow_app("2"), "v2");
    let v2 = start(&c, "rb");
    let status = c.wait_status("rb", &v2, "v2 to fail", |v| v["status"] != "InProgress");
    assert_eq!(status["status"], "Failed", "{status:#}");
    assert_eq!(
        Cluster::action(&status, "ship", "deploy")["status"],
        "Succeeded"
    );
    let rollback = format!("{v2}-rollback-renv");
    let status = c.wait_status("rb", &v2, "the rollback to be recorded", |v| {
        v["rollbacks"][0] == rollback.as_str()
    });
    let table = c.ferry_ok(Some("admin"), &["status", "rb", "--execution", &v2]);
    assert!(
        table.contains(&format!("ROLLED BACK by execution {rollback}")),
        "{table} {status:#}"
    );
    let done = c.wait_status("rb", &rollback, "the rollback to end", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(done["status"], "Succeeded", "{done:#}");
    assert_on_release(&t, 1..=2, "app version 1", &v1);
}

#[test]
fn superseded_mode_never_deploys_an_older_release_after_a_newer_one() {
    ensure_busybox_image();
    let (t, c) = hosts_and_cluster(1, "deploysup", &["a", "b"], ("senv", "u"));
    let repo = Repo::new();
    c.apply(&format!(
        "name: sup\nsource: {{git: {}}}\nexecution_mode: superseded\nstages:\n  - name: build\n    actions:\n      - {{name: b, type: build, image: ferry-local/busybox, commands: [\"sleep 4\"]}}\n  - name: ship\n    actions:\n      - {{name: deploy, type: deploy, inputs: [source], environment: senv}}\n",
        repo.url()
    ));
    // The first build (4 s) holds the build stage while the next two start:
    // the second waits there and the third replaces it.
    let mut runs = Vec::new();
    for version in ["1", "2", "3"] {
        let sha = repo.commit(&slow_app(version), version);
        runs.push(
            c.ferry_ok(Some("admin"), &["run", "sup", "--revision", &sha])
                .trim()
                .to_string(),
        );
    }
    let ended =
        |id: &str| c.wait_status("sup", id, "the run to end", |v| v["status"] != "InProgress");
    let (first, second, third) = (ended(&runs[0]), ended(&runs[1]), ended(&runs[2]));
    assert_eq!(first["status"], "Succeeded", "{first:#}");
    assert_eq!(second["status"], "Superseded", "{second:#}");
    assert_eq!(second["superseded_by"], runs[2].as_str());
    assert_eq!(third["status"], "Succeeded", "{third:#}");
    // The host's history: the first release, then the third; never the second,
    // and never the first after the third.
    let history = json(&c, &["deployments", "list", "senv"]);
    let order: Vec<&str> = history["deployments"]
        .as_array()
        .map(|d| {
            d.iter()
                .rev()
                .filter_map(|d| d["execution_id"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(order, [runs[0].as_str(), runs[2].as_str()], "{history:#}");
    t.wait_serves(1, "app version 3");
    assert_eq!(
        current_release(&t.path(1)).as_deref(),
        Some(runs[2].as_str())
    );
}

/// A deploy path belongs to the environment and pipeline that first
/// deployed there (`.ferry-owner`): another environment pointed at the same
/// host and path, another pipeline deploying to the environment, and a
/// directory Ferry did not lay out are refused before anything on the host
/// changes.
#[test]
fn a_deploy_path_of_another_environment_or_of_nobody_is_refused() {
    let (t, c) = hosts_and_cluster(1, "deployown", &["a"], ("own", "o"));
    let (repo, v1) = deployed_v1(&c, "first", "own");
    t.wait_serves(1, "app version 1");
    let owner =
        std::fs::read_to_string(t.path(1).join(".ferry-owner")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(owner, "environment: own\npipeline: first");
    // The same host and path as a second environment; a second pipeline of
    // environment `own`; a path someone else's files are in.
    t.apply_environment(&c, &t.environment("other", "x", &[1]));
    let foreign = t.path(1).join("foreign");
    std::fs::create_dir_all(&foreign).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap_or_else(|e| panic!("{e}"));
    t.apply_environment(&c, &t.environment_in("nobody", "n", &[1], "foreign"));
    let attempts = [
        (
            "second",
            "other",
            "belongs to another deployment (environment: own pipeline: first)",
        ),
        (
            "third",
            "own",
            "belongs to another deployment (environment: own pipeline: first)",
        ),
        (
            "fourth",
            "nobody",
            "is not empty and was not laid out by Ferry",
        ),
    ];
    for (pipeline, env, refusal) in attempts {
        c.apply(&format!(
            "name: {pipeline}\nsource: {{git: {}}}\nstages:\n  - name: ship\n    actions:\n      - {{name: deploy, type: deploy, inputs: [source], environment: {env}}}\n",
            repo.url()
        ));
        let exec = start(&c, pipeline);
        let status = c.wait_status(pipeline, &exec, "the refusal", |v| {
            v["status"] != "InProgress"
        });
        let deploy = Cluster::action(&status, "ship", "deploy");
        assert_eq!(deploy["status"], "Failed", "{pipeline}: {status:#}");
        let logs = c.ferry_ok(
            Some("admin"),
            &[
                "logs",
                pipeline,
                "--execution",
                &exec,
                "--action",
                "ship/deploy",
            ],
        );
        assert!(
            format!("{}{logs}", deploy["message"]).contains(refusal),
            "{pipeline}: {} {logs}",
            deploy["message"]
        );
        assert_eq!(current_release(&t.path(1)).as_deref(), Some(v1.as_str()));
        t.wait_serves(1, "app version 1");
    }
    assert_eq!(
        std::fs::read_dir(&foreign).map(|d| d.count()).unwrap_or(0),
        1,
        "nothing was written into a directory Ferry does not own"
    );
}
