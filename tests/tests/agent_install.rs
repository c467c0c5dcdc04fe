//! End to end: the one command on a build machine. `ferry token create`
//! prints `ferry-agent install --coordinator ADDR --token TOKEN --ca-sha256
//! HEX`; run as the current user (with `--etc` and `--state-dir` in a temp
//! dir and `--no-start`: no systemd here, and no `ferry-agent` user, so the
//! chown step is skipped and says so) it fetches the CA, checks it against
//! the pinned hash, enrolls and writes ca.pem and agent.env without the
//! token. Run again it is a no-op; with a wrong hash it is refused and with
//! `--dry-run` it writes nothing. The agent then started with the settings it
//! wrote (what the unit's `ExecStart` runs: `ferry-agent $FERRY_AGENT_OPTS`
//! with FERRY_COORDINATOR in the environment) connects and runs a build.
//!
//! The second test does it as a build machine would: the `.deb` in a clean
//! Debian container (no registry: `packaging/debian-image`), the printed
//! line run there as root, then the unit's `ExecStart` as the unit's user
//! (systemd is not PID 1 there), which runs a build.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use ferry_tests::{Cluster, Repo, bin, ensure_busybox_image};
use serde_json::Value;

/// Kills the agent started by hand when the test ends.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn install(words: &[String], etc: &Path, state: &Path, extra: &[&str]) -> Output {
    Command::new(bin("ferry-agent"))
        .args(words)
        .arg("--etc")
        .arg(etc)
        .arg("--state-dir")
        .arg(state)
        .arg("--no-start")
        .args(extra)
        .env_remove("FERRY_COORDINATOR")
        .env_remove("FERRY_JOIN_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run ferry-agent install: {e}"))
}

