//! Agent processes: enrolling them with real join tokens, starting,
//! signalling, killing and restarting them, and the containers they leave.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{AgentProc, Cluster, log_file};
use crate::{bin, binary, wait_for};

impl Cluster {
    /// The state dir of agent `name` (its full name, as `add_agent` returns).
    pub fn agent_state_dir(&self, name: &str) -> PathBuf {
        self.agents
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.state.clone())
            .unwrap_or_else(|| panic!("no agent {name} in this cluster"))
    }

    /// Full agent name for a short test-local name.
    pub fn agent_name(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    /// Enrolls and starts an agent, waiting until it is connected.
    pub fn add_agent(&mut self, short: &str, labels: &[&str]) -> String {
        self.add_agent_with_args(short, labels, &[])
    }

    /// Like `add_agent`, with extra flags for the agent (kept across restarts).
    pub fn add_agent_with_args(&mut self, short: &str, labels: &[&str], args: &[&str]) -> String {
        let token = self.token("10m", 1);
        let name = self.agent_name(short);
        let state = self.dir.path().join(format!("agent-{short}"));
        self.agents.push(AgentProc {
            name: name.clone(),
            child: None,
            state,
            labels: labels.join(","),
            extra_args: args.iter().map(|a| a.to_string()).collect(),
            bins: self.bins.clone(),
        });
        self.start_agent_with_token(&name, Some(&token));
        wait_for(
            &format!("agent {name} to connect"),
            Duration::from_secs(30),
            || {
                let list = self.ferry(Some("admin"), &["agents", "list", "-o", "json"]);
                let v: Value = serde_json::from_str(&list.stdout).ok()?;
                v.as_array()?
                    .iter()
                    .any(|a| a["name"] == name.as_str() && a["connected"] == true)
                    .then_some(())
            },
        );
        name
    }

    /// Starts an agent process (enrolling with `token` if given); returns its exit
    /// status if it stops within a moment (e.g. enrollment refused).
    pub fn start_agent_with_token(&mut self, name: &str, token: Option<&str>) {
        let log = self.dir.path().join(format!("agent-{name}.log"));
        let ca = self.tls.join("ca.pem");
        let addr = self.addr.clone();
        let Some(agent) = self.agents.iter_mut().find(|a| a.name == name) else {
            return;
        };
        let mut cmd = Command::new(binary(agent.bins.as_deref(), "ferry-agent"));
        // Two slots, unless the test gives the agent its own `--capacity`.
        let capacity =
            (!agent.extra_args.iter().any(|a| a == "--capacity")).then_some(["--capacity", "2"]);
        cmd.args([
            "--coordinator",
            &addr,
            "--name",
            name,
            "--advertise",
            &self.agent_advertise,
        ])
        .args(capacity.iter().flatten())
        .arg("--state-dir")
        .arg(&agent.state)
        .arg("--ca")
        .arg(&ca)
        .stdout(Stdio::null())
        .stderr(log_file(&log));
        if !agent.labels.is_empty() {
            cmd.args(["--labels", &agent.labels]);
        }
        if let Some(t) = token {
            cmd.args(["--join-token", t]);
        }
        cmd.args(&agent.extra_args);
        agent.child = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("cannot start ferry-agent: {e}")),
        );
    }

    /// SIGKILLs an agent process.
    pub fn kill_agent(&mut self, name: &str) {
        if let Some(a) = self.agents.iter_mut().find(|a| a.name == name)
            && let Some(mut c) = a.child.take()
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// From its next start on, agent `name` runs the `ferry-agent` in `bins`
    /// (None: this build's), with the same state dir and flags.
    pub fn set_agent_bins(&mut self, name: &str, bins: Option<&Path>) {
        if let Some(a) = self.agents.iter_mut().find(|a| a.name == name) {
            a.bins = bins.map(Path::to_path_buf);
        }
    }

    /// Stops an agent as its service manager would (SIGTERM: it finishes its
    /// running actions first) and waits up to `timeout` before SIGKILL;
    /// returns how it exited (None: killed, or not running).
    pub fn stop_agent(
        &mut self,
        name: &str,
        timeout: Duration,
    ) -> Option<std::process::ExitStatus> {
        let a = self.agents.iter_mut().find(|a| a.name == name)?;
        crate::stop_child(a.child.take()?, timeout)
    }

    /// The process id of a running agent.
    pub fn agent_pid(&self, name: &str) -> Option<u32> {
        self.agents
            .iter()
            .find(|a| a.name == name)
            .and_then(|a| a.child.as_ref())
            .map(|c| c.id())
    }

    /// Sends a signal (e.g. "STOP", "CONT", "TERM") to an agent process.
    pub fn signal_agent(&self, name: &str, signal: &str) {
        let pid = self
            .agents
            .iter()
            .find(|a| a.name == name)
            .and_then(|a| a.child.as_ref())
            .map(|c| c.id())
            .unwrap_or_else(|| panic!("agent {name} is not running"));
        crate::signal(pid, signal);
    }

    /// The agent's exit status once it has exited.
    pub fn agent_exited(&mut self, name: &str) -> Option<std::process::ExitStatus> {
        let a = self.agents.iter_mut().find(|a| a.name == name)?;
        a.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// The agent's log so far.
    pub fn agent_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("agent-{name}.log")))
            .unwrap_or_default()
    }

    /// Starts an already enrolled agent again (no token) and waits until it is connected.
    pub fn restart_agent(&mut self, name: &str) {
        self.kill_agent(name);
        self.start_agent_with_token(name, None);
        self.wait_connected(name);
    }

    /// Waits until `ferry agents list` shows the agent connected.
    pub fn wait_connected(&self, name: &str) {
        wait_for(
            &format!("agent {name} to connect"),
            Duration::from_secs(30),
            || {
                let list = self.ferry(Some("admin"), &["agents", "list", "-o", "json"]);
                let v: Value = serde_json::from_str(&list.stdout).ok()?;
                v.as_array()?
                    .iter()
                    .any(|a| a["name"] == name && a["connected"] == true)
                    .then_some(())
            },
        );
    }

    /// Containers (running or not) that this test's agents left.
    pub fn leftover_containers(&self) -> Vec<String> {
        let out = Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("name=ferry-{}-", self.prefix),
            ])
            .output();
        out.map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
    }

    /// Networks (of actions with services) that this test's agents left.
    pub fn leftover_networks(&self) -> Vec<String> {
        let out = Command::new("docker")
            .args([
                "network",
                "ls",
                "-q",
                "--filter",
                &format!("name=ferry-{}-", self.prefix),
            ])
            .output();
        out.map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
    }

    /// Runs `ferry-agent --enroll-only`: (succeeded, stderr, state dir).
    pub fn enroll(&self, short: &str, token: &str) -> (bool, String, PathBuf) {
        let name = self.agent_name(short);
        let state = self.dir.path().join(format!("agent-{short}"));
        let out = Command::new(bin("ferry-agent"))
            .args([
                "--coordinator",
                &self.addr,
                "--name",
                &name,
                "--join-token",
                token,
                "--enroll-only",
            ])
            .arg("--state-dir")
            .arg(&state)
            .arg("--ca")
            .arg(self.tls.join("ca.pem"))
            .output()
            .unwrap_or_else(|e| panic!("cannot run ferry-agent: {e}"));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            state,
        )
    }
}
