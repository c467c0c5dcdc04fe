//! Reads the pipeline's `variables` and finds the `#{...}` references to
//! variables and outputs in an action's templated fields.

use std::collections::BTreeMap;

use marked_yaml::types::MarkedMappingNode;

use crate::model::Variable;
use crate::parse::Pos;
use crate::yaml::{Reader, Value, field, mapping_pos, pos};

const VARIABLE_KEYS: &[&str] = &["default", "description"];
/// Action fields whose text may hold `#{...}` variable references.
const TEMPLATED_KEYS: &[&str] = &["image", "commands", "env", "message", "url"];

impl Reader<'_> {
    /// `variables:`: NAME: DEFAULT, or NAME: {default, description}.
    pub(super) fn variables(&mut self, value: Value<'_>) -> BTreeMap<String, Variable> {
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
    pub(super) fn references(&mut self, map: &MarkedMappingNode) -> Vec<(crate::vars::Ref, Pos)> {
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
}
