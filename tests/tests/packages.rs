//! The Debian packages (issue 23, item 1), built by `scripts/package
//! --profile debug` from the binaries the other tests run:
//!
//! - each `.deb` holds its binary, man page and copyright; the daemons'
//!   hold their hardened unit and their `/etc/ferry/*.env` conffile, which
//!   mentions every flag and environment variable the daemon reads;
//! - the units pass `systemd-analyze verify` (skipped, and said so, where
//!   systemd-analyze is not installed: it is not in every container);
//! - `lintian` reports no error or warning that `packaging/*/lintian-overrides`
//!   does not override with a reason;
//! - in a clean Debian container (`ferry-test/debian`, a debootstrap root
//!   file system imported with `docker import` by `packaging/debian-image`:
//!   no registry), installing creates the users, puts the agent's in group
//!   docker and neither enables nor starts a service; an upgrade keeps an
//!   admin's enablement; `apt-get remove` keeps the state and the
//!   configuration; `dpkg -P` removes them and the users.
//!
//! Like the other Docker tests, these fail, never skip, when Docker, lintian
//! or dpkg-deb is missing (`scripts/test` installs them). systemd is not PID 1
//! in the container, so no unit is started here: "not started" is checked as
//! no ferry process and no enablement link; the agent's command is run once
//! as its user, unconfigured, to see it stop with the status its unit does
//! not restart. Timings (this machine, 2 cores): packaging 7 s, lintian
//! 18 s, the container part 15 s; building `ferry-test/debian` the first
//! time on a machine about a minute more.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Instant;

use ferry_tests::{bin, bin_dir};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const IMAGE: &str = "ferry-test/debian";

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `cmd`, fails the test unless it succeeds; its standard output.
fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The three packages, built once per test binary into the target dir
/// (`<target>/debug/test-packages`, replaced on every run).
struct Packages {
    dir: PathBuf,
}

impl Packages {
    fn deb(&self, package: &str) -> PathBuf {
        let arch = ok(Command::new("dpkg").arg("--print-architecture"));
        self.dir
            .join(format!("{package}_{VERSION}_{}.deb", arch.trim()))
    }
}

fn packages() -> &'static Packages {
    static PACKAGES: OnceLock<Packages> = OnceLock::new();
    PACKAGES.get_or_init(|| {
        let dir = bin_dir().join("test-packages");
        let _ = std::fs::remove_dir_all(&dir);
        // The binaries the other tests run (and fail on when missing).
        for name in ["ferry-coordinator", "ferry-agent", "ferry"] {
            bin(name);
        }
        let started = Instant::now();
        let out = ok(Command::new("bash")
            .arg(workspace().join("scripts/package"))
            .args(["--profile", "debug", "--bin-dir"])
            .arg(bin_dir())
            .arg("--out")
            .arg(&dir));
        eprintln!(
            "scripts/package --profile debug: {:.1} s\n{out}",
            started.elapsed().as_secs_f64()
        );
        Packages { dir }
    })
}

/// A package unpacked into a temporary folder (`dpkg-deb -x`), with its
/// control fields (`dpkg-deb -f`) and its file list (`dpkg-deb --contents`).
struct Unpacked {
    root: tempfile::TempDir,
    control: String,
    contents: String,
}

impl Unpacked {
    fn new(deb: &Path) -> Unpacked {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        ok(Command::new("dpkg-deb").arg("-x").arg(deb).arg(root.path()));
        let info = ok(Command::new("dpkg-deb").arg("--info").arg(deb));
        let control = ok(Command::new("dpkg-deb").arg("-f").arg(deb));
        let contents = ok(Command::new("dpkg-deb").arg("--contents").arg(deb));
        assert!(info.contains("control archive"), "{info}");
        Unpacked {
            root,
            control,
            contents,
        }
    }

    fn field(&self, name: &str) -> String {
        self.control
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} field in:\n{}", self.control))
            .to_string()
    }

    fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.root.path().join(path.trim_start_matches('/')))
            .unwrap_or_else(|e| panic!("{path} in the package: {e}"))
    }

    /// The `dpkg-deb --contents` line of `path` (mode, owner, size, ...).
    fn entry(&self, path: &str) -> &str {
        let want = format!(" .{path}");
        self.contents
            .lines()
            .find(|l| l.ends_with(&want))
            .unwrap_or_else(|| panic!("{path} is not in the package:\n{}", self.contents))
    }

    fn control_file(&self, deb: &Path, name: &str) -> String {
        ok(Command::new("dpkg-deb").arg("-I").arg(deb).arg(name))
    }
}

