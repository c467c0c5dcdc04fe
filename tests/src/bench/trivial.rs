//! One trivial build action through Ferry (`ferry run` + `ferry status
//! --watch`) beside a bare `docker run --rm` of the same image and command.

use std::process::Command;
use std::time::{Duration, Instant};

use super::{ms, summary};
use crate::{Cluster, Repo, ensure_busybox_image};

pub fn run(rounds: usize) -> anyhow::Result<String> {
    ensure_busybox_image();
    let mut bare = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let out = Command::new("docker")
            .args([
                "run",
                "--rm",
                "ferry-local/busybox",
                "sh",
                "-c",
                "echo hello",
            ])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "docker run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        bare.push(t.elapsed());
    }
    let mut c = Cluster::start("bench");
    c.add_agent("a", &[]);
    let repo = Repo::new();
    repo.commit(&[("README", "bench")], "bench");
    c.apply(&format!(
        "name: bench\nsource: {{git: {}}}\nexecution_mode: parallel\nstages:\n  - name: build\n    actions:\n      - {{name: echo, type: build, image: ferry-local/busybox, commands: [\"echo hello\"]}}\n",
        repo.url()
    ));
    let warm = c.ferry_ok(Some("admin"), &["run", "bench"]);
    c.wait_status("bench", warm.trim(), "warm-up run", |v| {
        v["status"] != "InProgress"
    });
    let mut ferry: Vec<Duration> = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let exec = c.ferry_ok(Some("admin"), &["run", "bench"]);
        let watched = c.ferry_ok(
            Some("admin"),
            &[
                "status",
                "bench",
                "--execution",
                exec.trim(),
                "--watch",
                "-o",
                "json",
            ],
        );
        ferry.push(t.elapsed());
        anyhow::ensure!(
            watched.contains("Succeeded"),
            "bench execution did not succeed: {watched}"
        );
    }
    let [bmin, bmed, _, bmax] = summary(bare);
    let [fmin, fmed, _, fmax] = summary(ferry);
    Ok(format!(
        "| measurement | min | median | max |\n| --- | --- | --- | --- |\n\
         | bare `docker run --rm` (baseline) | {} | {} | {} |\n\
         | one trivial action through Ferry | {} | {} | {} |\n\n\
         rounds: {rounds}; median ratio Ferry / docker run = {:.2}\n",
        ms(bmin),
        ms(bmed),
        ms(bmax),
        ms(fmin),
        ms(fmed),
        ms(fmax),
        fmed.as_secs_f64() / bmed.as_secs_f64().max(1e-9)
    ))
}
