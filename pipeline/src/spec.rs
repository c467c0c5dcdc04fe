//! What one attempt of an action runs, as plain types: the [`ActionSpec`]
//! an engine is handed (the agent's, or `ferry exec`'s) and, for deploy
//! actions, the [`DeploySpec`] and the [`DeploymentReport`] it gives back.
//!
//! [`action_spec`] and [`deploy_spec`] are the one way to make them from the
//! pipeline model and an execution's state: the coordinator's scheduler and
//! `ferry exec` both call them, so an action runs with the same image,
//! commands, variables and limits wherever it runs. Wire forms live in
//! `ferry-proto` (one conversion per pair), never here.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::environment::{Environment, HostKey, Target};
use crate::execution::ActionRun;
use crate::service::{MAX_SERVICES, Service, ServiceCommand};
use crate::{Deploy, Pipeline};

/// Which attempt this is. The epoch is unique among the attempts one engine
/// runs: it names the attempt's container and log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttemptId {
    pub id: String,
    pub epoch: u64,
}

/// Where an action runs in its pipeline: what the `FERRY_*` variables say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionContext {
    pub pipeline: String,
    pub execution_id: String,
    pub revision: String,
    pub stage: String,
    pub action: String,
}

impl ActionContext {
    /// The `FERRY_*` variables every action gets, build, test and deploy
    /// alike. This is the one list; a deploy hook also gets its host's own
    /// (`FERRY_HOST`, `FERRY_RELEASE`, ...), which the deployer adds.
    pub fn ferry_env(&self) -> [(&'static str, &str); 5] {
        [
            ("FERRY_PIPELINE", &self.pipeline),
            ("FERRY_EXECUTION_ID", &self.execution_id),
            ("FERRY_REVISION", &self.revision),
            ("FERRY_STAGE", &self.stage),
            ("FERRY_ACTION", &self.action),
        ]
    }
}

/// What to run: everything about an action but its inputs and secrets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionSpec {
    pub attempt: AttemptId,
    pub context: ActionContext,
    pub image: String,
    /// A plugin action: the image runs with its own entrypoint and command
    /// (no shell needed), its settings already in `env` as `PLUGIN_*`
    /// variables; `commands` is empty.
    pub plugin: bool,
    /// Run one after another with `/bin/sh -c` until one fails.
    pub commands: Vec<String>,
    /// The action's `env:` (never a secret).
    pub env: BTreeMap<String, String>,
    pub outputs: Vec<OutputSpec>,
    /// Test reports read after the commands, whatever their outcome.
    pub reports: crate::reports::Reports,
    /// How long the whole attempt may take.
    pub timeout: Duration,
    pub resources: Resources,
    /// Set for deploy actions: where and how to roll out the one input.
    pub deploy: Option<DeploySpec>,
    /// Service containers started, and ready, before the first command.
    pub services: Vec<ServiceSpec>,
    /// Build caches: restored before the first command, saved after success
    /// (`crate::cache`). The coordinator adds them (they need the cluster's
    /// saved entries); empty from [`action_spec`].
    pub caches: Vec<crate::cache::CachePlan>,
    /// Set by the agent for an action with caches: the modification times
    /// its `source` input's files get (`crate::cache::SourceTimes`); None:
    /// those `git archive` gave.
    pub source_times: Option<crate::cache::SourceTimes>,
}

/// A service container of a build or test action, as the engine starts it:
/// on the attempt's own network under its name, with the action's limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceSpec {
    pub name: String,
    pub image: String,
    /// Its environment: its `env` (references substituted) and the
    /// `FERRY_REF_*` variables its shell and ready commands read. Never a
    /// secret.
    pub env: BTreeMap<String, String>,
    /// Replaces the image's command (its entrypoint stays); empty: the
    /// image's own. A shell `command` is `/bin/sh -c TEXT`.
    pub command: Vec<String>,
    /// Run with `/bin/sh -c` in the service's container until it exits 0;
    /// empty: the service is ready once its container runs.
    pub ready_command: String,
    /// How long it may take to be ready, once the services started.
    pub ready_timeout: Duration,
}