/// The flags in the "Options:" section of `--help`, each with the
/// environment variable it reads, if any (`[env: NAME=]`).
fn flags(help: &str) -> Vec<(String, Option<String>)> {
    let mut found: Vec<(String, Option<String>)> = Vec::new();
    let mut in_options = false;
    for line in help.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            in_options = line == "Options:";
            continue;
        }
        if !in_options {
            continue;
        }
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if indent < 9
            && trimmed.starts_with('-')
            && let Some(long) = trimmed.split([' ', ',']).find(|w| w.starts_with("--"))
        {
            found.push((long.split('=').next().unwrap_or(long).to_string(), None));
        }
        if let Some(at) = line.find("[env: ") {
            let name = line[at + 6..].split('=').next().unwrap_or("").to_string();
            if let Some(last) = found.last_mut() {
                last.1 = Some(name);
            }
        }
    }
    found
}

/// The daemon's env file describes every flag it takes (in the list of
/// flags for FERRY_*_OPTS, or as the variable the flag reads), except those
/// the unit sets itself: a flag added to a daemon fails here until it is.
fn env_file_covers_flags(binary: &str, env_file: &str, set_by_unit: &[&str]) {
    let help = ok(Command::new(bin(binary)).arg("--help"));
    let flags = flags(&help);
    assert!(
        flags.len() > 5,
        "no flags read from {binary} --help:\n{help}"
    );
    let mut missing = Vec::new();
    for (flag, env) in &flags {
        if ["--help", "--version", "--enroll-only"].contains(&flag.as_str())
            || set_by_unit.contains(&flag.as_str())
        {
            continue;
        }
        let named = match env {
            Some(var) => env_file.contains(&format!("#{var}=")),
            // Described in the list of flags: `#   --flag VALUE  what it does`.
            None => env_file.lines().any(|l| {
                l.trim_start_matches('#')
                    .trim_start()
                    .starts_with(&format!("{flag} "))
            }),
        };
        if !named {
            missing.push(env.clone().unwrap_or_else(|| flag.clone()));
        }
    }
    assert!(
        missing.is_empty(),
        "{binary} reads {missing:?}, which its env file in packaging/ does not describe"
    );
}

