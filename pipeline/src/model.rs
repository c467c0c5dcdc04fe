//! The validated pipeline model: plain data that other crates store, send
//! and execute. Every value here has already passed validation and has its
//! defaults filled in.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Name of the artifact that is always available: the git repository
/// checked out at the commit being built.
pub const SOURCE_ARTIFACT: &str = "source";

/// Branch watched when `source.branch` is not given.
pub const DEFAULT_BRANCH: &str = "main";

/// Run order used when `run_order` is not given.
pub const DEFAULT_RUN_ORDER: u32 = 1;

/// Smallest accepted `source.poll_interval`, in milliseconds.
pub const MIN_POLL_INTERVAL_MS: u64 = 1_000;

/// Default timeout of build and test actions (1 hour), in milliseconds.
pub const DEFAULT_COMMAND_TIMEOUT_MS: u64 = 60 * 60 * 1_000;

/// Default timeout of approval actions (7 days), in milliseconds.
pub const DEFAULT_APPROVAL_TIMEOUT_MS: u64 = 7 * 24 * 60 * 60 * 1_000;

/// Role allowed to approve when an approval action lists no `approvers`.
pub const DEFAULT_APPROVER: &str = "approver";

/// Largest accepted `required` of an approval action.
pub const MAX_APPROVALS_REQUIRED: u32 = 10;

/// Longest accepted approval `message`, in bytes.
pub const MAX_APPROVAL_MESSAGE_LEN: usize = 4_096;

/// Longest accepted approval `url`, in bytes.
pub const MAX_APPROVAL_URL_LEN: usize = 2_048;

/// What `required` of an approval is when not given.
fn one() -> u32 {
    1
}

/// Largest accepted `retries` of a build or test action.
pub const MAX_RETRIES: u32 = 10;

/// Largest accepted `resources.cpus`, in millicpus (1024 CPUs).
pub const MAX_MILLICPUS: u64 = 1024 * 1_000;

/// Smallest accepted `resources.memory`, in bytes (6 MiB: the Docker Engine refuses less).
pub const MIN_MEMORY_BYTES: u64 = 6 * 1024 * 1024;

/// Smallest accepted `resources.pids`: the container's init, a shell and the
/// command itself already take a few, and most tools start helpers.
pub const MIN_PIDS: u64 = 16;

/// Largest accepted `resources.pids`: Linux's own ceiling on process ids (2^22).
pub const MAX_PIDS: u64 = 4 * 1024 * 1024;

/// A complete, validated pipeline definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pipeline {
    pub name: String,
    pub source: Source,
    pub stages: Vec<Stage>,
    /// How executions of this pipeline share its stages. A version stored
    /// before modes existed reads as [`ExecutionMode::Parallel`], the way
    /// it ran then; a pipeline read from YAML defaults to
    /// [`ExecutionMode::Superseded`].
    #[serde(default = "ExecutionMode::stored_default")]
    pub execution_mode: ExecutionMode,
    /// Pipeline variables by name (`#{variables.NAME}`), each with its
    /// default; `ferry run --var NAME=VALUE` overrides one for an execution.
    #[serde(default)]
    pub variables: BTreeMap<String, Variable>,
    /// When the pipeline starts on its own; `None` (also in versions
    /// stored before schedules existed): only pushes and `ferry run`.
    #[serde(default)]
    pub schedule: Option<crate::schedule::Schedule>,
    /// Where events of this pipeline's executions are posted; empty (also
    /// in versions stored before notifications existed): nowhere.
    #[serde(default)]
    pub notifications: Vec<crate::notify::NotificationTarget>,
}

/// A pipeline variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variable {
    pub default: String,
    pub description: String,
}

/// How executions of one pipeline share its stages (CodePipeline's modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionMode {
    /// A stage holds one execution at a time; an execution waiting to enter
    /// a stage is replaced by a newer one, which ends it `Superseded`.
    Superseded,
    /// Executions pass through each stage one at a time, in start order.
    Queued,
    /// Every execution runs independently of the others.
    Parallel,
}

impl ExecutionMode {
    /// Every mode, in documentation order.
    pub const ALL: [ExecutionMode; 3] = [
        ExecutionMode::Superseded,
        ExecutionMode::Queued,
        ExecutionMode::Parallel,
    ];

