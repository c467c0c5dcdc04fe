//! Deploy actions: roll an artifact out to an environment's hosts batch by
//! batch, as the coordinator resolved them (`DeploySpec`). Each batch's hosts
//! deploy concurrently; when more hosts have failed than `min_healthy`
//! allows, the deployment stops, and with `rollback: auto` every host it
//! changed returns to its previous release. The report names each host's
//! outcome and every step it ran, and the action fails with a one-line
//! summary of which host failed at which step.

mod deployer;
mod docker;
mod host;
mod owner;
mod shell;

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use ferry_pipeline::{REVISION_SPEC_FILE, RevisionSpec, parse_revision_spec};
use futures::future::join_all;

use crate::runner::{Cancel, LogSink};
use docker::DockerRun;
use ferry_pipeline::mask::Masker;
use host::HostRun;

pub use crate::runner::{
    DeployHost, DeployOutcome, DeploySpec, DeploymentReport, HookPhase, HookReport, HostKind,
    HostOutcome, HostReport,
};
pub use deployer::Deployer;

/// Longest run of step output without a line end held back for the log.
const MAX_PARTIAL_LINE: usize = 64 * 1024;

/// Upload time allowed per MiB of artifact, on top of the hook timeout.
const UPLOAD_SECS_PER_MIB: u64 = 2;

/// Everything the hosts of one deployment share.
pub struct Deployment<'a> {
    pub environment: &'a str,
    /// The pipeline deploying: with the environment, who owns what the
    /// deployment touches on a target (containers, ports, deploy paths).
    pub pipeline: &'a str,
    pub release: &'a str,
    pub digest: &'a str,
    /// The artifact tar on this agent.
    pub artifact: &'a Path,
    pub artifact_size: u64,
    pub spec: &'a RevisionSpec,
    pub hook_timeout_ms: u64,
    pub connect_timeout: Duration,
    pub keep_releases: u32,
    /// The release cannot be on a host yet: inspect and upload in one session.
    pub fresh_release: bool,
    /// Action `env` and `secrets`, exported to every hook.
    pub env: Vec<(String, Vec<u8>)>,
    /// When the action's timeout runs out: deploy steps stop there (a
    /// rollback still gets its own time).
    pub deadline: std::time::Instant,
    pub timeout: Duration,
    cancel: Cancel,
    log: Mutex<&'a mut dyn LogSink>,
}

impl Deployment<'_> {
    fn log(&self, host: &str, step: &str, bytes: &[u8]) {
        let mut text = Vec::with_capacity(bytes.len() + 32);
        for line in bytes.split_inclusive(|b| *b == b'\n') {
            text.extend_from_slice(format!("[{host} {step}] ").as_bytes());
            text.extend_from_slice(line);
        }
        if !text.ends_with(b"\n") {
            text.push(b'\n');
        }
        self.note(&text);
    }

    fn note(&self, bytes: &[u8]) {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.write(bytes);
    }

    /// The time a step of `phase` may take: `limit`, cut to what is left of
    /// the action's timeout while deploying.
    fn budget(&self, phase: HookPhase, limit: Duration) -> Result<Duration, String> {
        if phase == HookPhase::Rollback {
            return Ok(limit);
        }
        if let Some(reason) = self.cancel.stop_requested() {
            return Err(format!("not run: {reason}"));
        }
        let left = self
            .deadline
            .saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(format!("the action's timeout ({:?}) ran out", self.timeout));
        }
        Ok(limit.min(left))
    }

    /// Err when a person stopped the run: step `step` is not started.
    fn go_on(&self, step: &str) -> Result<(), StepError> {
        match self.cancel.stop_requested() {
            Some(reason) => Err(fail(step)(format!("not run: {reason}"))),
            None => Ok(()),
        }
    }

    fn upload_timeout(&self) -> Duration {
        let mib = self.artifact_size.div_ceil(1024 * 1024);
        Duration::from_millis(self.hook_timeout_ms) + Duration::from_secs(mib * UPLOAD_SECS_PER_MIB)
    }
}