/// A copy of `unit` whose ExecStart runs the unpacked binary (verify wants
/// it to exist), checked by `systemd-analyze verify`: no warning at all.
fn verify_unit(pkg: &Unpacked, name: &str, binary: &str) {
    let installed = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        eprintln!(
            "NOTE: systemd-analyze is not installed here, so {name} was not checked with `systemd-analyze verify`"
        );
        return;
    }
    let unit = pkg.read(&format!("/usr/lib/systemd/system/{name}"));
    let unpacked_bin = pkg.root.path().join(format!("usr/bin/{binary}"));
    let copy = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let path = copy.path().join(name);
    std::fs::write(
        &path,
        unit.replace(
            &format!("ExecStart=/usr/bin/{binary} "),
            &format!("ExecStart={} ", unpacked_bin.display()),
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = run(Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path));
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify {name}:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// What every hardened unit says, and what this one must say.
fn check_unit(unit: &str, name: &str) {
    let lines: Vec<&str> = unit.lines().map(str::trim).collect();
    for want in [
        format!("User={name}"),
        format!("Group={name}"),
        format!("ExecStart=/usr/bin/{name} "),
        format!("StateDirectory={name}"),
        format!("ReadWritePaths=/var/lib/{name}"),
        "NoNewPrivileges=yes".into(),
        "ProtectSystem=strict".into(),
        "ProtectHome=yes".into(),
        "PrivateTmp=yes".into(),
        "CapabilityBoundingSet=".into(),
        "AmbientCapabilities=".into(),
        "Restart=on-failure".into(),
        "WantedBy=multi-user.target".into(),
    ] {
        assert!(
            lines.iter().any(|l| if want.ends_with(' ') {
                l.starts_with(&want)
            } else {
                *l == want
            }),
            "{name}.service lacks `{want}`:\n{unit}"
        );
    }
}

#[test]
fn each_package_holds_its_binary_unit_and_configuration() {
    let p = packages();
    let lock = std::fs::read_to_string(workspace().join("Cargo.lock"))
        .unwrap_or_else(|e| panic!("Cargo.lock: {e}"));
    // What the embedded-library libyaml overrides say.
    for crate_name in ["unsafe-libyaml", "libyaml-sys"] {
        assert!(
            !lock.contains(&format!("name = \"{crate_name}\"")),
            "{crate_name} is in Cargo.lock: the lintian overrides for embedded libyaml are wrong now"
        );
    }

    for (package, daemon) in [
        ("ferry-coordinator", Some("coordinator")),
        ("ferry-agent", Some("agent")),
        ("ferry", None),
    ] {
        let deb = p.deb(package);
        let pkg = Unpacked::new(&deb);
        assert_eq!(pkg.field("Package"), package);
        assert_eq!(pkg.field("Version"), VERSION);
        let depends = pkg.field("Depends");
        assert!(depends.contains("libc6 (>= "), "{package}: {depends}");
        assert!(
            pkg.entry(&format!("/usr/bin/{package}"))
                .starts_with("-rwxr-xr-x root/root"),
            "{}",
            pkg.contents
        );
        pkg.entry(&format!("/usr/share/man/man1/{package}.1.gz"));
        pkg.entry(&format!("/usr/share/doc/{package}/copyright"));
        pkg.entry(&format!("/usr/share/doc/{package}/changelog.gz"));
        // Owned by root whoever built it (--root-owner-group).
        assert!(
            pkg.contents.lines().all(|l| l.contains(" root/root ")),
            "{}",
            pkg.contents
        );
        let packed_bin = pkg.root.path().join(format!("usr/bin/{package}"));
        assert_eq!(
            ok(Command::new(&packed_bin).arg("--version")).trim(),
            format!("{package} {VERSION}")
        );

        let Some(daemon) = daemon else {
            assert!(!pkg.contents.contains("./etc/"), "{}", pkg.contents);
            assert!(!pkg.contents.contains("systemd"), "{}", pkg.contents);
            continue;
        };
        for needed in ["adduser", "git"] {
            assert!(
                depends.split(", ").any(|d| d == needed),
                "{package}: {depends}"
            );
        }
        let unit_name = format!("{package}.service");
        let unit = pkg.read(&format!("/usr/lib/systemd/system/{unit_name}"));
        check_unit(&unit, package);
        assert!(
            unit.contains(&format!("EnvironmentFile=/etc/ferry/{daemon}.env")),
            "{unit}"
        );
        verify_unit(&pkg, &unit_name, package);

        let env_path = format!("/etc/ferry/{daemon}.env");
        let conffiles = pkg.control_file(&deb, "conffiles");
        assert_eq!(conffiles.trim(), env_path, "{package}'s conffiles");
        let env_file = pkg.read(&env_path);
        // Nothing is set: every line is a comment or blank, so a fresh
        // install is visibly unconfigured.
        assert!(
            env_file.lines().all(|l| l.is_empty() || l.starts_with('#')),
            "{env_path} sets something:\n{env_file}"
        );
        let mode = if daemon == "agent" {
            "-rw------- root/root"
        } else {
            "-rw-r--r-- root/root"
        };
        assert!(pkg.entry(&env_path).starts_with(mode), "{}", pkg.contents);
        for script in ["postinst", "prerm", "postrm"] {
            let body = pkg.control_file(&deb, script);
            assert!(body.starts_with("#!/bin/sh"), "{package} {script}");
            assert!(body.contains("\nset -e\n"), "{package} {script}");
        }
        if daemon == "agent" {
            assert!(unit.contains("ExecStart=/usr/bin/ferry-agent --state-dir /var/lib/ferry-agent $FERRY_AGENT_OPTS"), "{unit}");
            env_file_covers_flags(package, &env_file, &["--state-dir"]);
            assert!(env_file.contains("#FERRY_AGENT_OPTS="), "{env_file}");
        } else {
            assert!(unit.contains("ExecStart=/usr/bin/ferry-coordinator --data-dir /var/lib/ferry-coordinator --tls-dir /etc/ferry/tls $FERRY_COORDINATOR_OPTS"), "{unit}");
            env_file_covers_flags(package, &env_file, &["--data-dir", "--tls-dir"]);
            assert!(env_file.contains("#FERRY_COORDINATOR_OPTS="), "{env_file}");
        }
    }
}

#[test]
fn lintian_passes_or_each_finding_is_overridden_with_a_reason() {
    let p = packages();
    let debs: Vec<PathBuf> = ["ferry-coordinator", "ferry-agent", "ferry"]
        .iter()
        .map(|name| p.deb(name))
        .collect();
    // Each override has a reason (a comment) right above it.
    for name in ["ferry-coordinator", "ferry-agent", "ferry"] {
        let path = workspace().join(format!("packaging/{name}/lintian-overrides"));
        let Ok(overrides) = std::fs::read_to_string(&path) else {
            continue;
        };
        // A reason (comment lines) covers the overrides right below it.
        let mut reason = false;
        for line in overrides.lines() {
            if line.trim().is_empty() {
                reason = false;
            } else if line.starts_with('#') {
                reason = true;
            } else {
                assert!(
                    reason && line.starts_with(&format!("{name}: ")),
                    "{}: `{line}` has no reason above it",
                    path.display()
                );
            }
        }
    }
    let started = Instant::now();
    let out = Command::new("lintian")
        .args(["--fail-on", "error,warning", "--display-info"])
        .args(&debs)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run lintian: {e} (apt-get install lintian; scripts/test does)")
        });
    let report = text(&out.stdout);
    eprintln!(
        "lintian: {:.1} s\n{report}",
        started.elapsed().as_secs_f64()
    );
    let findings: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("E: ") || l.starts_with("W: "))
        .collect();
    assert!(
        out.status.success() && findings.is_empty(),
        "lintian found errors or warnings (fix them, or override them in packaging/PACKAGE/lintian-overrides with a reason):\n{report}{}",
        text(&out.stderr)
    );
}

