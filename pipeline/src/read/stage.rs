//! Reads a stage: its name and actions, the `when` condition (also used by
//! actions) and `on_failure`.

use crate::condition::{Condition, MAX_STAGE_RETRIES, OnFailure};
use crate::model::Stage;
use crate::parse::Pos;
use crate::vars::Ref;
use crate::yaml::{Reader, Value, field, pos};

use super::StageLoc;

const STAGE_KEYS: &[&str] = &["name", "actions", "when", "on_failure"];
const CONDITION_KEYS: &[&str] = &["branch", "tag", "variables"];
const ON_FAILURE_KEYS: &[&str] = &["retry"];

impl Reader<'_> {
    pub(super) fn stage(&mut self, value: Value<'_>) -> (Stage, StageLoc) {
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
                let (action, action_loc, matrix) = self.action(Value::item(item));
                let expanded = match matrix {
                    Some(m) => self.expand(action, action_loc, m),
                    None => vec![(action, action_loc)],
                };
                for (action, action_loc) in expanded {
                    stage.actions.push(action);
                    loc.actions.push(action_loc);
                }
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

    /// `when: {branch: GLOB | [GLOB...], tag: ..., variables: {"#{REF}": VALUE}}`,
    /// and the references its variables name.
    pub(super) fn condition(&mut self, value: Value<'_>) -> (Option<Condition>, Vec<(Ref, Pos)>) {
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
    pub(super) fn on_failure(&mut self, value: Value<'_>) -> Option<OnFailure> {
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
}
