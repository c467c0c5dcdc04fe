//! The `ferry` CLI as each user, against the whole cluster or inside one
//! member's network namespace, and the commands tests run through it most
//! (roles, secrets, join tokens).

use std::process::{Command, Stdio};
use std::time::Duration;

use super::Cluster;
use crate::{bin, wait_for};

/// The outcome of one CLI invocation.
#[derive(Debug)]
pub struct Run {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The outcome of a finished process.
    pub fn from_output(out: &std::process::Output) -> Run {
        Run {
            success: out.status.success(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// The CLI as one user against a cluster, detached from the [`Cluster`]
/// (which a test may be changing meanwhile): for a client running on its
/// own thread.
#[derive(Clone)]
pub struct Cli {
    program: std::path::PathBuf,
    env: Vec<(String, String)>,
}

impl Cli {
    /// The same CLI with `key=value` in its environment as well.
    pub fn with_env(mut self, key: &str, value: &str) -> Cli {
        self.env.push((key.into(), value.into()));
        self
    }

    /// `ferry ARGS`, ready to run or spawn.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(args)
            .env_remove("FERRY_CERT")
            .env_remove("FERRY_KEY")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `ferry ARGS`.
    pub fn run(&self, args: &[&str]) -> Run {
        let out = self
            .command(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run ferry: {e}"));
        Run::from_output(&out)
    }
}

impl Cluster {
    /// This build's CLI as `user` against every member, for another thread.
    pub fn cli_for(&self, user: &str) -> Cli {
        let file = |suffix: &str| {
            self.users
                .join(format!("{user}{suffix}"))
                .display()
                .to_string()
        };
        Cli {
            program: bin("ferry"),
            env: vec![
                ("FERRY_COORDINATOR".into(), self.addr.clone()),
                (
                    "FERRY_CA".into(),
                    self.tls.join("ca.pem").display().to_string(),
                ),
                ("FERRY_CERT".into(), file(".pem")),
                ("FERRY_KEY".into(), file("-key.pem")),
            ],
        }
    }

    /// Runs the CLI inside member `id`'s namespace against that member only.
    pub fn ferry_inside(&self, id: u64, args: &[&str]) -> Run {
        let out = self
            .cli_inside(id, "admin", args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run ferry: {e}"));
        Run::from_output(&out)
    }

    /// The CLI as `user`, inside member `id`'s namespace against that member
    /// only, ready to run (or to spawn and wait for later).
    pub fn cli_inside(&self, id: u64, user: &str, args: &[&str]) -> Command {
        let m = self
            .members
            .iter()
            .find(|m| m.id == id)
            .unwrap_or_else(|| panic!("no member {id}"));
        let mut cmd = match &m.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin("ferry"));
                c
            }
            None => Command::new(bin("ferry")),
        };
        cmd.args(args)
            .env("FERRY_COORDINATOR", &m.listen)
            .env("FERRY_CA", self.tls.join("ca.pem"))
            .env("FERRY_CERT", self.users.join(format!("{user}.pem")))
            .env("FERRY_KEY", self.users.join(format!("{user}-key.pem")))
            .stdin(Stdio::null());
        cmd
    }

    /// Runs the CLI as `user` (None: no client certificate).
    pub fn ferry(&self, user: Option<&str>, args: &[&str]) -> Run {
        let out = self
            .cli(user, args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run ferry: {e}"));
        Run::from_output(&out)
    }

    /// Starts the CLI in the background (its output discarded), for a
    /// command that runs until something happens (`status --watch`).
    pub fn cli_process(&self, user: Option<&str>, args: &[&str]) -> std::process::Child {
        self.cli(user, args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run ferry: {e}"))
    }

    /// Runs the `ferry` in `bins` (another release's CLI) as `user`.
    pub fn ferry_from(&self, bins: &std::path::Path, user: Option<&str>, args: &[&str]) -> Run {
        let out = self
            .cli_program(&crate::binary(Some(bins), "ferry"), user, args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run ferry: {e}"));
        Run::from_output(&out)
    }

    /// The CLI as `user` (none: no client certificate), against this cluster.
    fn cli(&self, user: Option<&str>, args: &[&str]) -> Command {
        self.cli_program(&bin("ferry"), user, args)
    }

    /// [`Cluster::cli`] with the CLI binary at `program`.
    fn cli_program(&self, program: &std::path::Path, user: Option<&str>, args: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env("FERRY_COORDINATOR", &self.addr)
            .env("FERRY_CA", self.tls.join("ca.pem"))
            .env_remove("FERRY_CERT")
            .env_remove("FERRY_KEY")
            .stdin(Stdio::null());
        if let Some(u) = user {
            cmd.env("FERRY_CERT", self.users.join(format!("{u}.pem")));
            cmd.env("FERRY_KEY", self.users.join(format!("{u}-key.pem")));
        }
        cmd
    }

    /// Runs the CLI and insists it succeeds; returns stdout.
    pub fn ferry_ok(&self, user: Option<&str>, args: &[&str]) -> String {
        let r = self.ferry(user, args);
        assert!(
            r.success,
            "ferry {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
            r.code, r.stdout, r.stderr
        );
        r.stdout
    }

    /// [`Cluster::ferry_ok`] as admin, tried again for up to 30 s while it
    /// fails: during a failover a member may answer "not the leader" for a
    /// moment.
    pub fn ferry_ok_through_failover(&self, args: &[&str]) -> String {
        wait_for(
            &format!("ferry {args:?} to succeed"),
            Duration::from_secs(30),
            || {
                let r = self.ferry(Some("admin"), args);
                r.success.then_some(r.stdout)
            },
        )
    }

    pub fn grant(&self, user: &str, role: &str) {
        self.user(user);
        self.ferry_ok(Some("admin"), &["rbac", "grant", user, role]);
    }

    /// `ferry secret set NAME --from-file` as admin, through a file removed
    /// again at once (the value never appears on a command line).
    pub fn set_secret(&self, name: &str, value: &[u8]) {
        let file = self.dir.path().join(format!("secret-{name}"));
        std::fs::write(&file, value).unwrap_or_else(|e| panic!("{e}"));
        let path = file.display().to_string();
        self.ferry_ok(
            Some("admin"),
            &["secret", "set", name, "--from-file", &path],
        );
        std::fs::remove_file(&file).unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn token(&self, ttl: &str, uses: u32) -> String {
        self.ferry_ok(
            Some("admin"),
            &["token", "create", "--ttl", ttl, "--uses", &uses.to_string()],
        )
        .trim()
        .to_string()
    }
}
