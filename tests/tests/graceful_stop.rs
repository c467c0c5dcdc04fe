//! Graceful stop of a coordinator member (SIGTERM), for rolling upgrades
//! without downtime: a leader hands leadership to another member before it
//! goes, clients following a stream on the stopping member are told to
//! reconnect instead of holding the stop, the member exits with status 0
//! having drained (not timed out), the others go on taking writes, and the
//! member rejoins as a follower when it starts again.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_tests::{Cluster, Options, Repo, wait_for};
use serde_json::Value;

/// A pipeline whose one action waits for an approval: its execution stays
/// in progress (something to watch) without agents.
fn gated_pipeline(repo: &Repo) -> String {
    format!(
        "name: gated\nsource: {{git: {}}}\nstages:\n  - name: gate\n    actions:\n      - {{name: release, type: approval}}\n",
        repo.url()
    )
}

/// Applies the gated pipeline, runs it, and waits until it waits for its
/// approval; the execution id.
fn waiting_execution(c: &Cluster) -> String {
    let repo = Repo::new();
    repo.commit(&[("README", "x")], "x");
    c.apply(&gated_pipeline(&repo));
    let id = c
        .ferry_ok(Some("admin"), &["run", "gated"])
        .trim()
        .to_string();
    c.wait_status("gated", &id, "the approval to wait", |v| {
        Cluster::action(v, "gate", "release")["status"] == "WaitingForApproval"
    });
    id
}

/// A `ferry` command that keeps a stream open (`events -f`, `status
/// --watch`), run in the background with its output collected.
struct Follower {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

fn collect(from: Option<impl Read + Send + 'static>) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    if let Some(mut from) = from {
        let into = text.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut t = into.lock().unwrap_or_else(|p| p.into_inner());
                t.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
    }
    text
}

impl Follower {
    fn start(mut cmd: Command) -> Follower {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run ferry: {e}"));
        let stdout = collect(child.stdout.take());
        let stderr = collect(child.stderr.take());
        Follower {
            child,
            stdout,
            stderr,
        }
    }

    fn stdout(&self) -> String {
        self.stdout
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until its output shows `what` (so its stream is open).
    fn wait_streaming(&mut self, what: &str) {
        wait_for(
            &format!("the follower to print {what:?}"),
            Duration::from_secs(30),
            || {
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!(
                        "the follower ended early ({status}):\n{}{}",
                        self.stdout(),
                        self.stderr()
                    );
                }
                self.stdout().contains(what).then_some(())
            },
        );
    }

    /// Waits up to `limit` for it to end; how it ended (None: it had to be
    /// killed) and its standard error.
    fn end(mut self, limit: Duration) -> (Option<ExitStatus>, String) {
        let deadline = Instant::now() + limit;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                _ if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        // The reader threads finish with the process's pipes.
        std::thread::sleep(Duration::from_millis(200));
        (status, self.stderr())
    }
}

/// Member `id`'s log so far.
fn member_log(c: &Cluster, id: u64) -> String {
    std::fs::read_to_string(c.path().join(format!("coordinator-{id}.log"))).unwrap_or_default()
}

/// Member `id`'s role as it reports it itself (asked directly).
fn own_role(c: &Cluster, id: u64) -> Option<String> {
    let v = c.cluster_status(Some(id))?;
    let me: &Value = v["members"].as_array()?.iter().find(|m| m["id"] == id)?;
    me["role"].as_str().map(str::to_string)
}

/// Starts `events -f` and `status --watch` against member `id` only, and
/// waits until both stream.
fn follow_on(c: &Cluster, id: u64, execution: &str) -> [Follower; 2] {
    let mut events =
        Follower::start(c.cli_inside(id, "admin", &["events", "-f", "--pipeline", "gated"]));
    events.wait_streaming("approval.waiting");
    let mut watch = Follower::start(c.cli_inside(
        id,
        "admin",
        &["status", "gated", "--execution", execution, "--watch"],
    ));
    watch.wait_streaming(execution);
    [events, watch]
}

/// Both followers ended (the coordinator ended their streams) and were
/// told to reconnect elsewhere.
fn assert_told_to_reconnect(followers: [Follower; 2], log: &str) {
    for f in followers {
        let (status, stderr) = f.end(Duration::from_secs(30));
        let status = status.unwrap_or_else(|| panic!("a follower still runs:\n{stderr}"));
        assert!(!status.success(), "{stderr}");
        assert!(
            stderr.contains("this coordinator is stopping; reconnect to another member"),
            "stderr: {stderr}\nmember log:\n{log}"
        );
    }
}

