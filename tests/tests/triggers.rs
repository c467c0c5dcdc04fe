//! End to end: what starts a pipeline without a person — signed git
//! webhooks in GitHub, GitLab and Gitea formats over the coordinators'
//! HTTPS listener (and everything they must refuse), trigger filters on
//! branches, tags and changed paths, a schedule that fires once per slot
//! across a leader SIGKILL — and `ferry run --revision`. A signed push whose
//! commit is not on the branch it names (or is not the tag's) starts nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use ferry_tests::{Cluster, Options, Repo, wait_for};
use serde_json::Value;

const SECRET: &[u8] = b"It's a Secret to Everybody";

fn sign(body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET);
    let tag = ring::hmac::sign(&key, body);
    hex::encode(tag.as_ref())
}

/// A GitHub push event for `refname` moving from `before` to `after`.
fn github_push(refname: &str, before: &str, after: &str) -> Vec<u8> {
    serde_json::json!({
        "ref": refname,
        "before": before,
        "after": after,
        "created": false,
        "deleted": false,
        "forced": false,
        "repository": {"full_name": "ferry/app", "default_branch": "main"},
        "pusher": {"name": "octocat"},
        "commits": [],
    })
    .to_string()
    .into_bytes()
}

/// POSTs a GitHub-format push, signed unless `signature` says otherwise.
fn post_github(
    c: &Cluster,
    pipeline: &str,
    delivery: &str,
    body: &[u8],
    signature: Option<&str>,
) -> (u16, Value) {
    let sig = signature.map_or_else(|| format!("sha256={}", sign(body)), str::to_string);
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", delivery),
    ];
    if !sig.is_empty() {
        headers.push(("X-Hub-Signature-256", sig.as_str()));
    }
    let (code, text) = c.post_https(1, &format!("/hooks/git/{pipeline}"), &headers, body);
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn pipeline(name: &str, repo: &Repo, source_extra: &str) -> String {
    format!(
        "name: {name}\nexecution_mode: parallel\nsource:\n  git: {}\n  branch: main\n  webhook_secret: hook\n{source_extra}stages:\n  - name: build\n    actions:\n      - {{name: compile, type: build, image: ferry-local/busybox, commands: [\"true\"]}}\n",
        repo.url()
    )
}

fn executions(c: &Cluster, pipeline: &str) -> Vec<Value> {
    c.ferry_ok_through_failover(&["executions", pipeline, "--limit", "500", "-o", "json"])
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .flat_map(|v| match v {
            Value::Array(a) => a,
            other => vec![other],
        })
        .collect()
}

