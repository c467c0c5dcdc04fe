//! What a build container gets: the agent's default limits (memory, CPUs,
//! processes) unless the action's `resources:` say otherwise, a reduced
//! capability set with no-new-privileges, and secrets that reach the action's
//! commands without being written into the container's configuration — read
//! back from inside the container, from `docker inspect` and from the
//! engine's files on disk while the action runs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use ferry_tests::{Cluster, Repo, ensure_busybox_image, files_containing, wait_for};
use serde_json::Value;

/// Capabilities every container keeps: CHOWN, DAC_OVERRIDE, FOWNER, FSETID,
/// KILL, SETGID, SETUID, NET_BIND_SERVICE (bits 0, 1, 3, 4, 5, 6, 7, 10).
const KEPT_CAPS: u64 = 0x4fb;

/// Printed by every probe action: its own status (capabilities,
/// no-new-privileges) and its cgroup's limits, on cgroup v2 or v1.
const PROBE: &[&str] = &[
    "cat /proc/self/status",
    "echo pids=$(cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max)",
    "echo memory=$(cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes)",
    "echo cpu=$(cat /sys/fs/cgroup/cpu.max 2>/dev/null || echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us))",
];

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker: {e}"));
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn repo() -> Repo {
    let r = Repo::new();
    r.commit(&[("README", "x")], "init");
    r
}

