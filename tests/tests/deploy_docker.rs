//! Deployments to a Docker Engine target (the local engine over its Unix
//! socket, and behind mutual TLS on TCP, standing in for a remote one): the
//! image arrives in the artifact as a `docker save` archive (no registry),
//! the container is replaced and its health check awaited; a release whose
//! health check fails is rolled back to the previous container, a missing
//! image is named, and a client certificate from another CA is refused.

use std::process::Command;

use ferry_tests::docker_tls::TlsEngine;
use ferry_tests::{Cluster, Repo, ensure_busybox_image, free_port, wait_for};

const IMAGE: &str = "ferry-dtest/web:1";
const CONTAINER: &str = "ferry-dtest-web";

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("docker: {e}"));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes what the test made, also when it fails.
struct Cleanup;
impl Drop for Cleanup {
    fn drop(&mut self) {
        let previous = format!("{CONTAINER}.ferry-previous");
        docker(&["rm", "-f", CONTAINER, &previous]);
        docker(&["rmi", IMAGE]);
    }
}

fn spec(port: u16, page: &str, image: &str, archive: bool, health: &str) -> String {
    format!(
        r#"docker:
  image: {image}
{archive}  container: {CONTAINER}
  ports: ["{port}:8080"]
  env: {{PAGE: "{page}"}}
  command: [sh, -c, 'mkdir -p /www && echo "$PAGE" > /www/index.html && exec httpd -f -p 8080 -h /www']
  healthcheck: wget -qO- http://127.0.0.1:8080/{health}
  health_timeout: 8s
"#,
        archive = if archive {
            "  image_archive: image.tar\n"
        } else {
            ""
        }
    )
}

fn page(port: u16) -> Option<String> {
    let out = Command::new("curl")
        .args(["-fsS", "--max-time", "2"])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn release_label() -> String {
    docker(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"ferry.release\"}}",
        CONTAINER,
    ])
}