#[test]
fn a_stopped_leader_hands_leadership_over_and_exits_cleanly() {
    let mut c = Cluster::start_members("gsleader", 3, Options::default());
    c.grant("ann", "approver");
    let execution = waiting_execution(&c);
    let old = c.leader();
    let followers = follow_on(&c, old, &execution);

    let status = c.stop_member(old, Duration::from_secs(60));
    let log = member_log(&c, old);
    let status = status.unwrap_or_else(|| panic!("member {old} did not exit:\n{log}"));
    assert!(
        status.success(),
        "member {old} exited with {status}:\n{log}"
    );
    assert!(log.contains("stopping"), "{log}");
    assert!(
        log.contains("stopped: every request finished"),
        "it drained, not timed out:\n{log}"
    );

    // Another member leads: the one the old leader handed over to.
    let new = c.leader();
    assert_ne!(new, old);
    assert!(
        log.contains(&format!("handed leadership to member {new}")),
        "member {new} leads; the old leader's log:\n{log}"
    );
    assert_told_to_reconnect(followers, &log);

    // The remaining members take writes: the approval lets the run finish.
    c.ferry_ok(
        Some("ann"),
        &[
            "approve",
            "gated",
            "--execution",
            &execution,
            "--action",
            "gate/release",
        ],
    );
    let v = c.wait_status("gated", &execution, "the run to finish", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(v["status"], "Succeeded", "{v:#}");

    // Started again, it rejoins as a follower and catches up.
    c.start_member(old);
    wait_for(
        &format!("member {old} to follow"),
        Duration::from_secs(30),
        || (own_role(&c, old)? == "Follower").then_some(()),
    );
    c.wait_converged(&[1, 2, 3]);
}

#[test]
fn a_stopped_follower_ends_its_streams_and_does_not_wait_for_the_timeout() {
    // A drain that waited on the streams would outlast every wait below.
    let mut c = Cluster::start_members(
        "gsfollow",
        3,
        Options {
            coordinator_args: vec!["--shutdown-timeout".into(), "600".into()],
            ..Default::default()
        },
    );
    let execution = waiting_execution(&c);
    let leader = c.leader();
    let stopped = (1..=3).find(|id| *id != leader).unwrap_or(1);
    let followers = follow_on(&c, stopped, &execution);

    let status = c.stop_member(stopped, Duration::from_secs(60));
    let log = member_log(&c, stopped);
    let status = status.unwrap_or_else(|| panic!("member {stopped} did not exit:\n{log}"));
    assert!(status.success(), "exited with {status}:\n{log}");
    assert!(
        log.contains("stopped: every request finished"),
        "it drained, not timed out:\n{log}"
    );
    assert!(
        !log.contains("handed leadership to"),
        "a follower has nothing to hand over:\n{log}"
    );
    assert_told_to_reconnect(followers, &log);

    // Leadership did not move, and the others take writes.
    assert_eq!(c.leader(), leader);
    c.grant("gina", "viewer");

    c.start_member(stopped);
    wait_for(
        &format!("member {stopped} to follow"),
        Duration::from_secs(30),
        || (own_role(&c, stopped)? == "Follower").then_some(()),
    );
    c.wait_converged(&[1, 2, 3]);
}

#[test]
fn a_cluster_of_one_ends_agent_sessions_and_stops_cleanly() {
    // Nobody to hand over to; the agent's session and a watch are open on
    // the one member, and must not hold its stop.
    let mut c = Cluster::start_members(
        "gsalone",
        1,
        Options {
            coordinator_args: vec!["--shutdown-timeout".into(), "600".into()],
            ..Default::default()
        },
    );
    let agent = c.add_agent("a", &[]);
    let execution = waiting_execution(&c);
    let followers = follow_on(&c, 1, &execution);

    let status = c.stop_member(1, Duration::from_secs(60));
    let log = member_log(&c, 1);
    let status = status.unwrap_or_else(|| panic!("the member did not exit:\n{log}"));
    assert!(status.success(), "exited with {status}:\n{log}");
    assert!(
        log.contains("the only voter: there is no one to hand leadership to"),
        "{log}"
    );
    assert!(
        log.contains("stopped: every request finished"),
        "it drained, not timed out:\n{log}"
    );
    assert_told_to_reconnect(followers, &log);

    // It starts again on the same data; the agent comes back to it.
    c.start_coordinator();
    c.wait_connected(&agent);
    c.grant("gina", "viewer");
}
