//! Test harness: starts real `ferry-coordinator` and `ferry-agent` processes
//! with their own certificates in a temporary folder, drives them with the
//! real `ferry` CLI, makes real git repositories, and cleans up every process
//! and container it made — also when a test fails.

pub mod bench;
pub mod cluster;
pub mod docker_tls;
pub mod git;
pub mod metrics;
pub mod net;
pub mod receiver;
pub mod sshd;
pub mod targets;

pub use cluster::{Cluster, HttpAnswer, Options, Run};
pub use git::Repo;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Every file under `dir` whose bytes contain `needle` (secret-leak checks).
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return hits;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            hits.extend(files_containing(&p, needle));
        } else if std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)) {
            hits.push(p.display().to_string());
        }
    }
    hits
}

/// The folder holding the workspace's built binaries (target/debug or release).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// Path to one of Ferry's binaries; fails loudly if it was not built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --bins` first (scripts/test does)",
        p.display()
    );
    p
}

/// Polls `f` until it returns Some or the deadline passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// Makes sure the local busybox image exists (built without a registry).
pub fn ensure_busybox_image() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/busybox-image");
    let status = std::process::Command::new("bash")
        .arg(script)
        .status()
        .unwrap_or_else(|e| panic!("cannot run scripts/busybox-image: {e}"));
    assert!(
        status.success(),
        "building ferry-local/busybox failed (is the Docker Engine running?)"
    );
}

/// The etcd v3 API subset the benchmarks use (generated at build time).
pub mod etcd {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("etcdserverpb");
}
