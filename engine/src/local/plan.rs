//! Which actions of a pipeline a local run runs: all of them, one stage, or
//! one action — each with the earlier actions it needs (the producers of
//! its inputs and of the output variables it references, and theirs in
//! turn). Deploy actions run only when an environment file (`--deploy`)
//! names their environment. Everything
//! else is marked skipped, with why, before the execution starts, so the
//! pipeline crate's state machine passes over it as over any skip.

use std::collections::BTreeSet;

use ferry_pipeline::execution::{ActionStatus, ExecutionState};
use ferry_pipeline::vars::{Ref, action_references};
use ferry_pipeline::{ActionKind, Pipeline};

use super::LocalError;

/// What `--stage` or `--action` picked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Selection {
    #[default]
    All,
    Stage(String),
    /// STAGE and ACTION.
    Action(String, String),
}

/// The actions selected, with what they need: (stage, action) indices.
pub fn selected(
    pipeline: &Pipeline,
    selection: &Selection,
) -> Result<BTreeSet<(usize, usize)>, LocalError> {
    let all = pipeline
        .stages
        .iter()
        .enumerate()
        .flat_map(|(si, s)| (0..s.actions.len()).map(move |ai| (si, ai)));
    let mut wanted: BTreeSet<(usize, usize)> = match selection {
        Selection::All => return Ok(all.collect()),
        Selection::Stage(name) => {
            let si = pipeline
                .stages
                .iter()
                .position(|s| &s.name == name)
                .ok_or_else(|| {
                    LocalError::Selection(format!(
                        "no stage `{name}` in pipeline `{}`; its stages: {}",
                        pipeline.name,
                        pipeline
                            .stages
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
            all.filter(|(s, _)| *s == si).collect()
        }
        Selection::Action(stage, action) => {
            let at = pipeline.find_action(stage, action).ok_or_else(|| {
                LocalError::Selection(format!(
                    "no action `{stage}/{action}` in pipeline `{}`; its actions: {}",
                    pipeline.name,
                    pipeline
                        .stages
                        .iter()
                        .flat_map(|s| s
                            .actions
                            .iter()
                            .map(move |a| format!("{}/{}", s.name, a.name)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            BTreeSet::from([at])
        }
    };
    // What the selected actions need, transitively (producers come earlier,
    // so this ends after at most one pass per action).
    let mut todo: Vec<(usize, usize)> = wanted.iter().copied().collect();
    while let Some((si, ai)) = todo.pop() {
        let Some(spec) = pipeline.stages.get(si).and_then(|s| s.actions.get(ai)) else {
            continue;
        };
        let mut needs = Vec::new();
        for input in &spec.inputs {
            needs.extend(producer(pipeline, input));
        }
        for r in action_references(spec) {
            if let Ref::Output { stage, action, .. } = r {
                needs.extend(pipeline.find_action(&stage, &action));
            }
        }
        for at in needs {
            if wanted.insert(at) {
                todo.push(at);
            }
        }
    }
    Ok(wanted)
}

/// The action whose `outputs` name `artifact`.
fn producer(pipeline: &Pipeline, artifact: &str) -> Option<(usize, usize)> {
    pipeline.stages.iter().enumerate().find_map(|(si, s)| {
        s.actions
            .iter()
            .position(|a| a.outputs.contains_key(artifact))
            .map(|ai| (si, ai))
    })
}

/// Marks what does not run skipped, before the execution starts; returns
/// one note per reason, naming the actions it skipped.
pub fn skip_unselected(
    pipeline: &Pipeline,
    state: &mut ExecutionState,
    wanted: &BTreeSet<(usize, usize)>,
    environments: &BTreeSet<String>,
) -> Vec<String> {
    let mut skipped: Vec<(&str, Vec<String>)> = Vec::new();
    for (si, stage) in pipeline.stages.iter().enumerate() {
        for (ai, action) in stage.actions.iter().enumerate() {
            let deploys_elsewhere = action
                .deploy
                .as_ref()
                .is_some_and(|d| !environments.contains(&d.environment));
            let why = if !wanted.contains(&(si, ai)) {
                "not selected"
            } else if action.kind == ActionKind::Deploy && deploys_elsewhere {
                "deploy actions run only with --deploy ENV_FILE naming their environment"
            } else {
                continue;
            };
            if let Some(run) = state.action_mut(si, ai) {
                run.status = Some(ActionStatus::Skipped);
                run.message = format!("skipped: {why}");
            }
            let name = format!("{}/{}", stage.name, action.name);
            match skipped.iter_mut().find(|(w, _)| *w == why) {
                Some((_, names)) => names.push(name),
                None => skipped.push((why, vec![name])),
            }
        }
    }
    skipped
        .into_iter()
        .map(|(why, names)| format!("skipped ({why}): {}", names.join(", ")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
name: p
source: {git: /tmp/x}
stages:
  - name: build
    actions:
      - {name: compile, type: build, image: i, commands: ["make"], inputs: [source], outputs: {app: [out]}}
      - {name: docs, type: build, image: i, commands: ["make docs"]}
  - name: test
    actions:
      - {name: unit, type: test, image: i, commands: ["test"], inputs: [app]}
      - {name: lint, type: test, image: i, commands: ["echo #{build.docs.V}"]}
  - name: prod
    actions:
      - {name: ship, type: deploy, inputs: [app], environment: prod}
"#;

    fn pipeline() -> Result<Pipeline, String> {
        ferry_pipeline::parse(YAML).map_err(|d| format!("{d:?}"))
    }

    #[test]
    fn a_selection_brings_what_it_needs() -> Result<(), Box<dyn std::error::Error>> {
        let p = pipeline()?;
        let all = selected(&p, &Selection::All)?;
        assert_eq!(all.len(), 5);
        let unit = selected(&p, &Selection::Action("test".into(), "unit".into()))?;
        assert_eq!(unit, BTreeSet::from([(0, 0), (1, 0)]));
        let test = selected(&p, &Selection::Stage("test".into()))?;
        assert_eq!(test, BTreeSet::from([(0, 0), (0, 1), (1, 0), (1, 1)]));
        assert!(selected(&p, &Selection::Stage("nope".into())).is_err());
        let err = selected(&p, &Selection::Action("test".into(), "x".into()));
        assert!(err.is_err_and(|e| e.to_string().contains("test/unit")));
        Ok(())
    }

    #[test]
    fn deploys_and_unselected_actions_are_skipped_before_the_start()
    -> Result<(), Box<dyn std::error::Error>> {
        let p = pipeline()?;
        let mut state = ExecutionState::new(&p);
        let wanted = selected(&p, &Selection::All)?;
        let notes = skip_unselected(&p, &mut state, &wanted, &BTreeSet::new());
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(
            state.action(2, 0).map(|r| r.status()),
            Some(ActionStatus::Skipped)
        );
        let mut state = ExecutionState::new(&p);
        let wanted = selected(&p, &Selection::Action("test".into(), "unit".into()))?;
        let notes = skip_unselected(
            &p,
            &mut state,
            &wanted,
            &BTreeSet::from(["prod".to_string()]),
        );
        assert_eq!(
            notes,
            vec!["skipped (not selected): build/docs, test/lint, prod/ship".to_string()]
        );
        Ok(())
    }
}
