//! Reads an action's fields one by one: `run_order`, those of actions that
//! run commands (`commands`, `retries`, `resources`; `outputs` and
//! `reports` are read in `outputs`) and those of
//! actions that run on an agent (`inputs`, `env`, `secrets`).

use std::collections::{BTreeMap, HashMap};

use marked_yaml::types::MarkedMappingNode;

use crate::model::{MAX_PIDS, MAX_RETRIES, MIN_PIDS, Resources};
use crate::name::validate_name;
use crate::parse::Pos;
use crate::rules::{self, CpusError};
use crate::yaml::{Reader, Value, describe, field, is_null, mapping_pos, pos};

const RESOURCE_KEYS: &[&str] = &["cpus", "memory", "pids"];

impl Reader<'_> {
    pub(super) fn run_order(&mut self, value: Value<'_>) -> Option<u32> {
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

    pub(super) fn retries(&mut self, value: Value<'_>) -> Option<u32> {
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
    pub(super) fn resources(&mut self, value: Value<'_>) -> Resources {
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
    pub(super) fn pids(&mut self, value: Value<'_>) -> Option<u64> {
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
    pub(super) fn cpus(&mut self, value: Value<'_>) -> Option<u64> {
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

    pub(super) fn commands(&mut self, value: Value<'_>) -> Vec<String> {
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

    pub(super) fn inputs(&mut self, value: Value<'_>) -> Vec<(String, Pos)> {
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
            // `UPSTREAM.OUTPUT` names an upstream pipeline's output.
            let checked = match crate::upstream::upstream_input(&name) {
                Some((pipeline, output)) => validate_name(pipeline).and(validate_name(output)),
                None => validate_name(&name),
            };
            if let Err(reason) = checked {
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

    pub(super) fn env(&mut self, value: Value<'_>) -> BTreeMap<String, String> {
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
    pub(super) fn secrets(
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
}