/// Splits streamed output into whole lines for the log, each prefixed with
/// the host and step.
struct Lines<'d, 'a> {
    d: &'d Deployment<'a>,
    host: &'d str,
    step: &'d str,
    partial: Vec<u8>,
}

impl<'d, 'a> Lines<'d, 'a> {
    fn new(d: &'d Deployment<'a>, host: &'d str, step: &'d str) -> Self {
        Lines {
            d,
            host,
            step,
            partial: Vec::new(),
        }
    }

    fn push(&mut self, data: &[u8]) {
        self.partial.extend_from_slice(data);
        if let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') {
            let rest = self.partial.split_off(end + 1);
            let whole = std::mem::replace(&mut self.partial, rest);
            self.d.log(self.host, self.step, &whole);
        }
        // Output without line ends is passed on in pieces, not held without bound.
        if self.partial.len() > MAX_PARTIAL_LINE {
            let piece = std::mem::take(&mut self.partial);
            self.d.log(self.host, self.step, &piece);
        }
    }

    fn finish(&mut self) {
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.d.log(self.host, self.step, &rest);
        }
    }
}

/// How a deployment ended, for the action result.
pub struct Finished {
    pub success: bool,
    pub summary: String,
    pub report: DeploymentReport,
}

/// Finds the file `member` in the artifact tar and hands it to `read`;
/// `None` when the artifact has no such file.
fn with_member<T>(
    artifact: &Path,
    member: &str,
    read: impl FnOnce(&mut dyn std::io::Read) -> Result<T, String>,
) -> Result<Option<T>, String> {
    let file =
        std::fs::File::open(artifact).map_err(|e| format!("cannot open the artifact: {e}"))?;
    let mut ar = tar::Archive::new(file);
    let entries = ar
        .entries()
        .map_err(|e| format!("the artifact is not a tar archive: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("the artifact is not a valid tar: {e}"))?;
        if entry
            .path()
            .is_ok_and(|p| p.components().eq(Path::new(member).components()))
        {
            return read(&mut entry).map(Some);
        }
    }
    Ok(None)
}

/// Reads `ferry-deploy.yml` from the root of the artifact tar.
pub fn read_revision_spec(artifact: &Path) -> Result<RevisionSpec, String> {
    let text = with_member(artifact, REVISION_SPEC_FILE, |entry| {
        // Whoever can push to the repository wrote this file: read no more
        // than the reader accepts (one byte over, so it can say it is too big).
        let mut text = String::new();
        let limit = ferry_pipeline::MAX_REVISION_SPEC_BYTES as u64 + 1;
        let mut capped = std::io::Read::take(entry, limit);
        std::io::Read::read_to_string(&mut capped, &mut text)
            .map_err(|e| format!("{REVISION_SPEC_FILE} is not UTF-8 text: {e}"))?;
        Ok(text)
    })?
    .ok_or_else(|| {
        format!(
            "the artifact has no {REVISION_SPEC_FILE} at its root; add one naming the files to \
             install and the hooks to run (see the README's deployment section)"
        )
    })?;
    parse_revision_spec(&text).map_err(|diags| {
        let lines: Vec<String> = diags.iter().map(|d| format!("  {d}")).collect();
        format!("{REVISION_SPEC_FILE} is invalid:\n{}", lines.join("\n"))
    })
}

/// The settings of a deployment that are not per-host.
pub struct Plan<'a> {
    pub spec: &'a DeploySpec,
    pub pipeline: &'a str,
    pub revision: &'a RevisionSpec,
    pub artifact: &'a Path,
    pub artifact_size: u64,
    pub digest: &'a str,
    pub env: Vec<(String, Vec<u8>)>,
    pub masker: &'a Masker,
    /// The action's timeout: no batch starts after it ran out.
    pub timeout: Duration,
    /// A person's stop: no step starts after it (a rollback still runs).
    pub cancel: Cancel,
}

