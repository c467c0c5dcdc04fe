//! A small repository of large files through an agent's `source` input:
//! the agent's peak memory (`VmHWM`) while it archives a commit holding
//! MIB MiB of zeros (a few KiB once packed), beside its resident memory
//! before the run, and the time of the whole action beside a plain `git
//! archive | sha256sum` of the same commit (the work the agent does to
//! store it), in the same run.

use std::process::{Command, Stdio};
use std::time::Instant;

use super::ms;
use crate::{Cluster, Repo, ensure_busybox_image};

/// A line of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix(" kB")?
                .trim()
                .parse()
                .ok()
        })
        .ok_or_else(|| anyhow::anyhow!("no {field} for process {pid}"))
}

pub fn run(mib: u64) -> anyhow::Result<String> {
    ensure_busybox_image();
    let repo = Repo::new();
    let zeros = vec![0u8; usize::try_from(mib * 1024 * 1024)?];
    let commit = repo.commit_bytes(&[("zeros.bin", &zeros)], "zeros");
    drop(zeros);
    let packed = dir_size(&repo.bare);

    // Baseline: what storing the archive costs outside Ferry.
    let t = Instant::now();
    let git = Command::new("git")
        .args(["archive", "--format=tar", &commit])
        .current_dir(&repo.bare)
        .stdout(Stdio::piped())
        .spawn()?;
    let hashed = Command::new("sha256sum")
        .stdin(git.stdout.ok_or_else(|| anyhow::anyhow!("no pipe"))?)
        .output()?;
    anyhow::ensure!(hashed.status.success(), "git archive | sha256sum failed");
    let baseline = t.elapsed();

    let mut c = Cluster::start("benchsrc");
    let agent = c.add_agent_with_args("a", &[], &["--max-artifact-mb", &(mib * 2).to_string()]);
    let pid = c
        .agent_pid(&agent)
        .ok_or_else(|| anyhow::anyhow!("the agent is not running"))?;
    c.apply(&format!(
        "name: zeros\nsource: {{git: {}}}\nstages:\n  - name: build\n    actions:\n      - {{name: size, type: build, image: ferry-local/busybox, inputs: [source], commands: [\"ls -l zeros.bin\"]}}\n",
        repo.url()
    ));
    let idle = status_kib(pid, "VmRSS:")?;
    let t = Instant::now();
    let exec = c.ferry_ok(Some("admin"), &["run", "zeros"]);
    let v = c.wait_status("zeros", exec.trim(), "the run", |v| {
        v["status"] != "InProgress"
    });
    let whole = t.elapsed();
    anyhow::ensure!(v["status"] == "Succeeded", "the run did not succeed: {v:#}");
    let peak = status_kib(pid, "VmHWM:")?;
    Ok(format!(
        "| {mib} MiB of zeros ({} KiB packed) | time | agent memory |\n| --- | --- | --- |\n\
         | `git archive \\| sha256sum` (baseline) | {} | — |\n\
         | agent before the run (RSS) | — | {} MiB |\n\
         | the action, `source` archived, stored, uploaded (agent peak RSS) | {} | {} MiB |\n",
        packed / 1024,
        ms(baseline),
        idle / 1024,
        ms(whole),
        peak / 1024,
    ))
}

fn dir_size(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|d| {
            d.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}