/// Applies pipeline `name`, one build action on agents labelled `label`,
/// and runs it to its end (`ferry run --wait`).
fn run_a_build(c: &Cluster, repo: &Repo, name: &str, label: &str) -> ferry_tests::Run {
    c.apply(&format!(
        "name: {name}\nsource: {{git: {}, branch: main}}\nexecution_mode: parallel\nstages:\n  - name: build\n    actions:\n      - {{name: b, type: build, runs_on: [{label}], image: ferry-local/busybox, commands: [\"echo built\"]}}\n",
        repo.url()
    ));
    c.ferry(Some("admin"), &["run", name, "--wait"])
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of `NAME=` in an env file, without its quotes.
fn env_value(env: &str, name: &str) -> String {
    env.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in agent.env:\n{env}"))
        .trim_matches('"')
        .to_string()
}

#[test]
fn the_printed_command_installs_an_agent_that_runs_a_build() {
    ensure_busybox_image();
    let c = Cluster::start("install");
    let name = c.agent_name("inst");

    // The token, and the line to paste.
    let created = c.ferry(
        Some("admin"),
        &["token", "create", "--ttl", "10m", "--labels", "build"],
    );
    assert!(created.success, "{created:?}");
    let token = created.stdout.trim().to_string();
    assert!(!token.is_empty() && !token.contains(' '), "{created:?}");
    let line = created
        .stderr
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("ferry-agent install "))
        .unwrap_or_else(|| panic!("no install line printed: {created:?}"))
        .to_string();
    let ca_pem = std::fs::read_to_string(c.tls.join("ca.pem")).expect("ca.pem");
    let hash = {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("the CA");
        ferry_certs::fingerprint(der.as_ref())
    };
    assert_eq!(
        line,
        format!(
            "ferry-agent install --coordinator {} --token {token} --ca-sha256 {hash} --labels build",
            c.addr
        )
    );
    // JSON keeps its fields and adds the line and the hash.
    let json: Value = serde_json::from_str(&c.ferry_ok(
        Some("admin"),
        &["token", "create", "--ttl", "10m", "-o", "json"],
    ))
    .expect("token JSON");
    let other = json["token"].as_str().expect("token");
    assert!(json["expires_at"].is_string(), "{json}");
    assert!(json["labels"].is_array(), "{json}");
    assert_eq!(json["ca_sha256"], hash.as_str());
    assert_eq!(
        json["install_command"],
        format!(
            "ferry-agent install --coordinator {} --token {other} --ca-sha256 {hash}",
            c.addr
        )
        .as_str()
    );

    let mut words: Vec<String> = line.split_whitespace().skip(1).map(String::from).collect();
    words.extend(["--name".to_string(), name.clone()]);
    let etc = c.path().join("etc-ferry");
    let state = c.path().join("agent-state");

    // A CA whose hash is not the pinned one: refused, nothing written.
    let mut wrong = words.clone();
    let at = wrong.iter().position(|w| w == "--ca-sha256").expect("flag") + 1;
    wrong[at] = "00".repeat(32);
    let out = install(&wrong, &etc, &state, &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing the CA") && err.contains(&hash),
        "{}",
        text(&out)
    );
    assert!(!etc.exists() && !state.exists(), "a refused CA wrote files");

    // A dry run: says what it would do, writes nothing, enrolls nothing.
    let out = install(&words, &etc, &state, &["--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    let said = stdout(&out);
    for step in [
        "cluster CA: fetched",
        "ca.pem: would write",
        "enrollment: would enroll",
        "agent.env: would write",
        "service: not started (--no-start)",
        "dry run: nothing was changed",
    ] {
        assert!(said.contains(step), "no `{step}` in:\n{said}");
    }
    assert!(!etc.exists() && !state.exists(), "a dry run wrote files");
    let agents = c.ferry_ok(Some("admin"), &["agents", "list", "-o", "json"]);
    assert!(!agents.contains(&name), "a dry run enrolled: {agents}");

    // The real thing.
    let out = install(&words, &etc, &state, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let said = stdout(&out);
    for step in [
        "ca.pem: write",
        "enrollment: enrolled as",
        "agent.env: write",
        "service: not started (--no-start)",
        "done:",
    ] {
        assert!(said.contains(step), "no `{step}` in:\n{said}");
    }
    assert_eq!(
        std::fs::read_to_string(etc.join("ca.pem")).expect("ca.pem written"),
        ca_pem
    );
    let env_path = etc.join("agent.env");
    let env = std::fs::read_to_string(&env_path).expect("agent.env written");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&env_path)
            .expect("agent.env")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "agent.env mode {mode:o}");
    }
    assert!(
        !env.contains(&token),
        "the token is left in agent.env:\n{env}"
    );
    assert!(!env.contains("FERRY_JOIN_TOKEN="), "{env}");
    assert_eq!(env_value(&env, "FERRY_COORDINATOR"), c.addr);
    let opts = env_value(&env, "FERRY_AGENT_OPTS");
    for part in [
        format!("--ca {}", etc.join("ca.pem").display()),
        format!("--state-dir {}", state.display()),
        format!("--name {name}"),
        "--labels build".to_string(),
    ] {
        assert!(
            opts.contains(&part),
            "no `{part}` in FERRY_AGENT_OPTS: {opts}"
        );
    }
    assert!(state.join("agent.pem").exists() && state.join("agent-key.pem").exists());
    let cert = std::fs::read_to_string(state.join("agent.pem")).expect("agent.pem");
    let facts = ferry_certs::CertFacts::from_pem(&cert).expect("the agent certificate");
    assert_eq!(facts.identity.name, name, "{}", facts.identity);

    // Again: nothing to do.
    let out = install(&words, &etc, &state, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let said = stdout(&out);
    assert!(
        said.contains("already enrolled with this cluster")
            && said.contains("nothing to do: already enrolled with this cluster, config unchanged"),
        "{said}"
    );
    assert_eq!(std::fs::read_to_string(&env_path).expect("agent.env"), env);

    // The agent, started as the unit would start it.
    let log = std::fs::File::create(c.path().join("installed-agent.log")).expect("log");
    let _agent = Agent(
        Command::new(bin("ferry-agent"))
            .args(opts.split_whitespace())
            .env("FERRY_COORDINATOR", env_value(&env, "FERRY_COORDINATOR"))
            .env_remove("FERRY_JOIN_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start ferry-agent"),
    );
    c.wait_connected(&name);

    let repo = Repo::new();
    repo.commit(&[("README", "installed\n")], "first");
    let ran = run_a_build(&c, &repo, "installed", "build");
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stdout.contains("Succeeded"), "{}", ran.stdout);
}

/// A container of the clean Debian image (`packaging/debian-image`: a
/// debootstrap root imported with `docker import`, no registry), removed
/// when dropped.
struct Debian {
    name: String,
}

impl Debian {
    fn sh(&self, script: &str) -> Output {
        Command::new("docker")
            .args(["exec", &self.name, "bash", "-c", script])
            .output()
            .unwrap_or_else(|e| panic!("docker exec: {e}"))
    }

    fn ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "in the container, `{script}`: {}",
            text(&out)
        );
        stdout(&out).trim().to_string()
    }
}

impl Drop for Debian {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.name])
            .output();
    }
}

fn host_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", text(&out));
    stdout(&out)
}

