//! One target host over SSH: connect with its pinned key, upload and unpack
//! the release, run the lifecycle hooks around the atomic `current` switch,
//! and — when the deployment fails — put the previous release back. Every
//! step is recorded (outcome, exit code, time, end of its output) for the
//! deployment report and streamed to the action's log as `[host step] ...`.

use std::time::{Duration, Instant};

use ferry_pipeline::{Hook, REVISION_SPEC_FILE, RevisionSpec, parse_revision_spec};

use super::{DeployHost, Deployment, HookPhase, HostOutcome, HostReport, StepError, fail, shell};
use crate::ssh::{self, Connection, Pinned, Target};

/// Extra time given to a hook beyond its timeout before the agent gives up
/// on it (the host's own `timeout` normally ends it first).
const HOOK_GRACE: Duration = Duration::from_secs(10);

/// Standard input of steps that read none.
const NO_INPUT: Option<&[u8]> = None;

/// Time limit of Ferry's own steps on a host (inspect, switch).
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// What one host went through; kept until the deployment ends so that a
/// later failure can roll it back.
pub struct HostRun {
    pub host: DeployHost,
    conn: Option<Connection>,
    /// Release `current` pointed at before (empty: none).
    pub previous: String,
    previous_spec: Option<RevisionSpec>,
    /// The previous release was stopped / `current` was moved: the host changed.
    stopped: bool,
    switched: bool,
    pub report: HostReport,
}

impl HostRun {
    pub fn new(host: DeployHost, batch: u32) -> HostRun {
        let report = super::new_report(&host, batch);
        HostRun {
            host,
            conn: None,
            previous: String::new(),
            previous_spec: None,
            stopped: false,
            switched: false,
            report,
        }
    }

    /// Whether a rollback has anything to undo on this host.
    pub fn changed(&self) -> bool {
        self.stopped || self.switched
    }

    /// Deploys the release; the report says `Deployed` or `Failed`.
    pub async fn deploy(&mut self, d: &Deployment<'_>) {
        let result = self.deploy_steps(d).await;
        super::settle(
            &mut self.report,
            result,
            d.release,
            self.switched,
            &self.previous,
        );
    }

    async fn deploy_steps(&mut self, d: &Deployment<'_>) -> Result<(), StepError> {
        self.connect(d, HookPhase::Deploy).await?;
        let path = self.host.path.clone();
        let mut files = d.spec.files.clone();
        if !files.is_empty() && !files.iter().any(|f| f == REVISION_SPEC_FILE) {
            files.push(REVISION_SPEC_FILE.to_string());
        }
        let unpack = shell::unpack(&path, d.release, d.digest, &files);
        // The path is claimed for this environment and pipeline before
        // anything there is read or changed (`shell::claim`).
        let owner = shell::owner_text(d.environment, d.pipeline);
        let inspect = shell::inspect(&path, &owner, d.release, REVISION_SPEC_FILE);
        let (out, uploaded) = if d.fresh_release {
            // Nothing to find out before sending: one session instead of two.
            let script =
                shell::inspect_and_unpack(&path, &owner, d.release, REVISION_SPEC_FILE, &unpack);
            let artifact = open_artifact(d).await?;
            let out = self
                .step(
                    d,
                    ("upload", HookPhase::Deploy),
                    &script,
                    Some(artifact),
                    d.upload_timeout(),
                    Output::Data,
                )
                .await?;
            (out, true)
        } else {
            let out = self
                .step(
                    d,
                    ("inspect", HookPhase::Deploy),
                    &inspect,
                    NO_INPUT,
                    STEP_TIMEOUT,
                    Output::Data,
                )
                .await?;
            (out, false)
        };
        let out = String::from_utf8_lossy(&out);
        let marker = format!("\n{}\n", shell::INSPECTED);
        let out = out
            .split_once(&marker)
            .map_or(out.as_ref(), |(info, _)| info);
        let seen = shell::parse_inspect(out);
        // A retried deployment finds its own release current already: that
        // one is what runs (and stops with this spec); the rollback target
        // is the release it replaced.
        let running = seen.current.to_string();
        self.previous = seen.previous.to_string();
        self.report.previous = self.previous.clone();
        let present = seen.digest == d.digest;
        if !self.previous.is_empty() {
            self.previous_spec = parse_revision_spec(seen.previous_spec).ok();
        }
        let running_spec = if running == d.release {
            // Already switched by an earlier attempt: a rollback must switch back.
            self.switched = true;
            Some(d.spec.clone())
        } else {
            self.previous_spec.clone()
        };
        if uploaded {
            d.log(&self.host.name, "upload", b"release unpacked\n");
        } else if present {
            d.log(
                &self.host.name,
                "upload",
                b"release already unpacked; not uploaded again\n",
            );
        } else {
            let artifact = open_artifact(d).await?;
            self.step(
                d,
                ("upload", HookPhase::Deploy),
                &unpack,
                Some(artifact),
                d.upload_timeout(),
                Output::Log,
            )
            .await?;
        }
        // The running release stops itself with its own hook.
        if let Some(spec) = running_spec.filter(|_| !running.is_empty()) {
            self.stopped = true;
            let dir = format!("{path}/releases/{running}");
            self.hook(d, &spec, Hook::Stop, HookPhase::Deploy, &dir, &running)
                .await?;
        }
        let dir = format!("{path}/releases/{}", d.release);
        for hook in [Hook::BeforeInstall, Hook::Install] {
            self.hook(d, d.spec, hook, HookPhase::Deploy, &dir, d.release)
                .await?;
        }
        self.switched = true;
        let switch = shell::switch_and_prune(&path, d.release, d.keep_releases, &self.previous);
        self.step(
            d,
            ("switch", HookPhase::Deploy),
            &switch,
            NO_INPUT,
            STEP_TIMEOUT,
            Output::Log,
        )
        .await?;
        for hook in [Hook::AfterInstall, Hook::Start, Hook::Validate] {
            self.hook(d, d.spec, hook, HookPhase::Deploy, &dir, d.release)
                .await?;
        }
        Ok(())
    }

