//! Reads a plugin action's `settings:` and lowers them into its `env` and
//! `secrets` (`crate::plugin` has the format's rules): each setting becomes
//! the `PLUGIN_*` variable Drone and Woodpecker plugins read, with its value
//! written as they write it (a scalar as its text, a list of scalars joined
//! with `,`, anything holding a mapping as compact JSON), and
//! `{from_secret: NAME}` becomes an entry of `secrets`. Every problem is
//! reported where it is written; references (`#{...}`) are returned with
//! their positions for the pipeline's checks.
//!
//! JSON is written without recursion: an explicit stack walks the nodes.

use std::collections::HashMap;

use marked_yaml::Node;
use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};

use crate::Action;
use crate::parse::Pos;
use crate::plugin::{
    FROM_SECRET, MAX_SETTINGS, MAX_SETTINGS_BYTES, check_setting_name, json_scalar, json_string,
    setting_variable,
};
use crate::rules;
use crate::vars::Ref;
use crate::yaml::{Reader, Value, describe, field, is_null, mapping_pos, pos};

/// One level of the JSON being written: what is left of a list or a
/// mapping (entries with their keys), whether an entry was written yet, and
/// the bracket that closes it.
struct Level<'n> {
    entries: Box<dyn Iterator<Item = (Option<&'n MarkedScalarNode>, &'n Node)> + 'n>,
    first: bool,
    close: char,
}