/// The `.deb` in a clean Debian container, the printed command run there as
/// root, and the agent it set up running a build. systemd is not PID 1 in
/// the container, so `install` says it did not start the unit, and the test
/// runs the unit's `ExecStart` (`/usr/bin/ferry-agent --state-dir
/// /var/lib/ferry-agent $FERRY_AGENT_OPTS`, with agent.env's settings) as
/// the unit's user, `ferry-agent`. The container shares the host's network
/// (the test cluster listens on 127.0.0.1) and Docker socket (its group
/// `docker` is made with the socket's group id before the package adds the
/// agent's user to it).
#[test]
fn the_deb_and_the_printed_command_set_up_an_agent_in_a_clean_debian_container() {
    use std::os::unix::fs::MetadataExt;
    ensure_busybox_image();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let debs = ferry_tests::bin_dir().join("test-packages-install");
    let _ = std::fs::remove_dir_all(&debs);
    for name in ["ferry-coordinator", "ferry-agent", "ferry"] {
        bin(name);
    }
    host_ok(
        Command::new("bash")
            .arg(root.join("scripts/package"))
            .args(["--profile", "debug", "--bin-dir"])
            .arg(ferry_tests::bin_dir())
            .arg("--out")
            .arg(&debs),
    );
    let image = "ferry-test/debian";
    host_ok(
        Command::new("bash")
            .arg(root.join("packaging/debian-image"))
            .arg(image),
    );

    let c = Cluster::start("debinst");
    let name = c.agent_name("deb");
    let created = c.ferry(
        Some("admin"),
        &["token", "create", "--ttl", "10m", "--labels", "deb"],
    );
    assert!(created.success, "{created:?}");
    let line = created
        .stderr
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("ferry-agent install "))
        .unwrap_or_else(|| panic!("no install line printed: {created:?}"))
        .to_string();

    let repo = Repo::new();
    repo.commit(&[("README", "from debian\n")], "first");
    let repo_dir = Path::new(repo.url().trim_start_matches("file://"))
        .parent()
        .expect("repo dir")
        .to_path_buf();
    host_ok(Command::new("chmod").arg("-R").arg("a+rX").arg(&repo_dir));

    let socket_gid = std::fs::metadata("/var/run/docker.sock")
        .expect("the Docker socket")
        .gid();
    let d = Debian {
        name: format!("ferry-test-agent-install-{}", std::process::id()),
    };
    let _ = Command::new("docker").args(["rm", "-f", &d.name]).output();
    host_ok(
        Command::new("docker")
            .args(["run", "-d", "--name", &d.name, "--network", "host"])
            .args(["--label", "ferry.test=agent-install"])
            .arg("-v")
            .arg(format!("{}:/debs:ro", debs.display()))
            .args(["-v", "/var/run/docker.sock:/var/run/docker.sock"])
            .arg("-v")
            .arg(format!("{0}:{0}:ro", repo_dir.display()))
            .args([image, "sleep", "infinity"]),
    );
    d.ok(&format!("groupadd -o -g {socket_gid} docker"));
    d.ok("dpkg -i /debs/ferry-agent_*.deb");

    // The printed line, as pasted (plus a name unique to this test).
    let said = d.ok(&format!("{line} --name {name}"));
    for step in [
        "cluster CA: fetched",
        "ca.pem: write /etc/ferry/ca.pem",
        "enrollment: enrolled as",
        "agent.env: write /etc/ferry/agent.env",
        "owner: give /var/lib/ferry-agent to user ferry-agent",
        "service: not started: systemd is not running here",
    ] {
        assert!(said.contains(step), "no `{step}` in:\n{said}");
    }
    assert_eq!(d.ok("stat -c '%U %a' /etc/ferry/agent.env"), "root 600");
    assert_eq!(
        d.ok("find /var/lib/ferry-agent ! -user ferry-agent | wc -l"),
        "0"
    );
    let env = d.ok("cat /etc/ferry/agent.env");
    let token = created.stdout.trim();
    assert!(!env.contains(token), "{env}");
    assert!(
        !env.contains("--state-dir"),
        "the unit passes --state-dir: {env}"
    );
    let again = d.ok(&format!("{line} --name {name}"));
    assert!(
        again.contains("nothing to do: already enrolled with this cluster, config unchanged"),
        "{again}"
    );

    // The unit's ExecStart, as the unit's user, with agent.env's settings.
    d.ok("set -a; . /etc/ferry/agent.env; set +a; \
         HOME=/var/lib/ferry-agent setsid setpriv --reuid ferry-agent --regid ferry-agent \
         --init-groups /usr/bin/ferry-agent --state-dir /var/lib/ferry-agent $FERRY_AGENT_OPTS \
         >/tmp/agent.log 2>&1 </dev/null &");
    c.wait_connected(&name);
    let ran = run_a_build(&c, &repo, "debian", "deb");
    let log = d.sh("cat /tmp/agent.log");
    assert_eq!(ran.code, Some(0), "{ran:?}\nagent log:\n{}", text(&log));
    assert!(ran.stdout.contains("Succeeded"), "{}", ran.stdout);
}
