//! The web console's pages with a pipeline of 1,000 executions (what
//! `--execution-retention` keeps by default): each page fetched `rounds`
//! times by one curl process over one kept-alive HTTPS connection, so the
//! figure is the server's answer (a linearizable read, the rendering and
//! the transfer), beside `GET /healthz` fetched the same way. Once from a
//! one-member cluster, once from a follower of three (its read index asks
//! the leader).

use std::process::Command;
use std::time::Duration;

use super::{ms, quantiles};
use crate::{Cluster, Repo, wait_for};

/// Executions the benchmark's pipeline holds.
const EXECUTIONS: usize = 1000;

/// Fetches `url` `rounds` times in one curl run with `cookie`: the time of
/// each answer (all must be 200) and the size of the last one in bytes.
fn fetch(
    c: &Cluster,
    url: &str,
    cookie: &str,
    rounds: usize,
) -> anyhow::Result<(Vec<Duration>, u64)> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--http1.1", "-H"])
        .arg(format!("Cookie: {cookie}"))
        .arg("--cacert")
        .arg(c.tls.join("ca.pem"))
        .args(["-w", "%{http_code} %{time_total} %{size_download}\\n"]);
    for _ in 0..rounds {
        cmd.args(["-o", "/dev/null", url]);
    }
    let out = cmd.output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (mut times, mut size) = (Vec::new(), 0);
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let code = parts.next().unwrap_or_default();
        anyhow::ensure!(code == "200", "{url} answered {line}");
        let secs: f64 = parts.next().unwrap_or_default().parse()?;
        times.push(Duration::from_secs_f64(secs));
        size = parts.next().unwrap_or_default().parse()?;
    }
    anyhow::ensure!(
        times.len() == rounds,
        "{url}: {} answers of {rounds}: {}",
        times.len(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((times, size))
}

/// The session cookie of `user` (`name=value`), through `ferry ui`.
fn log_in(c: &Cluster, user: &str) -> anyhow::Result<String> {
    let out = c.ferry_ok(Some(user), &["ui"]);
    let link = out.lines().next().unwrap_or_default().trim();
    let answer = c.https_url("POST", link, &[], None);
    anyhow::ensure!(answer.status == 303, "login answered {}", answer.status);
    answer
        .headers
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("set-cookie").then(|| v.trim())
        })
        .and_then(|v| v.split(';').next())
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("no session cookie"))
}

pub fn run(rounds: usize) -> anyhow::Result<String> {
    let mut out = measure(rounds, 1)?;
    out.push('\n');
    out.push_str(&measure(rounds, 3)?);
    Ok(out)
}

/// The pages on a cluster of `members`, fetched from a follower if any.
fn measure(rounds: usize, members: u64) -> anyhow::Result<String> {
    let c = Cluster::start_members(
        &format!("bench-console{members}"),
        members,
        crate::Options::default(),
    );
    c.grant("ann", "approver");
    let repo = Repo::new();
    repo.commit(&[("README", "bench\n")], "bench");
    // Each execution waits at an approval that times out after a second:
    // 1,000 finished (failed) executions without an agent.
    c.apply(&format!(
        "name: big\nexecution_mode: parallel\nsource: {{git: {}}}\nstages:\n  - name: build\n    actions:\n      - {{name: compile, type: approval, timeout: 1s}}\n      - {{name: lint, type: approval, timeout: 1s}}\n      - {{name: unit, type: approval, timeout: 1s, run_order: 2}}\n  - name: gate\n    actions:\n      - {{name: release, type: approval, timeout: 1s}}\n",
        repo.url()
    ));
    let mut last = String::new();
    for _ in 0..EXECUTIONS {
        last = c
            .ferry_ok(Some("admin"), &["run", "big"])
            .trim()
            .to_string();
    }
    wait_for("the executions to end", Duration::from_secs(300), || {
        let v = c.status("big", &last);
        (v["status"] != "InProgress").then_some(())
    });
    let list = c.ferry_ok(
        Some("admin"),
        &["executions", "big", "--limit", "1000", "-o", "json"],
    );
    let held = serde_json::from_str::<serde_json::Value>(&list)
        .ok()
        .and_then(|v| v.as_array().map(Vec::len))
        .unwrap_or(0);
    let cookie = log_in(&c, "ann")?;
    let leader = c.leader();
    let member = (1..=members).find(|m| *m != leader).unwrap_or(leader);
    let base = format!("https://{}", c.http_addr(member));
    let from = if member == leader {
        "the only member".to_string()
    } else {
        format!("a follower of {members}")
    };
    let pages = [
        ("`GET /healthz` (baseline)", "/healthz".to_string()),
        ("pipelines page `/`", "/".to_string()),
        (
            "pipeline page (its 50 newest executions)",
            "/pipelines/big".to_string(),
        ),
        (
            "execution page (graph of 4 actions)",
            format!("/pipelines/big/executions/{last}"),
        ),
        ("approvals waiting", "/approvals".to_string()),
    ];
    let mut out = format!(
        "| console page from {from}, pipeline with {held} executions ({rounds} rounds) | bytes | p50 | p90 | max |\n| --- | --- | --- | --- | --- |\n"
    );
    for (name, path) in pages {
        let url = format!("{base}{path}");
        fetch(&c, &url, &cookie, 3)?; // warm-up
        let (times, size) = fetch(&c, &url, &cookie, rounds)?;
        let [p50, p90, max] = quantiles(times, [0.5, 0.9, 1.0]);
        out.push_str(&format!(
            "| {name} | {size} | {} | {} | {} |\n",
            ms(p50),
            ms(p90),
            ms(max)
        ));
    }
    Ok(out)
}
