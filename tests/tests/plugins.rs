//! Plugin actions end to end (issue 25): images in the format of Drone's
//! and Woodpecker's plugins, made here without a registry, run unchanged
//! through a real coordinator and agent on the Docker Engine, and through
//! `ferry exec`:
//!
//! - a plugin whose entrypoint script reads `PLUGIN_MESSAGE`, `PLUGIN_TAGS`
//!   (a comma list), `PLUGIN_CONFIG` (JSON), `PLUGIN_PASSWORD` (from a
//!   secret, masked in the log) and `DRONE_COMMIT_SHA` as such a plugin
//!   does, sees the source it lists, and leaves an output and an output
//!   variable a later build reads;
//! - the same plugin without `inputs: [source]` sees no source;
//! - a plugin that exits 3 fails its action with that code;
//! - an image with no shell at all (only a static busybox, its entrypoint
//!   `/busybox env`) runs.
//!
//! The images are named `ferry-plugintest-PID/...` and removed at the end
//! (also when the test fails), as are the containers. Without a Docker
//! Engine the test fails: it never skips.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferry_tests::exec::text;
use ferry_tests::{Cluster, Repo, ensure_busybox_image, wait_for};

/// The secret the plugins get as `PLUGIN_PASSWORD`: the log masks it.
const SECRET: &str = "s3cr3t-plugin-password";

/// What a plugin in Drone's format does with its settings: reads them from
/// `PLUGIN_*` variables (and the commit from `DRONE_COMMIT_SHA`), prints
/// what it saw, writes a file and an output variable, and exits with
/// `PLUGIN_EXIT_CODE` (0 when unset).
const PLUGIN_SCRIPT: &str = r#"#!/bin/sh
set -e
echo "message=$PLUGIN_MESSAGE"
echo "tags=$PLUGIN_TAGS"
echo "config=$PLUGIN_CONFIG"
echo "password=$PLUGIN_PASSWORD"
echo "sha=$DRONE_COMMIT_SHA ci=$CI pwd=$(pwd)"
if [ -e README ]; then echo "source=yes"; else echo "source=no"; fi
mkdir -p out
old_ifs="$IFS"; IFS=,
for tag in $PLUGIN_TAGS; do echo "tag:$tag" >> out/seen.txt; done
IFS="$old_ifs"
echo "config:$PLUGIN_CONFIG" >> out/seen.txt
echo "sha:$DRONE_COMMIT_SHA" >> out/seen.txt
echo "SEEN_MESSAGE=$PLUGIN_MESSAGE" >> "$FERRY_OUTPUT_VARS"
exit "${PLUGIN_EXIT_CODE:-0}"
"#;

/// Runs docker with `args`; its stdout, or a panic naming what failed.
fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker (is the Docker Engine running?): {e}"));
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A test's two plugin images, removed when dropped (with the container
/// they are made from).
struct Images {
    /// The container the images are made from.
    base: String,
    /// The Drone-format plugin: busybox and an entrypoint script.
    script: String,
    /// An image with no shell: a static busybox as `/busybox`, nothing else.
    no_shell: String,
}

impl Images {
    fn build() -> Images {
        static N: AtomicU64 = AtomicU64::new(0);
        ensure_busybox_image();
        // Each test of this process has images of its own.
        let prefix = format!(
            "ferry-plugintest-{}x{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let images = Images {
            base: format!("{prefix}-base"),
            script: format!("{prefix}/script:1"),
            no_shell: format!("{prefix}/no-shell:1"),
        };
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let script = dir.path().join("plugin.sh");
        std::fs::write(&script, PLUGIN_SCRIPT).unwrap_or_else(|e| panic!("{e}"));
        let chmod = Command::new("chmod").arg("755").arg(&script).status();
        assert!(chmod.is_ok_and(|s| s.success()));
        // The script image: busybox with the script as its entrypoint.
        let base = &images.base;
        docker(&["create", "--name", base, "ferry-local/busybox", "true"]);
        let script_path = script.to_string_lossy().into_owned();
        docker(&["cp", &script_path, &format!("{base}:/bin/plugin.sh")]);
        docker(&[
            "commit",
            "--change",
            r#"ENTRYPOINT ["/bin/plugin.sh"]"#,
            "--change",
            "CMD []",
            base,
            &images.script,
        ]);
        // The image without a shell: only the busybox binary, imported from
        // `docker cp`'s tar of it.
        docker(&[
            "cp",
            &format!("{base}:/bin/busybox"),
            &dir.path().to_string_lossy(),
        ]);
        docker(&["rm", "-f", base]);
        let tar = Command::new("tar")
            .args(["-C", &dir.path().to_string_lossy(), "-c", "busybox"])
            .output()
            .unwrap_or_else(|e| panic!("tar: {e}"));
        assert!(tar.status.success());
        let mut import = Command::new("docker")
            .args([
                "import",
                "--change",
                r#"ENTRYPOINT ["/busybox", "env"]"#,
                "-",
                &images.no_shell,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("docker import: {e}"));
        if let Some(mut stdin) = import.stdin.take() {
            std::io::Write::write_all(&mut stdin, &tar.stdout).unwrap_or_else(|e| panic!("{e}"));
        }
        assert!(
            import.wait().is_ok_and(|s| s.success()),
            "docker import failed"
        );
        // No shell in it: the way builds run commands could not work there.
        let probe = Command::new("docker")
            .args([
                "run",
                "--rm",
                "--entrypoint",
                "/bin/sh",
                &images.no_shell,
                "-c",
                "true",
            ])
            .output()
            .unwrap_or_else(|e| panic!("docker run: {e}"));
        assert!(!probe.status.success(), "{} has a shell", images.no_shell);
        images
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.base])
            .output();
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.script, &self.no_shell])
            .output();
    }
}

