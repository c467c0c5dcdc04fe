//! Reads `source.webhook_secret` and `source.triggers` (branch, tag and
//! path filters), reporting each broken rule at its position. The rules
//! themselves live in `crate::trigger`, shared with unpositioned checks.

use crate::rules::validate_secret_name;
use crate::trigger::{
    EMPTY_INCLUDE, GlobFilter, MAX_TRIGGERS, NEEDS_BRANCHES_OR_TAGS, NOT_BOTH, PATHS_NEED_BRANCHES,
    Trigger, check_glob, check_glob_count,
};
use crate::yaml::{Reader, Value, field, mapping_pos, pos};

const TRIGGER_KEYS: &[&str] = &["branches", "tags", "paths"];
const FILTER_KEYS: &[&str] = &["include", "exclude"];

impl Reader<'_> {
    /// `webhook_secret`: the name of a Ferry secret.
    pub(super) fn webhook_secret(&mut self, value: Value<'_>) -> Option<String> {
        let (secret, at) = self.string(value, "`webhook_secret`")?;
        if let Err(reason) = validate_secret_name(&secret) {
            self.error(at, format!("invalid secret name {secret:?}: {reason}"));
        }
        Some(secret)
    }

    /// `triggers`: a non-empty list of at most [`MAX_TRIGGERS`] triggers.
    pub(super) fn triggers(&mut self, value: Value<'_>) -> Vec<Trigger> {
        let Some(list) = self.sequence(value, "`triggers`") else {
            return Vec::new();
        };
        if list.is_empty() {
            self.error(
                pos(list.span()),
                "`triggers` must list at least one trigger (leave it out to build pushes to `branch`)",
            );
        }
        if list.len() > MAX_TRIGGERS {
            self.error(
                pos(list.span()),
                format!(
                    "`triggers` lists at most {MAX_TRIGGERS} triggers, found {}",
                    list.len()
                ),
            );
        }
        list.iter()
            .filter_map(|item| self.trigger(Value::item(item)))
            .collect()
    }

    fn trigger(&mut self, value: Value<'_>) -> Option<Trigger> {
        let map = self.mapping(value, "each trigger")?;
        self.check_keys(map, "trigger", TRIGGER_KEYS);
        let mut trigger = Trigger::default();
        for (key, slot) in [
            ("branches", &mut trigger.branches),
            ("tags", &mut trigger.tags),
            ("paths", &mut trigger.paths),
        ] {
            if let Some(value) = field(map, key) {
                *slot = self.glob_filter(value, key);
            }
        }
        let given = |key| field(map, key).map(|v| v.key_pos());
        match (given("branches"), given("tags")) {
            (None, None) => self.error(mapping_pos(map), NEEDS_BRANCHES_OR_TAGS),
            (Some(_), Some(tags)) => self.error(tags, NOT_BOTH),
            (None, Some(_)) | (Some(_), None) => {}
        }
        if let (Some(paths), None) = (given("paths"), given("branches")) {
            self.error(paths, PATHS_NEED_BRANCHES);
        }
        Some(trigger)
    }

    /// `{include: [GLOB...], exclude: [GLOB...]}` under `key`.
    fn glob_filter(&mut self, value: Value<'_>, key: &str) -> Option<GlobFilter> {
        let map = self.mapping(value, &format!("`{key}`"))?;
        self.check_keys(map, key, FILTER_KEYS);
        let include = self
            .required(map, "include", key)
            .map(|value| {
                let globs = self.globs(value, key, "include");
                if value.node.as_sequence().is_some_and(|list| list.is_empty()) {
                    self.error(value.pos(), format!("`{key}`: {EMPTY_INCLUDE}"));
                }
                globs
            })
            .unwrap_or_default();
        let exclude = field(map, "exclude")
            .map(|value| self.globs(value, key, "exclude"))
            .unwrap_or_default();
        if let Err(message) = check_glob_count(include.len() + exclude.len()) {
            self.error(mapping_pos(map), format!("`{key}`: {message}"));
        }
        Some(GlobFilter { include, exclude })
    }

    /// A list of globs (`include` or `exclude` of filter `key`), each checked.
    fn globs(&mut self, value: Value<'_>, key: &str, list_key: &str) -> Vec<String> {
        let Some(list) = self.sequence(value, &format!("`{key}.{list_key}`")) else {
            return Vec::new();
        };
        let mut globs = Vec::new();
        for item in list.iter() {
            let Some((text, at)) = self.string(Value::item(item), &format!("each `{key}` glob"))
            else {
                continue;
            };
            if let Err(message) = check_glob(&text) {
                self.error(at, format!("`{key}`: {message}"));
            }
            globs.push(text);
        }
        globs
    }
}
