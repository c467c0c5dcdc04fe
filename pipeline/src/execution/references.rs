//! The values an execution gives references (`#{variables.NAME}` and
//! `#{STAGE.ACTION.NAME}`) and whether its `when:` conditions hold.

use std::collections::BTreeMap;

use super::ExecutionState;
use crate::Pipeline;
use crate::condition::Condition;
use crate::vars::Ref;

impl ExecutionState {
    /// Whether `condition` holds for this execution now; else why not.
    pub(super) fn condition_holds(
        &self,
        pipeline: &Pipeline,
        condition: &Condition,
    ) -> Result<(), String> {
        condition.holds(self.source.as_ref(), |key| {
            let reference = crate::vars::references(&format!("#{{{key}}}"))
                .ok()?
                .into_iter()
                .next()?;
            self.value_of(pipeline, &reference)
        })
    }

    /// The value of reference `r` now, if it has one.
    pub(super) fn value_of(&self, pipeline: &Pipeline, r: &Ref) -> Option<String> {
        match r {
            Ref::Pipeline(name) => self.variables.get(name).cloned(),
            // A matrix value belongs to one action: [`Self::resolve`] knows
            // it; the agent fills in a cache key's file digests.
            Ref::Matrix(_) | Ref::HashFiles(_) => None,
            Ref::Output {
                stage,
                action,
                name,
            } => {
                let (si, ai) = pipeline.find_action(stage, action)?;
                self.action(si, ai)?.variables.get(name).cloned()
            }
        }
    }

    /// Resolves the references of action `spec` for its run: every value
    /// found, or the first reference without one. `#{hash_files: ...}` is
    /// left to the agent.
    pub(super) fn resolve(
        &self,
        pipeline: &Pipeline,
        spec: &crate::Action,
    ) -> Result<BTreeMap<String, String>, Ref> {
        crate::vars::action_references(spec)
            .into_iter()
            .filter(|r| !matches!(r, Ref::HashFiles(_)))
            .map(|r| {
                let value = match &r {
                    Ref::Matrix(name) => spec
                        .matrix
                        .as_ref()
                        .and_then(|m| m.value(name))
                        .map(str::to_string),
                    _ => self.value_of(pipeline, &r),
                };
                match value {
                    Some(v) => Ok((r.key(), v)),
                    None => Err(r),
                }
            })
            .collect()
    }
}
