//! Service containers end to end: a test action reaching its service by
//! name through a real coordinator and agent (references resolved, the
//! service's output in the action's log, masked), a service that never gets
//! ready failing the action by name, an agent killed mid-attempt whose
//! leftovers (service container, network) its restart removes, and the
//! same pipeline through `ferry exec`. Nothing of theirs is left behind.

use std::process::Command;
use std::time::Duration;

use ferry_tests::exec::text;
use ferry_tests::{Cluster, Repo, ensure_busybox_image, wait_for};

/// What the services print, and the secret the actions hold: the log masks it.
const SECRET: &str = "s3cr3t-svc-value";

fn repo() -> Repo {
    let r = Repo::new();
    r.commit(&[("README", "x")], "init");
    r
}

/// A pipeline `name` whose test action `it` fetches a page from service
/// `web` (an httpd on `#{variables.PORT}`, ready once it answers).
fn web_pipeline(name: &str, git: &str) -> String {
    format!(
        r#"name: {name}
source: {{git: {git}}}
variables:
  PORT: "8080"
stages:
  - name: test
    actions:
      - name: it
        type: test
        image: ferry-local/busybox
        secrets: {{TOKEN: tok}}
        commands: ["wget -q -O- http://web:#{{variables.PORT}}/"]
        services:
          - name: web
            image: ferry-local/busybox
            env: {{LEAK: {SECRET}}}
            command: "mkdir -p /www && echo hello-from-web > /www/index.html && echo token $LEAK && exec httpd -f -p #{{variables.PORT}} -h /www"
            ready: {{command: "wget -q -O /dev/null http://127.0.0.1:#{{variables.PORT}}/", timeout: 30s}}
"#
    )
}

/// A pipeline `name` whose service never gets ready (`timeout`).
fn stuck_pipeline(name: &str, git: &str, timeout: &str) -> String {
    format!(
        r#"name: {name}
source: {{git: {git}}}
stages:
  - name: test
    actions:
      - name: it
        type: test
        image: ferry-local/busybox
        commands: ["echo never runs"]
        services:
          - {{name: db, image: ferry-local/busybox, command: "echo db starting; exec sleep 3600", ready: {{command: "exit 1", timeout: {timeout}}}}}
"#
    )
}