#[test]
fn docker_engine_target_loads_the_image_and_rolls_back_an_unhealthy_release() {
    ferry_certs::install_crypto_provider();
    ensure_busybox_image();
    let _cleanup = Cleanup;
    docker(&[
        "rm",
        "-f",
        CONTAINER,
        &format!("{CONTAINER}.ferry-previous"),
    ]);
    // The image exists only inside the artifact: saved, then removed from the engine.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let archive = dir.path().join("image.tar");
    docker(&["tag", "ferry-local/busybox", IMAGE]);
    docker(&["save", "-o", &archive.display().to_string(), IMAGE]);
    docker(&["rmi", IMAGE]);
    assert!(docker(&["images", "-q", IMAGE]).is_empty());
    let image_tar = std::fs::read(&archive).unwrap_or_else(|e| panic!("{e}"));

    let mut c = Cluster::start("ddeploy");
    c.add_agent("a", &[]);
    let env = c.path().join("dock.yml");
    std::fs::write(
        &env,
        "name: dock\nhosts:\n  - name: engine1\n    docker:\n      endpoint: unix:///var/run/docker.sock\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    c.ferry_ok(
        Some("admin"),
        &["env", "apply", "-f", &env.display().to_string()],
    );
    let port = free_port();
    let repo = Repo::new();
    let v1_spec = spec(port, "app version 1", IMAGE, true, "");
    repo.commit_bytes(
        &[
            ("image.tar", &image_tar),
            ("ferry-deploy.yml", v1_spec.as_bytes()),
        ],
        "v1",
    );
    c.apply(&format!(
        r#"name: dockship
source: {{git: {}}}
stages:
  - name: build
    actions:
      - name: package
        type: build
        image: ferry-local/busybox
        inputs: [source]
        commands: ["true"]
        outputs: {{app: [image.tar, ferry-deploy.yml]}}
  - name: deploy
    actions:
      - {{name: engine, type: deploy, inputs: [app], environment: dock}}
"#,
        repo.url()
    ));
    let run = |c: &Cluster| {
        let exec = c
            .ferry_ok(Some("admin"), &["run", "dockship"])
            .trim()
            .to_string();
        let v = c.wait_status("dockship", &exec, "the deployment", |v| {
            v["status"] != "InProgress"
        });
        (exec, v)
    };

    let (v1, status) = run(&c);
    assert_eq!(status["status"], "Succeeded", "{status:#}");
    wait_for(
        "version 1 to be served",
        std::time::Duration::from_secs(20),
        || page(port).filter(|p| p == "app version 1"),
    );
    assert_eq!(release_label(), v1);
    assert!(
        !docker(&["images", "-q", IMAGE]).is_empty(),
        "the archive was loaded"
    );

    // Version 2's health check fails: the deployment rolls back to version 1.
    let v2_spec = spec(port, "app version 2", IMAGE, true, "missing-page");
    repo.commit(&[("ferry-deploy.yml", &v2_spec)], "v2");
    let (_, status) = run(&c);
    let action = Cluster::action(&status, "deploy", "engine");
    assert_eq!(action["status"], "Failed", "{status:#}");
    let message = action["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("engine1 failed at validate") && message.contains("rolled back engine1"),
        "{message}"
    );
    assert_eq!(page(port).as_deref(), Some("app version 1"));
    assert_eq!(release_label(), v1);

    // An image that is neither on the engine nor in the artifact is named.
    let v3_spec = spec(port, "app version 3", "ferry-dtest/absent:9", false, "");
    repo.commit(&[("ferry-deploy.yml", &v3_spec)], "v3");
    let (_, status) = run(&c);
    let message = Cluster::action(&status, "deploy", "engine")["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("image `ferry-dtest/absent:9` is not on the engine"),
        "{message}"
    );
    assert_eq!(page(port).as_deref(), Some("app version 1"), "untouched");
    let list = c.ferry_ok(Some("admin"), &["deployments", "list", "dock"]);
    assert!(list.contains("engine1"), "{list}");

    // The same engine behind mutual TLS: the client certificate comes from the
    // host's TLS secret; one from another CA is refused. Those are other
    // environments, which may not replace environment `dock`'s container:
    // it goes first.
    docker(&[
        "rm",
        "-f",
        CONTAINER,
        &format!("{CONTAINER}.ferry-previous"),
    ]);
    let engine = TlsEngine::start();
    for (secret, bundle) in [
        ("docker-tls", &engine.bundle),
        ("docker-stranger", &engine.foreign_bundle),
    ] {
        c.set_secret(secret, bundle.as_bytes());
    }
    for (name, secret) in [("docktls", "docker-tls"), ("dockbad", "docker-stranger")] {
        std::fs::write(
            &env,
            format!(
                "name: {name}\nhosts:\n  - name: tls1\n    docker:\n      endpoint: {}\n      tls_secret: {secret}\n",
                engine.endpoint
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        c.ferry_ok(
            Some("admin"),
            &["env", "apply", "-f", &env.display().to_string()],
        );
    }
    let v4_spec = spec(port, "app version 4", IMAGE, true, "");
    repo.commit(&[("ferry-deploy.yml", &v4_spec)], "v4");
    for (pipeline, environment) in [("tlsship", "docktls"), ("tlsbad", "dockbad")] {
        c.apply(&format!(
            "name: {pipeline}\nsource: {{git: {}}}\nstages:\n  - name: deploy\n    actions:\n      - {{name: engine, type: deploy, inputs: [source], environment: {environment}, connect_timeout: 5s}}\n",
            repo.url()
        ));
    }
    let run_pipeline = |name: &str| {
        let exec = c.ferry_ok(Some("admin"), &["run", name]).trim().to_string();
        c.wait_status(name, &exec, "the TLS deployment", |v| {
            v["status"] != "InProgress"
        })
    };
    let status = run_pipeline("tlsship");
    assert_eq!(status["status"], "Succeeded", "{status:#}");
    wait_for(
        "version 4 to be served",
        std::time::Duration::from_secs(20),
        || page(port).filter(|p| p == "app version 4"),
    );
    let status = run_pipeline("tlsbad");
    let bad = Cluster::action(&status, "deploy", "engine");
    assert_eq!(bad["status"], "Failed", "{status:#}");
    assert!(
        bad["message"]
            .as_str()
            .is_some_and(|m| m.contains("tls1 failed at connect")),
        "{status:#}"
    );
    assert_eq!(
        page(port).as_deref(),
        Some("app version 4"),
        "untouched by the refused client"
    );
}

const OWN_PREFIX: &str = "ferry-own-";

/// Removes the ownership test's containers, also when it fails.
struct OwnCleanup;
impl Drop for OwnCleanup {
    fn drop(&mut self) {
        let names = docker(&["ps", "-aq", "--filter", &format!("name={OWN_PREFIX}")]);
        for id in names.split_whitespace() {
            docker(&["rm", "-f", id]);
        }
    }
}

/// A staging release bundle whose `ferry-deploy.yml` (the repository's
/// words) names `container` and publishes `port`.
fn own_spec(container: &str, port: u16, page: &str) -> String {
    format!(
        r#"docker:
  image: ferry-local/busybox
  container: {container}
  ports: ["{port}:8080"]
  command: [sh, -c, 'mkdir -p /www && echo "{page}" > /www/index.html && exec httpd -f -p 8080 -h /www']
  health_timeout: 8s
"#
    )
}

/// The attack of the issue "Trust boundary, round two": staging and
/// production share one Docker Engine (as in the quick start), and a commit
/// whose staging `ferry-deploy.yml` names production's container — or a
/// container Ferry did not make, or production's port — must not replace it
/// while production's approval is still waiting.
#[test]
fn a_staging_deploy_cannot_touch_what_production_or_nobody_owns() {
    ferry_certs::install_crypto_provider();
    ensure_busybox_image();
    let _cleanup = OwnCleanup;
    let prod = format!("{OWN_PREFIX}production");
    let staging = format!("{OWN_PREFIX}staging");
    let by_hand = format!("{OWN_PREFIX}by-hand");
    let (prod_port, staging_port) = (free_port(), free_port());
    let mut c = Cluster::start("downer");
    c.add_agent("a", &[]);
    for env in ["staging", "production"] {
        let file = c.path().join(format!("{env}.yml"));
        std::fs::write(
            &file,
            format!("name: {env}\nhosts:\n  - name: engine\n    docker:\n      endpoint: unix:///var/run/docker.sock\n"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        c.ferry_ok(
            Some("admin"),
            &["env", "apply", "-f", &file.display().to_string()],
        );
    }
    let repo = Repo::new();
    let commit = |staging_spec: &str, msg: &str| {
        repo.commit(
            &[
                ("staging/ferry-deploy.yml", staging_spec),
                (
                    "production/ferry-deploy.yml",
                    &own_spec(&prod, prod_port, "production page"),
                ),
            ],
            msg,
        );
    };
    commit(&own_spec(&staging, staging_port, "staging page"), "v1");
    c.apply(&format!(
        r#"name: shop
source: {{git: {}}}
stages:
  - name: build
    actions:
      - name: package-staging
        type: build
        image: ferry-local/busybox
        inputs: [source]
        commands: ["cp staging/ferry-deploy.yml ferry-deploy.yml"]
        outputs: {{staging-release: [ferry-deploy.yml]}}
      - name: package-production
        type: build
        image: ferry-local/busybox
        inputs: [source]
        commands: ["cp production/ferry-deploy.yml ferry-deploy.yml"]
        outputs: {{production-release: [ferry-deploy.yml]}}
  - name: staging
    actions:
      - {{name: deploy, type: deploy, inputs: [staging-release], environment: staging}}
  - name: gate
    actions:
      - {{name: release, type: approval}}
  - name: production
    actions:
      - {{name: deploy, type: deploy, inputs: [production-release], environment: production}}
"#,
        repo.url()
    ));
    c.grant("ann", "approver");
    let start = |c: &Cluster| {
        c.ferry_ok(Some("admin"), &["run", "shop"])
            .trim()
            .to_string()
    };
    let waiting_or_done = |v: &serde_json::Value| {
        Cluster::action(v, "gate", "release")["status"] == "WaitingForApproval"
            || v["status"] != "InProgress"
    };

    // Release 1 reaches production the proper way: a person approves it.
    let v1 = start(&c);
    let status = c.wait_status("shop", &v1, "the approval", waiting_or_done);
    assert_eq!(
        Cluster::action(&status, "staging", "deploy")["status"],
        "Succeeded",
        "{status:#}"
    );
    c.ferry_ok(
        Some("ann"),
        &[
            "approve",
            "shop",
            "--execution",
            &v1,
            "--action",
            "gate/release",
        ],
    );
    let status = c.wait_status("shop", &v1, "production", |v| v["status"] != "InProgress");
    assert_eq!(status["status"], "Succeeded", "{status:#}");
    wait_for(
        "production to serve",
        std::time::Duration::from_secs(20),
        || page(prod_port).filter(|p| p == "production page"),
    );
    let prod_id = docker(&["inspect", "-f", "{{.Id}}", &prod]);
    let labels = docker(&["inspect", "-f", "{{json .Config.Labels}}", &prod]);
    for want in [
        "\"ferry.environment\":\"production\"",
        "\"ferry.pipeline\":\"shop\"",
        "\"ferry.host\":\"engine\"",
        &format!("\"ferry.release\":\"{v1}\""),
    ] {
        assert!(labels.contains(want), "{want} in {labels}");
    }

    // A container nobody deployed with Ferry, made by hand.
    docker(&[
        "run",
        "-d",
        "--name",
        &by_hand,
        "ferry-local/busybox",
        "sleep",
        "600",
    ]);
    let attacks = [
        (
            own_spec(&prod, staging_port, "evil"),
            format!("container `{prod}` belongs to environment `production`, not `staging`"),
        ),
        (
            own_spec(&format!("{prod}.ferry-previous"), staging_port, "evil"),
            "names ending in `.ferry-previous` are the containers Ferry keeps".to_string(),
        ),
        (
            own_spec(&by_hand, staging_port, "evil"),
            format!("container `{by_hand}` was not made by Ferry"),
        ),
        (
            own_spec(&staging, prod_port, "evil"),
            format!(
                "host port {prod_port} is published by container `{prod}` (environment `production`)"
            ),
        ),
    ];
    for (i, (spec, refusal)) in attacks.iter().enumerate() {
        commit(spec, &format!("attack {i}"));
        let exec = start(&c);
        let status = c.wait_status("shop", &exec, "the staging deploy", waiting_or_done);
        let deploy = Cluster::action(&status, "staging", "deploy");
        assert_eq!(deploy["status"], "Failed", "attack {i}: {status:#}");
        let logs = c.ferry_ok(
            Some("admin"),
            &[
                "logs",
                "shop",
                "--execution",
                &exec,
                "--action",
                "staging/deploy",
            ],
        );
        let said = format!("{}\n{logs}", deploy["message"]);
        assert!(said.contains(refusal.as_str()), "attack {i}: {said}");
        assert_ne!(
            Cluster::action(&status, "gate", "release")["status"],
            "WaitingForApproval",
            "attack {i}"
        );
        // Production still runs release 1 in the same container, serving.
        assert_eq!(
            docker(&["inspect", "-f", "{{.Id}}", &prod]),
            prod_id,
            "attack {i}"
        );
        assert_eq!(
            docker(&["inspect", "-f", "{{.State.Running}}", &prod]),
            "true",
            "attack {i}"
        );
        assert_eq!(
            page(prod_port).as_deref(),
            Some("production page"),
            "attack {i}"
        );
        assert_eq!(
            docker(&["inspect", "-f", "{{.State.Running}}", &by_hand]),
            "true",
            "attack {i}"
        );
    }
}
