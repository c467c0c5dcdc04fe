//! Reads an action: which keys each kind of action may have, its type, and
//! the whole action with the fields its kind allows (build and test run
//! commands, a plugin's `settings` go to `plugin`, deploy goes to `deploy`,
//! approval reads its approvers and message here).

use std::collections::BTreeMap;

use marked_yaml::types::MarkedMappingNode;

use crate::model::{
    Action, ActionKind, DEFAULT_APPROVER, DEFAULT_RUN_ORDER, MAX_APPROVAL_MESSAGE_LEN,
    MAX_APPROVAL_URL_LEN, MAX_APPROVALS_REQUIRED, Resources,
};
use crate::parse::Pos;
use crate::rules;
use crate::yaml::{Reader, Value, field, mapping_pos, pos};

use super::ActionLoc;

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
    "reports",
    "matrix",
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
    "services",
    "cache",
    "settings",
];
/// Keys every kind of action may have.
const COMMON_KEYS: &[&str] = &["name", "type", "run_order", "timeout", "when"];
/// Keys of actions that run on an agent (build, test, deploy).
const AGENT_KEYS: &[&str] = &["runs_on", "inputs", "env", "secrets"];
/// Keys only for actions that run commands in a container (build, test).
const COMMAND_KEYS: &[&str] = &[
    "image",
    "commands",
    "outputs",
    "reports",
    "matrix",
    "retries",
    "resources",
    "services",
    "cache",
];
/// Keys only for plugin actions (which share `image`, `outputs`, `retries`
/// and `resources` with build and test).
const PLUGIN_KEYS: &[&str] = &["image", "settings", "outputs", "retries", "resources"];
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

/// Whether an action of `kind` may have `key`.
fn allows(kind: ActionKind, key: &str) -> bool {
    let own: &[&[&str]] = match kind {
        ActionKind::Build | ActionKind::Test => &[AGENT_KEYS, COMMAND_KEYS],
        ActionKind::Approval => &[APPROVAL_KEYS],
        ActionKind::Deploy => &[AGENT_KEYS, DEPLOY_KEYS],
        ActionKind::Plugin => &[AGENT_KEYS, PLUGIN_KEYS],
    };
    COMMON_KEYS.contains(&key) || own.iter().any(|keys| keys.contains(&key))
}

impl Reader<'_> {
    /// The action as written, where its parts are, and its `matrix:` (which
    /// the stage expands).
    pub(super) fn action(
        &mut self,
        value: Value<'_>,
    ) -> (Action, ActionLoc, Option<super::matrix::MatrixRead>) {
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
            output_when: BTreeMap::new(),
            reports: Default::default(),
            matrix: None,
            services: Vec::new(),
            caches: Vec::new(),
        };
        let mut loc = ActionLoc {
            name: None,
            run_order_known: false,
            inputs: Vec::new(),
            outputs: Vec::new(),
            refs: Vec::new(),
        };
        let mut matrix = None;
        let Some(map) = self.mapping(value, "each action") else {
            return (action, loc, matrix);
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
        let in_container = kind.is_none_or(ActionKind::runs_in_container);
        let is_plugin = kind.is_none_or(|k| k == ActionKind::Plugin);
        let on_agent = kind.is_none_or(ActionKind::runs_on_agent);
        let is_approval = kind.is_none_or(|k| k == ActionKind::Approval);
        let is_deploy = kind.is_none_or(|k| k == ActionKind::Deploy);
        let mut service_refs = Vec::new();
        let mut cache_read = None;

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

        if in_container {
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
                            mapping_pos(map),
                            format!("missing required key `image` in {kind} action"),
                        );
                    }
                }
            }
            if let Some(value) = field(map, "outputs") {
                let read = self.outputs(value);
                action.outputs = read.paths;
                action.output_when = read.when;
                loc.outputs = read.locs;
            }
            if let Some(value) = field(map, "retries") {
                action.retries = self.retries(value).unwrap_or(0);
            }
            if let Some(value) = field(map, "resources") {
                action.resources = self.resources(value);
            }
        }
        if runs_commands {
            match field(map, "commands") {
                Some(value) => action.commands = self.commands(value),
                None => {
                    if let Some(kind) = kind {
                        self.error(
                            mapping_pos(map),
                            format!("missing required key `commands` in {kind} action"),
                        );
                    }
                }
            }
            if let Some(value) = field(map, "reports") {
                action.reports = self.reports(value);
            }
            if let Some(value) = field(map, "matrix") {
                matrix = self.matrix(value);
            }
            if let Some(value) = field(map, "services") {
                let name = loc.name.map(|_| action.name.as_str());
                let (services, refs) = self.services(value, name);
                action.services = services;
                service_refs = refs;
            }
            if let Some(value) = field(map, "cache") {
                cache_read = Some(self.caches(value));
            }
        }
        if in_container && matrix.is_none() {
            for (name, at) in loc.outputs.iter().filter(|(n, _)| n.contains("#{")) {
                self.error(
                    *at,
                    format!("output `{name}` names a matrix value, but the action has no `matrix`"),
                );
            }
        }
        if on_agent {
            if let Some(value) = field(map, "runs_on") {
                action.runs_on =
                    self.checked_list(value, ("`runs_on`", "agent label"), rules::check_label);
                if matrix.is_none() && action.runs_on.iter().any(|l| l.contains("#{matrix.")) {
                    self.error(
                        value.pos(),
                        "`runs_on` names a matrix value, but the action has no `matrix`",
                    );
                }
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
        loc.refs.extend(service_refs);
        if is_plugin && let Some(value) = field(map, "settings") {
            let refs = self.settings(value, map, &mut action);
            loc.refs.extend(refs);
        }
        if let Some(read) = cache_read {
            self.check_cache_sources(&read, &action.inputs);
            action.caches = read.caches;
            loc.refs.extend(read.refs);
        }
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
        (action, loc, matrix)
    }

    pub(super) fn action_kind(&mut self, value: Value<'_>) -> Option<ActionKind> {
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

    pub(super) fn approvals_required(&mut self, value: Value<'_>) -> Option<u32> {
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

    /// Reports keys that exist for actions in general but not for this kind.
    pub(super) fn check_keys_for_kind(&mut self, map: &MarkedMappingNode, kind: ActionKind) {
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
}

/// A mapping key's text and position.
fn key_name(key: &marked_yaml::types::MarkedScalarNode) -> (&str, Pos) {
    (key.as_str(), pos(key.span()))
}
