//! Secrets: set by an admin, sealed in the replicated state, given only to
//! the action that names them (sealed to the agent's own wrapping key), and
//! masked everywhere. The value is searched for in every log, answer and
//! file the cluster wrote.

use ferry_tests::{Cluster, Repo, ensure_busybox_image, files_containing};

const VALUE: &str = "s3cr3t-Value-42";
/// md5 of VALUE: the action proves it saw the value without the test writing it anywhere.
const VALUE_MD5: &str = "eab597e29935046c80ce83a385892aaa";

#[test]
fn a_secret_reaches_its_action_and_nothing_else() {
    ensure_busybox_image();
    let mut c = Cluster::start("secret");
    let agent = c.add_agent("a", &[]);
    // The agent made its own wrapping key and was never given the cluster's
    // secrets key: its disk opens nothing at rest.
    let state = c.agent_state_dir(&agent);
    assert!(
        state.join(ferry_certs::WRAPPING_KEY_FILE).is_file(),
        "no wrapping key in {}",
        state.display()
    );
    assert!(
        !state.join(ferry_certs::SECRETS_KEY_FILE).exists(),
        "the agent holds the cluster's secrets key"
    );
    c.grant("vic", "viewer");
    let file = c.path().join("value.txt");
    std::fs::write(&file, VALUE).unwrap_or_else(|e| panic!("{e}"));
    let f = file.display().to_string();
    // Only an admin may set one; a bad name is refused.
    assert!(
        !c.ferry(
            Some("vic"),
            &["secret", "set", "deploy-token", "--from-file", &f]
        )
        .success
    );
    assert!(
        !c.ferry(
            Some("admin"),
            &["secret", "set", "Bad Name", "--from-file", &f]
        )
        .success
    );
    c.ferry_ok(
        Some("admin"),
        &["secret", "set", "deploy-token", "--from-file", &f],
    );
    std::fs::remove_file(&file).unwrap_or_else(|e| panic!("{e}"));

    let repo = Repo::new();
    repo.commit(&[("README", "x")], "x");
    c.apply(&format!(
        r#"name: secretive
source: {{git: {}}}
stages:
  - name: s
    actions:
      - name: use
        type: build
        image: ferry-local/busybox
        secrets: {{DEPLOY_TOKEN: deploy-token}}
        commands:
          - "echo token=$DEPLOY_TOKEN"
          - "test \"$(printf %s \"$DEPLOY_TOKEN\" | md5sum | cut -d' ' -f1)\" = {VALUE_MD5} && echo matches"
      - name: missing
        type: build
        image: ferry-local/busybox
        secrets: {{OTHER: not-set}}
        commands: ["echo never"]
"#,
        repo.url()
    ));
    let exec = c
        .ferry_ok(Some("admin"), &["run", "secretive"])
        .trim()
        .to_string();
    let v = c.wait_status("secretive", &exec, "the execution to end", |v| {
        Cluster::action(v, "s", "use")["status"] != "InProgress"
            && Cluster::action(v, "s", "missing")["status"] != "InProgress"
    });
    assert_eq!(
        Cluster::action(&v, "s", "use")["status"],
        "Succeeded",
        "{v:#}"
    );
    let missing = Cluster::action(&v, "s", "missing");
    assert_eq!(missing["status"], "Failed");
    assert!(
        missing["message"]
            .as_str()
            .unwrap_or("")
            .contains("secret `not-set` is not set"),
        "{missing}"
    );

    let logs = c.ferry_ok(
        Some("vic"),
        &[
            "logs",
            "secretive",
            "--execution",
            &exec,
            "--action",
            "s/use",
        ],
    );
    assert!(logs.contains("token=***"), "masked in the log: {logs}");
    assert!(
        logs.contains("matches"),
        "the action saw the real value: {logs}"
    );

    let mut answers = vec![
        logs,
        serde_json::to_string(&v).unwrap_or_default(),
        c.ferry_ok(Some("admin"), &["secret", "list", "-o", "json"]),
        c.ferry_ok(Some("admin"), &["secret", "list"]),
        c.ferry_ok(
            Some("admin"),
            &["pipeline", "show", "secretive", "-o", "json"],
        ),
    ];
    answers.push(c.ferry_ok(
        Some("admin"),
        &[
            "artifacts",
            "list",
            "secretive",
            "--execution",
            &exec,
            "-o",
            "json",
        ],
    ));
    for a in &answers {
        assert!(!a.contains(VALUE), "the value leaked into an answer: {a}");
    }
    assert!(answers[2].contains("deploy-token"), "names are listed");
    // Nothing the coordinator or the agent wrote holds it: Raft log, snapshots,
    // process logs, blob store, outbox.
    c.kill_coordinator();
    let leaks = files_containing(c.path(), VALUE.as_bytes());
    assert!(leaks.is_empty(), "the value is on disk in: {leaks:?}");
    c.start_coordinator();
    c.ferry_ok(Some("admin"), &["secret", "rm", "deploy-token"]);
    let list = c.ferry_ok(Some("admin"), &["secret", "list", "-o", "json"]);
    assert!(!list.contains("deploy-token"), "{list}");
}
