//! Coordinator processes: forming a cluster of founding members, starting,
//! killing and restarting them, adding a joiner, cutting one off the
//! network, and asking who leads.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{Cluster, Member, Options, log_file};
use crate::{binary, free_port, wait_for};

/// What every test coordinator gets unless [`Options::notify_public_only`]:
/// test receivers listen on loopback, which notifications do not reach by default.
const NOTIFY_ALLOW_LOOPBACK: [&str; 2] = ["--notify-allow-network", "127.0.0.0/8"];

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
                bins: opts.bins.clone(),
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
            bins: opts.bins,
            mounts: Vec::new(),
            net,
            dir,
        };
        c.init_ca();
        for m in &members {
            let host = m
                .listen
                .rsplit_once(':')
                .map_or("127.0.0.1", |(h, _)| h)
                .to_string();
            c.issue_coordinator(m.id, &[&host, "127.0.0.1", "localhost"]);
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

    fn spawn_member(&mut self, id: u64) {
        self.spawn_member_with(id, &[]);
    }

    /// Starts member `id` (same data dir) with `extra` flags this once, and
    /// waits until the members that run answer.
    pub fn start_member_with(&mut self, id: u64, extra: &[&str]) {
        self.spawn_member_with(id, extra);
        self.wait_ready();
    }

    fn spawn_member_with(&mut self, id: u64, extra: &[&str]) {
        let data = self.dir.path().join(format!("coordinator-{id}"));
        let log = self.dir.path().join(format!("coordinator-{id}.log"));
        let allowance = self.notify_allowance();
        let Some(m) = self.members.iter_mut().find(|m| m.id == id) else {
            return;
        };
        let program = binary(m.bins.as_deref(), "ferry-coordinator");
        let mut cmd = match &m.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&program);
                c
            }
            None => match self.open_files {
                Some(n) => {
                    let mut c = Command::new("prlimit");
                    c.arg(format!("--nofile={n}:{n}")).arg("--").arg(&program);
                    c
                }
                None => Command::new(&program),
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
        .args(extra)
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
        self.issue_coordinator(id, &["127.0.0.1"]);
        let data = self.dir.path().join(format!("coordinator-{id}"));
        let log = self.dir.path().join(format!("coordinator-{id}.log"));
        let child = Command::new(binary(self.bins.as_deref(), "ferry-coordinator"))
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
            bins: self.bins.clone(),
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

    /// Stops member `id` as its service manager would (SIGTERM), waits up
    /// to `timeout` for it to exit, then SIGKILLs it; returns how it exited
    /// (None: it had to be killed, or was not running).
    pub fn stop_member(&mut self, id: u64, timeout: Duration) -> Option<std::process::ExitStatus> {
        let m = self.members.iter_mut().find(|m| m.id == id)?;
        crate::stop_child(m.child.take()?, timeout)
    }

    /// The process id of running member `id`.
    pub fn member_pid(&self, id: u64) -> Option<u32> {
        self.members
            .iter()
            .find(|m| m.id == id)
            .and_then(|m| m.child.as_ref())
            .map(|c| c.id())
    }

    /// From its next start on, member `id` runs the `ferry-coordinator` in
    /// `bins` (None: this build's), on the same data dir and flags.
    pub fn set_member_bins(&mut self, id: u64, bins: Option<&Path>) {
        if let Some(m) = self.members.iter_mut().find(|m| m.id == id) {
            m.bins = bins.map(Path::to_path_buf);
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

    /// Waits until the leader raised the cluster version to this build's
    /// (as member `via`, or any, reports it): what a pipeline using v0.2's
    /// parts needs before it is applied.
    pub fn wait_cluster_version(&self, via: Option<u64>) {
        crate::wait_for("the cluster version", Duration::from_secs(30), || {
            let v = self.cluster_status(via)?;
            (v["cluster_version"] == crate::this_minor_version()).then_some(())
        });
    }

    /// The current leader, once the members that answer agree on one.
    pub fn leader(&self) -> u64 {
        wait_for("a leader", Duration::from_secs(30), || {
            let v = self.cluster_status(None)?;
            let l = v["leader_id"].as_u64()?;
            (l != 0).then_some(l)
        })
    }

    /// Waits until every listed member reports the same applied index and
    /// state digest (through itself).
    pub fn wait_converged(&self, members: &[u64]) {
        wait_for("members to converge", Duration::from_secs(60), || {
            let mut digests = std::collections::BTreeSet::new();
            let mut applied = std::collections::BTreeSet::new();
            for id in members {
                let v = self.cluster_status(Some(*id))?;
                let me = v["members"]
                    .as_array()?
                    .iter()
                    .find(|m| m["id"] == *id)?
                    .clone();
                digests.insert(me["state_digest"].as_str()?.to_string());
                applied.insert(me["applied_index"].as_u64()?);
            }
            (digests.len() == 1 && applied.len() == 1).then_some(())
        });
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

    /// SIGKILLs the coordinator (every member of a multi-member cluster).
    pub fn kill_coordinator(&mut self) {
        let ids: Vec<u64> = self.members.iter().map(|m| m.id).collect();
        for id in ids {
            self.kill_member(id);
        }
    }
}