/// A container of `ferry-test/debian` with the packages at /debs, removed
/// when dropped (also when the test fails).
struct Container {
    name: String,
}

impl Container {
    fn start(debs: &Path) -> Container {
        let name = format!("ferry-test-packages-{}", std::process::id());
        let _ = run(Command::new("docker").args(["rm", "-f", &name]));
        ok(Command::new("docker")
            .args([
                "run",
                "-d",
                "--name",
                &name,
                "--label",
                "ferry.test=packages",
            ])
            .arg("-v")
            .arg(format!("{}:/debs:ro", debs.display()))
            .args([IMAGE, "sleep", "infinity"]));
        Container { name }
    }

    /// Runs a bash script in the container; its output, whatever its status.
    fn sh(&self, script: &str) -> Output {
        run(Command::new("docker").args(["exec", &self.name, "bash", "-c", script]))
    }

    /// Runs a bash script that must succeed; its standard output, trimmed.
    fn ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "in the container, `{script}` failed ({}):\n{}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout).trim().to_string()
    }

    fn exists(&self, path: &str) -> bool {
        self.sh(&format!("test -e {path}")).status.success()
    }

    /// Processes whose name starts with `ferry` (procps is not in minbase).
    fn ferry_processes(&self) -> String {
        self.ok("for p in /proc/[0-9]*; do c=$(cat $p/comm 2>/dev/null) || continue; case $c in ferry*) echo \"$c\";; esac; done")
    }

    fn enabled_links(&self) -> String {
        self.ok("ls /etc/systemd/system/*.wants/ 2>/dev/null | grep ferry || true")
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = run(Command::new("docker").args(["rm", "-f", &self.name]));
    }
}