/// What a service runs for an action run `run`: its texts with the values
/// their references resolved to, references in its shell and ready
/// commands as shell variables (`vars::commands_as_data`), never as text.
fn service_spec(s: &Service, run: &ActionRun) -> ServiceSpec {
    let shell = match &s.command {
        Some(ServiceCommand::Shell(text)) => Some(text.clone()),
        _ => None,
    };
    let ready = s.ready.as_ref().map(|r| r.command.clone());
    let scripts: Vec<String> = shell.iter().chain(ready.iter()).cloned().collect();
    let (mut scripts, mut env) =
        crate::vars::commands_as_data(&scripts, |r| run.resolved.get(&r.key()).cloned());
    env.extend(s.env.iter().map(|(k, v)| (k.clone(), run.resolved_text(v))));
    let ready_command = match ready {
        Some(_) => scripts.pop().unwrap_or_default(),
        None => String::new(),
    };
    let command = match &s.command {
        Some(ServiceCommand::Shell(_)) => {
            let text = scripts.pop().unwrap_or_default();
            vec!["/bin/sh".to_string(), "-c".to_string(), text]
        }
        Some(ServiceCommand::Args(args)) => args.clone(),
        None => Vec::new(),
    };
    ServiceSpec {
        name: s.name.clone(),
        image: run.resolved_text(&s.image),
        env,
        command,
        ready_command,
        ready_timeout: Duration::from_millis(
            s.ready
                .as_ref()
                .map_or(crate::service::DEFAULT_READY_TIMEOUT_MS, |r| r.timeout_ms),
        ),
    }
}

/// Why the services an engine was handed cannot be run: more than
/// [`MAX_SERVICES`], a name that breaks the name rule or is given twice,
/// is `workspace` or the action's own, an empty image, a ready timeout of
/// zero or over [`crate::service::MAX_READY_TIMEOUT_MS`]. The reader
/// refuses all of these; an agent checks again what it receives.
pub fn check_services(spec: &ActionSpec) -> Result<(), String> {
    if spec.services.len() > MAX_SERVICES {
        return Err(format!(
            "{} services; an action has at most {MAX_SERVICES}",
            spec.services.len()
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for s in &spec.services {
        let shown: String = s.name.chars().take(crate::MAX_NAME_LEN).collect();
        crate::validate_name(&s.name).map_err(|e| format!("service name {shown:?}: {e}"))?;
        if s.name == crate::service::ACTION_HOST_NAME || s.name == spec.context.action {
            return Err(format!(
                "service `{shown}` has a name the action's own container answers to"
            ));
        }
        if !seen.insert(s.name.as_str()) {
            return Err(format!("service `{shown}` is given twice"));
        }
        if s.image.is_empty() {
            return Err(format!("service `{shown}` has no image"));
        }
        let most = Duration::from_millis(crate::service::MAX_READY_TIMEOUT_MS);
        if s.ready_timeout.is_zero() || s.ready_timeout > most {
            return Err(format!(
                "service `{shown}`: a ready timeout is more than zero and at most {most:?}"
            ));
        }
    }
    Ok(())
}

/// An output the action leaves in `/workspace`: one tar of these paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputSpec {
    pub name: String,
    pub paths: Vec<String>,
    /// Whether it is kept when the attempt succeeds, fails, or either.
    pub when: crate::reports::OutputWhen,
}

/// Container limits the action asks for; `None`: the engine's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    pub memory_bytes: Option<u64>,
    pub millicpus: Option<u64>,
    pub pids: Option<u64>,
}

/// The spec of action (`si`, `ai`) of `pipeline` for attempt `epoch` of an
/// execution, with the texts its references resolved to when the action
/// started (recorded in `run`, so every leader sends the same text).
/// References in commands reach the shell as variables, never as text. The
/// deploy part is [`deploy_spec`]'s, set by the caller, which knows where
/// credentials come from.
pub fn action_spec(
    pipeline: &Pipeline,
    (si, ai): (usize, usize),
    run: &ActionRun,
    (execution_id, revision): (&str, &str),
    epoch: u64,
) -> Option<ActionSpec> {
    let stage = pipeline.stages.get(si)?;
    let action = stage.actions.get(ai)?;
    let (commands, env) = run.resolved_commands_and_env(action);
    Some(ActionSpec {
        attempt: AttemptId {
            id: format!(
                "{execution_id}/{}/{}#{}",
                stage.name, action.name, run.attempt
            ),
            epoch,
        },
        context: ActionContext {
            pipeline: pipeline.name.clone(),
            execution_id: execution_id.to_string(),
            revision: revision.to_string(),
            stage: stage.name.clone(),
            action: action.name.clone(),
        },
        image: run.resolved_text(action.image.as_deref().unwrap_or_default()),
        plugin: action.kind == crate::ActionKind::Plugin,
        commands,
        env,
        outputs: action
            .outputs
            .iter()
            .map(|(name, paths)| OutputSpec {
                name: name.clone(),
                paths: paths.clone(),
                when: action.output_when(name),
            })
            .collect(),
        reports: action.reports.clone(),
        timeout: Duration::from_secs(action.timeout_ms.div_ceil(1000).max(1)),
        resources: Resources {
            memory_bytes: action.resources.memory_bytes,
            millicpus: action.resources.millicpus,
            pids: action.resources.pids,
        },
        deploy: None,
        services: action
            .services
            .iter()
            .map(|s| service_spec(s, run))
            .collect(),
        caches: Vec::new(),
        source_times: None,
    })
}

/// Where and how a deploy action rolls out its artifact: the environment's
/// hosts, batch size and `min_healthy` already resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeploySpec {
    pub environment: String,
    pub hosts: Vec<DeployHost>,
    /// Hosts changed at once.
    pub batch_size: u32,
    /// Hosts that must end on the new release.
    pub min_healthy: u32,
    pub rollback: bool,
    pub keep_releases: u32,
    pub hook_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// Directory under releases/: the execution whose artifact this is.
    pub release: String,
    /// The strategy as the pipeline file says it (for reports).
    pub strategy: String,
    /// Why the deployment cannot start (unknown environment, missing key):
    /// the action fails with it.
    pub problem: Option<String>,
    /// The release cannot be on any host yet: inspect and upload may share
    /// one SSH session.
    pub fresh_release: bool,
}