#[test]
fn signed_pushes_start_at_the_pushed_commit_and_everything_else_starts_nothing() {
    let c = Cluster::start("hooks");
    c.set_secret("hook", SECRET);
    let repo = Repo::new();
    let first = repo.commit(&[("README", "one\n")], "first");
    let second = repo.commit(&[("README", "two\n")], "second");
    c.apply(&pipeline("app", &repo, ""));

    // GitHub: the older commit the event names, not the branch head.
    let body = github_push(
        "refs/heads/main",
        "0000000000000000000000000000000000000000",
        &first,
    );
    let (code, answer) = post_github(&c, "app", "gh-1", &body, None);
    assert_eq!(code, 201, "{answer}");
    let exec = answer["execution"].as_str().unwrap_or_default().to_string();
    let status = c.status("app", &exec);
    assert_eq!(status["revision"], first.as_str());
    assert!(
        status["trigger"]
            .as_str()
            .unwrap_or_default()
            .contains("webhook"),
        "{status}"
    );

    // The same delivery again (GitHub's "Redeliver"): nothing new starts.
    let (code, again) = post_github(&c, "app", "gh-1", &body, None);
    assert_eq!(code, 200, "{again}");
    assert_eq!(again["execution"], exec.as_str());

    // Unsigned, wrongly signed, oversized, unknown pipeline, malformed.
    let (code, answer) = post_github(&c, "app", "gh-2", &body, Some(""));
    assert_eq!(code, 401, "{answer}");
    assert!(
        answer.to_string().contains("X-Hub-Signature-256"),
        "{answer}"
    );
    let wrong = format!("sha256={}", "0".repeat(64));
    let (code, answer) = post_github(&c, "app", "gh-3", &body, Some(&wrong));
    assert_eq!(code, 401, "{answer}");
    let big = vec![b' '; 10 * 1024 * 1024];
    let (code, _) = post_github(&c, "app", "gh-4", &big, None);
    assert_eq!(code, 413);
    let (code, answer) = post_github(&c, "nope", "gh-5", &body, None);
    assert_eq!(code, 404, "{answer}");
    let (code, answer) = post_github(&c, "app", "gh-6", b"{\"ref\": 42", None);
    assert_eq!(code, 400, "{answer}");

    // GitLab: the token header, and the head commit this time.
    let gitlab = serde_json::json!({
        "object_kind": "push",
        "event_name": "push",
        "ref": "refs/heads/main",
        "before": first,
        "after": second,
        "checkout_sha": second,
        "project": {"path_with_namespace": "ferry/app"},
        "commits": [],
    })
    .to_string();
    let secret = String::from_utf8_lossy(SECRET).into_owned();
    let (code, text) = c.post_https(
        1,
        "/hooks/git/app",
        &[
            ("Content-Type", "application/json"),
            ("X-Gitlab-Event", "Push Hook"),
            ("X-Gitlab-Event-UUID", "gl-1"),
            ("X-Gitlab-Token", &secret),
        ],
        gitlab.as_bytes(),
    );
    assert_eq!(code, 201, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let gl_exec = answer["execution"].as_str().unwrap_or_default().to_string();
    assert_eq!(c.status("app", &gl_exec)["revision"], second.as_str());
    let (code, text) = c.post_https(
        1,
        "/hooks/git/app",
        &[
            ("X-Gitlab-Event", "Push Hook"),
            ("X-Gitlab-Event-UUID", "gl-2"),
            ("X-Gitlab-Token", "guess"),
        ],
        gitlab.as_bytes(),
    );
    assert_eq!(code, 401, "{text}");

    // Exactly the two signed deliveries started executions.
    let runs = executions(&c, "app");
    assert_eq!(runs.len(), 2, "{runs:?}");
}

#[test]
fn branch_tag_and_path_filters_decide_what_starts() {
    let c = Cluster::start("filters");
    c.set_secret("hook", SECRET);
    let repo = Repo::new();
    let base = repo.commit(&[("src/main.rs", "fn main() {}\n")], "base");
    c.apply(&pipeline(
        "filtered",
        &repo,
        "  triggers:\n    - branches: {include: [main, \"release/*\"], exclude: [\"release/old*\"]}\n      paths: {include: [\"src/**\"], exclude: [\"src/**/*.md\"]}\n    - tags: {include: [\"v*\"]}\n",
    ));
    let push = |refname: &str, before: &str, after: &str, delivery: &str| {
        post_github(
            &c,
            "filtered",
            delivery,
            &github_push(refname, before, after),
            None,
        )
    };

    // Only documentation changed: ignored, with the reason.
    let docs = repo.commit(&[("docs/guide.md", "read me\n")], "docs");
    let (code, answer) = push("refs/heads/main", &base, &docs, "d-1");
    assert_eq!(code, 202, "{answer}");
    assert!(answer.to_string().contains("paths"), "{answer}");
    let note = repo.commit(&[("src/NOTES.md", "notes\n")], "notes");
    let (code, answer) = push("refs/heads/main", &docs, &note, "d-2");
    assert_eq!(code, 202, "{answer}");

    // A source change on main starts a run.
    let code_change = repo.commit(&[("src/lib.rs", "pub fn f() {}\n")], "code");
    let (code, answer) = push("refs/heads/main", &note, &code_change, "d-3");
    assert_eq!(code, 201, "{answer}");

    // Branches: a feature branch and an excluded release branch are ignored.
    repo.push_branch("feature/x");
    let (code, answer) = push("refs/heads/feature/x", &note, &code_change, "d-4");
    assert_eq!(code, 202, "{answer}");
    assert!(answer.to_string().contains("feature/x"), "{answer}");
    repo.push_branch("release/old-1");
    let (code, _) = push("refs/heads/release/old-1", &note, &code_change, "d-5");
    assert_eq!(code, 202);
    repo.push_branch("release/2.0");
    let (code, answer) = push("refs/heads/release/2.0", &note, &code_change, "d-6");
    assert_eq!(code, 201, "{answer}");

    // Tags: v* starts (no path filter on tags), anything else does not.
    repo.push_tag("v1.0");
    let zeros = "0".repeat(40);
    let (code, answer) = push("refs/tags/v1.0", &zeros, &code_change, "d-7");
    assert_eq!(code, 201, "{answer}");
    let exec = answer["execution"].as_str().unwrap_or_default().to_string();
    assert_eq!(c.status("filtered", &exec)["source"], "tag v1.0");
    repo.push_tag("nightly");
    let (code, _) = push("refs/tags/nightly", &zeros, &code_change, "d-8");
    assert_eq!(code, 202);

    // Gitea's format and signature header, on a deleted branch: ignored.
    let body = serde_json::json!({
        "ref": "refs/heads/release/2.0",
        "before": code_change,
        "after": "0000000000000000000000000000000000000000",
        "deleted": true,
        "repository": {"full_name": "ferry/app"},
        "commits": [],
    })
    .to_string();
    let sig = sign(body.as_bytes());
    let (code, text) = c.post_https(
        1,
        "/hooks/git/filtered",
        &[
            ("Content-Type", "application/json"),
            ("X-Gitea-Event", "push"),
            ("X-Gitea-Delivery", "g-1"),
            ("X-Gitea-Signature", &sig),
        ],
        body.as_bytes(),
    );
    assert_eq!(code, 202, "{text}");
    assert!(text.contains("deleted"), "{text}");

    assert_eq!(executions(&c, "filtered").len(), 3);
}

#[test]
fn a_schedule_fires_once_per_slot_across_a_leader_kill() {
    let mut c = Cluster::start_members("sched", 3, Options::default());
    let repo = Repo::new();
    repo.commit(&[("README", "tick\n")], "first");
    let yaml = format!(
        "name: ticker\nexecution_mode: parallel\nsource: {{git: {}, branch: main}}\nschedule: {{cron: \"*/2 * * * * *\", timezone: Europe/Berlin}}\nstages:\n  - name: build\n    actions:\n      - {{name: compile, type: build, image: ferry-local/busybox, commands: [\"true\"]}}\n",
        repo.url()
    );
    c.apply(&yaml);
    let shown = wait_for("the schedule to be armed", Duration::from_secs(30), || {
        let out = c.ferry_ok(Some("admin"), &["pipeline", "show", "ticker"]);
        out.contains("schedule:    */2 * * * * * (Europe/Berlin), next 20")
            .then_some(out)
    });
    assert!(!shown.contains("next never"), "{shown}");
    wait_for("three scheduled runs", Duration::from_secs(60), || {
        (executions(&c, "ticker").len() >= 3).then_some(())
    });
    let leader = c.leader();
    c.kill_member(leader);
    wait_for("three more scheduled runs", Duration::from_secs(90), || {
        (executions(&c, "ticker").len() >= 7).then_some(())
    });
    // A webhook reaches a follower: it verifies, fetches and forwards.
    c.set_secret("hook", SECRET);
    c.apply(&pipeline("hooked", &repo, ""));
    let head = repo.commit(&[("README", "tock\n")], "second");
    let new_leader = c.leader();
    let follower = (1..=3)
        .find(|id| *id != leader && *id != new_leader)
        .unwrap_or(new_leader);
    let body = github_push("refs/heads/main", &"0".repeat(40), &head);
    let sig = format!("sha256={}", sign(&body));
    let (code, text) = c.post_https(
        follower,
        "/hooks/git/hooked",
        &[
            ("Content-Type", "application/json"),
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", "via-follower"),
            ("X-Hub-Signature-256", &sig),
        ],
        &body,
    );
    assert_eq!(code, 201, "{text}");

    // Stop the schedule and let what is due settle.
    c.apply(&yaml.replace(
        "schedule: {cron: \"*/2 * * * * *\", timezone: Europe/Berlin}\n",
        "",
    ));
    std::thread::sleep(Duration::from_secs(3));
    let runs = executions(&c, "ticker");
    let slots: Vec<String> = runs
        .iter()
        .map(|r| r["trigger"].as_str().unwrap_or_default().to_string())
        .collect();
    let distinct: BTreeSet<&String> = slots.iter().collect();
    assert_eq!(
        distinct.len(),
        slots.len(),
        "a slot fired twice: {slots:#?}"
    );
    // No slot skipped: consecutive slots are 2 s apart.
    let mut times: Vec<i64> = slots
        .iter()
        .filter_map(|t| t.rsplit_once("slot ").map(|(_, s)| s.trim()))
        .filter_map(|s| humantime::parse_rfc3339(s).ok())
        .filter_map(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .collect();
    assert_eq!(
        times.len(),
        slots.len(),
        "every trigger names its slot: {slots:#?}"
    );
    times.sort_unstable();
    for w in times.windows(2) {
        assert_eq!(w[1] - w[0], 2000, "a slot was skipped: {times:?}");
    }
}

#[test]
fn polling_obeys_the_path_filter() {
    let c = Cluster::start("pollpaths");
    let repo = Repo::new();
    repo.commit(&[("src/main.rs", "fn main() {}\n")], "first");
    c.apply(&format!(
        "name: polled\nexecution_mode: parallel\nsource:\n  git: {}\n  branch: main\n  poll_interval: 1s\n  triggers:\n    - branches: {{include: [main]}}\n      paths: {{include: [\"src/**\"]}}\nstages:\n  - name: build\n    actions:\n      - {{name: compile, type: build, image: ferry-local/busybox, commands: [\"true\"]}}\n",
        repo.url()
    ));
    // The first head the poller sees starts a run (it changed src/main.rs).
    wait_for("the first polled run", Duration::from_secs(30), || {
        (executions(&c, "polled").len() == 1).then_some(())
    });
    // Documentation only: seen, not run.
    repo.commit(&[("docs/a.md", "doc\n")], "docs");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(executions(&c, "polled").len(), 1);
    // A source change: run, at that commit.
    let code = repo.commit(&[("src/lib.rs", "pub fn f() {}\n")], "code");
    let runs = wait_for("the second polled run", Duration::from_secs(30), || {
        let runs = executions(&c, "polled");
        (runs.len() == 2).then_some(runs)
    });
    assert_eq!(runs[0]["revision"], code.as_str(), "{runs:#?}");
}

#[test]
fn run_at_a_revision_builds_that_commit() {
    let c = Cluster::start("revision");
    let repo = Repo::new();
    let first = repo.commit(&[("README", "one\n")], "first");
    repo.push_tag("v1");
    let second = repo.commit(&[("README", "two\n")], "second");
    c.apply(&format!(
        "name: rev\nexecution_mode: parallel\nsource: {{git: {}, branch: main}}\nstages:\n  - name: build\n    actions:\n      - {{name: compile, type: build, image: ferry-local/busybox, commands: [\"true\"]}}\n",
        repo.url()
    ));
    let run = |rev: &str| {
        c.ferry_ok(Some("admin"), &["run", "rev", "--revision", rev])
            .trim()
            .to_string()
    };
    let by_id = run(&first);
    assert_eq!(c.status("rev", &by_id)["revision"], first.as_str());
    let short = run(&first[..10]);
    assert_eq!(c.status("rev", &short)["revision"], first.as_str());
    let tagged = run("v1");
    let status = c.status("rev", &tagged);
    assert_eq!(status["revision"], first.as_str());
    assert_eq!(status["source"], "tag v1");
    let head = run("main");
    assert_eq!(c.status("rev", &head)["revision"], second.as_str());
    let missing = c.ferry(Some("admin"), &["run", "rev", "--revision", "no-such-ref"]);
    assert!(!missing.success);
    assert!(missing.stderr.contains("no-such-ref"), "{}", missing.stderr);
    assert_eq!(executions(&c, "rev").len(), 4);
}

#[test]
fn a_signed_push_of_a_commit_that_is_not_on_its_ref_starts_nothing() {
    let c = Cluster::start("hookref");
    c.set_secret("hook", SECRET);
    let repo = Repo::new();
    let first = repo.commit(&[("README", "one\n")], "first");
    repo.push_tag("v1");
    let second = repo.commit(&[("README", "two\n")], "second");
    // On a feature branch only: never on main, and not what v1 tags.
    let side = repo.commit_on_branch("feature", &[("deploy.sh", "curl evil\n")], "side");
    c.apply(&pipeline(
        "guarded",
        &repo,
        "  triggers:\n    - branches: {include: [main, feature]}\n    - tags: {include: [\"v*\"]}\n",
    ));
    let push = |refname: &str, before: &str, after: &str, delivery: &str| {
        post_github(
            &c,
            "guarded",
            delivery,
            &github_push(refname, before, after),
            None,
        )
    };

    // Signed, but the commit is on another branch: refused, nothing starts.
    let (code, answer) = push("refs/heads/main", &second, &side, "r-1");
    assert_eq!(code, 400, "{answer}");
    let text = answer.to_string();
    assert!(
        text.contains("is not reachable from the head of branch `main`")
            && text.contains(&side[..12]),
        "{answer}"
    );
    // The tag names another commit.
    let (code, answer) = push("refs/tags/v1", &"0".repeat(40), &second, "r-2");
    assert_eq!(code, 400, "{answer}");
    assert!(
        answer.to_string().contains("the commit of tag `v1`"),
        "{answer}"
    );
    // A commit id that is no hex never reaches git.
    let (code, answer) = push(
        "refs/heads/main",
        &first,
        "--upload-pack=touch /tmp/x",
        "r-3",
    );
    assert_eq!(code, 400, "{answer}");
    assert!(
        answer.to_string().contains("is not a commit id"),
        "{answer}"
    );
    assert!(executions(&c, "guarded").is_empty());

    // What the repository agrees with still starts: the head, an ancestor
    // of it, the side commit on its own branch, the tag's commit.
    for (refname, after, delivery) in [
        ("refs/heads/main", &second, "ok-1"),
        ("refs/heads/main", &first, "ok-2"),
        ("refs/heads/feature", &side, "ok-3"),
        ("refs/tags/v1", &first, "ok-4"),
    ] {
        let (code, answer) = push(refname, &"0".repeat(40), after, delivery);
        assert_eq!(code, 201, "{refname} {after}: {answer}");
        let exec = answer["execution"].as_str().unwrap_or_default().to_string();
        assert_eq!(c.status("guarded", &exec)["revision"], after.as_str());
    }
    assert_eq!(executions(&c, "guarded").len(), 4);
}