#[test]
fn installs_starting_nothing_and_remove_keeps_state_that_purge_removes() {
    let p = packages();
    let started = Instant::now();
    // Built once per machine (debootstrap, about a minute), then cached.
    ok(Command::new("bash")
        .arg(workspace().join("packaging/debian-image"))
        .arg(IMAGE));
    eprintln!("{IMAGE} ready in {:.1} s", started.elapsed().as_secs_f64());
    let started = Instant::now();
    let c = Container::start(&p.dir);
    let all = "/debs/ferry-coordinator_*.deb /debs/ferry-agent_*.deb /debs/ferry_*.deb";
    assert!(!c.exists("/etc/ferry"), "the image is not clean");
    assert_eq!(
        c.ok("getent group docker || true"),
        "",
        "the image has group docker"
    );

    c.ok(&format!("dpkg -i {all}"));

    // The users: system users, homes in their state dirs, no login.
    for user in ["ferry-agent", "ferry-coordinator"] {
        let entry = c.ok(&format!("getent passwd {user}"));
        let fields: Vec<&str> = entry.split(':').collect();
        let uid: u32 = fields[2].parse().unwrap_or(u32::MAX);
        assert!(uid < 1000, "{user} is not a system user: {entry}");
        assert_eq!(fields[5], format!("/var/lib/{user}"), "{entry}");
        assert_eq!(fields[6], "/usr/sbin/nologin", "{entry}");
        assert_eq!(
            c.ok(&format!("stat -c '%U:%G %a' /var/lib/{user}")),
            format!("{user}:{user} 700")
        );
    }
    // Group docker did not exist: made, with the agent's user in it.
    let groups = c.ok("id -nG ferry-agent");
    assert!(groups.split(' ').any(|g| g == "docker"), "{groups}");
    let groups = c.ok("id -nG ferry-coordinator");
    assert!(!groups.split(' ').any(|g| g == "docker"), "{groups}");
    assert_eq!(
        c.ok("stat -c '%U:%G %a' /etc/ferry/tls /etc/ferry/agent.env /etc/ferry/coordinator.env"),
        "root:ferry-coordinator 770\nroot:root 600\nroot:root 644"
    );

    // Nothing started, nothing enabled.
    assert_eq!(c.ferry_processes(), "");
    assert_eq!(c.enabled_links(), "");
    for unit in ["ferry-agent.service", "ferry-coordinator.service"] {
        assert!(
            !c.sh(&format!("deb-systemd-helper --quiet was-enabled {unit}"))
                .status
                .success(),
            "{unit} is enabled"
        );
    }

    // The binaries run.
    for name in ["ferry", "ferry-agent", "ferry-coordinator"] {
        assert_eq!(
            c.ok(&format!("{name} --version")),
            format!("{name} {VERSION}")
        );
    }
    // Unconfigured, the unit's command stops with status 2, which the unit's
    // RestartPreventExitStatus=2 does not restart.
    let out =
        c.sh("runuser -u ferry-agent -- /usr/bin/ferry-agent --state-dir /var/lib/ferry-agent");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    // An upgrade (the same packages again) starts nothing, keeps state,
    // and keeps an admin's enablement.
    c.ok("echo enrolled > /var/lib/ferry-agent/state && chown ferry-agent: /var/lib/ferry-agent/state");
    c.ok(&format!("dpkg -i {all}"));
    assert_eq!(c.ferry_processes(), "");
    assert_eq!(c.enabled_links(), "");
    // What `systemctl enable ferry-agent` makes (no systemd in the container).
    c.ok("ln -s /usr/lib/systemd/system/ferry-agent.service /etc/systemd/system/multi-user.target.wants/");
    c.ok("dpkg -i /debs/ferry-agent_*.deb");
    assert_eq!(c.enabled_links(), "ferry-agent.service");
    assert_eq!(c.ferry_processes(), "");
    assert_eq!(c.ok("cat /var/lib/ferry-agent/state"), "enrolled");

    // Remove keeps the state, the configuration and the users.
    c.ok("apt-get remove -y -qq ferry-agent && dpkg -r ferry-coordinator ferry");
    assert!(!c.exists("/usr/bin/ferry-agent"));
    assert!(!c.exists("/usr/bin/ferry"));
    assert_eq!(c.ok("cat /var/lib/ferry-agent/state"), "enrolled");
    assert!(c.exists("/var/lib/ferry-coordinator"));
    assert!(c.exists("/etc/ferry/agent.env"));
    assert!(c.exists("/etc/ferry/coordinator.env"));
    assert!(c.exists("/etc/ferry/tls"));
    c.ok("getent passwd ferry-agent ferry-coordinator");
    assert_eq!(
        c.ok("dpkg-query -W -f '${Status}' ferry-agent"),
        "deinstall ok config-files"
    );

    // Purge removes state, configuration, users and the unit's links.
    c.ok("dpkg -P ferry-agent ferry-coordinator ferry");
    for gone in [
        "/var/lib/ferry-agent",
        "/var/lib/ferry-coordinator",
        "/etc/ferry",
    ] {
        assert!(!c.exists(gone), "{gone} is still there after purge");
    }
    assert_eq!(c.enabled_links(), "");
    for name in ["ferry-agent", "ferry-coordinator"] {
        assert_eq!(c.ok(&format!("getent passwd {name} || true")), "");
        assert_eq!(c.ok(&format!("getent group {name} || true")), "");
    }
    // Group docker stays (Docker uses it).
    c.ok("getent group docker");

    // Where Docker made group docker first, its gid stays and the agent's
    // user joins it.
    c.ok("delgroup --quiet docker && addgroup --quiet --system --gid 990 docker");
    c.ok("dpkg -i /debs/ferry-agent_*.deb");
    assert_eq!(c.ok("getent group docker"), "docker:x:990:ferry-agent");
    assert_eq!(c.ferry_processes(), "");

    eprintln!(
        "install, upgrade, remove and purge in the container: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