/// Runs a whole deployment; never fails without a report.
pub async fn run(plan: Plan<'_>, log: &mut dyn LogSink) -> Finished {
    let spec = plan.spec;
    let total = spec.hosts.len();
    let batch_size = (spec.batch_size as usize).clamp(1, total.max(1));
    let min_healthy = (spec.min_healthy as usize).min(total);
    let allowed_failures = total - min_healthy;
    log.write(
        format!(
            "[ferry] deploying release {} to environment `{}`: {total} host(s), strategy {}, \
             batches of {batch_size}, at least {min_healthy} must succeed, rollback {}\n",
            spec.release,
            spec.environment,
            spec.strategy,
            if spec.rollback { "auto" } else { "none" },
        )
        .as_bytes(),
    );
    let d = Deployment {
        environment: &spec.environment,
        pipeline: plan.pipeline,
        release: &spec.release,
        digest: plan.digest,
        artifact: plan.artifact,
        artifact_size: plan.artifact_size,
        spec: plan.revision,
        hook_timeout_ms: spec.hook_timeout_ms,
        connect_timeout: Duration::from_millis(spec.connect_timeout_ms.max(1)),
        keep_releases: spec.keep_releases.max(1),
        fresh_release: spec.fresh_release,
        env: plan.env,
        deadline: std::time::Instant::now() + plan.timeout,
        timeout: plan.timeout,
        cancel: plan.cancel,
        log: Mutex::new(log),
    };
    let mut hosts: Vec<Target> = spec
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| Target::new(h.clone(), (i / batch_size) as u32 + 1))
        .collect();
    let batches = total.div_ceil(batch_size);
    let mut failed: Vec<String> = Vec::new();
    let mut stopped_at = None;
    for (b, batch) in hosts.chunks_mut(batch_size).enumerate() {
        if let Some(reason) = d.cancel.stop_requested() {
            failed.push(reason);
            stopped_at = Some(b);
            break;
        }
        if b > 0 && std::time::Instant::now() >= d.deadline {
            failed.push(format!(
                "the action's timeout ({:?}) ran out before batch {}",
                d.timeout,
                b + 1
            ));
            stopped_at = Some(b);
            break;
        }
        let names: Vec<&str> = batch.iter().map(|h| h.name()).collect();
        d.note(
            format!(
                "[ferry] batch {} of {batches}: {}\n",
                b + 1,
                names.join(", ")
            )
            .as_bytes(),
        );
        join_all(batch.iter_mut().map(|h| h.deploy(&d))).await;
        for h in batch
            .iter()
            .filter(|h| h.report().outcome == HostOutcome::Failed)
        {
            d.note(format!("[ferry] {} failed: {}\n", h.name(), h.report().error).as_bytes());
            failed.push(format!("{} failed at {}", h.name(), h.report().error));
        }
        if failed.len() > allowed_failures {
            stopped_at = Some(b + 1);
            break;
        }
        // A person stopped the run while this batch deployed.
        if let Some(reason) = d.cancel.stop_requested() {
            failed.push(reason);
            stopped_at = Some(b + 1);
            break;
        }
        // A tolerated failure: that host alone goes back to its previous release.
        if spec.rollback {
            join_all(
                batch
                    .iter_mut()
                    .filter(|h| h.report().outcome == HostOutcome::Failed)
                    .map(|h| h.roll_back(&d)),
            )
            .await;
        }
    }
    let mut summary = String::new();
    let outcome = match stopped_at {
        None => {
            let deployed = hosts
                .iter()
                .filter(|h| h.report().outcome == HostOutcome::Deployed)
                .count();
            summary = format!(
                "release {} deployed to {deployed} of {total} host(s) of `{}`",
                spec.release, spec.environment
            );
            if !failed.is_empty() {
                summary.push_str(&format!(" ({})", failed.join("; ")));
            }
            DeployOutcome::Succeeded
        }
        Some(batch) => {
            summary.push_str(&format!(
                "{}; the deployment stopped at batch {batch} of {batches}",
                failed.join("; ")
            ));
            if spec.rollback {
                let changed: Vec<&mut Target> = hosts.iter_mut().filter(|h| h.changed()).collect();
                let names: Vec<String> = changed.iter().map(|h| h.name().to_string()).collect();
                if !names.is_empty() {
                    d.note(format!("[ferry] rolling back {}\n", names.join(", ")).as_bytes());
                }
                join_all(changed.into_iter().map(|h| h.roll_back(&d))).await;
                let back: Vec<String> = hosts
                    .iter()
                    .filter(|h| h.report().outcome == HostOutcome::RolledBack)
                    .map(|h| format!("{} (to {})", h.name(), display_release(h.previous())))
                    .collect();
                let broken: Vec<&str> = hosts
                    .iter()
                    .filter(|h| h.report().outcome == HostOutcome::RollbackFailed)
                    .map(|h| h.name())
                    .collect();
                if !back.is_empty() {
                    summary.push_str(&format!("; rolled back {}", back.join(", ")));
                }
                if !broken.is_empty() {
                    summary.push_str(&format!("; ROLLBACK FAILED on {}", broken.join(", ")));
                }
                if broken.is_empty() && !back.is_empty() {
                    DeployOutcome::RolledBack
                } else {
                    DeployOutcome::Failed
                }
            } else {
                summary.push_str("; rollback is off: changed hosts were left as they are");
                DeployOutcome::Failed
            }
        }
    };
    for h in &mut hosts {
        h.close().await;
    }
    d.note(format!("[ferry] {summary}\n").as_bytes());
    let mut report = DeploymentReport {
        environment: spec.environment.clone(),
        release: spec.release.clone(),
        artifact_digest: plan.digest.to_string(),
        outcome,
        summary: summary.clone(),
        strategy: spec.strategy.clone(),
        hosts: hosts.into_iter().map(Target::into_report).collect(),
    };
    for h in &mut report.hosts {
        h.error = String::from_utf8_lossy(&plan.masker.mask(h.error.as_bytes())).into_owned();
    }
    for hook in report.hosts.iter_mut().flat_map(|h| h.hooks.iter_mut()) {
        hook.output = plan.masker.mask(&hook.output);
    }
    trim_outputs(&mut report);
    let summary = String::from_utf8_lossy(&plan.masker.mask(summary.as_bytes())).into_owned();
    report.summary = summary.clone();
    Finished {
        success: outcome == DeployOutcome::Succeeded,
        summary,
        report,
    }
}