    /// Returns the host to its previous release: stop the new one, switch
    /// the link back, start and validate the previous one with its own hooks.
    pub async fn roll_back(&mut self, d: &Deployment<'_>) {
        if !self.changed() || self.report.outcome == HostOutcome::RolledBack {
            return;
        }
        match self.rollback_steps(d).await {
            Ok(()) => {
                self.report.outcome = HostOutcome::RolledBack;
                self.report.release = self.previous.clone();
            }
            Err(e) => {
                self.report.outcome = HostOutcome::RollbackFailed;
                let reason = format!("rollback {}: {}", e.step, e.reason);
                self.report.error = if self.report.error.is_empty() {
                    reason
                } else {
                    format!("{}; {reason}", self.report.error)
                };
            }
        }
    }

    async fn rollback_steps(&mut self, d: &Deployment<'_>) -> Result<(), StepError> {
        if self.conn.is_none() {
            self.connect(d, HookPhase::Rollback).await?;
        }
        let path = self.host.path.clone();
        if self.switched {
            let dir = format!("{path}/releases/{}", d.release);
            // Best effort: the new release may be what cannot stop.
            let _ = self
                .hook(d, d.spec, Hook::Stop, HookPhase::Rollback, &dir, d.release)
                .await;
            let script = shell::switch(&path, &self.previous);
            self.step(
                d,
                ("switch", HookPhase::Rollback),
                &script,
                NO_INPUT,
                STEP_TIMEOUT,
                Output::Log,
            )
            .await?;
            self.switched = false;
        }
        if let Some(prev) = self.previous_spec.clone() {
            let dir = format!("{path}/releases/{}", self.previous);
            let release = self.previous.clone();
            for hook in [Hook::Start, Hook::Validate] {
                self.hook(d, &prev, hook, HookPhase::Rollback, &dir, &release)
                    .await?;
            }
        }
        Ok(())
    }

