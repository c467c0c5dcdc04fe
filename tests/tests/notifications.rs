//! End to end: notifications reach a real HTTP receiver — every event of a
//! pipeline with an approval and a deployment over SSH, each signed with
//! HMAC-SHA256, while the receiver is down for a while and then up again
//! (nothing lost); a Slack-format cluster-wide target that takes approval
//! events only; the leader SIGKILLed mid-delivery (nothing lost, duplicates
//! carry the same event id); a target that never answers is given up on
//! and shown by `ferry notify status`; and `ferry events` resumes from an id.
//! Without `--notify-allow-network` (which the harness otherwise gives every
//! coordinator, its receivers being on loopback), targets on loopback, a
//! private address or a name resolving to loopback get nothing, and what
//! viewers read of it is one generic sentence; a `url_secret` whose value
//! is no URL is named, never shown, in the status and the log.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ferry_tests::receiver::{Received, Receiver};
use ferry_tests::targets::{Targets, sample_app};
use ferry_tests::{Cluster, Options, Repo, ensure_busybox_image, free_port, wait_for};
use serde_json::Value;

const KEY: &[u8] = b"notify-signing-key";

fn events(c: &Cluster, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["events"];
    all.extend_from_slice(args);
    all.extend(["-o", "json"]);
    c.ferry_ok_through_failover(&all)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn kinds(got: &[Received]) -> Vec<String> {
    got.iter()
        .map(|r| r.json()["kind"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn every_event_of_a_release_arrives_signed_though_the_receiver_was_down() {
    ensure_busybox_image();
    let t = Targets::start(1);
    let mut c = Cluster::start("notify");
    c.add_agent("a", &[]);
    t.set_key_secrets(&c);
    c.set_secret("notify-key", KEY);
    t.apply_environment(&c, &t.environment("staging", "stage", &[1]));
    let hook = Receiver::start();
    let chat = Receiver::start();
    // A Slack webhook URL is a credential: kept as a secret, never shown.
    c.set_secret("chat-url", chat.url("/slack").as_bytes());
    c.ferry_ok(
        Some("admin"),
        &[
            "notify",
            "set",
            "chat",
            "--url-secret",
            "chat-url",
            "--format",
            "slack",
            "--events",
            "approval.*",
        ],
    );
    let shown = c.ferry_ok(Some("admin"), &["notify", "status"]);
    assert!(shown.contains("(secret chat-url)"), "{shown}");
    assert!(!shown.contains(&chat.addr), "{shown}");
    let repo = Repo::new();
    repo.commit(&sample_app("1"), "version 1");
    c.apply(&format!(
        r#"name: shop
source: {{git: {}}}
notifications:
  - name: team
    url: {}
    secret: notify-key
stages:
  - name: build
    actions:
      - name: package
        type: build
        image: ferry-local/busybox
        inputs: [source]
        commands: ["mkdir -p www && echo \"app version $(cat VERSION)\" > www/index.html"]
        outputs: {{app: [ferry-deploy.yml, bin, www]}}
  - name: approve
    actions:
      - {{name: release, type: approval, message: "ship it? <!channel> & <https://evil.example|click>", url: "https://example.invalid/review"}}
  - name: staging
    actions:
      - {{name: deploy, type: deploy, inputs: [app], environment: staging}}
"#,
        repo.url(),
        hook.url("/ferry"),
    ));

    // The receiver is down while the run starts: deliveries wait and retry.
    hook.set_up(false);
    c.grant("ann", "approver");
    let exec = c
        .ferry_ok(Some("admin"), &["run", "shop"])
        .trim()
        .to_string();
    c.wait_status("shop", &exec, "the approval to wait", |v| {
        Cluster::action(v, "approve", "release")["status"] == "WaitingForApproval"
    });
    wait_for("refused deliveries", Duration::from_secs(30), || {
        (hook.refused() >= 2).then_some(())
    });
    assert!(hook.received().is_empty());
    let waiting = c.ferry_ok(Some("admin"), &["notify", "status", "-o", "json"]);
    let waiting: Value = serde_json::from_str(&waiting).unwrap_or(Value::Null);
    assert!(
        waiting["deliveries"].as_array().is_some_and(|d| d
            .iter()
            .any(|d| d["last_error"].as_str().is_some_and(|e| e.contains("503")))),
        "{waiting:#}"
    );
    hook.set_up(true);
    let approval = wait_for("the approval notification", Duration::from_secs(60), || {
        hook.received()
            .into_iter()
            .find(|r| r.json()["kind"] == "approval.waiting")
    });
    let event = approval.json();
    assert_eq!(
        event["command"],
        format!("ferry approve shop --execution {exec} --action approve/release").as_str()
    );
    assert_eq!(event["url"], "https://example.invalid/review");
    // Where an approver decides in the browser: the console's execution page.
    let console = event["console"].as_str().unwrap_or_default();
    assert!(
        console.starts_with("https://")
            && console.ends_with(&format!("/pipelines/shop/executions/{exec}")),
        "{event:#}"
    );
    assert!(
        event["message"]
            .as_str()
            .unwrap_or_default()
            .contains("ship it?")
    );

    let status = c.approve_and_finish("shop", &exec, ("approve", "release"), "ann");
    assert_eq!(status["status"], "Succeeded", "{status:#}");

    // A second release whose validate hook fails: rolled back.
    repo.commit(&sample_app("2"), "version 2");
    std::fs::write(t.path(1).join("FAIL_VALIDATE"), "app version 2")
        .unwrap_or_else(|e| panic!("{e}"));
    let second = c
        .ferry_ok(Some("admin"), &["run", "shop"])
        .trim()
        .to_string();
    let status = c.approve_and_finish("shop", &second, ("approve", "release"), "ann");
    assert_eq!(status["status"], "Failed", "{status:#}");

    // Every event the cluster recorded reached the receiver, signed.
    let recorded = events(&c, &["--pipeline", "shop"]);
    let want: BTreeSet<u64> = recorded.iter().filter_map(|e| e["id"].as_u64()).collect();
    let got = wait_for("every notification", Duration::from_secs(60), || {
        let got = hook.received();
        let ids: BTreeSet<u64> = got.iter().filter_map(|r| r.json()["id"].as_u64()).collect();
        (ids == want).then_some(got)
    });
    assert!(
        got.iter().all(|r| r.signed_with(KEY)),
        "unsigned or badly signed: {got:?}"
    );
    assert!(!got.iter().any(|r| r.signed_with(b"another key")));
    for r in &got {
        assert_eq!(
            r.headers.get("x-ferry-event-id").map(String::as_str),
            r.json()["id"].as_u64().map(|i| i.to_string()).as_deref()
        );
    }
    let kinds = kinds(&got);
    for kind in [
        "execution.started",
        "approval.waiting",
        "approval.decided",
        "deployment.started",
        "deployment.succeeded",
        "execution.succeeded",
        "deployment.rolled_back",
        "execution.failed",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} in {kinds:?}");
    }

    // The Slack target got the approval events only, as Slack messages.
    let slack = wait_for("the Slack messages", Duration::from_secs(30), || {
        let got = chat.received();
        (got.len() >= 4).then_some(got)
    });
    for m in &slack {
        let text = m.json()["text"].as_str().unwrap_or_default().to_string();
        assert!(text.contains("approval."), "{text}");
        assert!(!m.headers.contains_key("x-ferry-signature-256"));
    }
    assert!(slack.iter().any(|m| {
        m.json()["text"]
            .as_str()
            .is_some_and(|t| t.contains("`ferry approve shop"))
    }));
    // The approval's message is text in Slack, never a mention or a link.
    let waiting: Vec<String> = slack
        .iter()
        .filter_map(|m| m.json()["text"].as_str().map(str::to_string))
        .filter(|t| t.contains("approval.waiting"))
        .collect();
    assert!(!waiting.is_empty(), "{slack:?}");
    for text in &waiting {
        assert!(
            text.contains("ship it? &lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;"),
            "{text}"
        );
        assert!(
            !text.contains("<!channel>") && !text.contains("<https://evil"),
            "{text}"
        );
    }

    // `ferry events` resumes after an id.
    let after = want.iter().nth(2).copied().unwrap_or_default();
    let rest = events(&c, &["--pipeline", "shop", "--after", &after.to_string()]);
    assert_eq!(rest.len(), want.len() - 3);
    assert!(rest.iter().all(|e| e["id"].as_u64() > Some(after)));
}

#[test]
fn a_leader_killed_mid_delivery_loses_nothing_and_a_dead_target_is_given_up() {
    let mut c = Cluster::start_members(
        "notifyha",
        3,
        Options {
            coordinator_args: vec!["--notify-attempts".into(), "3".into()],
            ..Options::default()
        },
    );
    c.set_secret("notify-key", KEY);
    let slow = Receiver::start();
    slow.set_delay(Duration::from_secs(3));
    let repo = Repo::new();
    repo.commit(&[("README", "gate\n")], "first");
    let dead = format!("http://127.0.0.1:{}/never", ferry_tests::free_port());
    c.apply(&format!(
        "name: gate\nexecution_mode: parallel\nsource: {{git: {}}}\nnotifications:\n  - {{name: slow, url: \"{}\", secret: notify-key}}\n  - {{name: dead, url: \"{dead}\", events: [execution.started]}}\nstages:\n  - name: approve\n    actions:\n      - {{name: release, type: approval}}\n",
        repo.url(),
        slow.url("/in"),
    ));
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(
            c.ferry_ok(Some("admin"), &["run", "gate"])
                .trim()
                .to_string(),
        );
    }
    // Deliveries are in flight (the receiver sits on them): kill the leader.
    std::thread::sleep(Duration::from_millis(1500));
    let leader = c.leader();
    c.kill_member(leader);

    let recorded = events(&c, &["--pipeline", "gate"]);
    let want: BTreeSet<u64> = recorded.iter().filter_map(|e| e["id"].as_u64()).collect();
    assert_eq!(want.len(), 6, "{recorded:#?}");
    let got = wait_for(
        "every notification after the failover",
        Duration::from_secs(120),
        || {
            let got = slow.received();
            let ids: BTreeSet<u64> = got.iter().filter_map(|r| r.json()["id"].as_u64()).collect();
            (ids == want).then_some(got)
        },
    );
    // Each copy of one event is the same event.
    let mut by_id: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    for r in &got {
        assert!(r.signed_with(KEY));
        let v = r.json();
        by_id
            .entry(v["id"].as_u64().unwrap_or_default())
            .or_default()
            .push(v);
    }
    for (id, copies) in &by_id {
        assert!(
            copies.windows(2).all(|w| w[0] == w[1]),
            "event {id} differs: {copies:#?}"
        );
    }

    // The dead target: three attempts, then given up and shown.
    let status = wait_for(
        "the dead target to be given up",
        Duration::from_secs(60),
        || {
            let out = c.ferry_ok(Some("admin"), &["notify", "status", "-o", "json"]);
            let v: Value = serde_json::from_str(&out).ok()?;
            let dead: Vec<Value> = v["deliveries"]
                .as_array()?
                .iter()
                .filter(|d| d["target"] == "dead")
                .cloned()
                .collect();
            (dead.len() == 3
                && dead
                    .iter()
                    .all(|d| !d["gave_up_at"].as_str().unwrap_or_default().is_empty()))
            .then_some(dead)
        },
    );
    assert!(status.iter().all(|d| d["attempts"] == 3), "{status:#?}");
    let table = c.ferry_ok(Some("admin"), &["notify", "status"]);
    assert!(table.contains("gave up"), "{table}");
    let _ = runs;
}

/// What `ferry notify status` shows of every delivery that reached no
/// receiver, whatever the reason (the coordinator's `UNREACHABLE`).
const UNREACHABLE: &str = "the receiver could not be reached";

#[test]
fn internal_targets_get_nothing_without_an_allowance_and_errors_stay_generic() {
    let c = Cluster::start_members(
        "notifyssrf",
        1,
        Options {
            notify_public_only: true,
            coordinator_args: vec!["--notify-attempts".into(), "2".into()],
            ..Options::default()
        },
    );
    let hook = Receiver::start();
    let port = hook
        .addr
        .rsplit_once(':')
        .map_or("0", |(_, p)| p)
        .to_string();
    // A Slack URL is a credential; this one is not even a URL.
    const VALUE: &str = "hunter2-xoxb-not-a-url";
    c.set_secret("chat-url", VALUE.as_bytes());
    let repo = Repo::new();
    repo.commit(&[("README", "gate\n")], "first");
    let own = c.member_addr(1);
    let closed = format!("127.0.0.1:{}", free_port());
    c.apply(&format!(
        "name: gate\nexecution_mode: parallel\nsource: {{git: {}}}\nnotifications:\n  \
         - {{name: loopback, url: \"http://{}/a\", events: [execution.started]}}\n  \
         - {{name: localhost, url: \"http://localhost:{port}/b\", events: [execution.started]}}\n  \
         - {{name: mapped, url: \"http://[::ffff:127.0.0.1]:{port}/c\", events: [execution.started]}}\n  \
         - {{name: private, url: \"http://10.255.255.1:{port}/d\", events: [execution.started]}}\n  \
         - {{name: metadata, url: \"http://169.254.169.254/latest/meta-data/\", events: [execution.started]}}\n  \
         - {{name: itself, url: \"http://{own}/\", events: [execution.started]}}\n  \
         - {{name: closed, url: \"http://{closed}/\", events: [execution.started]}}\n  \
         - {{name: chat, url_secret: chat-url, format: slack, events: [execution.started]}}\n\
         stages:\n  - name: approve\n    actions:\n      - {{name: release, type: approval}}\n",
        repo.url(),
        hook.addr,
    ));
    c.ferry_ok(Some("admin"), &["run", "gate"]);
    c.grant("vic", "viewer");
    let deliveries = wait_for(
        "every delivery to be given up",
        Duration::from_secs(60),
        || {
            let out = c.ferry_ok(Some("vic"), &["notify", "status", "-o", "json"]);
            let v: Value = serde_json::from_str(&out).ok()?;
            let all = v["deliveries"].as_array()?.clone();
            (all.len() == 8
                && all
                    .iter()
                    .all(|d| !d["gave_up_at"].as_str().unwrap_or_default().is_empty()))
            .then_some(all)
        },
    );
    assert!(
        hook.received().is_empty(),
        "a loopback target got a request"
    );
    assert_eq!(hook.refused(), 0);
    for d in &deliveries {
        let error = d["last_error"].as_str().unwrap_or_default();
        if d["target"] == "chat" {
            // Named, not shown.
            assert!(
                error.starts_with("the secret `chat-url` is not a valid notification URL"),
                "{d:#}"
            );
        } else {
            // Refused, or a closed port: one sentence, no address, no port.
            assert_eq!(error, UNREACHABLE, "{d:#}");
        }
        assert!(!error.contains("hunter2"), "{d:#}");
    }
    let table = c.ferry_ok(Some("vic"), &["notify", "status"]);
    assert!(!table.contains("hunter2"), "{table}");
    // Nor does the coordinator's log hold the value.
    let log = std::fs::read_to_string(c.path().join("coordinator-1.log")).unwrap_or_default();
    assert!(log.contains("notification not delivered"), "{log}");
    assert!(!log.contains("hunter2"), "the secret's value is in the log");
}
