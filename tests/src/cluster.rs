//! A one-member Ferry cluster for tests: certificates, a coordinator process,
//! agents enrolled with real join tokens, and the `ferry` CLI as each user.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::{bin, free_port, wait_for};

/// The outcome of one CLI invocation.
#[derive(Debug)]
pub struct Run {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

struct AgentProc {
    name: String,
    child: Option<Child>,
    state: PathBuf,
    labels: String,
}

pub struct Cluster {
    dir: tempfile::TempDir,
    pub tls: PathBuf,
    pub users: PathBuf,
    pub addr: String,
    prefix: String,
    coordinator: Option<Child>,
    agents: Vec<AgentProc>,
}

fn log_file(path: &Path) -> Stdio {
    match File::options().create(true).append(true).open(path) {
        Ok(f) => Stdio::from(f),
        Err(_) => Stdio::null(),
    }
}

impl Cluster {
    /// Certificates, a coordinator with `admin` bootstrapped, no agents yet.
    /// `prefix` names this test's agents and containers.
    pub fn start(prefix: &str) -> Cluster {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let tls = dir.path().join("tls");
        let users = dir.path().join("users");
        let addr = format!("127.0.0.1:{}", free_port());
        let mut c = Cluster {
            dir,
            tls,
            users,
            addr,
            prefix: prefix.into(),
            coordinator: None,
            agents: Vec::new(),
        };
        let tls_s = c.tls.display().to_string();
        c.ferry_ok(None, &["certs", "init", "--dir", &tls_s]);
        c.ferry_ok(
            None,
            &[
                "certs",
                "issue",
                "coordinator",
                "--ca-dir",
                &tls_s,
                "--id",
                "1",
                "--san",
                "127.0.0.1",
                "--san",
                "localhost",
                "--out",
                &tls_s,
            ],
        );
        c.user("admin");
        c.start_coordinator();
        c
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Starts (or restarts) the coordinator and waits until it answers.
    pub fn start_coordinator(&mut self) {
        let data = self.dir.path().join("coordinator-data");
        let child = Command::new(bin("ferry-coordinator"))
            .args(["--id", "1", "--listen", &self.addr])
            .arg("--data-dir")
            .arg(&data)
            .arg("--tls-dir")
            .arg(&self.tls)
            .args(["--bootstrap-admin", "admin", "--heartbeat-seconds", "1"])
            .stdout(Stdio::null())
            .stderr(log_file(&self.dir.path().join("coordinator.log")))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start ferry-coordinator: {e}"));
        self.coordinator = Some(child);
        wait_for("the coordinator to answer", Duration::from_secs(30), || {
            self.ferry(Some("admin"), &["whoami"]).success.then_some(())
        });
    }

    /// SIGKILLs the coordinator.
    pub fn kill_coordinator(&mut self) {
        if let Some(mut c) = self.coordinator.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Makes an operator certificate for `name` (once).
    pub fn user(&self, name: &str) -> PathBuf {
        let cert = self.users.join(format!("{name}.pem"));
        if !cert.exists() {
            let tls_s = self.tls.display().to_string();
            let users_s = self.users.display().to_string();
            self.ferry_ok(
                None,
                &[
                    "certs", "issue", "operator", "--ca-dir", &tls_s, "--name", name, "--out",
                    &users_s,
                ],
            );
        }
        cert
    }

    /// Runs the CLI as `user` (None: no client certificate).
    pub fn ferry(&self, user: Option<&str>, args: &[&str]) -> Run {
        let mut cmd = Command::new(bin("ferry"));
        cmd.args(args)
            .env("FERRY_COORDINATOR", &self.addr)
            .env("FERRY_CA", self.tls.join("ca.pem"))
            .env_remove("FERRY_CERT")
            .env_remove("FERRY_KEY")
            .stdin(Stdio::null());
        if let Some(u) = user {
            cmd.env("FERRY_CERT", self.users.join(format!("{u}.pem")));
            cmd.env("FERRY_KEY", self.users.join(format!("{u}-key.pem")));
        }
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run ferry: {e}"));
        Run {
            success: out.status.success(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs the CLI and insists it succeeds; returns stdout.
    pub fn ferry_ok(&self, user: Option<&str>, args: &[&str]) -> String {
        let r = self.ferry(user, args);
        assert!(
            r.success,
            "ferry {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
            r.code, r.stdout, r.stderr
        );
        r.stdout
    }

    pub fn grant(&self, user: &str, role: &str) {
        self.user(user);
        self.ferry_ok(Some("admin"), &["rbac", "grant", user, role]);
    }

    pub fn token(&self, ttl: &str, uses: u32) -> String {
        self.ferry_ok(
            Some("admin"),
            &["token", "create", "--ttl", ttl, "--uses", &uses.to_string()],
        )
        .trim()
        .to_string()
    }

    /// Full agent name for a short test-local name.
    pub fn agent_name(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    /// Enrolls and starts an agent, waiting until it is connected.
    pub fn add_agent(&mut self, short: &str, labels: &[&str]) -> String {
        let token = self.token("10m", 1);
        let name = self.agent_name(short);
        let state = self.dir.path().join(format!("agent-{short}"));
        self.agents.push(AgentProc {
            name: name.clone(),
            child: None,
            state,
            labels: labels.join(","),
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
        let mut cmd = Command::new(bin("ferry-agent"));
        cmd.args(["--coordinator", &addr, "--name", name, "--capacity", "2"])
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

    /// `ferry status -o json` for an execution.
    pub fn status(&self, pipeline: &str, execution: &str) -> Value {
        let out = self.ferry_ok(
            Some("admin"),
            &["status", pipeline, "--execution", execution, "-o", "json"],
        );
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("status is not JSON ({e}): {out}"))
    }

    /// Waits until the execution's status JSON satisfies `pred`.
    pub fn wait_status(
        &self,
        pipeline: &str,
        execution: &str,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        wait_for(what, Duration::from_secs(180), || {
            let r = self.ferry(
                Some("admin"),
                &["status", pipeline, "--execution", execution, "-o", "json"],
            );
            let v: Value = serde_json::from_str(&r.stdout).ok()?;
            pred(&v).then_some(v)
        })
    }

    /// The status of `stage/action` in a status JSON.
    pub fn action<'a>(status: &'a Value, stage: &str, action: &str) -> &'a Value {
        status["stages"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == stage))
            .and_then(|s| s["actions"].as_array())
            .and_then(|a| a.iter().find(|a| a["name"] == action))
            .unwrap_or(&Value::Null)
    }

    /// Writes a pipeline file and applies it.
    pub fn apply(&self, yaml: &str) {
        let path = self.dir.path().join("pipeline.yml");
        std::fs::write(&path, yaml).unwrap_or_else(|e| panic!("{e}"));
        self.ferry_ok(
            Some("admin"),
            &["pipeline", "apply", "-f", &path.display().to_string()],
        );
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
    }
}