/// A host of the environment, by how it is reached.
enum Target {
    Ssh(Box<HostRun>),
    Docker(Box<DockerRun>),
}

impl Target {
    fn new(host: DeployHost, batch: u32) -> Target {
        if host.kind == HostKind::Docker {
            Target::Docker(Box::new(DockerRun::new(host, batch)))
        } else {
            Target::Ssh(Box::new(HostRun::new(host, batch)))
        }
    }

    async fn deploy(&mut self, d: &Deployment<'_>) {
        match self {
            Target::Ssh(h) => h.deploy(d).await,
            Target::Docker(h) => h.deploy(d).await,
        }
    }

    async fn roll_back(&mut self, d: &Deployment<'_>) {
        match self {
            Target::Ssh(h) => h.roll_back(d).await,
            Target::Docker(h) => h.roll_back(d).await,
        }
    }

    fn changed(&self) -> bool {
        match self {
            Target::Ssh(h) => h.changed(),
            Target::Docker(h) => h.changed(),
        }
    }

    async fn close(&mut self) {
        if let Target::Ssh(h) = self {
            h.close().await;
        }
    }

    fn name(&self) -> &str {
        match self {
            Target::Ssh(h) => &h.host.name,
            Target::Docker(h) => &h.host.name,
        }
    }

    fn previous(&self) -> &str {
        match self {
            Target::Ssh(h) => &h.previous,
            Target::Docker(h) => &h.previous,
        }
    }

    fn report(&self) -> &HostReport {
        match self {
            Target::Ssh(h) => &h.report,
            Target::Docker(h) => &h.report,
        }
    }

    fn into_report(self) -> HostReport {
        match self {
            Target::Ssh(h) => h.report,
            Target::Docker(h) => h.report,
        }
    }
}