impl DeploySpec {
    /// The hosts' opened credentials (SSH private keys, Docker TLS
    /// bundles): masked in logs and reports like the action's secrets,
    /// should a hook or an error print one.
    pub fn credentials(&self) -> impl Iterator<Item = Vec<u8>> + '_ {
        self.hosts
            .iter()
            .flat_map(|h| [h.private_key.clone(), h.tls_bundle.clone()])
            .filter(|c| !c.is_empty())
    }
}

/// How a host is reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HostKind {
    #[default]
    Ssh,
    /// A Docker Engine's API.
    Docker,
}

impl HostKind {
    /// The word the agent protocol carries.
    pub fn as_str(self) -> &'static str {
        match self {
            HostKind::Ssh => "ssh",
            HostKind::Docker => "docker",
        }
    }

    pub fn parse(text: &str) -> Option<HostKind> {
        match text {
            "ssh" => Some(HostKind::Ssh),
            "docker" => Some(HostKind::Docker),
            _ => None,
        }
    }
}

/// One host of the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeployHost {
    pub name: String,
    pub kind: HostKind,
    pub host: String,
    pub port: u32,
    pub user: String,
    /// OpenSSH public key line, or a SHA256:... fingerprint.
    pub host_key: String,
    /// SSH: the private key from the host's key secret, opened.
    pub private_key: Vec<u8>,
    pub path: String,
    /// Docker: the engine endpoint and the PEM bundle from its TLS secret, opened.
    pub endpoint: String,
    pub tls_bundle: Vec<u8>,
}

impl DeployHost {
    /// Puts the opened value of the host's credential secret where its kind
    /// reads it (an SSH private key, or a Docker TLS bundle).
    pub fn set_credentials(&mut self, value: Vec<u8>) {
        match self.kind {
            HostKind::Ssh => self.private_key = value,
            HostKind::Docker => self.tls_bundle = value,
        }
    }
}

/// The deploy part of a spec, without credentials: each host with the name
/// of the secret that holds its credentials (an SSH host's key, a Docker
/// host's TLS bundle when it has one). The caller fills them from where it
/// keeps secrets (the cluster, sealed to the agent; or `ferry exec`'s
/// `--secret`s) and sets the spec's `problem` for one that has no value.
pub fn deploy_spec(
    deploy: &Deploy,
    env: &Environment,
    release: &str,
    fresh_release: bool,
) -> (DeploySpec, Vec<Option<String>>) {
    let hosts = env.hosts.len();
    let mut spec = DeploySpec {
        environment: deploy.environment.clone(),
        hosts: Vec::with_capacity(hosts),
        batch_size: deploy.strategy.batch_size(hosts) as u32,
        min_healthy: deploy.min_healthy_of(hosts) as u32,
        rollback: deploy.rollback,
        keep_releases: deploy.keep_releases,
        hook_timeout_ms: deploy.hook_timeout_ms,
        connect_timeout_ms: deploy.connect_timeout_ms,
        release: release.to_string(),
        strategy: deploy.strategy.to_string(),
        problem: None,
        fresh_release,
    };
    let mut secrets = Vec::with_capacity(hosts);
    for host in &env.hosts {
        let mut h = DeployHost {
            name: host.name.clone(),
            ..Default::default()
        };
        let secret = match &host.target {
            Target::Ssh(t) => {
                h.kind = HostKind::Ssh;
                h.host = t.host.clone();
                h.port = u32::from(t.port);
                h.user = t.user.clone();
                h.host_key = match &t.host_key {
                    HostKey::PublicKey { algorithm, base64 } => format!("{algorithm} {base64}"),
                    HostKey::Fingerprint(f) => f.clone(),
                };
                h.path = t.path.clone();
                Some(t.key_secret.clone())
            }
            Target::Docker(t) => {
                h.kind = HostKind::Docker;
                h.endpoint = t.endpoint.clone();
                t.tls_secret.clone()
            }
        };
        spec.hosts.push(h);
        secrets.push(secret);
    }
    (spec, secrets)
}

