//! End to end: backups and disaster recovery (issue 23, items 4 and 5).
//!
//! - `ferry cluster backup` writes a consistent backup; a damaged copy is
//!   refused by `ferry-coordinator restore` before anything is written; the
//!   backup restored into an empty data dir is a new cluster (a new cluster
//!   id) that holds every pipeline, execution and waiting approval committed
//!   before the backup, that its agent reconnects to, and that goes on.
//! - With two members of three gone for good (data dirs deleted),
//!   `--force-new-cluster` makes the survivor a cluster of one with its
//!   state, and pipelines go on.

use std::process::Command;

use ferry_tests::{Cluster, Options, Repo, bin, ensure_busybox_image};
use serde_json::Value;

fn pipeline(name: &str, repo: &Repo) -> String {
    format!(
        "name: {name}\nsource: {{git: {}, branch: main}}\nstages:\n  - name: build\n    actions:\n      - {{name: compile, type: build, image: ferry-local/busybox, commands: [\"echo built > out.txt\"], outputs: {{app: [out.txt]}}, timeout: 5m}}\n  - name: gate\n    actions:\n      - {{name: release, type: approval, timeout: 1h}}\n",
        repo.url()
    )
}

fn run(c: &Cluster, pipeline: &str) -> String {
    c.ferry_ok(Some("admin"), &["run", pipeline])
        .trim()
        .to_string()
}

fn wait_gate(c: &Cluster, pipeline: &str, exec: &str) {
    c.wait_status(pipeline, exec, "the approval to wait", |v| {
        Cluster::action(v, "gate", "release")["status"] == "WaitingForApproval"
    });
}

/// The header of backup file `path` (its first line).
fn header(path: &std::path::Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{e}"));
    let end = bytes
        .iter()
        .position(|b| *b == b'\n')
        .unwrap_or(bytes.len());
    serde_json::from_slice(&bytes[..end]).unwrap_or_else(|e| panic!("backup header: {e}"))
}

fn restore(from: &std::path::Path, data_dir: &std::path::Path, address: &str) -> ferry_tests::Run {
    let out = Command::new(bin("ferry-coordinator"))
        .arg("restore")
        .arg("--from")
        .arg(from)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--id", "1", "--address", address])
        .output()
        .unwrap_or_else(|e| panic!("cannot run ferry-coordinator restore: {e}"));
    ferry_tests::Run::from_output(&out)
}

#[test]
fn a_backup_restores_into_a_new_cluster_that_goes_on() {
    ensure_busybox_image();
    let repo = Repo::new();
    repo.commit(&[("README", "backup\n")], "first");
    let mut c = Cluster::start("backup");
    let agent = c.add_agent("a", &[]);
    c.grant("alice", "approver");
    c.apply(&pipeline("kept", &repo));
    let done = run(&c, "kept");
    let done_status = c.approve_and_finish("kept", &done, ("gate", "release"), "alice");
    assert_eq!(done_status["status"], "Succeeded", "{done_status}");
    let waiting = run(&c, "kept");
    wait_gate(&c, "kept", &waiting);

    // An operator may not take a backup; an admin may.
    let out = c.path().join("cluster.backup");
    let refused = c.ferry(
        Some("alice"),
        &[
            "cluster",
            "backup",
            "--out",
            out.to_str().unwrap_or_default(),
        ],
    );
    assert!(
        !refused.success && refused.stderr.contains("admin"),
        "{refused:?}"
    );
    assert!(!out.exists());
    c.ferry_ok(
        Some("admin"),
        &[
            "cluster",
            "backup",
            "--out",
            out.to_str().unwrap_or_default(),
        ],
    );
    let taken = header(&out);
    assert_eq!(taken["format"], "ferry-backup/1");
    assert!(taken["index"].as_u64().unwrap_or(0) > 1, "{taken}");
    let old_cluster = taken["cluster_id"].as_str().unwrap_or_default().to_string();
    assert_eq!(old_cluster.len(), 32, "a new cluster has an id: {taken}");
    // Sealed secrets stay sealed: no secret value is in the file.
    c.set_secret("db-password", b"s3cret-in-the-backup");
    c.ferry_ok(
        Some("admin"),
        &[
            "cluster",
            "backup",
            "--out",
            out.to_str().unwrap_or_default(),
        ],
    );
    let text = String::from_utf8_lossy(&std::fs::read(&out).unwrap_or_default()).into_owned();
    assert!(text.contains("db-password") && !text.contains("s3cret-in-the-backup"));

    // The cluster is lost; its backup is restored into a new data dir.
    c.kill_member(1);
    let lost = c.data_dir(1);
    std::fs::rename(&lost, lost.with_extension("lost")).unwrap_or_else(|e| panic!("{e}"));
    let address = c.member_addr(1);

    // A damaged copy is refused by its checksum, and writes nothing.
    let damaged = c.path().join("damaged.backup");
    let mut bytes = std::fs::read(&out).unwrap_or_default();
    let at = bytes.len() - 10;
    bytes[at] ^= 0x01;
    std::fs::write(&damaged, &bytes).unwrap_or_else(|e| panic!("{e}"));
    let r = restore(&damaged, &lost, &address);
    assert!(!r.success && r.stderr.contains("corrupt"), "{r:?}");
    assert!(
        !lost.join("raft.redb").exists(),
        "a refused restore wrote a data dir"
    );

    let r = restore(&out, &lost, &address);
    assert!(r.success, "{r:?}");
    assert!(r.stdout.contains("new cluster id"), "{}", r.stdout);
    // Never over a member's data.
    let again = restore(&out, &lost, &address);
    assert!(
        !again.success && again.stderr.contains("already holds Raft state"),
        "{again:?}"
    );

    c.start_coordinator();
    // Everything committed before the backup is there.
    let s = c.status("kept", &done);
    assert_eq!(s["status"], "Succeeded", "{s}");
    let s = c.status("kept", &waiting);
    assert_eq!(
        Cluster::action(&s, "gate", "release")["status"],
        "WaitingForApproval",
        "{s}"
    );
    let secrets = c.ferry_ok(Some("admin"), &["secret", "list"]);
    assert!(secrets.contains("db-password"), "{secrets}");
    // A new cluster: a new id.
    let again_out = c.path().join("restored.backup");
    c.ferry_ok(
        Some("admin"),
        &[
            "cluster",
            "backup",
            "--out",
            again_out.to_str().unwrap_or_default(),
        ],
    );
    let restored = header(&again_out);
    assert_ne!(
        restored["cluster_id"],
        Value::from(old_cluster),
        "{restored}"
    );

    // The agent reconnects, and the cluster goes on: the waiting approval is
    // decided, and a new run builds on the agent.
    c.wait_connected(&agent);
    let s = c.approve_and_finish("kept", &waiting, ("gate", "release"), "alice");
    assert_eq!(s["status"], "Succeeded", "{s}");
    let next = run(&c, "kept");
    wait_gate(&c, "kept", &next);
    let s = c.status("kept", &next);
    assert_eq!(
        Cluster::action(&s, "build", "compile")["status"],
        "Succeeded",
        "{s}"
    );
}

