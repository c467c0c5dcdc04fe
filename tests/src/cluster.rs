//! A one-member Ferry cluster for tests: certificates, a coordinator process,
//! agents enrolled with real join tokens, and the `ferry` CLI as each user.
//!
//! This file holds the [`Cluster`] value, what it owns and its clean-up;
//! `members` starts and stops coordinators, `certs` makes certificates,
//! `cli` runs the `ferry` CLI, `agents` enrolls and drives agents, `http`
//! speaks HTTPS to a member, and `executions` applies pipelines and follows
//! their executions.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

mod agents;
mod certs;
mod cli;
mod executions;
mod http;
mod members;

pub use cli::{Cli, Run};
pub use http::HttpAnswer;

struct AgentProc {
    name: String,
    child: Option<Child>,
    state: PathBuf,
    labels: String,
    /// Extra flags for this agent (e.g. `--metrics-listen`).
    extra_args: Vec<String>,
    /// Folder of the `ferry-agent` it runs (None: this build's).
    bins: Option<PathBuf>,
}

struct Member {
    id: u64,
    /// HOST:PORT it serves on.
    listen: String,
    /// HOST:PORT of its HTTPS listener (webhooks).
    http: String,
    /// Network namespace it runs in, if any.
    netns: Option<String>,
    child: Option<Child>,
    /// Folder of the `ferry-coordinator` it runs (None: this build's).
    bins: Option<PathBuf>,
}

/// Options for a multi-member cluster.
#[derive(Default, Clone)]
pub struct Options {
    /// Run each coordinator in its own network namespace (for partitions).
    pub namespaces: bool,
    /// Extra flags for every coordinator.
    pub coordinator_args: Vec<String>,
    /// Put this member's data dir on a small tmpfs of this many MiB (to fill it).
    pub small_disk: Option<(u64, u32)>,
    /// Start coordinators with this open-files limit, soft and hard (`prlimit`).
    pub open_files: Option<u64>,
    /// Start coordinators without the allowance the harness gives them by
    /// default (`--notify-allow-network 127.0.0.0/8`, since test receivers
    /// listen on loopback): notifications then reach public addresses
    /// only, as in a coordinator's default.
    pub notify_public_only: bool,
    /// Start every member and agent from the binaries in this folder (another
    /// release's, for upgrade tests) instead of this build's.
    pub bins: Option<PathBuf>,
}

pub struct Cluster {
    // Dropped last: processes go before their network.
    pub tls: PathBuf,
    pub users: PathBuf,
    /// Every member's address, comma-separated (what the CLI and agents get).
    pub addr: String,
    prefix: String,
    members: Vec<Member>,
    peers: String,
    agents: Vec<AgentProc>,
    agent_advertise: String,
    extra_args: Vec<String>,
    open_files: Option<u64>,
    notify_public_only: bool,
    /// Folder of the binaries new members and agents start from (None: this build's).
    bins: Option<PathBuf>,
    mounts: Vec<PathBuf>,
    net: Option<crate::net::Net>,
    dir: tempfile::TempDir,
}

fn log_file(path: &Path) -> Stdio {
    match File::options().create(true).append(true).open(path) {
        Ok(f) => Stdio::from(f),
        Err(_) => Stdio::null(),
    }
}

impl Cluster {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn dump_logs(&self) {
        if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "log") {
                    let text = std::fs::read_to_string(&p).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(60).collect();
                    eprintln!("----- {} (last lines) -----", p.display());
                    for l in tail.iter().rev() {
                        eprintln!("{l}");
                    }
                }
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        for a in &mut self.agents {
            if let Some(mut c) = a.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        self.kill_coordinator();
        for m in &self.mounts {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        // Containers this test's agents may have left behind.
        let list = Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("name=ferry-{}-", self.prefix),
            ])
            .output();
        if let Ok(out) = list {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(String::from)
                .collect();
            if !ids.is_empty() {
                let _ = Command::new("docker")
                    .arg("rm")
                    .arg("-f")
                    .args(&ids)
                    .output();
            }
        }
        // And the networks of their actions' services, once those are gone.
        let networks = self.leftover_networks();
        if !networks.is_empty() {
            let _ = Command::new("docker")
                .args(["network", "rm"])
                .args(&networks)
                .output();
        }
    }
}
