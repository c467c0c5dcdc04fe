//! `ferry-bench`: measures Ferry against a baseline taken in the same run.
//!
//! `trivial-action` — wall time of one trivial build action through Ferry
//! (`ferry run` until the execution has finished, watched over the API) next to
//! a bare `docker run --rm` of the same image and command.
//!
//! Usage: `cargo build --release --bins && target/release/ferry-bench [ROUNDS]`

use std::process::Command;
use std::time::{Duration, Instant};

use ferry_tests::{Cluster, Repo, ensure_busybox_image};

fn stats(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    let median = v[v.len() / 2];
    (v[0], median, v[v.len() - 1])
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
        .max(1);
    ensure_busybox_image();

    // Baseline: the same container, started and removed by the docker CLI.
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
        "name: bench\nsource: {{git: {}}}\nstages:\n  - name: build\n    actions:\n      - {{name: echo, type: build, image: ferry-local/busybox, commands: [\"echo hello\"]}}\n",
        repo.url()
    ));
    // Warm the agent's source cache and the coordinator's git mirror once.
    let warm = c.ferry_ok(Some("admin"), &["run", "bench"]);
    c.wait_status("bench", warm.trim(), "warm-up run", |v| {
        v["status"] != "InProgress"
    });

    let mut ferry = Vec::new();
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

    let (bmin, bmed, bmax) = stats(bare);
    let (fmin, fmed, fmax) = stats(ferry);
    println!("| measurement | min | median | max |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| bare `docker run --rm` (baseline) | {} | {} | {} |",
        ms(bmin),
        ms(bmed),
        ms(bmax)
    );
    println!(
        "| one trivial action through Ferry | {} | {} | {} |",
        ms(fmin),
        ms(fmed),
        ms(fmax)
    );
    println!();
    println!(
        "rounds: {rounds}; median ratio Ferry / docker run = {:.2}",
        fmed.as_secs_f64() / bmed.as_secs_f64().max(1e-9)
    );
    Ok(())
}