    pub async fn close(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.close().await;
        }
    }

    async fn connect(&mut self, d: &Deployment<'_>, phase: HookPhase) -> Result<(), StepError> {
        let started = Instant::now();
        let pinned = if self.host.host_key.starts_with("SHA256:") {
            Pinned::Fingerprint(self.host.host_key.clone())
        } else {
            Pinned::Key(self.host.host_key.clone())
        };
        let target = Target {
            host: self.host.host.clone(),
            port: u16::try_from(self.host.port).unwrap_or(22),
            user: self.host.user.clone(),
            pinned,
            private_key: String::from_utf8_lossy(&self.host.private_key).into_owned(),
        };
        let result = match d.budget(phase, d.connect_timeout) {
            Ok(limit) => ssh::connect(&target, limit).await,
            Err(reason) => Err(ssh::SshError::Unreachable {
                addr: format!("{}:{}", target.host, target.port),
                reason,
            }),
        };
        let (success, message) = match &result {
            Ok(_) => (
                true,
                format!("connected to {}@{}\n", target.user, target.host),
            ),
            Err(e) => (false, format!("{e}\n")),
        };
        d.log(&self.host.name, "connect", message.as_bytes());
        super::record(
            &mut self.report,
            ("connect", phase),
            success,
            -1,
            started,
            message.as_bytes(),
        );
        match result {
            Ok(conn) => {
                self.conn = Some(conn);
                Ok(())
            }
            Err(e) => Err(fail("connect")(e.to_string())),
        }
    }

    /// Runs one lifecycle hook of `spec` (if it has commands) in `dir`.
    async fn hook(
        &mut self,
        d: &Deployment<'_>,
        spec: &RevisionSpec,
        hook: Hook,
        phase: HookPhase,
        dir: &str,
        release: &str,
    ) -> Result<(), StepError> {
        let commands = spec.commands(hook);
        if commands.is_empty() {
            return Ok(());
        }
        let timeout = Duration::from_millis(spec.hook_timeout_ms.unwrap_or(d.hook_timeout_ms));
        let mut vars: Vec<(&str, Vec<u8>)> = vec![
            ("FERRY_ENVIRONMENT", d.environment.as_bytes().to_vec()),
            ("FERRY_HOST", self.host.name.as_bytes().to_vec()),
            ("FERRY_DEPLOY_PATH", self.host.path.as_bytes().to_vec()),
            ("FERRY_RELEASE", release.as_bytes().to_vec()),
            ("FERRY_RELEASE_DIR", dir.as_bytes().to_vec()),
            ("FERRY_PREVIOUS_RELEASE", self.previous.as_bytes().to_vec()),
            ("FERRY_HOOK", hook.as_str().as_bytes().to_vec()),
            ("FERRY_PHASE", phase.as_str().as_bytes().to_vec()),
        ];
        vars.extend(d.env.iter().map(|(k, v)| (k.as_str(), v.clone())));
        let mut script = shell::exports(vars.iter().map(|(k, v)| (*k, v.as_slice())));
        script.push_str(&format!("cd {}\n", shell::quote(dir)));
        for c in commands {
            script.push_str(c);
            script.push('\n');
        }
        let command = shell::run_stdin_script(timeout.as_secs().max(1));
        self.step(
            d,
            (hook.as_str(), phase),
            &command,
            Some(std::io::Cursor::new(script.into_bytes())),
            timeout + HOOK_GRACE,
            Output::Log,
        )
        .await
        .map(|_| ())
        .map_err(|e| StepError {
            step: format!("hook {}", e.step),
            reason: e.reason,
        })
    }

    /// Runs `command` (stdin from `input`) as step `name` of `phase`:
    /// recorded in the report, its output streamed to the log (or, for
    /// [`Output::Data`], kept for the deployer); returns the output, or why
    /// it failed.
    async fn step<R: tokio::io::AsyncRead + Unpin>(
        &mut self,
        d: &Deployment<'_>,
        (name, phase): (&str, HookPhase),
        command: &str,
        input: Option<R>,
        limit: Duration,
        kind: Output,
    ) -> Result<Vec<u8>, StepError> {
        let started = Instant::now();
        let fail = fail(name);
        let asked = limit;
        let limit = d.budget(phase, limit).map_err(&fail)?;
        let Some(conn) = self.conn.as_mut() else {
            return Err(fail("not connected".into()));
        };
        let mut output = Vec::new();
        let mut lines = super::Lines::new(d, &self.host.name, name);
        let mut sink = |data: &[u8]| {
            output.extend_from_slice(data);
            if kind == Output::Log {
                lines.push(data);
            }
        };
        let run = conn.exec_reading(command, input, &mut sink);
        let result = tokio::time::timeout(limit, run).await;
        lines.finish();
        let (success, code, error) = match result {
            Err(_) if limit < asked => (
                false,
                -1,
                Some(format!("the action's timeout ({:?}) ran out", d.timeout)),
            ),
            Err(_) => (false, -1, Some(format!("no result within {limit:?}"))),
            Ok(Err(e)) => (false, -1, Some(e.to_string())),
            Ok(Ok(0)) => (true, 0, None),
            Ok(Ok(124)) if name != "upload" => (
                false,
                124,
                Some(format!(
                    "timed out after {:?}",
                    limit.saturating_sub(HOOK_GRACE)
                )),
            ),
            Ok(Ok(code)) => (
                false,
                code as i32,
                Some(match last_line(&output) {
                    Some(line) => format!("exited with code {code}: {line}"),
                    None => format!("exited with code {code}"),
                }),
            ),
        };
        if result_lost_connection(&error) {
            self.conn = None;
        }
        let logged: &[u8] = match kind {
            Output::Log => &output,
            Output::Data => b"",
        };
        super::record(
            &mut self.report,
            (name, phase),
            success,
            code,
            started,
            logged,
        );
        match error {
            None => Ok(output),
            Some(reason) => {
                if kind == Output::Data {
                    // Its output went to no log: say there why it failed.
                    d.log(&self.host.name, name, format!("{reason}\n").as_bytes());
                }
                Err(fail(reason))
            }
        }
    }
}

/// What a step's output is: log (streamed, its end kept in the report), or
/// data for the deployer (neither logged nor reported).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Output {
    Log,
    Data,
}

async fn open_artifact(d: &Deployment<'_>) -> Result<tokio::fs::File, StepError> {
    tokio::fs::File::open(d.artifact)
        .await
        .map_err(|e| fail("upload")(format!("cannot open the artifact: {e}")))
}

/// The last non-empty line of a step's output, shortened, for error messages.
fn last_line(output: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(output);
    let line = text.lines().rev().map(str::trim).find(|l| !l.is_empty())?;
    Some(line.chars().take(200).collect())
}

/// A step that timed out or broke the SSH session leaves the connection unusable.
fn result_lost_connection(error: &Option<String>) -> bool {
    error.as_deref().is_some_and(|e| {
        e.starts_with("no result within")
            || e.starts_with("ssh to")
            || e.starts_with("the action's timeout")
    })
}
