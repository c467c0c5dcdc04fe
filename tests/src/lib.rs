//! Test harness: starts real `ferry-coordinator` and `ferry-agent` processes
//! with their own certificates in a temporary folder, drives them with the
//! real `ferry` CLI, makes real git repositories, drives the web console in
//! headless Chromium, and cleans up every process and container it made —
//! also when a test fails.

pub mod bench;
pub mod browser;
pub mod cluster;
pub mod docker_tls;
pub mod exec;
pub mod git;
pub mod metrics;
pub mod net;
pub mod receiver;
pub mod sshd;
pub mod targets;

pub use cluster::{Cli, Cluster, HttpAnswer, Options, Run};
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

/// `name` from `dir` when given (another release's binaries), else this build's.
pub fn binary(dir: Option<&Path>, name: &str) -> PathBuf {
    match dir {
        Some(d) => {
            let p = d.join(name);
            assert!(p.exists(), "{} is missing", p.display());
            p
        }
        None => bin(name),
    }
}

/// The binaries of the release before this build's version, which
/// `scripts/previous-release` builds into target/previous/ (scripts/test runs
/// it); fails loudly when they are missing.
pub fn previous_release() -> PathBuf {
    let dir = bin_dir()
        .parent()
        .map(|t| t.join("previous").join("latest"))
        .unwrap_or_default();
    assert!(
        dir.join("ferry-coordinator").exists(),
        "the previous release's binaries are missing from {}: run scripts/previous-release first (scripts/test does)",
        dir.display()
    );
    dir
}

/// This build's `MAJOR.MINOR` (what a cluster of its members reports as
/// its cluster version).
pub fn this_minor_version() -> &'static str {
    let v = env!("CARGO_PKG_VERSION");
    v.rsplit_once('.').map_or(v, |(minor, _)| minor)
}

/// Stops `child` as a service manager would (SIGTERM), waits up to `timeout`
/// for it to exit, then SIGKILLs it; how it exited (None: it had to be killed).
pub fn stop_child(
    mut child: std::process::Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    signal(child.id(), "TERM");
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Sends `signal` (e.g. "TERM", "STOP") to process `pid`; fails the test if it cannot.
pub fn signal(pid: u32, signal: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status();
    assert!(ok.is_ok_and(|s| s.success()), "kill -{signal} {pid} failed");
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

/// Ports handed out by [`free_port`] so far in this process.
static PORTS_GIVEN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A free TCP port on loopback, for a process the test starts next.
///
/// Taken below the kernel's ephemeral range (32768 and up by default): a
/// port from `bind(0)` is an ephemeral one, which any outgoing connection
/// may take between this check and the server's own bind (it happened: a
/// coordinator failed with "address already in use"). Each call in a
/// process gets the next port of a sequence that starts at a place of its
/// own, so two tests running at once never get the same one.
pub fn free_port() -> u16 {
    const LOW: u32 = 10_000;
    const SPAN: u32 = 22_000;
    let start = std::process::id().wrapping_mul(7919) % SPAN;
    for _ in 0..SPAN {
        let n = PORTS_GIVEN.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let port = LOW + (start + n) % SPAN;
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {LOW} and {}", LOW + SPAN)
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
