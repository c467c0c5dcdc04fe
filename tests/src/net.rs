//! Test hosts in Linux network namespaces: each coordinator gets its own
//! namespace and address on a private bridge, so a test can cut one off the
//! network (and heal it) while its process keeps running. Everything is named
//! with a per-test prefix and removed on drop.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

fn sh(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn must(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e} (is iproute2 installed?)"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub struct Net {
    pub bridge: String,
    /// The host side's address on the bridge (agents and the CLI live here).
    pub host_ip: String,
    subnet: String,
    hosts: Vec<(String, String)>,
}

impl Net {
    /// A bridge with a /24 of its own; `n` namespaces are added with `host`.
    pub fn new() -> Net {
        let k = (std::process::id() % 150 + NEXT.fetch_add(1, Ordering::SeqCst) * 7) % 250 + 1;
        let bridge = format!("frbr{k}");
        let subnet = format!("10.213.{k}");
        // A leftover from a crashed run would make `ip link add` fail.
        sh(&["ip", "link", "del", &bridge]);
        must(&["ip", "link", "add", &bridge, "type", "bridge"]);
        must(&[
            "ip",
            "addr",
            "add",
            &format!("{subnet}.1/24"),
            "dev",
            &bridge,
        ]);
        must(&["ip", "link", "set", &bridge, "up"]);
        // Docker sets the FORWARD policy to DROP; bridged test traffic must pass.
        sh(&[
            "iptables", "-I", "FORWARD", "-i", &bridge, "-o", &bridge, "-j", "ACCEPT",
        ]);
        Net {
            bridge,
            host_ip: format!("{subnet}.1"),
            subnet,
            hosts: Vec::new(),
        }
    }

    /// A namespace `name` at `.<10+i>`; returns its IP.
    pub fn host(&mut self, i: u32) -> (String, String) {
        let ns = format!("{}-h{i}", self.bridge);
        let veth = format!("{}v{i}", self.bridge);
        let ip = format!("{}.{}", self.subnet, 10 + i);
        sh(&["ip", "netns", "del", &ns]);
        must(&["ip", "netns", "add", &ns]);
        must(&[
            "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        must(&["ip", "link", "set", &veth, "master", &self.bridge, "up"]);
        must(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "ip",
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            "eth0",
        ]);
        must(&[
            "ip", "netns", "exec", &ns, "ip", "link", "set", "eth0", "up",
        ]);
        must(&["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
        self.hosts.push((ns.clone(), veth));
        (ns, ip)
    }

    /// Cuts host `i` off the network (its process keeps running).
    pub fn cut(&self, i: u32) {
        must(&["ip", "link", "set", &format!("{}v{i}", self.bridge), "down"]);
    }

    pub fn heal(&self, i: u32) {
        must(&["ip", "link", "set", &format!("{}v{i}", self.bridge), "up"]);
    }
}

impl Default for Net {
    fn default() -> Self {
        Net::new()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for (ns, veth) in &self.hosts {
            sh(&["ip", "link", "del", veth]);
            sh(&["ip", "netns", "del", ns]);
        }
        sh(&[
            "iptables",
            "-D",
            "FORWARD",
            "-i",
            &self.bridge,
            "-o",
            &self.bridge,
            "-j",
            "ACCEPT",
        ]);
        sh(&["ip", "link", "del", &self.bridge]);
    }
}