/// How a deployment ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeployOutcome {
    Succeeded,
    #[default]
    Failed,
    /// It failed, and every host it changed is back on its old release.
    RolledBack,
}

/// How a deployment ended on one host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HostOutcome {
    Deployed,
    Failed,
    RolledBack,
    RollbackFailed,
    /// Not reached: an earlier batch failed, or the deployment stopped.
    #[default]
    Skipped,
}

/// Which half of a deployment a step belongs to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HookPhase {
    #[default]
    Deploy,
    Rollback,
}

/// The words the agent protocol (and the stored reports) carry for each
/// outcome and phase: the one place they are spelled.
macro_rules! words {
    ($ty:ident { $($variant:ident => $word:literal),* $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $word),* }
            }

            /// The variant `text` names, if any.
            pub fn parse(text: &str) -> Option<$ty> {
                match text { $($word => Some($ty::$variant),)* _ => None }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

words!(DeployOutcome {
    Succeeded => "Succeeded",
    Failed => "Failed",
    RolledBack => "RolledBack",
});
words!(HostOutcome {
    Deployed => "Deployed",
    Failed => "Failed",
    RolledBack => "RolledBack",
    RollbackFailed => "RollbackFailed",
    Skipped => "Skipped",
});
words!(HookPhase {
    Deploy => "deploy",
    Rollback => "rollback",
});

/// What a deployment did, host by host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeploymentReport {
    pub environment: String,
    pub release: String,
    pub artifact_digest: String,
    pub outcome: DeployOutcome,
    /// One line: which host failed at which hook, and what happened after.
    pub summary: String,
    pub strategy: String,
    pub hosts: Vec<HostReport>,
}

/// What happened on one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostReport {
    pub host: String,
    pub outcome: HostOutcome,
    /// The release the host is on at the end ("" if none).
    pub release: String,
    /// The release it was on before.
    pub previous: String,
    pub batch: u32,
    pub error: String,
    pub hooks: Vec<HookReport>,
}

/// One step on a host: a lifecycle hook, or one of Ferry's own (connect,
/// upload, switch, prune).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookReport {
    pub hook: String,
    pub phase: HookPhase,
    pub success: bool,
    pub exit_code: i32,
    pub duration_ms: u64,
    /// The end of the step's output (secrets masked).
    pub output: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_gets_the_same_ferry_variables() {
        let context = ActionContext {
            pipeline: "web".into(),
            execution_id: "e-1".into(),
            revision: "abc".into(),
            stage: "build".into(),
            action: "compile".into(),
        };
        assert_eq!(
            context.ferry_env(),
            [
                ("FERRY_PIPELINE", "web"),
                ("FERRY_EXECUTION_ID", "e-1"),
                ("FERRY_REVISION", "abc"),
                ("FERRY_STAGE", "build"),
                ("FERRY_ACTION", "compile"),
            ]
        );
    }

    #[test]
    fn outcome_words_round_trip() {
        for o in [
            DeployOutcome::Succeeded,
            DeployOutcome::Failed,
            DeployOutcome::RolledBack,
        ] {
            assert_eq!(DeployOutcome::parse(o.as_str()), Some(o));
        }
        for o in [
            HostOutcome::Deployed,
            HostOutcome::Failed,
            HostOutcome::RolledBack,
            HostOutcome::RollbackFailed,
            HostOutcome::Skipped,
        ] {
            assert_eq!(HostOutcome::parse(&o.to_string()), Some(o));
        }
        assert_eq!(HookPhase::parse("rollback"), Some(HookPhase::Rollback));
        assert_eq!(HookPhase::parse("Rollback"), None);
        assert_eq!(HostKind::parse("docker"), Some(HostKind::Docker));
    }
}
