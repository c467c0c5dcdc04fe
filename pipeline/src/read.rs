//! Reads the YAML node tree into the pipeline model, checking keys, types
//! and single values, and remembering where names and artifacts were
//! written so that the cross-reference checks in `validate` can point at them.
//!
//! Reading never stops at an error: problems are recorded and a fallback
//! value is used, so one pass reports everything that is wrong. What starts
//! a pipeline and whom it tells (`source.triggers`, `schedule`,
//! `notifications`) is read in the submodules beside this file.

use std::collections::{BTreeMap, HashMap};

use marked_yaml::types::MarkedMappingNode;

use crate::condition::{Condition, MAX_STAGE_RETRIES, OnFailure};
use crate::deploy::{Count, Deploy, MAX_KEEP_RELEASES, Strategy};
use crate::duration::parse_duration_ms;
use crate::model::{
    Action, ActionKind, DEFAULT_APPROVER, DEFAULT_BRANCH, DEFAULT_RUN_ORDER, ExecutionMode,
    MAX_APPROVAL_MESSAGE_LEN, MAX_APPROVAL_URL_LEN, MAX_APPROVALS_REQUIRED, MAX_PIDS, MAX_RETRIES,
    MIN_PIDS, MIN_POLL_INTERVAL_MS, Pipeline, Resources, Source, Stage, Variable,
};
use crate::name::validate_name;
use crate::parse::{Diagnostic, Pos};
use crate::rules::{self, CpusError};
use crate::vars::Ref;
use crate::yaml::{Reader, Value, describe, field, is_null, mapping_pos, pos};

mod notifications;
mod schedule;
mod triggers;

const PIPELINE_KEYS: &[&str] = &[
    "name",
    "source",
    "stages",
    "execution_mode",
    "variables",
    "schedule",
    "notifications",
];
const VARIABLE_KEYS: &[&str] = &["default", "description"];
/// Action fields whose text may hold `#{...}` variable references.
const TEMPLATED_KEYS: &[&str] = &["image", "commands", "env", "message", "url"];
const SOURCE_KEYS: &[&str] = &[
    "git",
    "branch",
    "poll_interval",
    "webhook_secret",
    "triggers",
];
const STAGE_KEYS: &[&str] = &["name", "actions", "when", "on_failure"];
const CONDITION_KEYS: &[&str] = &["branch", "tag", "variables"];
const ON_FAILURE_KEYS: &[&str] = &["retry"];
const ACTION_KEYS: &[&str] = &[
    "name",
    "type",
    "image",
    "run_order",
    "runs_on",
    "inputs",
    "commands",
    "env",
    "outputs",
    "timeout",
    "approvers",
    "allow_self_approval",
    "required",
    "message",
    "url",
    "retries",
    "resources",
    "secrets",
    "environment",
    "strategy",
    "min_healthy",
    "rollback",
    "keep_releases",
    "hook_timeout",
    "connect_timeout",
    "when",
];
/// Keys every kind of action may have.
const COMMON_KEYS: &[&str] = &["name", "type", "run_order", "timeout", "when"];
/// Keys of actions that run on an agent (build, test, deploy).
const AGENT_KEYS: &[&str] = &["runs_on", "inputs", "env", "secrets"];
/// Keys only for actions that run commands in a container (build, test).
const COMMAND_KEYS: &[&str] = &["image", "commands", "outputs", "retries", "resources"];
/// Keys only for approval actions.
const APPROVAL_KEYS: &[&str] = &[
    "approvers",
    "allow_self_approval",
    "required",
    "message",
    "url",
];
/// Keys only for deploy actions.
const DEPLOY_KEYS: &[&str] = &[
    "environment",
    "strategy",
    "min_healthy",
    "rollback",
    "keep_releases",
    "hook_timeout",
    "connect_timeout",
];
const RESOURCE_KEYS: &[&str] = &["cpus", "memory", "pids"];
const STRATEGY_KEYS: &[&str] = &["batch"];

/// Whether an action of `kind` may have `key`.
fn allows(kind: ActionKind, key: &str) -> bool {
    let own: &[&[&str]] = match kind {
        ActionKind::Build | ActionKind::Test => &[AGENT_KEYS, COMMAND_KEYS],
        ActionKind::Approval => &[APPROVAL_KEYS],
        ActionKind::Deploy => &[AGENT_KEYS, DEPLOY_KEYS],
    };
    COMMON_KEYS.contains(&key) || own.iter().any(|keys| keys.contains(&key))
}

/// Output artifact name -> paths, as stored in [`Action::outputs`].
type OutputMap = BTreeMap<String, Vec<String>>;

/// The pipeline as read (with fallbacks where something was wrong) plus the
/// positions the cross-reference checks need. `stages[i].actions[j]` lines
/// up with `pipeline.stages[i].actions[j]`.
pub(crate) struct Draft {
    pub pipeline: Pipeline,
    pub stages: Vec<StageLoc>,
}

