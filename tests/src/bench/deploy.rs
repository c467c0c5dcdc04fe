//! A 10 MiB artifact deployed to 4 real OpenSSH hosts (network namespaces)
//! by a deploy action — all at once and one at a time — beside plain `scp`
//! of the same file to the same hosts (in parallel and one after another),
//! in the same run.

use std::process::Command;
use std::time::{Duration, Instant};

use super::{ms, summary};
use crate::targets::Targets;
use crate::{Cluster, Repo};

const HOSTS: u32 = 4;

/// `mib` MiB of text that does not compress (hex of a simple PRNG stream).
fn payload(mib: u64) -> String {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut s = String::with_capacity((mib * 1024 * 1024) as usize);
    while (s.len() as u64) < mib * 1024 * 1024 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push_str(&format!("{x:016x}"));
        if s.len().is_multiple_of(4096) {
            s.push('\n');
        }
    }
    s
}

fn scp(t: &Targets, keys: &std::path::Path, file: &std::path::Path, i: u32) -> std::process::Child {
    let h = t.host(i);
    let dest = t.path(i).join("scp");
    let _ = std::fs::create_dir_all(&dest);
    Command::new("scp")
        .args([
            "-q",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-i",
        ])
        .arg(keys.join(format!("h{i}")))
        .arg(file)
        .arg(format!("root@{}:{}/", h.ip, dest.display()))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run scp: {e} (install openssh-client)"))
}

fn timed_scp(
    t: &Targets,
    keys: &std::path::Path,
    file: &std::path::Path,
    parallel: bool,
) -> Duration {
    let start = Instant::now();
    if parallel {
        let children: Vec<_> = (1..=HOSTS).map(|i| scp(t, keys, file, i)).collect();
        for mut c in children {
            assert!(c.wait().is_ok_and(|s| s.success()), "scp failed");
        }
    } else {
        for i in 1..=HOSTS {
            assert!(
                scp(t, keys, file, i).wait().is_ok_and(|s| s.success()),
                "scp failed"
            );
        }
    }
    start.elapsed()
}

pub fn run(mib: u64, rounds: usize) -> anyhow::Result<String> {
    let t = Targets::start(HOSTS);
    let mut c = Cluster::start("benchdeploy");
    c.add_agent("a", &[]);
    t.set_key_secrets(&c);
    // The two strategies deploy to separate directories: each uploads.
    for env in ["all", "one"] {
        t.apply_environment(&c, &t.environment_in(env, "h", &[1, 2, 3, 4], env));
    }
    let keys = c.path().join("scp-keys");
    std::fs::create_dir_all(&keys)?;
    for i in 1..=HOSTS {
        let key = keys.join(format!("h{i}"));
        std::fs::write(&key, &t.host(i).client_key)?;
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    }
    let data = payload(mib);
    let file = c.path().join("payload.txt");
    std::fs::write(&file, &data)?;
    let repo = Repo::new();
    repo.commit(
        &[
            ("payload.txt", data.as_str()),
            ("ferry-deploy.yml", "hooks: {}\n"),
        ],
        "payload",
    );
    c.apply(&format!(
        "name: ship\nsource: {{git: {}}}\nexecution_mode: parallel\nstages:\n  - name: build\n    actions:\n      - {{name: pack, type: build, image: ferry-local/busybox, inputs: [source], commands: [\"true\"], outputs: {{app: [payload.txt, ferry-deploy.yml]}}}}\n  - name: all\n    actions:\n      - {{name: deploy, type: deploy, inputs: [app], environment: all, strategy: all_at_once, keep_releases: 1}}\n  - name: one\n    actions:\n      - {{name: deploy, type: deploy, inputs: [app], environment: one, strategy: one_at_a_time, keep_releases: 1}}\n",
        repo.url()
    ));
    let (mut par, mut seq, mut all, mut one) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        par.push(timed_scp(&t, &keys, &file, true));
        seq.push(timed_scp(&t, &keys, &file, false));
        let exec = c
            .ferry_ok(Some("admin"), &["run", "ship"])
            .trim()
            .to_string();
        let v = c.wait_status("ship", &exec, "the deployments", |v| {
            v["status"] != "InProgress"
        });
        anyhow::ensure!(v["status"] == "Succeeded", "bench execution failed: {v:#}");
        for (stage, out) in [("all", &mut all), ("one", &mut one)] {
            let a = Cluster::action(&v, stage, "deploy");
            let took = elapsed(&a["started_at"], &a["finished_at"])
                .ok_or_else(|| anyhow::anyhow!("no times in {a}"))?;
            out.push(took);
        }
    }
    // Where the time of the newest deployments went, on their first host.
    let steps_of = |env: &str| -> anyhow::Result<String> {
        let list = c.ferry_ok(Some("admin"), &["deployments", "list", env, "-o", "json"]);
        let list: serde_json::Value = serde_json::from_str(&list)?;
        let id = list["deployments"][0]["id"]
            .as_u64()
            .unwrap_or_default()
            .to_string();
        let shown = c.ferry_ok(Some("admin"), &["deployments", "show", &id, "-o", "json"]);
        let shown: serde_json::Value = serde_json::from_str(&shown)?;
        let steps: Vec<String> = shown["hosts"][0]["hooks"]
            .as_array()
            .map(|h| {
                h.iter()
                    .map(|k| {
                        format!(
                            "{} {} ms",
                            k["hook"].as_str().unwrap_or("?"),
                            k["duration_ms"]
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(steps.join(", "))
    };
    let steps = format!(
        "all_at_once: {}; one_at_a_time: {}",
        steps_of("all")?,
        steps_of("one")?
    );
    let row = |name: &str, v: Vec<Duration>| {
        let [min, med, _, max] = summary(v);
        (
            format!("| {name} | {} | {} | {} |\n", ms(min), ms(med), ms(max)),
            med,
        )
    };
    let (r1, par_med) = row("`scp` to 4 hosts in parallel (baseline)", par);
    let (r2, seq_med) = row("`scp` to 4 hosts one after another (baseline)", seq);
    let (r3, all_med) = row("deploy action, `all_at_once`", all);
    let (r4, one_med) = row("deploy action, `one_at_a_time`", one);
    Ok(format!(
        "| {mib} MiB to {HOSTS} SSH hosts | min | median | max |\n| --- | --- | --- | --- |\n{r1}{r2}{r3}{r4}\n\
         rounds: {rounds}; median ratio all_at_once / parallel scp = {:.2}, \
         one_at_a_time / sequential scp = {:.2}\n\n         steps on the first host of the last deployments: {}\n",
        all_med.as_secs_f64() / par_med.as_secs_f64().max(1e-9),
        one_med.as_secs_f64() / seq_med.as_secs_f64().max(1e-9),
        steps,
    ))
}

/// The time between two RFC 3339 timestamps of a status answer.
fn elapsed(start: &serde_json::Value, end: &serde_json::Value) -> Option<Duration> {
    let parse = |v: &serde_json::Value| humantime::parse_rfc3339(v.as_str()?).ok();
    parse(end)?.duration_since(parse(start)?).ok()
}
