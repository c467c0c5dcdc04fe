//! Authorization is checked again when a command is applied: an operator
//! whose role was just revoked is refused even through a member that has
//! not heard of the revocation yet.
//!
//! How the test makes that deterministic: member N (a follower) is cut off
//! the network, and bob's operator role is revoked through the majority.
//! `ferry whoami` inside N's namespace — a read that takes no barrier —
//! shows that N still believes bob is an operator, so N's gRPC layer lets
//! bob's `ferry run` through. The run handler then resolves the revision in
//! N's git mirror; once the fetch has landed there (`FETCH_HEAD`, a file the
//! test can wait for) the handler is past every early check and about to
//! propose, which waits up to 5 s for a leader. Healing the partition then
//! lets N forward the command to the leader, whose `apply` — against a state
//! where the revocation came first — refuses it. The refusal's wording is
//! `apply`'s ("revoked meanwhile"), not the gRPC layer's, so the test also
//! shows which check refused. No sleeps: every step waits on a condition.

use std::process::{Child, Stdio};
use std::time::Duration;

use ferry_tests::{Cluster, Options, Repo, Run, wait_for};
use serde_json::Value;

/// Kills a spawned CLI if the test fails before it is waited for.
struct Spawned(Option<Child>);

impl Spawned {
    fn wait(mut self) -> Run {
        let child = self
            .0
            .take()
            .unwrap_or_else(|| panic!("the CLI was already waited for"));
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("cannot wait for ferry: {e}"));
        Run::from_output(&out)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The roles `user` holds according to member `id`'s own applied state.
fn roles_seen_by(c: &Cluster, id: u64, user: &str) -> Option<Vec<String>> {
    let out = c
        .cli_inside(id, user, &["whoami", "-o", "json"])
        .output()
        .ok()?;
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(
        v["roles"]
            .as_array()?
            .iter()
            .filter_map(|r| r.as_str().map(String::from))
            .collect(),
    )
}

/// Whether member `id` has fetched some repository into its git mirror.
fn fetched(c: &Cluster, id: u64) -> bool {
    std::fs::read_dir(c.data_dir(id).join("git"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|mirror| mirror.path().join("FETCH_HEAD").exists())
}

#[test]
fn an_operator_revoked_meanwhile_is_refused_through_a_lagging_member() {
    let c = Cluster::start_members(
        "azlag",
        3,
        Options {
            namespaces: true,
            ..Default::default()
        },
    );
    let leader = c.leader();
    let lagging = (1..=3).rev().find(|id| *id != leader).unwrap_or(3);
    let repo = Repo::new();
    repo.commit(&[("README", "x")], "init");
    c.apply(&format!(
        "name: lagged\nsource: {{git: {}}}\nstages:\n  - name: s\n    actions:\n      - {{name: work, type: build, image: ferry-local/busybox, commands: [\"true\"]}}\n",
        repo.url()
    ));
    c.grant("bob", "operator");
    wait_for(
        "the lagging member to know bob is an operator",
        Duration::from_secs(30),
        || {
            roles_seen_by(&c, lagging, "bob")
                .filter(|r| r.iter().any(|r| r == "operator"))
                .map(|_| ())
        },
    );
    assert!(
        !fetched(&c, lagging),
        "member {lagging} resolved nothing yet"
    );

    c.partition(lagging);
    c.ferry_ok(Some("admin"), &["rbac", "revoke", "bob", "operator"]);
    // The majority refuses bob at once, in its gRPC layer.
    let early = c.ferry(Some("bob"), &["run", "lagged"]);
    assert!(
        !early.success
            && early.stderr.contains("needs role operator or admin")
            && !early.stderr.contains("revoked meanwhile"),
        "{early:?}"
    );
    // The lagging member, read without a barrier, still lists the role.
    assert_eq!(
        roles_seen_by(&c, lagging, "bob"),
        Some(vec!["operator".to_string()]),
        "member {lagging} must not have heard of the revocation"
    );

    let mut cli = c.cli_inside(lagging, "bob", &["run", "lagged"]);
    let run = Spawned(Some(
        cli.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start ferry: {e}")),
    ));
    wait_for(
        "the lagging member to resolve bob's revision (past its early checks)",
        Duration::from_secs(60),
        || fetched(&c, lagging).then_some(()),
    );
    c.heal(lagging);
    let refused = run.wait();
    assert!(!refused.success, "bob's run must be refused: {refused:?}");
    assert!(
        refused.stderr.contains("may not start runs")
            && refused.stderr.contains("revoked meanwhile"),
        "refused by apply, not by the gRPC layer: {refused:?}"
    );

    // Nothing was started, on the majority or on the member that lagged.
    let listed = c.ferry_ok(Some("admin"), &["executions", "lagged", "-o", "json"]);
    assert_eq!(listed.trim(), "[]", "{listed}");
    let inside = c.ferry_inside(lagging, &["executions", "lagged", "-o", "json"]);
    assert!(inside.success, "{inside:?}");
    assert_eq!(inside.stdout.trim(), "[]", "{}", inside.stdout);
    assert_eq!(roles_seen_by(&c, lagging, "bob"), Some(Vec::new()));
}