/// A YAML flow list of the commands, each as a double-quoted string.
fn yaml_list(commands: &[&str]) -> String {
    let quoted: Vec<String> = commands
        .iter()
        .map(|c| serde_json::to_string(c).unwrap_or_default())
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// What one probe action reported, from its log.
#[derive(Debug)]
struct Probe {
    cap_eff: u64,
    cap_bnd: u64,
    no_new_privs: String,
    pids: String,
    memory: String,
    /// CPU quota in thousandths of a CPU (None: unlimited).
    millicpus: Option<u64>,
}

fn probe(c: &Cluster, pipeline: &str, exec: &str, action: &str) -> Probe {
    let log = c.ferry_ok(
        Some("admin"),
        &[
            "logs",
            pipeline,
            "--execution",
            exec,
            "--action",
            &format!("s/{action}"),
        ],
    );
    let mut seen = HashMap::new();
    for line in log.lines() {
        if let Some((k, v)) = line.split_once(':').filter(|(k, _)| !k.contains(' ')) {
            seen.entry(k.to_string()).or_insert(v.trim().to_string());
        }
        if let Some((k, v)) = line.split_once('=').filter(|(k, _)| !k.contains(' ')) {
            seen.entry(k.to_string()).or_insert(v.trim().to_string());
        }
    }
    let get = |k: &str| {
        seen.get(k)
            .cloned()
            .unwrap_or_else(|| panic!("`{k}` is not in the log of {action}:\n{log}"))
    };
    let hex = |k: &str| {
        u64::from_str_radix(&get(k), 16)
            .unwrap_or_else(|e| panic!("{k} is not hex ({e}) in:\n{log}"))
    };
    let cpu = get("cpu");
    let millicpus = match cpu.split_whitespace().collect::<Vec<_>>()[..] {
        [quota, period] => match (quota.parse::<i64>(), period.parse::<u64>()) {
            (Ok(q), Ok(p)) if q > 0 && p > 0 => Some(q as u64 * 1000 / p),
            _ => None,
        },
        _ => panic!("cpu quota `{cpu}` is not `QUOTA PERIOD`:\n{log}"),
    };
    Probe {
        cap_eff: hex("CapEff"),
        cap_bnd: hex("CapBnd"),
        no_new_privs: get("NoNewPrivs"),
        pids: get("pids"),
        memory: get("memory"),
        millicpus,
    }
}

fn host_cpus() -> u64 {
    docker(&["info", "-f", "{{.NCPU}}"])
        .parse()
        .unwrap_or_else(|e| panic!("docker info NCPU: {e}"))
}

#[test]
fn containers_get_default_limits_few_capabilities_and_resources_override_them() {
    ensure_busybox_image();
    let mut c = Cluster::start("ctrlim");
    c.add_agent("a", &["plain"]);
    c.add_agent_with_args(
        "b",
        &["tuned"],
        &[
            "--default-memory",
            "512m",
            "--default-cpus",
            "1",
            "--default-pids",
            "200",
        ],
    );
    let r = repo();
    let probe_cmds = yaml_list(PROBE);
    c.apply(&format!(
        r#"name: limits
source: {{git: {url}}}
stages:
  - name: s
    actions:
      - {{name: defaults, type: build, image: ferry-local/busybox, runs_on: [plain], commands: {probe_cmds}}}
      - {{name: override, type: test, image: ferry-local/busybox, runs_on: [plain], resources: {{pids: 64}}, commands: {probe_cmds}}}
      - {{name: flags, type: build, image: ferry-local/busybox, runs_on: [tuned], commands: {probe_cmds}}}
"#,
        url = r.url()
    ));
    let exec = c
        .ferry_ok(Some("admin"), &["run", "limits"])
        .trim()
        .to_string();
    let v = c.wait_status("limits", &exec, "execution to end", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(v["status"], "Succeeded", "{v:#}");

    let cpus = host_cpus();
    let defaults = probe(&c, "limits", &exec, "defaults");
    let over = probe(&c, "limits", &exec, "override");
    let flags = probe(&c, "limits", &exec, "flags");
    for (name, p) in [
        ("defaults", &defaults),
        ("override", &over),
        ("flags", &flags),
    ] {
        assert_eq!(
            p.cap_eff, KEPT_CAPS,
            "{name}: effective capabilities {:#x}, expected {KEPT_CAPS:#x}",
            p.cap_eff
        );
        assert_eq!(
            p.cap_bnd, KEPT_CAPS,
            "{name}: bounding set {:#x} (privileged containers have every bit)",
            p.cap_bnd
        );
        assert_eq!(p.no_new_privs, "1", "{name}: no-new-privileges");
    }
    // Agent defaults: 2 GiB, 2 CPUs (fewer if the host has fewer), 1024 processes.
    assert_eq!(defaults.pids, "1024", "{defaults:?}");
    assert_eq!(defaults.memory, (2u64 << 30).to_string(), "{defaults:?}");
    assert_eq!(
        defaults.millicpus,
        Some(2000.min(cpus * 1000)),
        "{defaults:?}"
    );
    // `resources: {pids: 64}` overrides only the process limit.
    assert_eq!(over.pids, "64", "{over:?}");
    assert_eq!(over.memory, (2u64 << 30).to_string(), "{over:?}");
    assert_eq!(over.millicpus, defaults.millicpus, "{over:?}");
    // The agent's flags set its own defaults.
    assert_eq!(flags.pids, "200", "{flags:?}");
    assert_eq!(flags.memory, (512u64 << 20).to_string(), "{flags:?}");
    assert_eq!(flags.millicpus, Some(1000), "{flags:?}");
}

const VALUE: &str = "c0nt41ner-S3cret-77";
/// md5 of VALUE: the action proves it saw the value without the test writing it anywhere.
const VALUE_MD5: &str = "710d02ab6f5a953d1350b8c689b95501";

#[test]
fn secrets_are_not_in_the_container_config_while_the_action_runs() {
    ensure_busybox_image();
    let mut c = Cluster::start("ctrsec");
    let agent = c.add_agent("a", &[]);
    c.set_secret("api-token", VALUE.as_bytes());
    let r = repo();
    let commands = yaml_list(&[
        "touch /workspace/.running; until [ -f /workspace/.go ]; do sleep 1; done",
        &format!(
            "test \"$(printf %s \"$API_TOKEN\" | md5sum | cut -d' ' -f1)\" = {VALUE_MD5} && echo matches"
        ),
        "echo token=$API_TOKEN",
    ]);
    c.apply(&format!(
        r#"name: hidden
source: {{git: {url}}}
stages:
  - name: s
    actions:
      - name: use
        type: build
        image: ferry-local/busybox
        env: {{PLAIN: visible}}
        secrets: {{API_TOKEN: api-token}}
        timeout: 3m
        commands: {commands}
"#,
        url = r.url()
    ));
    let exec = c
        .ferry_ok(Some("admin"), &["run", "hidden"])
        .trim()
        .to_string();

    // The action's container, once its first command is running.
    let id = wait_for(
        "the action's container to run its command",
        Duration::from_secs(120),
        || {
            let ids = docker(&[
                "ps",
                "-q",
                "--no-trunc",
                "--filter",
                "label=ferry.attempt",
                "--filter",
                &format!("name=ferry-{agent}-"),
            ]);
            let id = ids.lines().next()?.to_string();
            Command::new("docker")
                .args(["exec", &id, "test", "-f", "/workspace/.running"])
                .status()
                .ok()?
                .success()
                .then_some(id)
        },
    );

    // `docker inspect`: neither the container's config nor its environment holds the value.
    let inspect = docker(&["inspect", &id]);
    assert!(
        !inspect.contains(VALUE),
        "docker inspect shows the secret: {inspect}"
    );
    let v: Value = serde_json::from_str(&inspect).unwrap_or_else(|e| panic!("{e}: {inspect}"));
    let env = v[0]["Config"]["Env"].to_string();
    assert!(env.contains("PLAIN=visible"), "plain env stays: {env}");
    assert!(
        !env.contains("API_TOKEN"),
        "the secret's name is not set: {env}"
    );
    let host = &v[0]["HostConfig"];
    assert_eq!(host["CapDrop"], serde_json::json!(["ALL"]), "{host:#}");
    assert_eq!(host["Privileged"], false, "{host:#}");
    assert!(
        host["SecurityOpt"]
            .as_array()
            .is_some_and(|o| o.iter().any(|o| o == "no-new-privileges")),
        "{host:#}"
    );
    assert_eq!(host["PidsLimit"], 1024, "{host:#}");
    assert_eq!(host["Memory"], 2u64 << 30, "{host:#}");
    assert!(host["NanoCpus"].as_i64().is_some_and(|n| n > 0), "{host:#}");

    // Each exec's own inspection (GET /exec/ID/json) does not show it either.
    for exec_id in v[0]["ExecIDs"].as_array().into_iter().flatten() {
        let exec_id = exec_id.as_str().unwrap_or_default();
        let out = Command::new("curl")
            .args([
                "-sf",
                "--unix-socket",
                "/var/run/docker.sock",
                &format!("http://localhost/exec/{exec_id}/json"),
            ])
            .output()
            .unwrap_or_else(|e| panic!("cannot run curl: {e}"));
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "exec inspect {exec_id} failed");
        assert!(
            !body.contains(VALUE),
            "exec inspect shows the secret: {body}"
        );
    }

    // The engine's files for this container (config.v2.json, hostconfig.json, ...).
    let root = PathBuf::from(docker(&["info", "-f", "{{.DockerRootDir}}"]));
    let dir = root.join("containers").join(&id);
    let config = std::fs::read_to_string(dir.join("config.v2.json")).unwrap_or_else(|e| {
        panic!(
            "reading {}/config.v2.json (tests run as root): {e}",
            dir.display()
        )
    });
    assert!(
        config.contains("PLAIN=visible"),
        "this is the container's config"
    );
    let leaks = files_containing(&dir, VALUE.as_bytes());
    assert!(leaks.is_empty(), "the secret is on disk in: {leaks:?}");

    // What a host admin can still see: the running command's environment in
    // /proc (but not the container's main process).
    let main_pid = v[0]["State"]["Pid"].as_u64().unwrap_or(0);
    let environ = |pid: &str| std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let holds = |pid: &str| {
        environ(pid)
            .windows(VALUE.len())
            .any(|w| w == VALUE.as_bytes())
    };
    assert!(!holds(&main_pid.to_string()), "the container's init has it");
    let pids = docker(&["top", &id, "-eo", "pid"]);
    assert!(
        pids.lines().skip(1).any(|p| holds(p.trim())),
        "the command's environment holds the value (pids {pids})"
    );

    docker(&["exec", &id, "touch", "/workspace/.go"]);
    let v = c.wait_status("hidden", &exec, "execution to end", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(v["status"], "Succeeded", "{v:#}");
    let logs = c.ferry_ok(
        Some("admin"),
        &["logs", "hidden", "--execution", &exec, "--action", "s/use"],
    );
    assert!(logs.contains("matches"), "the action saw the value: {logs}");
    assert!(logs.contains("token=***"), "masked in the log: {logs}");
    assert!(!logs.contains(VALUE), "{logs}");
}