    /// The mode of a pipeline whose YAML does not name one.
    pub const DEFAULT: ExecutionMode = ExecutionMode::Superseded;

    /// The mode of a version stored before modes existed: it ran in parallel.
    fn stored_default() -> ExecutionMode {
        ExecutionMode::Parallel
    }

    /// The spelling used in pipeline YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionMode::Superseded => "superseded",
            ExecutionMode::Queued => "queued",
            ExecutionMode::Parallel => "parallel",
        }
    }
}

impl fmt::Display for ExecutionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Pipeline {
    /// The `MAJOR.MINOR` release that first ran everything this pipeline
    /// uses ([`Action::needs_version`]): a cluster with an older member may
    /// not store it.
    pub fn needs_version(&self) -> (u32, u32) {
        self.stages
            .iter()
            .flat_map(|s| &s.actions)
            .map(Action::needs_version)
            .chain((!self.source.upstreams.is_empty()).then_some((0, 2)))
            .max()
            .unwrap_or((0, 1))
    }

    /// Index of a stage and action by names.
    pub fn find_action(&self, stage: &str, action: &str) -> Option<(usize, usize)> {
        let stage_index = self.stages.iter().position(|s| s.name == stage)?;
        let action_index = self.stages[stage_index]
            .actions
            .iter()
            .position(|a| a.name == action)?;
        Some((stage_index, action_index))
    }
}

/// Where the pipeline's code comes from and how often to look for changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// Git URL or filesystem path of the repository.
    pub git: String,
    /// Branch to build; defaults to [`DEFAULT_BRANCH`].
    pub branch: String,
    /// How often to poll the branch for new commits; `None` means no polling.
    pub poll_interval_ms: Option<u64>,
    /// Name of the Ferry secret that push webhooks for this pipeline are
    /// signed with; `None` (also in versions stored before it existed).
    #[serde(default)]
    pub webhook_secret: Option<String>,
    /// Which pushes start an execution; empty (also in versions stored
    /// before triggers existed) means pushes to `branch`, as before (see
    /// [`Source::effective_triggers`]).
    #[serde(default)]
    pub triggers: Vec<crate::trigger::Trigger>,
    /// Pipelines whose succeeded executions start this one (`source:
    /// {pipeline: ...}`); empty (and left out of the stored form): none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<crate::upstream::Upstream>,
}

/// A named group of actions; stages run one after another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    pub name: String,
    pub actions: Vec<Action>,
    /// Runs only when this holds; otherwise every action is skipped.
    #[serde(default)]
    pub when: Option<crate::condition::Condition>,
    /// What a failed action of the stage leads to.
    #[serde(default)]
    pub on_failure: crate::condition::OnFailure,
}