#[test]
fn a_survivor_forced_into_a_new_cluster_keeps_the_state_and_goes_on() {
    ensure_busybox_image();
    let repo = Repo::new();
    repo.commit(&[("README", "recovery\n")], "first");
    let mut c = Cluster::start_members("force", 3, Options::default());
    let agent = c.add_agent("a", &[]);
    c.grant("alice", "approver");
    c.apply(&pipeline("survives", &repo));
    let waiting = run(&c, "survives");
    wait_gate(&c, "survives", &waiting);

    // Two of three disks are gone for good: the quorum is lost.
    for id in [2, 3] {
        c.kill_member(id);
        std::fs::remove_dir_all(c.data_dir(id)).unwrap_or_else(|e| panic!("{e}"));
    }
    c.kill_member(1);
    c.start_member_with(1, &["--force-new-cluster"]);

    let status = ferry_tests::wait_for(
        "a cluster of one",
        std::time::Duration::from_secs(60),
        || {
            let v = c.cluster_status(Some(1))?;
            let members = v["members"].as_array()?;
            (v["leader_id"] == 1 && members.len() == 1).then_some(v)
        },
    );
    assert_eq!(status["members"][0]["id"], 1, "{status}");
    // The cluster version is the one every member runs, once the leader saw it.
    c.wait_cluster_version(Some(1));
    // Each member says which version it runs.
    assert_eq!(
        status["members"][0]["version"],
        env!("CARGO_PKG_VERSION"),
        "{status}"
    );

    // The state survived, and pipelines go on.
    let s = c.status("survives", &waiting);
    assert_eq!(
        Cluster::action(&s, "gate", "release")["status"],
        "WaitingForApproval",
        "{s}"
    );
    c.wait_connected(&agent);
    let s = c.approve_and_finish("survives", &waiting, ("gate", "release"), "alice");
    assert_eq!(s["status"], "Succeeded", "{s}");
    let next = run(&c, "survives");
    wait_gate(&c, "survives", &next);

    // Restarted without the flag, it stays the cluster of one it became.
    c.kill_member(1);
    c.start_member_with(1, &[]);
    let v = c.cluster_status(Some(1)).unwrap_or_default();
    assert_eq!(v["members"].as_array().map(Vec::len), Some(1), "{v}");
}

#[test]
fn members_of_the_old_cluster_cannot_join_the_restored_one() {
    let mut c = Cluster::start_members("oldnew", 3, Options::default());
    let out = c.path().join("cluster.backup");
    c.ferry_ok(
        Some("admin"),
        &[
            "cluster",
            "backup",
            "--out",
            out.to_str().unwrap_or_default(),
        ],
    );
    // Member 1 becomes a restored cluster of one at the same address, while
    // members 2 and 3 of the old cluster still run and still know member 1
    // by that address.
    c.kill_member(1);
    let dir = c.data_dir(1);
    std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let r = restore(&out, &dir, &c.member_addr(1));
    assert!(r.success, "{r:?}");
    c.start_member_with(1, &[]);
    // The old members' Raft messages are refused by cluster id, so the
    // restored cluster stays a cluster of one led by member 1.
    let log = c.path().join("coordinator-1.log");
    ferry_tests::wait_for(
        "an old member's messages to be refused",
        std::time::Duration::from_secs(60),
        || {
            let text = std::fs::read_to_string(&log).ok()?;
            text.contains("Raft messages from a member of another cluster refused")
                .then_some(())
        },
    );
    let v = c.cluster_status(Some(1)).unwrap_or_default();
    assert_eq!(v["leader_id"], 1, "{v}");
    assert_eq!(v["members"].as_array().map(Vec::len), Some(1), "{v}");
}