/// Why a step on a host failed: the step and a one-line reason.
pub struct StepError {
    pub step: String,
    pub reason: String,
}

/// Turns a reason into the failure of step `step` (for `map_err`).
fn fail(step: &str) -> impl Fn(String) -> StepError + '_ {
    move |reason| StepError {
        step: step.to_string(),
        reason,
    }
}

/// A host's report before anything ran on it.
fn new_report(host: &DeployHost, batch: u32) -> HostReport {
    HostReport {
        host: host.name.clone(),
        outcome: HostOutcome::Skipped,
        batch,
        ..Default::default()
    }
}

/// Records how deploying `release` to a host ended: `Deployed`, or
/// `Failed` with the step and reason, left on the new release if it was
/// already switched to it (`on_new`) and on `previous` otherwise.
fn settle(
    report: &mut HostReport,
    result: Result<(), StepError>,
    release: &str,
    on_new: bool,
    previous: &str,
) {
    match result {
        Ok(()) => {
            report.outcome = HostOutcome::Deployed;
            report.release = release.to_string();
        }
        Err(e) => {
            report.outcome = HostOutcome::Failed;
            report.release = if on_new { release } else { previous }.to_string();
            report.error = format!("{}: {}", e.step, e.reason);
        }
    }
}

/// Bytes of each step's output kept in the report.
const REPORT_TAIL: usize = 4 * 1024;

/// Step output a whole report keeps (it is stored in the replicated state;
/// the full output is in the action's log).
const REPORT_BUDGET: usize = 64 * 1024;

/// Shortens every step's output to its end when the report is over budget.
fn trim_outputs(report: &mut DeploymentReport) {
    let hooks = report.hosts.iter().map(|h| h.hooks.len()).sum::<usize>();
    let total: usize = report
        .hosts
        .iter()
        .flat_map(|h| &h.hooks)
        .map(|k| k.output.len())
        .sum();
    if total <= REPORT_BUDGET || hooks == 0 {
        return;
    }
    let each = (REPORT_BUDGET / hooks).max(128);
    for k in report.hosts.iter_mut().flat_map(|h| h.hooks.iter_mut()) {
        let cut = k.output.len().saturating_sub(each);
        k.output.drain(..cut);
    }
}

/// Adds one step (a hook or one of Ferry's own) to a host's report, with
/// the end of its output.
fn record(
    report: &mut HostReport,
    (hook, phase): (&str, HookPhase),
    success: bool,
    exit_code: i32,
    started: std::time::Instant,
    output: &[u8],
) {
    let tail = &output[output.len().saturating_sub(REPORT_TAIL)..];
    report.hooks.push(HookReport {
        hook: hook.to_string(),
        phase,
        success,
        exit_code,
        duration_ms: started.elapsed().as_millis() as u64,
        output: tail.to_vec(),
    });
}

fn display_release(r: &str) -> &str {
    if r.is_empty() { "no release" } else { r }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_over_budget_keep_the_end_of_each_output() {
        let hook = |n: usize| HookReport {
            output: (0..n).map(|i| (i % 251) as u8).collect(),
            ..Default::default()
        };
        let mut report = DeploymentReport {
            hosts: vec![HostReport {
                hooks: vec![hook(REPORT_TAIL); 40],
                ..Default::default()
            }],
            ..Default::default()
        };
        let last = report.hosts[0].hooks[0].output.last().copied();
        trim_outputs(&mut report);
        let total: usize = report.hosts[0].hooks.iter().map(|k| k.output.len()).sum();
        assert!(total <= REPORT_BUDGET, "{total}");
        assert_eq!(report.hosts[0].hooks[0].output.last().copied(), last);
        let mut small = DeploymentReport {
            hosts: vec![HostReport {
                hooks: vec![hook(10)],
                ..Default::default()
            }],
            ..Default::default()
        };
        trim_outputs(&mut small);
        assert_eq!(small.hosts[0].hooks[0].output.len(), 10);
    }
}