fn docker_ok(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The id of what `docker ARGS --format {{.Id}}` inspects.
fn docker_id(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .args(["--format", "{{.Id}}"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker: {e}"));
    assert!(out.status.success(), "docker {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn an_action_reaches_its_service_through_a_coordinator_and_agent() {
    ensure_busybox_image();
    let mut c = Cluster::start("svc");
    c.add_agent("a", &[]);
    c.set_secret("tok", SECRET.as_bytes());
    let r = repo();
    c.wait_cluster_version(None);
    c.apply(&web_pipeline("web", &r.url()));
    let (exec, v) = c.run_to_end("web");
    assert_eq!(v["status"], "Succeeded", "{v:#}");
    let logs = c.ferry_ok(
        Some("admin"),
        &["logs", "web", "--execution", &exec, "--action", "test/it"],
    );
    assert!(logs.contains("hello-from-web"), "{logs}");
    assert!(
        logs.contains("[ferry] service web is ready after"),
        "{logs}"
    );
    assert!(logs.contains("[web] token ***"), "{logs}");
    assert!(!logs.contains(SECRET), "{logs}");

    c.apply(&stuck_pipeline("stuck", &r.url(), "2s"));
    let (exec, v) = c.run_to_end("stuck");
    assert_eq!(v["status"], "Failed", "{v:#}");
    let a = Cluster::action(&v, "test", "it");
    let message = a["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("service `db` was not ready within 2s (its ready command"),
        "{a}"
    );
    assert!(message.contains("db starting"), "{a}");
    let logs = c.ferry_ok(
        Some("admin"),
        &["logs", "stuck", "--execution", &exec, "--action", "test/it"],
    );
    assert!(logs.contains("[db] db starting"), "{logs}");
    assert!(!logs.contains("never runs"), "{logs}");
    wait_for(
        "the containers and networks to be removed",
        Duration::from_secs(20),
        || (c.leftover_containers().is_empty() && c.leftover_networks().is_empty()).then_some(()),
    );
}

#[test]
fn an_agent_restart_removes_the_services_a_killed_agent_left() {
    ensure_busybox_image();
    let mut c = Cluster::start("svcrs");
    let agent = c.add_agent("a", &[]);
    let r = repo();
    c.wait_cluster_version(None);
    c.apply(&stuck_pipeline("stuck", &r.url(), "10m"));
    let exec = c
        .ferry_ok(Some("admin"), &["run", "stuck"])
        .trim()
        .to_string();
    // The service runs, waited for; its container's name says the attempt's.
    let service = wait_for("the service to run", Duration::from_secs(60), || {
        let out = Command::new("docker")
            .args([
                "ps",
                "--format",
                "{{.Names}}",
                "--filter",
                &format!("name=ferry-{agent}-"),
                "--filter",
                "label=ferry.service=db",
            ])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .map(String::from)
    });
    let network = service
        .strip_suffix("-svc-db")
        .unwrap_or_else(|| panic!("{service}"))
        .to_string();
    // By id: the attempt may run again under the same names once the
    // agent is back.
    let service_id = docker_id(&["inspect", "--type", "container", &service]);
    let network_id = docker_id(&["network", "inspect", &network]);
    c.kill_agent(&agent);
    assert!(docker_ok(&["inspect", "--type", "container", &service_id]));
    c.restart_agent(&agent);
    // At start-up, before it takes work, the agent removed what it left.
    assert!(
        !docker_ok(&["inspect", "--type", "container", &service_id]),
        "{service} is still there"
    );
    assert!(
        !docker_ok(&["network", "inspect", &network_id]),
        "{network} is still there"
    );
    // Abandoned by a person: the attempt running again is cancelled, and
    // its service and network go with it.
    c.ferry_ok(
        Some("admin"),
        &[
            "stop",
            "stuck",
            "--execution",
            &exec,
            "--reason",
            "done",
            "--abandon",
        ],
    );
    wait_for(
        "the re-run's containers and network to be removed",
        Duration::from_secs(60),
        || (c.leftover_containers().is_empty() && c.leftover_networks().is_empty()).then_some(()),
    );
}

/// Containers and networks named for local run `pid`'s attempts.
fn leftovers_of_exec(container: &str) -> Vec<String> {
    let prefix = container.rsplit_once('-').map_or(container, |(p, _)| p);
    let list = |args: &[&str]| -> Vec<String> {
        Command::new("docker")
            .args(args)
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    let filter = format!("name={prefix}-");
    let mut all = list(&["ps", "-aq", "--filter", &filter]);
    all.extend(list(&["network", "ls", "-q", "--filter", &filter]));
    all
}

#[test]
fn ferry_exec_runs_services_with_the_same_engine() {
    ensure_busybox_image();
    let r = repo();
    std::fs::write(
        r.work().join("ferry.yml"),
        web_pipeline("local", "/not/fetched"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = ferry_tests::exec::run(r.work(), &[], &[("FERRY_SECRET_TOK", SECRET)]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("| hello-from-web"), "{all}");
    assert!(stdout.contains("| [web] token ***"), "{all}");
    assert!(!all.contains(SECRET), "{all}");
    let container = stdout
        .lines()
        .find_map(|l| l.split("(container ").nth(1))
        .map(|rest| rest.trim_end_matches(')').to_string())
        .unwrap_or_else(|| panic!("no container named: {all}"));
    assert_eq!(leftovers_of_exec(&container), Vec::<String>::new(), "{all}");

    std::fs::write(
        r.work().join("ferry.yml"),
        stuck_pipeline("local", "/not/fetched", "2s"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = ferry_tests::exec::run(r.work(), &[], &[]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("service `db` was not ready within 2s"),
        "{all}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let container = stdout
        .lines()
        .find_map(|l| l.split("(container ").nth(1))
        .map(|rest| rest.trim_end_matches(')').to_string())
        .unwrap_or_else(|| panic!("no container named: {all}"));
    assert_eq!(leftovers_of_exec(&container), Vec::<String>::new(), "{all}");
}