/// One unit of work inside a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub name: String,
    pub kind: ActionKind,
    /// Actions of a stage run in ascending `run_order`; equal numbers run in parallel.
    pub run_order: u32,
    /// Agent labels an agent must have to run this action (build/test only).
    pub runs_on: Vec<String>,
    /// Artifacts this action needs, produced by earlier actions or [`SOURCE_ARTIFACT`].
    pub inputs: Vec<String>,
    /// Container image (build, test and plugin).
    pub image: Option<String>,
    /// Shell commands run in order (build/test only).
    pub commands: Vec<String>,
    /// Environment variables; a plugin's `settings:` are here too, as the
    /// `PLUGIN_*` variables they become (`crate::plugin`).
    pub env: BTreeMap<String, String>,
    /// Artifact name -> relative paths collected after the commands succeed.
    pub outputs: BTreeMap<String, Vec<String>>,
    /// Time limit with defaults applied, in milliseconds.
    pub timeout_ms: u64,
    /// Container resource limits (build/test only); unset fields get the
    /// running agent's defaults (`ferry-agent --default-memory` and so on).
    #[serde(default)]
    pub resources: Resources,
    /// How many times a failed command run is retried on a new attempt, at
    /// most [`MAX_RETRIES`] (build/test only; 0 for approvals).
    #[serde(default)]
    pub retries: u32,
    /// Environment variable name -> name of the secret whose value it gets
    /// (build, test, plugin and deploy; empty for approvals). Never shares a
    /// name with `env`. A plugin's `{from_secret: NAME}` settings are here.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Roles or operator names allowed to approve; empty unless `kind` is approval.
    pub approvers: Vec<String>,
    /// Approval only: whoever started the execution or applied the pipeline
    /// version may decide it too. Only an admin may apply a pipeline that sets
    /// it (checked when the version is applied); off by default (four eyes).
    #[serde(default)]
    pub allow_self_approval: bool,
    /// Approval only: how many distinct people must approve (any rejection
    /// ends it); between 1 and [`MAX_APPROVALS_REQUIRED`]. Versions stored
    /// before it existed read as 1.
    #[serde(default = "one")]
    pub required: u32,
    /// Approval only: what the approvers are asked, shown with the approval.
    #[serde(default)]
    pub message: String,
    /// Approval only: a link for the approvers (a change ticket, a staging page).
    #[serde(default)]
    pub url: String,
    /// Where and how to deploy; set exactly when `kind` is deploy.
    #[serde(default)]
    pub deploy: Option<crate::deploy::Deploy>,
    /// Runs only when this holds; otherwise it is skipped.
    #[serde(default)]
    pub when: Option<crate::condition::Condition>,
    /// When each output is kept, for outputs not kept on success only
    /// (build/test only). Left out of the stored form when empty, so a
    /// version that uses none encodes as it did before it existed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub output_when: BTreeMap<String, crate::reports::OutputWhen>,
    /// Test reports the agent reads after the commands, whatever their
    /// outcome (build/test only).
    #[serde(default, skip_serializing_if = "crate::reports::Reports::is_empty")]
    pub reports: crate::reports::Reports,
    /// Set on each action a `matrix:` expanded to: its combination (build
    /// and test only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrix: Option<crate::matrix::MatrixCell>,
    /// Service containers started before its commands, on a network of the
    /// attempt's own (build/test only); empty (also in versions stored
    /// before services existed): none, and left out of the stored form.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<crate::service::Service>,
    /// Directories kept from one run to the next (build/test only); empty
    /// (also in versions stored before caches existed): none, and left out
    /// of the stored form.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caches: Vec<crate::cache::Cache>,
}

impl Action {
    /// When output `name` is kept.
    pub fn output_when(&self, name: &str) -> crate::reports::OutputWhen {
        self.output_when.get(name).copied().unwrap_or_default()
    }

    /// The `MAJOR.MINOR` release that first ran everything this action
    /// uses: agents and coordinators older than it would drop a part of it.
    pub fn needs_version(&self) -> (u32, u32) {
        if self.kind != ActionKind::Plugin
            && self.output_when.is_empty()
            && self.reports.is_empty()
            && self.matrix.is_none()
            && self.services.is_empty()
            && self.caches.is_empty()
        {
            (0, 1)
        } else {
            (0, 2)
        }
    }
}

/// Resource limits of a build or test action's container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Resources {
    /// CPU limit in thousandths of a CPU (`cpus: 1.5` is 1500), at most [`MAX_MILLICPUS`].
    pub millicpus: Option<u64>,
    /// Memory limit in bytes, at least [`MIN_MEMORY_BYTES`].
    pub memory_bytes: Option<u64>,
    /// Most processes (and threads) at once, between [`MIN_PIDS`] and [`MAX_PIDS`].
    /// Unset (also in actions stored before it existed): the agent's default.
    #[serde(default)]
    pub pids: Option<u64>,
}

/// What an action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Build,
    Test,
    Approval,
    Deploy,
    /// Runs a plugin image (Drone/Woodpecker format) with its own
    /// entrypoint; its `settings:` reach it as `PLUGIN_*` variables.
    Plugin,
}

impl ActionKind {
    /// Every supported kind, in documentation order.
    pub const ALL: [ActionKind; 5] = [
        ActionKind::Build,
        ActionKind::Test,
        ActionKind::Approval,
        ActionKind::Deploy,
        ActionKind::Plugin,
    ];

