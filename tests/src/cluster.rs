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

impl Run {
    /// The outcome of a finished process.
    pub fn from_output(out: &std::process::Output) -> Run {
        Run {
            success: out.status.success(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

struct AgentProc {
    name: String,
    child: Option<Child>,
    state: PathBuf,
    labels: String,
    /// Extra flags for this agent (e.g. `--metrics-listen`).
    extra_args: Vec<String>,
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
}

/// An HTTPS answer: status, raw header lines and body.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: String,
    pub body: String,
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
}

/// What every test coordinator gets unless [`Options::notify_public_only`]:
/// test receivers listen on loopback, which notifications do not reach by default.
const NOTIFY_ALLOW_LOOPBACK: [&str; 2] = ["--notify-allow-network", "127.0.0.0/8"];

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
    /// Certificates, a coordinator with `admin` bootstrapped, no agents yet.
    /// `prefix` names this test's agents and containers.
    pub fn start(prefix: &str) -> Cluster {
        Cluster::start_members(prefix, 1, Options::default())
    }

    /// `n` founding members on loopback (or in namespaces), formed with `--peers`.
    pub fn start_members(prefix: &str, n: u64, opts: Options) -> Cluster {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let tls = dir.path().join("tls");
        let users = dir.path().join("users");
        let mut net = opts.namespaces.then(crate::net::Net::new);
        let mut members = Vec::new();
        for id in 1..=n {
            let (listen, http, netns) = match net.as_mut() {
                Some(net) => {
                    let (ns, ip) = net.host(id as u32);
                    (format!("{ip}:7400"), format!("{ip}:7443"), Some(ns))
                }
                None => (
                    format!("127.0.0.1:{}", free_port()),
                    format!("127.0.0.1:{}", free_port()),
                    None,
                ),
            };
            members.push(Member {
                id,
                listen,
                http,
                netns,
                child: None,
            });
        }
        let addr = members
            .iter()
            .map(|m| m.listen.clone())
            .collect::<Vec<_>>()
            .join(",");
        let peers = members
            .iter()
            .map(|m| format!("{}={}", m.id, m.listen))
            .collect::<Vec<_>>()
            .join(",");
        let agent_advertise = net
            .as_ref()
            .map_or("127.0.0.1:0".to_string(), |n| format!("{}:0", n.host_ip));
        let mut c = Cluster {
            tls,
            users,
            addr,
            prefix: prefix.into(),
            members: Vec::new(),
            peers,
            agents: Vec::new(),
            agent_advertise,
            extra_args: opts.coordinator_args,
            open_files: opts.open_files,
            notify_public_only: opts.notify_public_only,
            mounts: Vec::new(),
            net,
            dir,
        };
        let tls_s = c.tls.display().to_string();
        c.ferry_ok(None, &["certs", "init", "--dir", &tls_s]);
        for m in &members {
            let host = m
                .listen
                .rsplit_once(':')
                .map_or("127.0.0.1", |(h, _)| h)
                .to_string();
            let id = m.id.to_string();
            c.ferry_ok(
                None,
                &[
                    "certs",
                    "issue",
                    "coordinator",
                    "--ca-dir",
                    &tls_s,
                    "--id",
                    &id,
                    "--san",
                    &host,
                    "--san",
                    "127.0.0.1",
                    "--san",
                    "localhost",
                    "--out",
                    &tls_s,
                ],
            );
        }
        c.user("admin");
        c.members = members;
        if let Some((id, mib)) = opts.small_disk {
            let data = c.dir.path().join(format!("coordinator-{id}"));
            std::fs::create_dir_all(&data).unwrap_or_else(|e| panic!("{e}"));
            let status = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
                .arg(&data)
                .status()
                .unwrap_or_else(|e| panic!("cannot run mount: {e}"));
            assert!(status.success(), "mounting a tmpfs needs root");
            c.mounts.push(data);
        }
        for id in 1..=n {
            c.spawn_member(id);
        }
        c.wait_ready();
        c
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn spawn_member(&mut self, id: u64) {
        let data = self.dir.path().join(format!("coordinator-{id}"));
        let log = self.dir.path().join(format!("coordinator-{id}.log"));
        let allowance = self.notify_allowance();
        let Some(m) = self.members.iter_mut().find(|m| m.id == id) else {
            return;
        };
        let mut cmd = match &m.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin("ferry-coordinator"));
                c
            }
            None => match self.open_files {
                Some(n) => {
                    let mut c = Command::new("prlimit");
                    c.arg(format!("--nofile={n}:{n}"))
                        .arg("--")
                        .arg(bin("ferry-coordinator"));
                    c
                }
                None => Command::new(bin("ferry-coordinator")),
            },
        };
        cmd.args([
            "--id",
            &id.to_string(),
            "--listen",
            &m.listen,
            "--http-listen",
            &m.http,
            "--peers",
            &self.peers,
        ])
        .arg("--data-dir")
        .arg(&data)
        .arg("--tls-dir")
        .arg(&self.tls)
        .args(["--bootstrap-admin", "admin", "--heartbeat-seconds", "1"])
        .args(allowance)
        .args(&self.extra_args)
        .stdout(Stdio::null())
        .stderr(log_file(&log));
        m.child = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("cannot start ferry-coordinator: {e}")),
        );
    }

    /// The flags that let this cluster's notifications reach loopback.
    fn notify_allowance(&self) -> &'static [&'static str] {
        if self.notify_public_only {
            &[]
        } else {
            &NOTIFY_ALLOW_LOOPBACK
        }
    }

    /// Starts a new, empty member that waits to be added (`--join`); returns its address.
    pub fn spawn_joiner(&mut self, id: u64) -> String {
        assert!(self.net.is_none(), "joiners run on loopback");
        let listen = format!("127.0.0.1:{}", free_port());
        let tls_s = self.tls.display().to_string();
        self.ferry_ok(
            None,
            &[
                "certs",
                "issue",
                "coordinator",
                "--ca-dir",
                &tls_s,
                "--id",
                &id.to_string(),
                "--san",
                "127.0.0.1",
                "--out",
                &tls_s,
            ],
        );
        let data = self.dir.path().join(format!("coordinator-{id}"));
        let log = self.dir.path().join(format!("coordinator-{id}.log"));
        let child = Command::new(bin("ferry-coordinator"))
            .args([
                "--id",
                &id.to_string(),
                "--listen",
                &listen,
                "--join",
                "--peers",
                &self.peers,
            ])
            .arg("--data-dir")
            .arg(&data)
            .arg("--tls-dir")
            .arg(&self.tls)
            .args(self.notify_allowance())
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(log_file(&log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start ferry-coordinator: {e}"));
        self.members.push(Member {
            id,
            listen: listen.clone(),
            http: String::new(),
            netns: None,
            child: Some(child),
        });
        listen
    }

    /// Waits until every running member answers the standard health check
    /// SERVING (it knows a leader and has applied the bootstrap) and answers
    /// `admin` with its role bound.
    pub fn wait_ready(&self) {
        let addrs: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| m.listen.clone())
            .collect();
        wait_for("the cluster to answer", Duration::from_secs(60), || {
            addrs
                .iter()
                .all(|a| {
                    self.ferry(None, &["--coordinator", a, "cluster", "health"])
                        .success
                        && self
                            .ferry(Some("admin"), &["--coordinator", a, "rbac", "list"])
                            .success
                })
                .then_some(())
        });
    }

    /// Starts (or restarts) the single coordinator and waits until it answers.
    pub fn start_coordinator(&mut self) {
        self.start_member(1);
    }

    /// Starts member `id` again (same data dir) and waits until the cluster answers.
    pub fn start_member(&mut self, id: u64) {
        self.spawn_member(id);
        self.wait_ready();
    }

    /// SIGKILLs member `id`.
    pub fn kill_member(&mut self, id: u64) {
        if let Some(m) = self.members.iter_mut().find(|m| m.id == id)
            && let Some(mut c) = m.child.take()
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether member `id`'s process has exited (and its status).
    pub fn member_exited(&mut self, id: u64) -> Option<std::process::ExitStatus> {
        let m = self.members.iter_mut().find(|m| m.id == id)?;
        m.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// `ferry cluster status -o json` from one member (or any when None).
    pub fn cluster_status(&self, via: Option<u64>) -> Option<Value> {
        let mut args = vec!["cluster", "status", "-o", "json"];
        let addr;
        if let Some(id) = via {
            addr = self.members.iter().find(|m| m.id == id)?.listen.clone();
            args.extend(["--coordinator", addr.as_str()]);
        }
        let r = self.ferry(Some("admin"), &args);
        serde_json::from_str(&r.stdout).ok()
    }

    /// The current leader, once the members that answer agree on one.
    pub fn leader(&self) -> u64 {
        wait_for("a leader", Duration::from_secs(30), || {
            let v = self.cluster_status(None)?;
            let l = v["leader_id"].as_u64()?;
            (l != 0).then_some(l)
        })
    }

    /// Member `id`'s data dir.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("coordinator-{id}"))
    }

    /// Member address by id.
    pub fn member_addr(&self, id: u64) -> String {
        self.members
            .iter()
            .find(|m| m.id == id)
            .map(|m| m.listen.clone())
            .unwrap_or_default()
    }

    /// Member `id`'s HTTPS address (webhooks).
    pub fn http_addr(&self, id: u64) -> String {
        self.members
            .iter()
            .find(|m| m.id == id)
            .map(|m| m.http.clone())
            .unwrap_or_default()
    }

    /// POSTs `body` with `headers` to member `id`'s HTTPS listener at
    /// `path` (curl, trusting the cluster's CA); the status and the answer.
    pub fn post_https(
        &self,
        id: u64,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String) {
        let r = self.https(id, "POST", path, headers, Some(body));
        (r.status, r.body)
    }

    /// One HTTPS request to `url` (curl over HTTP/1.1, as git hosts and
    /// simple clients speak it, trusting the cluster's CA; redirects not
    /// followed).
    pub fn https_url(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> HttpAnswer {
        let file = tempfile::NamedTempFile::new().unwrap_or_else(|e| panic!("{e}"));
        let head = tempfile::NamedTempFile::new().unwrap_or_else(|e| panic!("{e}"));
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "--http1.1",
            "-X",
            method,
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
        ])
        .arg("--cacert")
        .arg(self.tls.join("ca.pem"))
        .arg("-D")
        .arg(head.path());
        if let Some(body) = body {
            std::fs::write(file.path(), body).unwrap_or_else(|e| panic!("{e}"));
            cmd.arg("--data-binary")
                .arg(format!("@{}", file.path().display()));
        }
        for (k, v) in headers {
            cmd.arg("-H").arg(format!("{k}: {v}"));
        }
        cmd.arg(url);
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run curl: {e}"));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (answer, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        if code.trim() == "000" {
            panic!(
                "curl got no answer: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let status = code.trim().parse().unwrap_or_else(|_| {
            panic!(
                "curl gave no status: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        HttpAnswer {
            status,
            headers: std::fs::read_to_string(head.path()).unwrap_or_default(),
            body: answer.to_string(),
        }
    }

    /// [`Cluster::https_url`] to `path` on member `id`.
    pub fn https(
        &self,
        id: u64,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> HttpAnswer {
        let url = format!("https://{}{path}", self.http_addr(id));
        self.https_url(method, &url, headers, body)
    }

    /// Cuts member `id` off the network (namespaces only).
    pub fn partition(&self, id: u64) {
        self.net
            .as_ref()
            .unwrap_or_else(|| panic!("partition needs Options.namespaces"))
            .cut(id as u32);
    }

    pub fn heal(&self, id: u64) {
        self.net
            .as_ref()
            .unwrap_or_else(|| panic!("heal needs Options.namespaces"))
            .heal(id as u32);
    }

    /// Runs the CLI inside member `id`'s namespace against that member only.
    pub fn ferry_inside(&self, id: u64, args: &[&str]) -> Run {
        let out = self
            .cli_inside(id, "admin", args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run ferry: {e}"));
        Run::from_output(&out)
    }

    /// The CLI as `user`, inside member `id`'s namespace against that member
    /// only, ready to run (or to spawn and wait for later).
    pub fn cli_inside(&self, id: u64, user: &str, args: &[&str]) -> Command {
        let m = self
            .members
            .iter()
            .find(|m| m.id == id)
            .unwrap_or_else(|| panic!("no member {id}"));
        let mut cmd = match &m.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin("ferry"));
                c
            }
            None => Command::new(bin("ferry")),
        };
        cmd.args(args)
            .env("FERRY_COORDINATOR", &m.listen)
            .env("FERRY_CA", self.tls.join("ca.pem"))
            .env("FERRY_CERT", self.users.join(format!("{user}.pem")))
            .env("FERRY_KEY", self.users.join(format!("{user}-key.pem")))
            .stdin(Stdio::null());
        cmd
    }

    /// SIGKILLs the coordinator (every member of a multi-member cluster).
    pub fn kill_coordinator(&mut self) {
        let ids: Vec<u64> = self.members.iter().map(|m| m.id).collect();
        for id in ids {
            self.kill_member(id);
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
        let out = self
            .cli(user, args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run ferry: {e}"));
        Run::from_output(&out)
    }

    /// Starts the CLI in the background (its output discarded), for a
    /// command that runs until something happens (`status --watch`).
    pub fn cli_process(&self, user: Option<&str>, args: &[&str]) -> std::process::Child {
        self.cli(user, args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run ferry: {e}"))
    }

    /// The CLI as `user` (none: no client certificate), against this cluster.
    fn cli(&self, user: Option<&str>, args: &[&str]) -> Command {
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
        cmd
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

    /// [`Cluster::ferry_ok`] as admin, tried again for up to 30 s while it
    /// fails: during a failover a member may answer "not the leader" for a
    /// moment.
    pub fn ferry_ok_through_failover(&self, args: &[&str]) -> String {
        wait_for(
            &format!("ferry {args:?} to succeed"),
            Duration::from_secs(30),
            || {
                let r = self.ferry(Some("admin"), args);
                r.success.then_some(r.stdout)
            },
        )
    }

    pub fn grant(&self, user: &str, role: &str) {
        self.user(user);
        self.ferry_ok(Some("admin"), &["rbac", "grant", user, role]);
    }

    /// `ferry secret set NAME --from-file` as admin, through a file removed
    /// again at once (the value never appears on a command line).
    pub fn set_secret(&self, name: &str, value: &[u8]) {
        let file = self.dir.path().join(format!("secret-{name}"));
        std::fs::write(&file, value).unwrap_or_else(|e| panic!("{e}"));
        let path = file.display().to_string();
        self.ferry_ok(
            Some("admin"),
            &["secret", "set", name, "--from-file", &path],
        );
        std::fs::remove_file(&file).unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn token(&self, ttl: &str, uses: u32) -> String {
        self.ferry_ok(
            Some("admin"),
            &["token", "create", "--ttl", ttl, "--uses", &uses.to_string()],
        )
        .trim()
        .to_string()
    }

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
        cmd.args([
            "--coordinator",
            &addr,
            "--name",
            name,
            "--capacity",
            "2",
            "--advertise",
            &self.agent_advertise,
        ])
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
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status();
        assert!(ok.is_ok_and(|s| s.success()), "kill -{signal} {pid} failed");
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

    /// Waits until approval `stage/action` of an execution waits, approves
    /// it as `approver`, and waits until the execution ends; its final status.
    pub fn approve_and_finish(
        &self,
        pipeline: &str,
        execution: &str,
        (stage, action): (&str, &str),
        approver: &str,
    ) -> Value {
        self.wait_status(pipeline, execution, "the approval to wait", |v| {
            Cluster::action(v, stage, action)["status"] == "WaitingForApproval"
        });
        let path = format!("{stage}/{action}");
        self.ferry_ok(
            Some(approver),
            &[
                "approve",
                pipeline,
                "--execution",
                execution,
                "--action",
                &path,
            ],
        );
        self.wait_status(pipeline, execution, "the execution to end", |v| {
            v["status"] != "InProgress"
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
    }
}