pub(crate) struct StageLoc {
    /// References its `when:` names, with their positions.
    pub refs: Vec<(Ref, Pos)>,
    /// Position of the stage name; `None` if it was missing or invalid.
    pub name: Option<Pos>,
    pub actions: Vec<ActionLoc>,
}

pub(crate) struct ActionLoc {
    /// Position of the action name; `None` if it was missing or invalid.
    pub name: Option<Pos>,
    /// Whether `run_order` was valid (or defaulted), so ordering checks can trust it.
    pub run_order_known: bool,
    /// Valid input names and where each is written.
    pub inputs: Vec<(String, Pos)>,
    /// Valid output artifact names and where each key is written.
    pub outputs: Vec<(String, Pos)>,
    /// Variable references in its templated fields, with the position of
    /// the text each is in (syntax errors are reported while reading).
    pub refs: Vec<(Ref, Pos)>,
}

/// Reads a whole pipeline from the top-level mapping.
pub(crate) fn read_pipeline(root: &MarkedMappingNode, diags: &mut Vec<Diagnostic>) -> Draft {
    Reader::new(diags).pipeline(root)
}

impl Reader<'_> {
    // ---- structure -------------------------------------------------------

    fn pipeline(&mut self, root: &MarkedMappingNode) -> Draft {
        self.check_keys(root, "pipeline", PIPELINE_KEYS);
        let name = self.name_field(root, "pipeline");
        let source = self
            .required(root, "source", "pipeline")
            .and_then(|value| self.source(value));
        let mut stages = Vec::new();
        let mut locs = Vec::new();
        if let Some(list) = self.required_list(root, "stages", "pipeline") {
            if list.is_empty() {
                self.error(pos(list.span()), "`stages` must list at least one stage");
            }
            for item in list.iter() {
                let (stage, loc) = self.stage(Value::item(item));
                stages.push(stage);
                locs.push(loc);
            }
        }
        let pipeline = Pipeline {
            name: name.map(|(n, _)| n).unwrap_or_default(),
            source: source.unwrap_or_else(|| Source {
                git: String::new(),
                branch: DEFAULT_BRANCH.to_string(),
                poll_interval_ms: None,
                webhook_secret: None,
                triggers: Vec::new(),
            }),
            stages,
            execution_mode: field(root, "execution_mode")
                .and_then(|value| self.execution_mode(value))
                .unwrap_or(ExecutionMode::DEFAULT),
            variables: field(root, "variables")
                .map(|value| self.variables(value))
                .unwrap_or_default(),
            schedule: field(root, "schedule").and_then(|value| self.schedule(value)),
            notifications: field(root, "notifications")
                .map(|value| self.notifications(value))
                .unwrap_or_default(),
        };
        Draft {
            pipeline,
            stages: locs,
        }
    }

    fn source(&mut self, value: Value<'_>) -> Option<Source> {
        let map = self.mapping(value, "`source`")?;
        self.check_keys(map, "source", SOURCE_KEYS);
        let git = self
            .required(map, "git", "source")
            .and_then(|value| self.string(value, "`git`"))
            .map(|(git, at)| {
                if let Err(reason) = rules::check_git_source(&git) {
                    self.error(at, format!("invalid git source {git:?}: {reason}"));
                }
                git
            })
            .unwrap_or_default();
        let branch = field(map, "branch")
            .and_then(|value| self.string(value, "`branch`"))
            .map(|(branch, at)| {
                if let Err(reason) = rules::check_branch(&branch) {
                    self.error(at, format!("invalid branch {branch:?}: {reason}"));
                }
                branch
            })
            .unwrap_or_else(|| DEFAULT_BRANCH.to_string());
        let poll_interval_ms = field(map, "poll_interval").and_then(|value| {
            let (ms, at) = self.duration(value, "`poll_interval`")?;
            if ms < MIN_POLL_INTERVAL_MS {
                self.error(at, "`poll_interval` must be at least 1s");
            }
            Some(ms)
        });
        let webhook_secret = field(map, "webhook_secret").and_then(|v| self.webhook_secret(v));
        let triggers = field(map, "triggers")
            .map(|value| self.triggers(value))
            .unwrap_or_default();
        Some(Source {
            git,
            branch,
            poll_interval_ms,
            webhook_secret,
            triggers,
        })
    }

    fn stage(&mut self, value: Value<'_>) -> (Stage, StageLoc) {
        let mut stage = Stage {
            name: String::new(),
            actions: Vec::new(),
            when: None,
            on_failure: OnFailure::Fail,
        };
        let mut loc = StageLoc {
            refs: Vec::new(),
            name: None,
            actions: Vec::new(),
        };
        let Some(map) = self.mapping(value, "each stage") else {
            return (stage, loc);
        };
        self.check_keys(map, "stage", STAGE_KEYS);
        if let Some((name, at)) = self.name_field(map, "stage") {
            stage.name = name;
            loc.name = Some(at);
        }
        if let Some(list) = self.required_list(map, "actions", "stage") {
            if list.is_empty() {
                self.error(pos(list.span()), "`actions` must list at least one action");
            }
            for item in list.iter() {
                let (action, action_loc) = self.action(Value::item(item));
                stage.actions.push(action);
                loc.actions.push(action_loc);
            }
        }
        if let Some(value) = field(map, "when") {
            let (when, refs) = self.condition(value);
            stage.when = when;
            loc.refs = refs;
        }
        if let Some(value) = field(map, "on_failure") {
            stage.on_failure = self.on_failure(value).unwrap_or(OnFailure::Fail);
        }
        (stage, loc)
    }

    fn action(&mut self, value: Value<'_>) -> (Action, ActionLoc) {
        let mut action = Action {
            name: String::new(),
            kind: ActionKind::Build,
            run_order: DEFAULT_RUN_ORDER,
            runs_on: Vec::new(),
            inputs: Vec::new(),
            image: None,
            commands: Vec::new(),
            env: BTreeMap::new(),
            outputs: BTreeMap::new(),
            timeout_ms: ActionKind::Build.default_timeout_ms(),
            resources: Resources::default(),
            retries: 0,
            secrets: BTreeMap::new(),
            approvers: Vec::new(),
            allow_self_approval: false,
            required: 1,
            message: String::new(),
            url: String::new(),
            deploy: None,
            when: None,
        };
        let mut loc = ActionLoc {
            name: None,
            run_order_known: false,
            inputs: Vec::new(),
            outputs: Vec::new(),
            refs: Vec::new(),
        };
        let Some(map) = self.mapping(value, "each action") else {
            return (action, loc);
        };
        self.check_keys(map, "action", ACTION_KEYS);
        if let Some((name, at)) = self.name_field(map, "action") {
            action.name = name;
            loc.name = Some(at);
        }
        let kind = self
            .required(map, "type", "action")
            .and_then(|value| self.action_kind(value));
        if let Some(kind) = kind {
            action.kind = kind;
            action.timeout_ms = kind.default_timeout_ms();
            self.check_keys_for_kind(map, kind);
        }
        // What the action is allowed to contain depends on its kind; when the
        // kind is unknown every field is still read, to report type errors.
        let runs_commands = kind.is_none_or(ActionKind::runs_commands);
        let on_agent = kind.is_none_or(ActionKind::runs_on_agent);
        let is_approval = kind.is_none_or(|k| k == ActionKind::Approval);
        let is_deploy = kind.is_none_or(|k| k == ActionKind::Deploy);

        match field(map, "run_order") {
            Some(value) => {
                if let Some(order) = self.run_order(value) {
                    action.run_order = order;
                    loc.run_order_known = true;
                }
            }
            None => loc.run_order_known = true,
        }
        if let Some((ms, at)) =
            field(map, "timeout").and_then(|value| self.duration(value, "`timeout`"))
        {
            if ms == 0 {
                self.error(at, "`timeout` must be greater than zero");
            }
            action.timeout_ms = ms;
        }

        if runs_commands {
            let mapping_pos = mapping_pos(map);
            match field(map, "image") {
                Some(value) => {
                    if let Some((image, at)) = self.string(value, "`image`") {
                        if let Err(reason) = rules::check_plain_text(&image) {
                            self.error(at, format!("invalid image {image:?}: {reason}"));
                        }
                        action.image = Some(image);
                    }
                }
                None => {
                    if let Some(kind) = kind {
                        self.error(
                            mapping_pos,
                            format!("missing required key `image` in {kind} action"),
                        );
                    }
                }
            }
            match field(map, "commands") {
                Some(value) => action.commands = self.commands(value),
                None => {
                    if let Some(kind) = kind {
                        self.error(
                            mapping_pos,
                            format!("missing required key `commands` in {kind} action"),
                        );
                    }
                }
            }
            if let Some(value) = field(map, "outputs") {
                let (outputs, output_locs) = self.outputs(value);
                action.outputs = outputs;
                loc.outputs = output_locs;
            }
            if let Some(value) = field(map, "retries") {
                action.retries = self.retries(value).unwrap_or(0);
            }
            if let Some(value) = field(map, "resources") {
                action.resources = self.resources(value);
            }
        }
        if on_agent {
            if let Some(value) = field(map, "runs_on") {
                action.runs_on =
                    self.checked_list(value, ("`runs_on`", "agent label"), rules::check_label);
            }
            if let Some(value) = field(map, "inputs") {
                loc.inputs = self.inputs(value);
                action.inputs = loc.inputs.iter().map(|(n, _)| n.clone()).collect();
            }
            if let Some(value) = field(map, "env") {
                action.env = self.env(value);
            }
            if let Some(value) = field(map, "secrets") {
                let env_map = field(map, "env").and_then(|env| env.node.as_mapping());
                action.secrets = self.secrets(value, env_map);
            }
        }
        if is_deploy {
            action.deploy = self.deploy(map, kind == Some(ActionKind::Deploy));
            if kind == Some(ActionKind::Deploy) && action.inputs.len() != 1 {
                let at = field(map, "inputs").map_or(mapping_pos(map), |v| v.pos());
                self.error(
                    at,
                    format!(
                        "a deploy action needs exactly one input (the artifact to deploy), found {}",
                        action.inputs.len()
                    ),
                );
            }
        }
        loc.refs = self.references(map);
        if let Some(value) = field(map, "when") {
            let (when, refs) = self.condition(value);
            action.when = when;
            loc.refs.extend(refs);
        }
        if is_approval {
            if let Some(value) = field(map, "approvers") {
                action.approvers = self.plain_list(value, "`approvers`", "approver");
                if let Some(list) = value.node.as_sequence().filter(|list| list.is_empty()) {
                    self.error(
                        pos(list.span()),
                        "`approvers` must list at least one approver",
                    );
                }
            } else if kind == Some(ActionKind::Approval) {
                action.approvers = vec![DEFAULT_APPROVER.to_string()];
            }
            if let Some(value) = field(map, "allow_self_approval") {
                action.allow_self_approval = self
                    .boolean(value, "`allow_self_approval`")
                    .unwrap_or(false);
            }
            if let Some(value) = field(map, "required") {
                action.required = self.approvals_required(value).unwrap_or(1);
            }
            if let Some((text, at)) =
                field(map, "message").and_then(|v| self.string(v, "`message`"))
            {
                if text.len() > MAX_APPROVAL_MESSAGE_LEN {
                    self.error(
                        at,
                        format!("`message` is longer than {MAX_APPROVAL_MESSAGE_LEN} bytes"),
                    );
                }
                action.message = text;
            }
            if let Some((text, at)) = field(map, "url").and_then(|v| self.string(v, "`url`")) {
                if !(text.starts_with("https://") || text.starts_with("http://"))
                    || text.len() > MAX_APPROVAL_URL_LEN
                    || text.chars().any(char::is_whitespace)
                {
                    self.error(
                        at,
                        format!(
                            "`url` must be an http:// or https:// address without spaces, \
                             at most {MAX_APPROVAL_URL_LEN} bytes"
                        ),
                    );
                }
                action.url = text;
            }
        }
        (action, loc)
    }

    // ---- fields ----------------------------------------------------------

    fn action_kind(&mut self, value: Value<'_>) -> Option<ActionKind> {
        let (text, at) = self.string(value, "`type`")?;
        if let Some(kind) = ActionKind::ALL.into_iter().find(|k| k.as_str() == text) {
            return Some(kind);
        }
        let expected: Vec<&str> = ActionKind::ALL.iter().map(|k| k.as_str()).collect();
        self.error(
            at,
            format!(
                "unknown action type {text:?}; expected one of: {}",
                expected.join(", ")
            ),
        );
        None
    }

    /// `variables:`: NAME: DEFAULT, or NAME: {default, description}.
    fn variables(&mut self, value: Value<'_>) -> BTreeMap<String, Variable> {
        let mut vars = BTreeMap::new();
        let Some(map) = self.mapping(value, "`variables`") else {
            return vars;
        };
        if map.len() > crate::vars::MAX_PIPELINE_VARS {
            self.error(
                mapping_pos(map),
                format!(
                    "`variables` lists more than {} variables",
                    crate::vars::MAX_PIPELINE_VARS
                ),
            );
        }
        for (key, node) in map.iter() {
            let name = key.as_str();
            if let Err(message) = crate::vars::check_name(name) {
                self.error(pos(key.span()), message);
            }
            let entry = Value::entry(key, node);
            let what = format!("the default of variable `{name}`");
            let var = if let Some(spec) = node.as_mapping() {
                self.check_keys(spec, "variable", VARIABLE_KEYS);
                Variable {
                    default: field(spec, "default")
                        .and_then(|v| self.string(v, &what))
                        .map(|(t, _)| t)
                        .unwrap_or_default(),
                    description: field(spec, "description")
                        .and_then(|v| self.string(v, "`description`"))
                        .map(|(t, _)| t)
                        .unwrap_or_default(),
                }
            } else {
                Variable {
                    default: self
                        .string(entry, &what)
                        .map(|(t, _)| t)
                        .unwrap_or_default(),
                    description: String::new(),
                }
            };
            if var.default.len() > crate::vars::MAX_VALUE_LEN {
                self.error(
                    pos(key.span()),
                    format!(
                        "the default of variable `{name}` is longer than {} bytes",
                        crate::vars::MAX_VALUE_LEN
                    ),
                );
            }
            vars.insert(name.to_string(), var);
        }
        vars
    }

    /// The `#{...}` references in an action's templated fields; a
    /// malformed one is reported where its text is.
    fn references(&mut self, map: &MarkedMappingNode) -> Vec<(crate::vars::Ref, Pos)> {
        let mut texts: Vec<(&str, Pos)> = Vec::new();
        for key in TEMPLATED_KEYS {
            let Some(value) = field(map, key) else {
                continue;
            };
            let nodes: Vec<&marked_yaml::Node> = match value.node {
                marked_yaml::Node::Sequence(list) => list.iter().collect(),
                marked_yaml::Node::Mapping(m) => m.values().collect(),
                node => vec![node],
            };
            for node in nodes {
                if let Some(scalar) = node.as_scalar() {
                    texts.push((scalar.as_str(), pos(scalar.span())));
                }
            }
        }
        let mut refs = Vec::new();
        for (text, at) in texts {
            match crate::vars::references(text) {
                Ok(found) => refs.extend(found.into_iter().map(|r| (r, at))),
                Err(e) => self.error(at, e.to_string()),
            }
        }
        refs
    }

    /// `when: {branch: GLOB | [GLOB...], tag: ..., variables: {"#{REF}": VALUE}}`,
    /// and the references its variables name.
    fn condition(&mut self, value: Value<'_>) -> (Option<Condition>, Vec<(Ref, Pos)>) {
        let mut refs = Vec::new();
        let Some(map) = self.mapping(value, "`when`") else {
            return (None, refs);
        };
        self.check_keys(map, "when", CONDITION_KEYS);
        let mut condition = Condition::default();
        for (key, out) in [
            ("branch", &mut condition.branches),
            ("tag", &mut condition.tags),
        ] {
            let Some(v) = field(map, key) else { continue };
            let globs: Vec<(String, Pos)> = match v.node {
                marked_yaml::Node::Sequence(list) => list
                    .iter()
                    .filter_map(|item| {
                        self.string(Value::item(item), &format!("each `{key}` glob"))
                    })
                    .collect(),
                _ => self.string(v, &format!("`{key}`")).into_iter().collect(),
            };
            for (g, at) in globs {
                if let Err(e) = crate::condition::glob(&g) {
                    self.error(at, format!("`{key}`: {e}"));
                }
                out.push(g);
            }
        }
        if let Some(v) = field(map, "variables")
            && let Some(vars) = self.mapping(v, "`variables` of `when`")
        {
            for (key, node) in vars.iter() {
                let at = pos(key.span());
                let reference = match crate::vars::references(key.as_str()) {
                    Ok(found)
                        if found.len() == 1
                            && key.as_str().starts_with("#{")
                            && key.as_str().ends_with('}') =>
                    {
                        found.into_iter().next()
                    }
                    _ => None,
                };
                let Some(reference) = reference else {
                    self.error(at, format!("`when` variables are written \"#{{variables.NAME}}\" or \"#{{STAGE.ACTION.NAME}}\", found {:?}", key.as_str()));
                    continue;
                };
                let what = format!("the value {} must have", key.as_str());
                let expected = self
                    .string(Value::entry(key, node), &what)
                    .map(|(t, _)| t)
                    .unwrap_or_default();
                condition.variables.insert(reference.key(), expected);
                refs.push((reference, at));
            }
        }
        (Some(condition), refs)
    }

    /// `on_failure: fail | {retry: N}`.
    fn on_failure(&mut self, value: Value<'_>) -> Option<OnFailure> {
        if let Some(map) = value.node.as_mapping() {
            self.check_keys(map, "on_failure", ON_FAILURE_KEYS);
            let n = self.required(map, "retry", "on_failure")?;
            let (number, at) = self.integer(n, "`retry`")?;
            return match u32::try_from(number) {
                Ok(n) if (1..=MAX_STAGE_RETRIES).contains(&n) => Some(OnFailure::Retry(n)),
                _ => {
                    self.error(
                        at,
                        format!(
                            "`retry` must be between 1 and {MAX_STAGE_RETRIES}, found {number}"
                        ),
                    );
                    None
                }
            };
        }
        let (text, at) = self.string(value, "`on_failure`")?;
        match text.as_str() {
            "fail" => return Some(OnFailure::Fail),
            "rollback" => return Some(OnFailure::Rollback),
            _ => {}
        }
        self.error(
            at,
            format!("unknown on_failure {text:?}; expected fail, rollback or {{retry: N}}"),
        );
        None
    }

    fn execution_mode(&mut self, value: Value<'_>) -> Option<ExecutionMode> {
        let (text, at) = self.string(value, "`execution_mode`")?;
        if let Some(mode) = ExecutionMode::ALL.into_iter().find(|m| m.as_str() == text) {
            return Some(mode);
        }
        self.error(
            at,
            format!("unknown execution_mode {text:?}; expected superseded, queued or parallel"),
        );
        None
    }

    fn approvals_required(&mut self, value: Value<'_>) -> Option<u32> {
        let (number, at) = self.integer(value, "`required`")?;
        match u32::try_from(number) {
            Ok(n) if (1..=MAX_APPROVALS_REQUIRED).contains(&n) => Some(n),
            _ => {
                self.error(
                    at,
                    format!(
                        "`required` must be between 1 and {MAX_APPROVALS_REQUIRED}, found {number}"
                    ),
                );
                None
            }
        }
    }

    fn run_order(&mut self, value: Value<'_>) -> Option<u32> {
        let (number, at) = self.integer(value, "`run_order`")?;
        if number < 1 {
            self.error(
                at,
                format!("`run_order` must be at least 1, found {number}"),
            );
            return None;
        }
        match u32::try_from(number) {
            Ok(order) => Some(order),
            Err(_) => {
                self.error(
                    at,
                    format!("`run_order` must be at most {}, found {number}", u32::MAX),
                );
                None
            }
        }
    }

    fn retries(&mut self, value: Value<'_>) -> Option<u32> {
        let (number, at) = self.integer(value, "`retries`")?;
        match u32::try_from(number).ok().filter(|&n| n <= MAX_RETRIES) {
            Some(retries) => Some(retries),
            None => {
                self.error(
                    at,
                    format!("`retries` must be between 0 and {MAX_RETRIES}, found {number}"),
                );
                None
            }
        }
    }

    /// The `resources` mapping; invalid entries are reported and left unset.
    fn resources(&mut self, value: Value<'_>) -> Resources {
        let mut resources = Resources::default();
        let Some(map) = self.mapping(value, "`resources`") else {
            return resources;
        };
        self.check_keys(map, "resources", RESOURCE_KEYS);
        if map.is_empty() {
            self.error(
                mapping_pos(map),
                "`resources` must set cpus, memory or pids",
            );
        }
        if let Some(value) = field(map, "cpus") {
            resources.millicpus = self.cpus(value);
        }
        if let Some((text, at)) =
            field(map, "memory").and_then(|value| self.string(value, "`memory`"))
        {
            match rules::parse_memory_bytes(&text) {
                Ok(bytes) => resources.memory_bytes = Some(bytes),
                Err(message) => self.error(at, message),
            }
        }
        if let Some(value) = field(map, "pids") {
            resources.pids = self.pids(value);
        }
        resources
    }

    /// `resources.pids`: an integer between [`MIN_PIDS`] and [`MAX_PIDS`].
    fn pids(&mut self, value: Value<'_>) -> Option<u64> {
        let (number, at) = self.integer(value, "`pids`")?;
        match u64::try_from(number)
            .ok()
            .filter(|n| (MIN_PIDS..=MAX_PIDS).contains(n))
        {
            Some(pids) => Some(pids),
            None => {
                self.error(
                    at,
                    format!("`pids` must be between {MIN_PIDS} and {MAX_PIDS}, found {number}"),
                );
                None
            }
        }
    }

    /// `resources.cpus` in millicpus: an unquoted number such as `2` or `1.5`.
    fn cpus(&mut self, value: Value<'_>) -> Option<u64> {
        let at = value.pos();
        let scalar = value
            .node
            .as_scalar()
            .filter(|s| s.may_coerce() && !is_null(s));
        let result = match scalar {
            Some(scalar) => rules::parse_millicpus(scalar.as_str()),
            None => Err(CpusError::NotANumber),
        };
        match result {
            Ok(millicpus) => Some(millicpus),
            Err(CpusError::NotANumber) => {
                let found = describe(value.node);
                self.error(at, format!("`cpus` must be a number, found {found}"));
                None
            }
            Err(CpusError::Invalid(message)) => {
                self.error(at, message);
                None
            }
        }
    }

    fn duration(&mut self, value: Value<'_>, what: &str) -> Option<(u64, Pos)> {
        let (text, at) = self.string(value, what)?;
        match parse_duration_ms(&text) {
            Ok(ms) => Some((ms, at)),
            Err(e) => {
                self.error(at, e.to_string());
                None
            }
        }
    }

    fn commands(&mut self, value: Value<'_>) -> Vec<String> {
        let Some(list) = self.sequence(value, "`commands`") else {
            return Vec::new();
        };
        if list.is_empty() {
            self.error(
                pos(list.span()),
                "`commands` must list at least one command",
            );
        }
        let mut commands = Vec::new();
        for item in list.iter() {
            if let Some((command, at)) = self.string(Value::item(item), "each command") {
                if command.trim().is_empty() {
                    self.error(at, "a command must not be empty");
                }
                commands.push(command);
            }
        }
        commands
    }

    /// A list of non-empty, whitespace-free strings (agent labels, approvers).
    fn plain_list(&mut self, value: Value<'_>, what: &str, item_what: &str) -> Vec<String> {
        self.checked_list(value, (what, item_what), rules::check_plain_text)
    }

    /// A list of strings, each checked by `check`.
    fn checked_list(
        &mut self,
        value: Value<'_>,
        (what, item_what): (&str, &str),
        check: fn(&str) -> Result<(), String>,
    ) -> Vec<String> {
        let Some(list) = self.sequence(value, what) else {
            return Vec::new();
        };
        let mut values = Vec::new();
        for item in list.iter() {
            let item_what_each = format!("each {item_what}");
            if let Some((text, at)) = self.string(Value::item(item), &item_what_each) {
                if let Err(reason) = check(&text) {
                    self.error(at, format!("invalid {item_what} {text:?}: {reason}"));
                }
                values.push(text);
            }
        }
        values
    }

    fn inputs(&mut self, value: Value<'_>) -> Vec<(String, Pos)> {
        let Some(list) = self.sequence(value, "`inputs`") else {
            return Vec::new();
        };
        let mut inputs: Vec<(String, Pos)> = Vec::new();
        // Where each input was first listed: one lookup per item, so a
        // megabyte of inputs costs no quadratic time.
        let mut first_at: HashMap<String, Pos> = HashMap::new();
        for item in list.iter() {
            let Some((name, at)) = self.string(Value::item(item), "each input") else {
                continue;
            };
            if let Err(reason) = validate_name(&name) {
                self.error(
                    at,
                    format!("invalid input artifact name {name:?}: {reason}"),
                );
            } else if let Some(first) = first_at.get(&name) {
                self.error(
                    at,
                    format!("input `{name}` is listed twice (first at {first})"),
                );
            } else {
                first_at.insert(name.clone(), at);
                inputs.push((name, at));
            }
        }
        inputs
    }

    fn env(&mut self, value: Value<'_>) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        let Some(map) = self.mapping(value, "`env`") else {
            return env;
        };
        for (key, value) in map.iter() {
            let name = key.as_str();
            if let Err(message) = rules::check_env_name(name) {
                self.error(pos(key.span()), message);
            }
            let what = format!("the value of environment variable `{name}`");
            if let Some((text, _)) = self.string(Value::entry(key, value), &what) {
                env.insert(name.to_string(), text);
            }
        }
        env
    }

    /// The `secrets` mapping: environment variable name -> secret name.
    /// Variables also set in `env` (the mapping given) are reported.
    fn secrets(
        &mut self,
        value: Value<'_>,
        env: Option<&MarkedMappingNode>,
    ) -> BTreeMap<String, String> {
        let mut secrets = BTreeMap::new();
        let Some(map) = self.mapping(value, "`secrets`") else {
            return secrets;
        };
        for (key, value) in map.iter() {
            let name = key.as_str();
            let key_pos = pos(key.span());
            if let Err(message) = rules::check_env_name(name) {
                self.error(key_pos, message);
            } else if env.is_some_and(|env| env.get_node(name).is_some()) {
                self.error(key_pos, format!("`{name}` is set in both env and secrets"));
            }
            let what = format!("the secret of environment variable `{name}`");
            if let Some((secret, at)) = self.string(Value::entry(key, value), &what) {
                if let Err(reason) = rules::validate_secret_name(&secret) {
                    self.error(at, format!("invalid secret name {secret:?}: {reason}"));
                }
                secrets.insert(name.to_string(), secret);
            }
        }
        secrets
    }

    fn outputs(&mut self, value: Value<'_>) -> (OutputMap, Vec<(String, Pos)>) {
        let mut outputs = BTreeMap::new();
        let mut locs = Vec::new();
        let Some(map) = self.mapping(value, "`outputs`") else {
            return (outputs, locs);
        };
        for (key, value) in map.iter() {
            let name = key.as_str();
            let key_pos = pos(key.span());
            match rules::check_artifact_name(name) {
                Ok(()) => locs.push((name.to_string(), key_pos)),
                Err(message) => self.error(key_pos, message),
            }
            let Some(list) = self.sequence(Value::entry(key, value), &format!("output `{name}`"))
            else {
                continue;
            };
            if list.is_empty() {
                self.error(
                    pos(list.span()),
                    format!("output `{name}` must list at least one path"),
                );
            }
            let mut paths = Vec::new();
            for item in list.iter() {
                if let Some((path, at)) = self.string(Value::item(item), "each output path") {
                    if let Err(message) = rules::check_output_path(&path) {
                        self.error(at, message);
                    }
                    paths.push(path);
                }
            }
            outputs.insert(name.to_string(), paths);
        }
        (outputs, locs)
    }

    // ---- keys and types --------------------------------------------------

    /// Reports keys that exist for actions in general but not for this kind.
    fn check_keys_for_kind(&mut self, map: &MarkedMappingNode, kind: ActionKind) {
        for key in map.keys() {
            let key = key_name(key);
            if !ACTION_KEYS.contains(&key.0) || allows(kind, key.0) {
                continue;
            }
            let mut owners: Vec<String> = ActionKind::ALL
                .into_iter()
                .filter(|k| allows(*k, key.0))
                .map(|k| k.to_string())
                .collect();
            let last = owners.pop().unwrap_or_default();
            let owners = match owners.is_empty() {
                true => last,
                false => format!("{} and {last}", owners.join(", ")),
            };
            self.error(
                key.1,
                format!(
                    "`{}` is not allowed in {kind} actions; it is only for {} actions",
                    key.0, owners
                ),
            );
        }
    }

    // ---- deploy ----------------------------------------------------------

    /// The deploy settings; `None` (with errors) when `environment` is missing.
    fn deploy(&mut self, map: &MarkedMappingNode, required: bool) -> Option<Deploy> {
        let environment = match field(map, "environment") {
            Some(value) => self.string(value, "`environment`").map(|(name, at)| {
                if let Err(reason) = validate_name(&name) {
                    self.error(at, format!("invalid environment name {name:?}: {reason}"));
                }
                name
            }),
            None => {
                if required {
                    self.error(
                        mapping_pos(map),
                        "missing required key `environment` in deploy action",
                    );
                }
                None
            }
        };
        let mut deploy = Deploy::new(environment.clone().unwrap_or_default());
        if let Some(value) = field(map, "strategy") {
            deploy.strategy = self.strategy(value).unwrap_or(deploy.strategy);
        }
        if let Some(value) = field(map, "min_healthy") {
            deploy.min_healthy = self.count(value, "`min_healthy`");
        }
        if let Some((text, at)) =
            field(map, "rollback").and_then(|value| self.string(value, "`rollback`"))
        {
            match text.as_str() {
                "auto" => deploy.rollback = true,
                "none" => deploy.rollback = false,
                _ => self.error(
                    at,
                    format!("`rollback` must be `auto` or `none`, found {text:?}"),
                ),
            }
        }
        if let Some((n, at)) =
            field(map, "keep_releases").and_then(|value| self.integer(value, "`keep_releases`"))
        {
            match u32::try_from(n)
                .ok()
                .filter(|n| (1..=MAX_KEEP_RELEASES).contains(n))
            {
                Some(n) => deploy.keep_releases = n,
                None => self.error(
                    at,
                    format!("`keep_releases` must be between 1 and {MAX_KEEP_RELEASES}, found {n}"),
                ),
            }
        }
        for (key, slot) in [
            ("hook_timeout", &mut deploy.hook_timeout_ms),
            ("connect_timeout", &mut deploy.connect_timeout_ms),
        ] {
            let what = format!("`{key}`");
            if let Some((ms, at)) = field(map, key).and_then(|value| self.duration(value, &what)) {
                if ms == 0 {
                    self.error(at, format!("{what} must be greater than zero"));
                }
                *slot = ms;
            }
        }
        environment.map(|_| deploy)
    }

    /// `strategy`: a name, or a mapping `{batch: N | N%}`.
    fn strategy(&mut self, value: Value<'_>) -> Option<Strategy> {
        if let Some(map) = value.node.as_mapping() {
            self.check_keys(map, "strategy", STRATEGY_KEYS);
            let batch = self.required(map, "batch", "strategy")?;
            return self.count(batch, "`batch`").map(Strategy::Batch);
        }
        let (text, at) = self.string(value, "`strategy`")?;
        let strategy = Strategy::named(&text);
        if strategy.is_none() {
            self.error(
                at,
                format!(
                    "unknown strategy {text:?}; expected all_at_once, one_at_a_time, \
                     half_at_a_time or a mapping such as `{{batch: 2}}` or `{{batch: 25%}}`"
                ),
            );
        }
        strategy
    }

    /// A host count: a whole number or a percentage string.
    fn count(&mut self, value: Value<'_>, what: &str) -> Option<Count> {
        let (text, at) = self.string(value, what)?;
        match Count::parse(&text) {
            Ok(count) => Some(count),
            Err(message) => {
                self.error(at, format!("{what}: {message}"));
                None
            }
        }
    }
}

/// A mapping key's text and position.
fn key_name(key: &marked_yaml::types::MarkedScalarNode) -> (&str, Pos) {
    (key.as_str(), pos(key.span()))
}