    /// The spelling used in pipeline YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Build => "build",
            ActionKind::Test => "test",
            ActionKind::Approval => "approval",
            ActionKind::Deploy => "deploy",
            ActionKind::Plugin => "plugin",
        }
    }

    /// Whether the action runs commands in a container on an agent.
    pub fn runs_commands(self) -> bool {
        matches!(self, ActionKind::Build | ActionKind::Test)
    }

    /// Whether the action runs in a container of its own on an agent, and
    /// so may leave outputs and output variables: build, test and plugin.
    pub fn runs_in_container(self) -> bool {
        matches!(
            self,
            ActionKind::Build | ActionKind::Test | ActionKind::Plugin
        )
    }

    /// Whether an agent runs the action (everything but approvals).
    pub fn runs_on_agent(self) -> bool {
        self != ActionKind::Approval
    }

    /// Timeout used when the action does not set one.
    pub fn default_timeout_ms(self) -> u64 {
        match self {
            ActionKind::Build | ActionKind::Test | ActionKind::Deploy | ActionKind::Plugin => {
                DEFAULT_COMMAND_TIMEOUT_MS
            }
            ActionKind::Approval => DEFAULT_APPROVAL_TIMEOUT_MS,
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(name: &str) -> Action {
        Action {
            name: name.to_string(),
            kind: ActionKind::Build,
            run_order: 1,
            runs_on: Vec::new(),
            inputs: Vec::new(),
            image: Some("img".to_string()),
            commands: vec!["true".to_string()],
            env: BTreeMap::new(),
            outputs: BTreeMap::new(),
            timeout_ms: DEFAULT_COMMAND_TIMEOUT_MS,
            resources: Resources {
                millicpus: Some(1_500),
                memory_bytes: Some(MIN_MEMORY_BYTES),
                pids: Some(MIN_PIDS),
            },
            retries: 2,
            secrets: BTreeMap::from([("DEPLOY_TOKEN".to_string(), "prod-token".to_string())]),
            approvers: Vec::new(),
            allow_self_approval: false,
            required: 1,
            message: String::new(),
            url: String::new(),
            deploy: None,
            when: None,
            output_when: BTreeMap::new(),
            reports: Default::default(),
            matrix: None,
            services: vec![crate::service::Service {
                name: "db".to_string(),
                image: "postgres:16".to_string(),
                env: BTreeMap::new(),
                command: None,
                ready: None,
            }],
            caches: vec![crate::cache::Cache {
                key: "cargo-#{hash_files: Cargo.lock}".to_string(),
                restore_keys: vec!["cargo-".to_string()],
                paths: vec!["target".to_string()],
                scope: crate::cache::CacheScope::Pipeline,
            }],
        }
    }

    fn pipeline() -> Pipeline {
        Pipeline {
            name: "p".to_string(),
            source: Source {
                git: "/srv/git/p.git".to_string(),
                branch: DEFAULT_BRANCH.to_string(),
                poll_interval_ms: None,
                webhook_secret: Some("github-hook".to_string()),
                triggers: vec![crate::trigger::Trigger::branch("main")],
                upstreams: Vec::new(),
            },
            stages: vec![
                Stage {
                    name: "build".to_string(),
                    actions: vec![action("compile"), action("lint")],
                    when: None,
                    on_failure: Default::default(),
                },
                Stage {
                    name: "test".to_string(),
                    actions: vec![action("unit")],
                    when: None,
                    on_failure: Default::default(),
                },
            ],
            execution_mode: ExecutionMode::DEFAULT,
            variables: BTreeMap::new(),
            schedule: Some(crate::schedule::Schedule {
                cron: "0 3 * * 1-5".to_string(),
                timezone: "Europe/Berlin".to_string(),
            }),
            notifications: vec![crate::notify::NotificationTarget {
                name: "team-chat".to_string(),
                url: "https://hooks.example.com/x".to_string(),
                url_secret: None,
                secret: None,
                format: crate::notify::NotifyFormat::Slack,
                events: vec!["approval.*".to_string()],
            }],
        }
    }

    #[test]
    fn find_action_returns_indices() {
        let p = pipeline();
        assert_eq!(p.find_action("build", "lint"), Some((0, 1)));
        assert_eq!(p.find_action("test", "unit"), Some((1, 0)));
        assert_eq!(p.find_action("test", "lint"), None);
        assert_eq!(p.find_action("deploy", "unit"), None);
    }

    #[test]
    fn action_kind_display_and_serde_match_yaml_spelling() {
        for kind in ActionKind::ALL {
            assert_eq!(kind.to_string(), kind.as_str());
            assert_eq!(
                serde_json::to_string(&kind).ok(),
                Some(format!("\"{}\"", kind.as_str()))
            );
        }
    }

    #[test]
    fn pipeline_round_trips_through_json() {
        let p = pipeline();
        let json = serde_json::to_string(&p).expect("serialize");
        let back: Pipeline = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, p);
    }

    #[test]
    fn actions_serialized_before_retries_and_resources_still_deserialize() {
        let mut json = serde_json::to_value(action("old")).expect("serialize");
        let fields = json.as_object_mut().expect("an action is a JSON object");
        assert!(fields.remove("retries").is_some());
        assert!(fields.remove("resources").is_some());
        let back: Action = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back.retries, 0);
        assert_eq!(back.resources, Resources::default());
        assert_eq!(
            back,
            Action {
                retries: 0,
                resources: Resources::default(),
                ..action("old")
            }
        );
    }

    #[test]
    fn pipelines_serialized_before_triggers_schedules_and_notifications_still_deserialize() {
        let mut json = serde_json::to_value(pipeline()).expect("serialize");
        let fields = json.as_object_mut().expect("a pipeline is a JSON object");
        assert!(fields.remove("schedule").is_some());
        assert!(fields.remove("notifications").is_some());
        let source = fields
            .get_mut("source")
            .and_then(|s| s.as_object_mut())
            .expect("a source is a JSON object");
        assert!(source.remove("webhook_secret").is_some());
        assert!(source.remove("triggers").is_some());
        let back: Pipeline = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back.schedule, None);
        assert!(back.notifications.is_empty());
        assert_eq!(back.source.webhook_secret, None);
        assert!(back.source.triggers.is_empty());
        // No triggers behave as before: pushes to `branch` only.
        assert_eq!(
            back.source.effective_triggers(),
            vec![crate::trigger::Trigger::branch("main")]
        );
    }

    #[test]
    fn a_pipeline_stored_before_triggers_decodes() {
        // A version as an earlier Ferry wrote it into the Raft log.
        let old = r#"{"name":"p","source":{"git":"/srv/git/p.git","branch":"main",
            "poll_interval_ms":10000},"stages":[],"execution_mode":"queued","variables":{}}"#;
        let back: Pipeline = serde_json::from_str(old).expect("deserialize");
        assert_eq!(back.source.poll_interval_ms, Some(10_000));
        assert_eq!(back.schedule, None);
        assert!(back.notifications.is_empty());
        assert!(back.source.triggers.is_empty());
        assert_eq!(back.source.webhook_secret, None);
    }

    #[test]
    fn resources_serialized_before_pids_still_deserialize() {
        let old = r#"{"millicpus":1500,"memory_bytes":null}"#;
        let back: Resources = serde_json::from_str(old).expect("deserialize");
        assert_eq!(
            back,
            Resources {
                millicpus: Some(1_500),
                memory_bytes: None,
                pids: None,
            }
        );
    }

    #[test]
    fn actions_serialized_before_services_and_caches_still_deserialize() {
        let mut json = serde_json::to_value(action("old")).expect("serialize");
        let fields = json.as_object_mut().expect("an action is a JSON object");
        assert!(fields.remove("services").is_some());
        assert!(fields.remove("caches").is_some());
        let back: Action = serde_json::from_value(json).expect("deserialize");
        assert!(back.services.is_empty() && back.caches.is_empty());
        assert_eq!(
            back,
            Action {
                services: Vec::new(),
                caches: Vec::new(),
                ..action("old")
            }
        );
    }

    #[test]
    fn actions_serialized_before_secrets_still_deserialize() {
        let mut json = serde_json::to_value(action("old")).expect("serialize");
        let fields = json.as_object_mut().expect("an action is a JSON object");
        assert!(fields.remove("secrets").is_some());
        let back: Action = serde_json::from_value(json).expect("deserialize");
        assert!(back.secrets.is_empty());
        assert_eq!(
            back,
            Action {
                secrets: BTreeMap::new(),
                ..action("old")
            }
        );
    }
}
