//! The CLI rides through a member going away (rolling upgrades with no
//! failed requests): given every member's address, as the harness gives it,
//! reads and writes succeed with the member listed first killed; a write
//! sent right after the leader is killed succeeds once the next leader is
//! elected, without the test retrying it; with two members down, a write
//! answered "no leader" (marked as not applied) is sent again until a
//! member is back; and with every member stopped a command fails after
//! about `--retry-for`, naming each address.

use std::time::{Duration, Instant};

use ferry_tests::{Cluster, Options, Run};
use serde_json::Value;

/// The role bindings, as JSON (which also checks that stdout holds nothing else).
fn bindings(c: &Cluster) -> String {
    let out = c.ferry_ok(Some("admin"), &["rbac", "list", "-o", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    v.to_string()
}

#[test]
fn the_cli_rides_through_members_going_away() {
    let mut c = Cluster::start_members("clifail", 3, Options::default());

    // (i) The member listed first is killed: reads and writes go on.
    c.kill_member(1);
    c.ferry_ok(Some("admin"), &["whoami"]);
    c.ferry_ok(Some("admin"), &["cluster", "status", "-o", "json"]);
    c.ferry_ok(
        Some("admin"),
        &["rbac", "grant", "while-first-is-down", "viewer"],
    );
    c.set_secret("while-first-is-down", b"value");
    let secrets = c.ferry_ok(Some("admin"), &["secret", "list", "-o", "json"]);
    assert!(secrets.contains("while-first-is-down"), "{secrets}");
    c.ferry_ok(Some("admin"), &["token", "create"]);
    assert!(bindings(&c).contains("while-first-is-down"));
    c.start_member(1);
    c.wait_converged(&[1, 2, 3]);

    // (ii) The leader is killed and a write that is not idempotent (a
    // revocation: the second would find nothing to revoke) follows at once:
    // it waits for the next leader (the test does not try it again).
    c.ferry_ok(
        Some("admin"),
        &["rbac", "grant", "after-the-leader-died", "viewer"],
    );
    let old = c.leader();
    c.kill_member(old);
    let started = Instant::now();
    c.ferry_ok(
        Some("admin"),
        &["rbac", "revoke", "after-the-leader-died", "viewer"],
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(30), "it took {took:?}");
    // A read at once too, and a second write, before the old leader is back.
    assert!(!bindings(&c).contains("after-the-leader-died"));
    c.ferry_ok(
        Some("admin"),
        &["rbac", "revoke", "while-first-is-down", "viewer"],
    );
    let new = c.leader();
    assert_ne!(new, old);
    c.start_member(old);
    c.wait_converged(&[1, 2, 3]);
    let list = bindings(&c);
    assert!(
        !list.contains("after-the-leader-died") && !list.contains("while-first-is-down"),
        "{list}"
    );

    // (iv) Two members are down, so no leader can be elected: the one left
    // answers the write (a revocation, not idempotent) "no leader", marked
    // as not applied, after waiting for one, and the CLI sends it again
    // until a member is back.
    c.ferry_ok(Some("admin"), &["rbac", "grant", "no-quorum", "viewer"]);
    let keep = c.leader();
    let down: Vec<u64> = (1..=3).filter(|id| *id != keep).collect();
    for id in &down {
        c.kill_member(*id);
    }
    // Once the one left has stepped down (it hears from no quorum), it
    // proposes nothing it is sent. (A write it took while still leading is
    // in its log, to be committed or not later: that is answered "may or may
    // not have been applied" and never sent again.)
    ferry_tests::wait_for(
        "the member left to step down",
        Duration::from_secs(30),
        || {
            let v = c.cluster_status(Some(keep))?;
            (v["leader_id"] == 0).then_some(())
        },
    );
    let write = std::thread::spawn({
        let mut cmd = c
            .cli_for("admin")
            .with_env("RUST_LOG", "ferry=debug")
            .command(&["--retry-for", "60", "rbac", "revoke", "no-quorum", "viewer"]);
        move || cmd.output()
    });
    // Long enough for the member left to have answered "no leader" once.
    std::thread::sleep(Duration::from_secs(7));
    c.start_member(down[0]);
    let out = write
        .join()
        .unwrap_or_else(|_| panic!("the CLI's thread panicked"))
        .unwrap_or_else(|e| panic!("cannot run ferry: {e}"));
    let r = Run::from_output(&out);
    assert!(r.success, "{r:?}");
    assert!(
        r.stderr
            .contains("answered UNAVAILABLE; trying another member"),
        "the write was answered \"no leader\" and sent again: {}",
        r.stderr
    );
    c.start_member(down[1]);
    c.wait_converged(&[1, 2, 3]);
    assert!(!bindings(&c).contains("no-quorum"));

    // (iii) Every member is stopped: a command fails after about
    // --retry-for, naming each address.
    c.kill_coordinator();
    let started = Instant::now();
    let r: Run = c.ferry(Some("admin"), &["--retry-for", "2", "rbac", "list"]);
    let took = started.elapsed();
    assert!(!r.success, "{r:?}");
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(15),
        "it gave up after {took:?}: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains("cannot connect to any coordinator"),
        "{}",
        r.stderr
    );
    for id in 1..=3 {
        let addr = c.member_addr(id);
        assert!(r.stderr.contains(&addr), "{addr} not named: {}", r.stderr);
    }
    assert!(r.stdout.is_empty(), "{}", r.stdout);
}
