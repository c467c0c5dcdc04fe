//! Reads the YAML node tree into the pipeline model, checking keys, types
//! and single values, and remembering where names and artifacts were
//! written so that the cross-reference checks in `validate` can point at them.
//!
//! Reading never stops at an error: problems are recorded and a fallback
//! value is used, so one pass reports everything that is wrong. This file
//! reads the top level; each section of the pipeline file is read in a
//! submodule beside it: `source` (with `triggers`), `variables`, `schedule`,
//! `notifications`, `stage`, `action` (with `action_fields`, `outputs`,
//! `services` and `matrix`, which expands it) and `deploy`; `common` holds
//! the readers several sections share.

use marked_yaml::types::MarkedMappingNode;

use crate::model::{DEFAULT_BRANCH, ExecutionMode, Pipeline, Source};
use crate::parse::{Diagnostic, Pos};
use crate::vars::Ref;
use crate::yaml::{Reader, Value, field, pos};

mod action;
mod action_fields;
mod caches;
mod common;
mod deploy;
mod matrix;
mod notifications;
mod outputs;
mod plugin;
mod schedule;
mod services;
mod source;
mod stage;
mod triggers;
mod variables;

const PIPELINE_KEYS: &[&str] = &[
    "name",
    "source",
    "stages",
    "execution_mode",
    "variables",
    "schedule",
    "notifications",
];

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
                upstreams: Vec::new(),
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
}