impl Reader<'_> {
    /// Lowers `settings` (a mapping) into `action`'s env and secrets;
    /// `action_map` is the action as written, for where its `env` and
    /// `secrets` keys are. Returns the references the settings hold.
    pub(super) fn settings(
        &mut self,
        value: Value<'_>,
        action_map: &MarkedMappingNode,
        action: &mut Action,
    ) -> Vec<(Ref, Pos)> {
        let mut refs = Vec::new();
        let Some(map) = self.mapping(value, "`settings`") else {
            return refs;
        };
        if map.len() > MAX_SETTINGS {
            self.error(
                mapping_pos(map),
                format!("`settings` has more than {MAX_SETTINGS} settings"),
            );
            return refs;
        }
        let env = field(action_map, "env").and_then(|v| v.node.as_mapping());
        let secrets = field(action_map, "secrets").and_then(|v| v.node.as_mapping());
        // Which setting each variable came from: two names may become one.
        let mut first: HashMap<String, (&str, Pos)> = HashMap::new();
        let mut total = 0usize;
        let mut over = false;
        for (key, node) in map.iter() {
            let name = key.as_str();
            let at = pos(key.span());
            if let Err(message) = check_setting_name(name) {
                self.error(at, message);
                continue;
            }
            let variable = setting_variable(name);
            if let Some((other, other_at)) = first.get(&variable) {
                self.error(
                    at,
                    format!(
                        "settings `{other}` (at {other_at}) and `{name}` both become {variable}"
                    ),
                );
                continue;
            }
            first.insert(variable.clone(), (name, at));
            for (what, set) in [("env", env), ("secrets", secrets)] {
                if let Some(entry) = set.and_then(|set| field(set, &variable)) {
                    self.error(
                        entry.key_pos(),
                        format!("`{variable}` is set in {what} and by setting `{name}` (at {at})"),
                    );
                }
            }
            let value = Value::entry(key, node);
            let Some(text) = self.setting_value(name, value, &mut refs, &mut |secret| {
                action.secrets.insert(variable.clone(), secret);
            }) else {
                continue;
            };
            total += variable.len() + text.len();
            if total > MAX_SETTINGS_BYTES && !over {
                over = true;
                self.error(
                    at,
                    format!(
                        "`settings` are over {MAX_SETTINGS_BYTES} bytes once written as \
                         environment variables"
                    ),
                );
            }
            action.env.insert(variable, text);
        }
        refs
    }

    /// One setting's value as its variable holds it; `None` for a secret
    /// (given to `secret`) or a value that is wrong (reported).
    fn setting_value(
        &mut self,
        name: &str,
        value: Value<'_>,
        refs: &mut Vec<(Ref, Pos)>,
        secret: &mut dyn FnMut(String),
    ) -> Option<String> {
        let at = value.pos();
        match value.node {
            Node::Scalar(scalar) if is_null(scalar) => {
                self.error(
                    at,
                    format!("setting `{name}` has no value; write \"\" for an empty one"),
                );
                None
            }
            Node::Scalar(scalar) => {
                let text = scalar.as_str();
                self.text_references(text, at, refs);
                self.check_setting_text(name, text, at)
                    .then(|| text.to_string())
            }
            Node::Mapping(map) if map.get_node(FROM_SECRET).is_some() => {
                if map.len() != 1 {
                    self.error(
                        at,
                        format!(
                            "setting `{name}`: a secret is written {{{FROM_SECRET}: NAME}}, \
                             with no other keys"
                        ),
                    );
                    return None;
                }
                let what = format!("the secret of setting `{name}`");
                let (secret_name, secret_at) =
                    field(map, FROM_SECRET).and_then(|v| self.string(v, &what))?;
                match rules::validate_secret_name(&secret_name) {
                    Ok(()) => secret(secret_name),
                    Err(reason) => self.error(
                        secret_at,
                        format!("invalid secret name {secret_name:?}: {reason}"),
                    ),
                }
                None
            }
            Node::Sequence(list) if list.iter().all(|item| item.as_scalar().is_some()) => {
                let mut items = Vec::with_capacity(list.len());
                for item in list.iter() {
                    let item_at = pos(item.span());
                    match item.as_scalar() {
                        Some(scalar) if !is_null(scalar) => {
                            self.text_references(scalar.as_str(), item_at, refs);
                            items.push(scalar.as_str());
                        }
                        _ => self.error(
                            item_at,
                            format!(
                                "an item of setting `{name}` must be a value, found {}",
                                describe(item)
                            ),
                        ),
                    }
                }
                let text = items.join(",");
                self.check_setting_text(name, &text, at).then_some(text)
            }
            node => self.setting_json(name, node),
        }
    }

    /// A list holding a list or mapping, or a mapping: compact JSON. Its
    /// texts hold no references (a substituted value could break the JSON)
    /// and no `from_secret` (only a whole setting can be a secret).
    fn setting_json(&mut self, name: &str, node: &Node) -> Option<String> {
        let mut out = String::new();
        let mut ok = true;
        let mut stack: Vec<Level<'_>> = Vec::new();
        let mut next = Some(node);
        loop {
            if out.len() > MAX_SETTINGS_BYTES {
                self.error(
                    pos(node.span()),
                    format!("setting `{name}` is over {MAX_SETTINGS_BYTES} bytes written as JSON"),
                );
                return None;
            }
            match next.take() {
                Some(Node::Scalar(scalar)) => {
                    if scalar.as_str().contains("#{") {
                        ok = false;
                        self.error(
                            pos(scalar.span()),
                            format!(
                                "setting `{name}` is written as JSON, where a `#{{...}}` \
                                 reference cannot be; use it in a setting that is text or a \
                                 list of texts"
                            ),
                        );
                    }
                    json_scalar(scalar.as_str(), scalar.may_coerce(), &mut out);
                }
                Some(Node::Sequence(list)) => {
                    out.push('[');
                    stack.push(Level {
                        entries: Box::new(list.iter().map(|n| (None, n))),
                        first: true,
                        close: ']',
                    });
                }
                Some(Node::Mapping(map)) => {
                    if let Some(entry) = field(map, FROM_SECRET) {
                        ok = false;
                        self.error(
                            entry.key_pos(),
                            format!(
                                "`{FROM_SECRET}` must be the whole value of a setting, \
                                 not inside setting `{name}`"
                            ),
                        );
                    }
                    out.push('{');
                    stack.push(Level {
                        entries: Box::new(map.iter().map(|(k, n)| (Some(k), n))),
                        first: true,
                        close: '}',
                    });
                }
                None => {}
            }
            let Some(level) = stack.last_mut() else {
                break;
            };
            match level.entries.next() {
                Some((key, node)) => {
                    if !level.first {
                        out.push(',');
                    }
                    level.first = false;
                    if let Some(key) = key {
                        json_string(key.as_str(), &mut out);
                        out.push(':');
                    }
                    next = Some(node);
                }
                None => {
                    out.push(level.close);
                    stack.pop();
                }
            }
        }
        ok.then_some(out)
    }

    /// Whether a setting's text can be an environment variable's value (no
    /// NUL); reported at `at` when not.
    fn check_setting_text(&mut self, name: &str, text: &str, at: Pos) -> bool {
        if text.contains('\0') {
            self.error(
                at,
                format!("setting `{name}` holds a NUL character, which no environment can"),
            );
            return false;
        }
        true
    }

    /// The references in `text`, written at `at`, added to `refs`; a
    /// malformed one is reported.
    fn text_references(&mut self, text: &str, at: Pos, refs: &mut Vec<(Ref, Pos)>) {
        match crate::vars::references(text) {
            Ok(found) => refs.extend(found.into_iter().map(|r| (r, at))),
            Err(e) => self.error(at, e.to_string()),
        }
    }
}