/// A pipeline `name` with the plugins of this test; `exit` is the exit code
/// the script plugin `publish` is asked for.
fn pipeline(name: &str, git: &str, images: &Images, exit: u32) -> String {
    let (script, no_shell) = (&images.script, &images.no_shell);
    format!(
        r#"name: {name}
source: {{git: {git}}}
stages:
  - name: ship
    actions:
      - name: publish
        type: plugin
        image: {script}
        inputs: [source]
        settings:
          message: hello from ferry
          tags: [latest, "1.2", edge]
          config: {{region: eu, replicas: 2, debug: false}}
          password: {{from_secret: regpass}}
          exit_code: {exit}
        outputs: {{seen: [out/seen.txt]}}
      - name: bare
        type: plugin
        image: {script}
        settings: {{message: without source}}
      - name: no-shell
        type: plugin
        image: {no_shell}
        settings: {{message: no shell here, list: [a, b]}}
  - name: check
    actions:
      - name: show
        type: build
        image: ferry-local/busybox
        inputs: [seen]
        commands:
          - cat out/seen.txt
          - "echo seen=#{{ship.publish.SEEN_MESSAGE}}"
"#
    )
}

fn repo() -> (Repo, String) {
    let r = Repo::new();
    let sha = r.commit(&[("README", "x")], "init");
    (r, sha)
}

fn logs(c: &Cluster, pipeline: &str, exec: &str, action: &str) -> String {
    c.ferry_ok(
        Some("admin"),
        &["logs", pipeline, "--execution", exec, "--action", action],
    )
}

#[test]
fn existing_format_plugins_run_unchanged_on_an_agent() {
    let images = Images::build();
    let mut c = Cluster::start("plug");
    c.add_agent("a", &[]);
    c.set_secret("regpass", SECRET.as_bytes());
    let (r, sha) = repo();
    c.wait_cluster_version(None);

    c.apply(&pipeline("plug", &r.url(), &images, 0));
    let (exec, v) = c.run_to_end("plug");
    assert_eq!(v["status"], "Succeeded", "{v:#}");
    let publish = logs(&c, "plug", &exec, "ship/publish");
    for wanted in [
        "message=hello from ferry",
        "tags=latest,1.2,edge",
        r#"config={"region":"eu","replicas":2,"debug":false}"#,
        "password=***",
        &format!("sha={sha} ci=true pwd=/workspace"),
        "source=yes",
    ] {
        assert!(publish.contains(wanted), "{wanted:?} in:\n{publish}");
    }
    assert!(!publish.contains(SECRET), "{publish}");
    // Without `inputs: [source]` a plugin gets no source.
    let bare = logs(&c, "plug", &exec, "ship/bare");
    assert!(bare.contains("message=without source"), "{bare}");
    assert!(bare.contains("source=no"), "{bare}");
    assert!(bare.contains("password=\n"), "{bare}");
    // No shell in the image: its own entrypoint ran, with the settings.
    let no_shell = logs(&c, "plug", &exec, "ship/no-shell");
    assert!(
        no_shell.contains("PLUGIN_MESSAGE=no shell here"),
        "{no_shell}"
    );
    assert!(no_shell.contains("PLUGIN_LIST=a,b"), "{no_shell}");
    assert!(
        no_shell.contains(&format!("DRONE_COMMIT_SHA={sha}")),
        "{no_shell}"
    );
    // Its output and output variable reached a later build.
    let show = logs(&c, "plug", &exec, "check/show");
    assert!(show.contains("tag:latest\ntag:1.2\ntag:edge"), "{show}");
    assert!(show.contains(&format!("sha:{sha}")), "{show}");
    assert!(show.contains("seen=hello from ferry"), "{show}");

    // A plugin that fails fails its action, with its exit code.
    c.apply(&pipeline("fails", &r.url(), &images, 3));
    let (_, v) = c.run_to_end("fails");
    assert_eq!(v["status"], "Failed", "{v:#}");
    let a = Cluster::action(&v, "ship", "publish");
    let message = a["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("plugin `{}` exited with code 3", images.script)),
        "{a}"
    );
    assert_eq!(a["exit_code"], 3, "{a:#}");
    wait_for(
        "the containers to be removed",
        Duration::from_secs(20),
        || c.leftover_containers().is_empty().then_some(()),
    );
}

#[test]
fn ferry_exec_runs_plugins_with_the_same_engine() {
    let images = Images::build();
    let (r, _) = repo();
    std::fs::write(
        r.work().join("ferry.yml"),
        pipeline("local", "/not/fetched", &images, 0),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = ferry_tests::exec::run(r.work(), &[], &[("FERRY_SECRET_REGPASS", SECRET)]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for wanted in [
        "message=hello from ferry",
        "tags=latest,1.2,edge",
        "password=***",
        "source=yes",
        "source=no",
        "PLUGIN_MESSAGE=no shell here",
        "tag:edge",
        "seen=hello from ferry",
    ] {
        assert!(stdout.contains(wanted), "{wanted:?} in:\n{all}");
    }
    assert!(!all.contains(SECRET), "{all}");
}
